"""elman.torch.Adagrad: torch.optim.Adagrad whose update is elman's fused C kernel."""
from __future__ import annotations

import math

import numpy as np
import torch

from .._dispatch import current
from .._validate import NonFiniteError
from ._tensors import _DTYPES, _check_tensor, _np

__all__ = ["Adagrad"]

# What torch.optim.Adagrad's param_groups gained over its releases: a state_dict saved
# before a key existed loads with the key at its default, as torch's own Adagrad does.
_GROUP_DEFAULTS = dict(foreach=None, maximize=False, differentiable=False, fused=None,
                       initial_accumulator_value=0)


def _step_dtype():
    """The dtype torch.optim keeps "step" in: float64 under a float64 default dtype, else
    float32."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class Adagrad(torch.optim.Optimizer):
    """torch.optim.Adagrad, computed by elman's fused C kernel.

    Same arguments, defaults, param_groups and state ("step", "sum") as
    torch.optim.Adagrad, and the same update::

        g = -grad if maximize else grad;  g = g + weight_decay * p
        clr = lr / (1 + (step - 1) * lr_decay)
        sum += g * g;  p -= clr * g / (sqrt(sum) + eps)

    done in one pass over each tensor, in place, with no copy of a contiguous parameter.
    Sparse gradients (``nn.Embedding(sparse=True)``) update only their rows, as torch does
    (weight_decay is refused with them, as torch does). ``foreach`` and ``fused`` are kept
    in the param_groups for state_dict compatibility and otherwise ignored;
    ``differentiable=True`` is refused. A NaN or infinite gradient is applied as torch
    applies it (the parameter becomes NaN); ``found_nonfinite`` tells whether the last
    step met one.
    """

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, foreach=None, *, maximize=False, differentiable=False, fused=None):
        where = "elman.torch.Adagrad"
        # The messages start with torch.optim.Adagrad's own words, which scripts and test
        # suites match on.
        if isinstance(lr, torch.Tensor) and lr.numel() != 1:
            raise ValueError(f"{where}: Tensor lr must be 1-element, got {lr.numel()}")
        for name, v in (("learning rate", lr), ("lr_decay value", lr_decay),
                        ("weight_decay value", weight_decay),
                        ("initial_accumulator_value value", initial_accumulator_value),
                        ("epsilon value", eps)):
            if not 0.0 <= float(v) < math.inf:
                raise ValueError(f"{where}: Invalid {name}: {v} (must be finite and >= 0)")
        if fused and foreach:
            raise RuntimeError(f"{where}: `fused` and `foreach` cannot be `True` together "
                               f"(as in torch.optim.Adagrad; elman ignores both)")
        if differentiable:
            raise ValueError(f"{where}: differentiable=True is not supported (elman's "
                             f"update runs outside autograd); use "
                             f"torch.optim.Adagrad(..., differentiable=True)")
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                        maximize=maximize, differentiable=False, fused=fused)
        self._views = {}  # parameter -> (memory key, flat NumPy views of it and its sum)
        super().__init__(params, defaults)
        self.found_nonfinite = False
        for group in self.param_groups:
            for p in group["params"]:
                _check_tensor(p, "a parameter", where)
                self._init_state(p, group)

    def __setstate__(self, state):
        """Also what ``load_state_dict`` calls. Copies and unpickled optimizers (torch keeps
        defaults, state and param_groups only) start with an empty view cache. A state_dict
        from an older torch loads as torch loads it: param_groups without ``maximize``,
        ``foreach``, ``differentiable`` or ``fused`` get their defaults, and a ``step``
        saved as a Python number becomes a scalar tensor."""
        super().__setstate__(state)
        self._views = {}
        self.found_nonfinite = False
        for group in self.param_groups:
            for key, default in _GROUP_DEFAULTS.items():
                group.setdefault(key, default)
        for s in self.state.values():
            if "step" in s and not torch.is_tensor(s["step"]):
                s["step"] = torch.tensor(float(s["step"]), dtype=_step_dtype())

    def _init_state(self, p, group):
        state = self.state[p]
        if "sum" not in state:
            state["step"] = torch.tensor(0.0, dtype=_step_dtype())
            state["sum"] = torch.full_like(p, group["initial_accumulator_value"],
                                           memory_format=torch.preserve_format)
        return state

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        for p in self.param_groups[-1]["params"]:
            _check_tensor(p, "a parameter", "elman.torch.Adagrad.add_param_group")
            self._init_state(p, self.param_groups[-1])

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure()'s loss.

        The contiguous dense tensors of a group that share a step count and a dtype go to
        the C kernel in one call (the GIL released once); others one at a time."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        where = "elman.torch.Adagrad.step"
        bad = False
        for group in self.param_groups:
            settings = dict(lr=float(group["lr"]), lr_decay=float(group["lr_decay"]),
                            weight_decay=float(group["weight_decay"]),
                            eps=float(group["eps"]), maximize=bool(group["maximize"]))
            batches = {}   # (step, float64?) -> ([params], [sums], [grads]) as flat arrays
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                state = self._init_state(p, group)
                views = None if grad.is_sparse else self._dense_views(p, grad, state, where)
                if views is not None:  # the common case, kept short
                    pn, sn, gn, stepn = views
                    stepn += 1         # the state's "step" tensor, through its memory
                    lists = batches.setdefault((int(stepn), pn.dtype == np.float64),
                                               ([], [], []))
                    lists[0].append(pn)
                    lists[1].append(sn)
                    lists[2].append(gn)
                    continue
                state["step"] += 1
                one = dict(settings, step=int(state["step"].item()), eps_placement="outside",
                           clip_value=None, grad_scale=1.0)
                try:
                    if grad.is_sparse:
                        _check_tensor(p, "a parameter", where)
                        self._sparse_update(p, grad, state["sum"], one, where)
                    else:
                        self._copied_update(p, grad, state, one, where)
                except NonFiniteError:
                    bad = True  # applied, as torch applies it
            for (step, _), (ps, ss, gs) in batches.items():
                try:
                    current().adagrad_update_many(ps, gs, ss, step=step, **settings)
                except NonFiniteError:
                    bad = True  # every buffer updated, as torch applies it
        self.found_nonfinite = bad
        return loss

    def _dense_views(self, p, grad, state, where):
        """(param, sum, grad) as flat NumPy arrays sharing the tensors' memory, or None
        when the parameter or its sum is not contiguous."""
        if grad.shape != p.shape or grad.dtype != p.dtype:
            raise ValueError(f"{where}: a gradient has shape {tuple(grad.shape)} and dtype "
                             f"{grad.dtype}, its parameter {tuple(p.shape)} and {p.dtype}")
        views = self._flat_views(p, state, where)
        if views is None:
            return None
        pn = views[0]
        if not grad.is_contiguous():
            grad = grad.contiguous()
        g = grad.numpy() if not grad.requires_grad else _np(grad)
        start = grad.data_ptr()   # a gradient overlapping its parameter: read a copy
        if start < views[3] + pn.nbytes and views[3] < start + g.nbytes:
            g = g.copy()
        return pn, views[1], g.reshape(-1), views[2]

    @staticmethod
    def _copied_update(p, grad, state, settings, where):
        """A parameter whose memory is not contiguous: updated through contiguous copies."""
        pc, sc = p.contiguous(), state["sum"].contiguous()
        g = _np(grad.contiguous()).reshape(-1).copy()
        try:
            current().adagrad_update(_np(pc).reshape(-1), g, _np(sc).reshape(-1), **settings)
        finally:
            p.copy_(pc)
            state["sum"].copy_(sc)

    def _flat_views(self, p, state, where):
        """Flat NumPy views of a contiguous parameter, its sum and its step count (cached
        while the tensors keep their memory), or None when either is not contiguous."""
        s, st = state["sum"], state["step"]
        key = (p.data_ptr(), s.data_ptr(), st.data_ptr(), p.dtype, p.numel(), s.numel())
        cached = self._views.get(p)
        if cached is not None and cached[0] == key:
            return cached[1]
        _check_tensor(p, "a parameter", where)
        if s.shape != p.shape or s.dtype != p.dtype:
            raise ValueError(f"{where}: the state 'sum' has shape {tuple(s.shape)} and dtype "
                             f"{s.dtype}, its parameter {tuple(p.shape)} and {p.dtype}")
        if st.dtype not in _DTYPES or st.numel() != 1 or st.device.type != "cpu":
            raise ValueError(f"{where}: the state 'step' must be a CPU float32 or float64 "
                             f"scalar tensor, as torch.optim.Adagrad keeps it; got "
                             f"{st.dtype} with {st.numel()} elements on {st.device}")
        views = (_np(p).reshape(-1), _np(s).reshape(-1), _np(st).reshape(()), key[0]) \
            if p.is_contiguous() and s.is_contiguous() else None
        self._views[p] = (key, views)
        return views

    @staticmethod
    def _sparse_update(p, grad, s, settings, where):
        if settings["weight_decay"] != 0:
            raise RuntimeError(f"{where}: weight_decay is not compatible with sparse "
                               f"gradients (as in torch.optim.Adagrad)")
        grad = grad.coalesce()  # unique rows: the update is not linear
        if grad.sparse_dim() != 1:
            raise ValueError(f"{where}: sparse gradients with {grad.sparse_dim()} sparse "
                             f"dimensions are not supported (only row-sparse, as "
                             f"nn.Embedding(sparse=True) makes)")
        rows = _np(grad._indices()[0])
        values = _np(grad._values().contiguous()).reshape(len(rows), -1)
        P = _np(p).reshape(p.shape[0], -1) if p.is_contiguous() else None
        S = _np(s).reshape(s.shape[0], -1) if s.is_contiguous() else None
        if P is None or S is None:
            raise ValueError(f"{where}: a parameter with a sparse gradient must be "
                             f"contiguous")
        pr, sr = P[rows], S[rows]  # the rows the gradient touches, gathered
        try:
            current().adagrad_update(pr.reshape(-1), np.ascontiguousarray(values).reshape(-1),
                                     sr.reshape(-1), **settings)
        finally:
            P[rows], S[rows] = pr, sr
