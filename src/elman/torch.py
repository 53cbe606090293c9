"""elman as a backend for PyTorch on the CPU: swap two lines, keep the rest of the script.

    import elman.torch
    opt = elman.torch.Adagrad(model.parameters(), lr=1e-2)          # for torch.optim.Adagrad
    rnn = elman.torch.ElmanRNN(I, H, num_layers=2, batch_first=True)  # for torch.nn.RNN

``Adagrad`` is a ``torch.optim.Optimizer`` with torch.optim.Adagrad's arguments,
param_groups and state_dict (each loads the other's), whose update is elman's fused C kernel
working in place on the tensors' memory. ``ElmanRNN`` is a ``torch.nn.Module`` with
torch.nn.RNN's constructor, parameter names and call signature, whose forward and backward
are elman's C kernels (one ``torch.autograd.Function`` per layer and direction).

torch is an optional dependency: ``pip install "elman[torch]"`` (which does not pin a
version; pick a CPU build of torch). Only CPU tensors of float32 or float64 are accepted.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from . import kernels
from ._validate import NonFiniteError

__all__ = ["Adagrad", "ElmanRNN"]

_DTYPES = (torch.float32, torch.float64)


def _check_tensor(t, what, where):
    if t.device.type != "cpu":
        raise ValueError(f"{where}: {what} is on {t.device}; elman runs on the CPU (use "
                         f"torch.optim / torch.nn for other devices)")
    if t.dtype not in _DTYPES:
        raise TypeError(f"{where}: {what} has dtype {t.dtype}; elman handles float32 and "
                        f"float64")


def _np(t):
    """The tensor's memory as a NumPy array (no copy; the tensor must be contiguous)."""
    return t.detach().numpy()


# ---- Adagrad ------------------------------------------------------------------------------

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
        if isinstance(lr, torch.Tensor):
            if lr.numel() != 1:
                raise ValueError(f"{where}: a Tensor lr must have one element")
        for name, v in (("lr", lr), ("lr_decay", lr_decay), ("weight_decay", weight_decay),
                        ("initial_accumulator_value", initial_accumulator_value),
                        ("eps", eps)):
            if not 0.0 <= float(v) < math.inf:
                raise ValueError(f"{where}: invalid {name}: {v} (must be finite and >= 0)")
        if differentiable:
            raise ValueError(f"{where}: differentiable=True is not supported (the update "
                             f"runs outside autograd)")
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
        """Copies and unpickled optimizers (torch keeps defaults, state and param_groups
        only) start with an empty view cache."""
        super().__setstate__(state)
        self._views = {}
        self.found_nonfinite = False

    def _init_state(self, p, group):
        state = self.state[p]
        if "sum" not in state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
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
                bad |= kernels._adagrad_update_many(where, ps, gs, ss, step=step, **settings)
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
            kernels._adagrad_update(where, _np(pc).reshape(-1), g, _np(sc).reshape(-1),
                                    **settings)
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
        if st.dtype != torch.float32 or st.numel() != 1 or st.device.type != "cpu":
            raise ValueError(f"{where}: the state 'step' must be a CPU float32 scalar tensor, "
                             f"as torch.optim.Adagrad keeps it")
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
            kernels._adagrad_update(where, pr.reshape(-1), np.ascontiguousarray(values)
                                    .reshape(-1), sr.reshape(-1), **settings)
        finally:
            P[rows], S[rows] = pr, sr


# ---- the Elman RNN module -----------------------------------------------------------------

_NONLINEARITY = {"tanh": 0, "relu": 1}


class _ElmanLayer(torch.autograd.Function):
    """One direction of one layer: (x (T, B, I), h0 (B, H), weight_ih (H, I), weight_hh
    (H, H), bias_ih, bias_hh (H,) or None) -> (outputs (T, B, H), h_T (B, H)), forward and
    backward by elman's C kernels (kernels.rnn_forward / rnn_backward)."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, reverse, lengths):
        W_xh = _np(w_ih).T.copy()   # elman's (I, H): the row-vector convention
        W_hh = _np(w_hh).T.copy()
        dt = W_hh.dtype
        b = np.zeros(W_hh.shape[0], dt) if b_ih is None else _np(b_ih) + _np(b_hh)
        xn = _np(x.contiguous())
        hs = kernels.rnn_forward(xn, _np(h0.contiguous()), W_xh, W_hh, b,
                                 nonlinearity=nonlinearity, reverse=reverse, lengths=lengths)
        T = hs.shape[0] - 1
        hs_t = torch.from_numpy(hs)
        ctx.save_for_backward(x, hs_t)
        ctx.weights = (W_xh, W_hh)
        ctx.options = (nonlinearity, reverse, lengths, b_ih is not None)
        out = hs_t[:-1] if reverse else hs_t[1:]
        h_T = (hs_t[0] if reverse else hs_t[T]).clone()
        return out, h_T

    @staticmethod
    def backward(ctx, grad_out, grad_hT):
        x, hs_t = ctx.saved_tensors
        W_xh, W_hh = ctx.weights
        nonlinearity, reverse, lengths, has_bias = ctx.options
        T, B, H = hs_t.shape[0] - 1, hs_t.shape[1], hs_t.shape[2]
        dt = W_hh.dtype
        dH = np.zeros((T, B, H), dt) if grad_out is None else _np(grad_out.contiguous())
        dh_T = None if grad_hT is None else _np(grad_hT.contiguous())
        g = kernels.rnn_backward(dH, _np(hs_t), _np(x.contiguous()), W_xh, W_hh,
                                 nonlinearity=nonlinearity, dh_T=dh_T,
                                 need_dx=ctx.needs_input_grad[0], reverse=reverse,
                                 lengths=lengths)
        dx = torch.from_numpy(g.x) if g.x is not None else None
        db = torch.from_numpy(g.b_h) if has_bias else None
        return (dx, torch.from_numpy(g.h0), torch.from_numpy(g.W_xh.T.copy()),
                torch.from_numpy(g.W_hh.T.copy()), db, None if db is None else db.clone(),
                None, None, None)


class ElmanRNN(torch.nn.Module):
    """torch.nn.RNN on elman's C kernels: the same constructor, parameter names
    (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, ..._reverse), initialization,
    call and results, for tanh or relu, any num_layers, batch_first, bidirectional and
    dropout between layers (torch's F.dropout, so torch's RNG draws the masks), on CPU
    float32/float64 tensors.

    forward(input, hx=None) -> (output, h_n): input (T, B, I) ((B, T, I) with batch_first,
    (T, I) unbatched) or a PackedSequence (padded steps are skipped, via elman's lengths);
    hx (L*D, B, H). proj_size is not supported.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None,
                 dtype=None):
        super().__init__()
        where = "elman.torch.ElmanRNN"
        if nonlinearity not in _NONLINEARITY:
            raise ValueError(f"{where}: nonlinearity must be 'tanh' or 'relu', got "
                             f"{nonlinearity!r}")
        if not (isinstance(num_layers, int) and num_layers >= 1):
            raise ValueError(f"{where}: num_layers must be an int >= 1, got {num_layers!r}")
        if not (isinstance(hidden_size, int) and hidden_size >= 1):
            raise ValueError(f"{where}: hidden_size must be an int >= 1, got {hidden_size!r}")
        if not 0 <= float(dropout) <= 1:
            raise ValueError(f"{where}: dropout must be in [0, 1], got {dropout}")
        factory = dict(device=device, dtype=dtype)
        probe = torch.empty(0, **factory)
        _check_tensor(probe, "the module", where)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.nonlinearity, self.bias = num_layers, nonlinearity, bias
        self.batch_first, self.dropout = batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, 0
        D = 2 if bidirectional else 1
        self._names = []
        for l in range(num_layers):
            for d in range(D):
                sfx = f"_l{l}" + ("_reverse" if d else "")
                I_l = input_size if l == 0 else D * hidden_size
                names = ["weight_ih" + sfx, "weight_hh" + sfx]
                setattr(self, names[0], torch.nn.Parameter(torch.empty(hidden_size, I_l,
                                                                       **factory)))
                setattr(self, names[1], torch.nn.Parameter(torch.empty(hidden_size,
                                                                       hidden_size,
                                                                       **factory)))
                if bias:
                    names += ["bias_ih" + sfx, "bias_hh" + sfx]
                    for n in names[2:]:
                        setattr(self, n, torch.nn.Parameter(torch.empty(hidden_size,
                                                                        **factory)))
                self._names.append(names)
        self.reset_parameters()

    def reset_parameters(self):
        """Every weight and bias from U(-1/sqrt(H), 1/sqrt(H)), as torch.nn.RNN."""
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            torch.nn.init.uniform_(p, -k, k)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s

    def forward(self, input, hx=None):
        where = "elman.torch.ElmanRNN"
        packed = isinstance(input, torch.nn.utils.rnn.PackedSequence)
        D = 2 if self.bidirectional else 1
        lengths = None
        if packed:
            # padded (T, B, I) in the batch's original order, as hx and h_n are
            x, lens = torch.nn.utils.rnn.pad_packed_sequence(input)
            lengths = lens.numpy().astype(np.int64)
            unbatched = False
        else:
            x = input
            unbatched = x.dim() == 2
            if unbatched:
                x = x.unsqueeze(1)
            elif x.dim() != 3:
                raise ValueError(f"{where}: input must be (T, B, I), (B, T, I) with "
                                 f"batch_first, or (T, I); got shape {tuple(x.shape)}")
            elif self.batch_first:
                x = x.transpose(0, 1)
        _check_tensor(x, "the input", where)
        if x.dtype != self.weight_hh_l0.dtype:
            raise TypeError(f"{where}: input has dtype {x.dtype}, the module "
                            f"{self.weight_hh_l0.dtype}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{where}: input has {x.shape[-1]} features, expected "
                             f"{self.input_size}")
        B = x.shape[1]
        S, H = self.num_layers * D, self.hidden_size
        if hx is None:
            hx = torch.zeros(S, B, H, dtype=x.dtype)
        else:
            _check_tensor(hx, "hx", where)
            if unbatched and hx.dim() == 2:
                hx = hx.unsqueeze(1)
            if tuple(hx.shape) != (S, B, H):
                raise ValueError(f"{where}: hx has shape {tuple(hx.shape)}, expected "
                                 f"({S}, {B}, {H})")
            if hx.dtype != x.dtype:
                raise TypeError(f"{where}: hx has dtype {hx.dtype}, the input {x.dtype}")
        nl = self.nonlinearity
        layer_in = x
        finals = []
        for l in range(self.num_layers):
            outs = []
            for d in range(D):
                names = self._names[l * D + d]
                p = [getattr(self, n) for n in names] + [None] * (4 - len(names))
                out, h_T = _ElmanLayer.apply(layer_in, hx[l * D + d], p[0], p[1], p[2], p[3],
                                             nl, bool(d), lengths)
                outs.append(out)
                finals.append(h_T)
            layer_in = torch.cat(outs, dim=2) if D == 2 else outs[0]
            if self.dropout > 0 and self.training and l + 1 < self.num_layers:
                layer_in = torch.nn.functional.dropout(layer_in, self.dropout, True)
        h_n = torch.stack(finals)
        if packed:  # the input's packing: its batch_sizes and order, as torch.nn.RNN returns
            order = (input.sorted_indices if input.sorted_indices is not None
                     else torch.arange(B))
            sizes = input.batch_sizes.tolist()
            data = torch.cat([layer_in[t].index_select(0, order[:n])
                              for t, n in enumerate(sizes)])
            return type(input)(data, input.batch_sizes, input.sorted_indices,
                               input.unsorted_indices), h_n
        out = layer_in
        if unbatched:
            return out.squeeze(1), h_n.squeeze(1)
        return (out.transpose(0, 1) if self.batch_first else out), h_n
