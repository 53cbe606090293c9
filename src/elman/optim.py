"""Optimizers over a model's flat parameter buffer: Adagrad (with presets), SGD, and
global-norm gradient clipping.

An optimizer holds flat views of the model's ``params`` and ``grads`` and its own flat state;
``step()`` is one fused pass of the C kernel over all of them (or of the NumPy reference,
under ``elman.backend("numpy")``). Buffers and hyperparameters are validated once, in the
constructor, so a step goes straight to the kernel.
"""
from __future__ import annotations

import math

import numpy as np

from ._dispatch import current
from ._validate import NonFiniteError, choice, float_array, positive_int, real
from .layout import param_layout

__all__ = ["Optimizer", "Adagrad", "ProximalAdagrad", "RowwiseAdagrad", "SGD",
           "clip_grad_norm_", "PRESETS"]

#: Conventions of the Adagrad family. A preset fills in every argument the caller does not
#: pass; an argument passed explicitly always wins.
PRESETS = {
    # torch.optim.Adagrad: eps outside the square root, accumulator starts at 0.
    "torch": dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                  eps=1e-10, eps_placement="outside", clip_value=None),
    # keras.optimizers.Adagrad (Keras 3): eps inside the square root, accumulator starts at 0.1.
    "keras": dict(lr=1e-3, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.1,
                  eps=1e-7, eps_placement="inside", clip_value=None),
    # optax.adagrad: eps inside, accumulator starts at 0.1 (optax has no default lr).
    "optax": dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.1,
                  eps=1e-7, eps_placement="inside", clip_value=None),
    # min-char-rnn: lr 0.1, eps 1e-8 inside, gradients clipped to [-5, 5].
    "minchar": dict(lr=1e-1, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                    eps=1e-8, eps_placement="inside", clip_value=5.0),
}


class _Unset:
    """Marks an argument the caller did not pass (so a preset may fill it in)."""

    def __init__(self, shown):
        self.shown = shown

    def __repr__(self):
        return self.shown


def _flat_buffers(model, where):
    """(params, grads) of a model, or of a (params, grads) pair of 1-D arrays."""
    if isinstance(model, (tuple, list)) and len(model) == 2:
        params, grads = model
    elif hasattr(model, "params") and hasattr(model, "grads"):
        params, grads = model.params, model.grads
    else:
        raise TypeError(f"{where}: expected a model with .params and .grads (e.g. "
                        f"elman.ElmanRNN) or a (params, grads) pair of arrays, "
                        f"got {type(model).__name__}")
    params = float_array(params, "params", where=where, ndim=1, writable=True)
    grads = float_array(grads, "grads", where=where, dtype=params.dtype, shape=params.shape)
    if np.may_share_memory(params, grads):
        raise ValueError(f"{where}: params and grads share memory")
    return params, grads


def _scaled_segments(model, lr_scales, where):
    """[(start, stop, multiplier)] covering the flat buffer in its layout's order
    (layout.param_layout), adjacent equal multipliers merged, from {name: multiplier}."""
    if not isinstance(lr_scales, dict):
        raise TypeError(f"{where}: lr_scales must be a dict of parameter name -> multiplier, "
                        f"got {type(lr_scales).__name__}")
    if not hasattr(model, "named_params"):
        raise TypeError(f"{where}: lr_scales needs the model itself (its named_params())")
    layout, _ = param_layout(model.input_size, model.hidden_size, model.output_size,
                             model.num_layers, model.bidirectional)
    names = [name for name, _, _ in layout]
    unknown = sorted(set(lr_scales) - set(names))
    if unknown:
        raise ValueError(f"{where}: lr_scales names {unknown}, which the model does not have; "
                         f"its parameters are {names}")
    scales = {k: real(v, f"lr_scales[{k!r}]", where=where, minimum=0, strict=True)
              for k, v in lr_scales.items()}
    segments = []
    for name, shape, start in layout:
        stop, mult = start + math.prod(shape), scales.get(name, 1.0)
        if segments and segments[-1][2] == mult:
            segments[-1] = (segments[-1][0], stop, mult)
        else:
            segments.append((start, stop, mult))
    return segments


def _grad_scale(grads, max_grad_norm, where):
    """Scale folding global-norm clipping into the update, and the norm before clipping."""
    if max_grad_norm is None:
        return 1.0, None
    return _clip_scale(current().sum_squares(grads), max_grad_norm, where)


def _clip_scale(sum_of_squares, max_grad_norm, where):
    """(clipping coefficient, norm) from the gradient's sum of squares."""
    norm = math.sqrt(sum_of_squares)
    if not math.isfinite(norm):
        raise NonFiniteError(f"{where}: the gradient norm is {norm}; nothing was updated")
    # torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6), capped at 1
    return min(1.0, max_grad_norm / (norm + 1e-6)), norm


class Optimizer:
    """What the optimizers here share: flat views of a model's ``params`` and ``grads``, the
    step count ``steps``, global-norm clipping folded into the update (``max_grad_norm``,
    the norm before clipping in ``last_grad_norm``), and the two methods through which
    :func:`elman.train_step` runs an update inside its fused C call.

    A subclass validates its hyperparameters in ``__init__``, holds its own state, and
    implements ``step()`` as: ``scale = self._begin_step()`` (the norm, the clipping
    coefficient and the step count), then its update on the active backend through
    ``self._apply`` (which reports a non-finite update under the step's own name).
    """

    _name = "Optimizer"          # a subclass's own; its step reports as "<name>.step"
    _step_name = "Optimizer.step"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._step_name = f"{cls._name}.step"

    def __init__(self, model, where):
        self.params, self.grads = _flat_buffers(model, where)
        self.max_grad_norm = None  # the subclass validates its own
        self.steps = 0
        self.last_grad_norm = None

    def _begin_step(self):
        """The step prelude: the clipping coefficient (1 without max_grad_norm), with the
        norm recorded and the step counted."""
        scale, self.last_grad_norm = _grad_scale(self.grads, self.max_grad_norm,
                                                 self._step_name)
        self.steps += 1
        return scale

    def _apply(self, update, *args, **kwargs):
        """One update call on the backend; a NonFiniteError is reported as this step's."""
        try:
            update(*args, **kwargs)
        except NonFiniteError as err:
            raise err.renamed(self._step_name) from None

    def fused_update(self):
        """(state buffer or None, keyword arguments) of this optimizer's next update for
        the backends' ``model_train_step``, or None when it cannot run fused (the default;
        Adagrad and SGD can)."""
        return None

    def record_fused_step(self, grad_norm, applied):
        """What a fused step did: the norm it measured (None without max_grad_norm), and
        whether the update was applied (then the step counts)."""
        self.last_grad_norm = grad_norm
        if applied:
            self.steps += 1


class Adagrad(Optimizer):
    r"""Adagrad over a model's flat parameter buffer, fused into one pass.

    With t the step count (1 on the first step) and S the state (``self.state``)::

        g = grads * min(1, max_grad_norm / (||grads|| + 1e-6))   if max_grad_norm
        g = clip(g, -clip_value, clip_value)                      if clip_value
        g = -g                                                    if maximize
        g = g + weight_decay * theta
        clr = lr / (1 + (t - 1) * lr_decay)
        S = S + g * g                                  (S starts at initial_accumulator_value)
        theta = theta - clr * g / (sqrt(S) + eps)      eps_placement="outside" (torch)
        theta = theta - clr * g / sqrt(S + eps)        eps_placement="inside"  (keras, optax)

    The state is accumulated before it divides, as PyTorch, Keras, optax and min-char-rnn
    do. (Updating before accumulating would divide by sqrt(eps) on the first step.)

    Parameters
    ----------
    model : ElmanRNN, or a (params, grads) pair of 1-D float arrays
    lr, lr_decay, weight_decay, initial_accumulator_value, eps, eps_placement, clip_value :
        as above; defaults are torch's (lr 1e-2, eps 1e-10 outside, S0 = 0), or the preset's.
    maximize : bool
    max_grad_norm : float or None
        Global-norm clipping over the whole gradient buffer (one read pass, its scale folded
        into the update). ``last_grad_norm`` holds the norm before clipping.
    preset : {"torch", "keras", "optax", "minchar"} or None
        Fills in every argument not passed explicitly (see ``elman.optim.PRESETS``).
    lr_scales : dict or None
        Multipliers of lr for named parameters (names of ``model.named_params()``, for
        example ``{"W_hh": 0.25, "W_hy": 0.25}``); the others keep lr. The update then runs
        one kernel pass per run of equal multipliers over the flat buffer, with global-norm
        clipping still measured over all of it; a non-finite gradient raises after the
        pass that met it. Not with ``sparse_rows`` nor ``elman.train_step``.

    Example
    -------
    >>> import numpy as np, elman
    >>> m = elman.ElmanRNN(10, 5, 2)
    >>> x = np.random.default_rng(0).standard_normal((8, 4, 10))   # (T, B, I)
    >>> y = np.array([0, 1, 1, 0])                                 # one class per sequence
    >>> opt = elman.Adagrad(m, lr=0.01)
    >>> loss, h = m.forward_backward(x, y, last_step_only=True)
    >>> opt.step()
    >>> opt.steps
    1
    """

    def __init__(self, model, lr=_Unset("1e-2"), *, lr_decay=_Unset("0"),
                 weight_decay=_Unset("0"), initial_accumulator_value=_Unset("0"),
                 eps=_Unset("1e-10"), eps_placement=_Unset("'outside'"), maximize=False,
                 clip_value=_Unset("None"), max_grad_norm=None, preset=None,
                 sparse_rows=False, lr_scales=None):
        where = "Adagrad"
        super().__init__(model, where)
        self.lr_scales = None
        self._segments = None
        if lr_scales is not None:
            if sparse_rows:
                raise ValueError(f"{where}: lr_scales and sparse_rows cannot be combined")
            self._segments = _scaled_segments(model, lr_scales, where)
            self.lr_scales = dict(lr_scales)
        self.sparse_rows = bool(sparse_rows)
        self._model = None
        if self.sparse_rows:
            if not hasattr(model, "last_input_ids"):
                raise TypeError(f"{where}: sparse_rows needs the model itself (an ElmanRNN), "
                                f"which records the token ids of its last step")
            self._model = model
            self._mask = np.zeros(model.input_size, np.uint8)
        settings = dict(PRESETS["torch"])
        if preset is not None:
            settings.update(PRESETS[choice(preset, "preset", tuple(PRESETS), where=where)])
        given = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                     initial_accumulator_value=initial_accumulator_value, eps=eps,
                     eps_placement=eps_placement, clip_value=clip_value)
        settings.update({k: v for k, v in given.items() if not isinstance(v, _Unset)})
        self.preset = preset
        self._configure(dict(settings, maximize=maximize, max_grad_norm=max_grad_norm), where)
        self.state = np.full_like(self.params, self.initial_accumulator_value)

    _name = "Adagrad"
    _SETTINGS = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps",
                 "eps_placement", "maximize", "clip_value", "max_grad_norm")

    def _configure(self, settings, where):
        """Validate every hyperparameter, then set them all (nothing is set on an error)."""
        missing = set(self._SETTINGS) - set(settings)
        if missing:
            raise ValueError(f"{where}: settings lack {', '.join(sorted(missing))}")
        v = dict(
            lr=real(settings["lr"], "lr", where=where, minimum=0),
            lr_decay=real(settings["lr_decay"], "lr_decay", where=where, minimum=0),
            weight_decay=real(settings["weight_decay"], "weight_decay", where=where, minimum=0),
            initial_accumulator_value=real(settings["initial_accumulator_value"],
                                           "initial_accumulator_value", where=where, minimum=0),
            eps=real(settings["eps"], "eps", where=where, minimum=0),
            eps_placement=choice(settings["eps_placement"], "eps_placement",
                                 ("outside", "inside"), where=where),
            clip_value=real(settings["clip_value"], "clip_value", where=where, minimum=0,
                            strict=True, allow_none=True),
            max_grad_norm=real(settings["max_grad_norm"], "max_grad_norm", where=where,
                               minimum=0, strict=True, allow_none=True),
            maximize=bool(settings["maximize"]),
        )
        if v["eps"] == 0 and v["initial_accumulator_value"] == 0:
            raise ValueError(f"{where}: eps=0 with a zero initial accumulator divides 0 by 0 "
                             f"wherever a gradient is 0 (an unused embedding row, say); "
                             f"give eps or initial_accumulator_value a positive value")
        for key, value in v.items():
            setattr(self, key, value)

    def step(self):
        """Apply one update to the model's parameters from its current gradients.

        With sparse_rows, after a step on token ids only the rows of W_xh those ids used
        are read and written (parameters and state); the other rows' gradient is zero, so
        with weight_decay 0 this is the dense update, bit for bit."""
        ids = self._model.last_input_ids if self.sparse_rows else None
        if ids is not None and self.weight_decay == 0:
            return self._sparse_step(ids)
        scale = self._begin_step()
        update = current().adagrad_update
        if self._segments is None:   # one pass over the whole buffer (self._apply, inlined)
            try:
                update(self.params, self.grads, self.state, lr=self.lr, step=self.steps,
                       lr_decay=self.lr_decay, weight_decay=self.weight_decay, eps=self.eps,
                       eps_placement=self.eps_placement, maximize=self.maximize,
                       clip_value=self.clip_value, grad_scale=scale)
            except NonFiniteError as err:
                raise err.renamed(self._step_name) from None
            return
        settings = dict(step=self.steps, lr_decay=self.lr_decay, weight_decay=self.weight_decay,
                        eps=self.eps, eps_placement=self.eps_placement,
                        maximize=self.maximize, clip_value=self.clip_value, grad_scale=scale)
        for lo, hi, mult in self._segments:
            self._apply(update, self.params[lo:hi], self.grads[lo:hi], self.state[lo:hi],
                        lr=self.lr * mult, **settings)

    def _sparse_step(self, ids):
        m = self._model
        V, H = m.input_size, m.hidden_size
        k = V * H
        backend = current()
        if self.max_grad_norm is None:
            scale, self.last_grad_norm = 1.0, None
        else:  # the norm over the used rows and the rest: the unused rows add nothing
            rows = self.grads[:k].reshape(V, H)[np.unique(ids)]
            ss = backend.sum_squares(rows) + backend.sum_squares(self.grads[k:])
            scale, self.last_grad_norm = _clip_scale(ss, self.max_grad_norm, self._step_name)
        self.steps += 1
        settings = dict(lr=self.lr, step=self.steps, lr_decay=self.lr_decay,
                        weight_decay=self.weight_decay, eps=self.eps,
                        eps_placement=self.eps_placement, maximize=self.maximize,
                        clip_value=self.clip_value, grad_scale=scale)
        self._apply(backend.adagrad_rows_update, self.params[:k].reshape(V, H),
                    self.grads[:k].reshape(V, H), self.state[:k].reshape(V, H),
                    ids.reshape(-1), mask=self._mask, **settings)
        self._apply(backend.adagrad_update, self.params[k:], self.grads[k:], self.state[k:],
                    **settings)

    def fused_update(self):
        """Adagrad runs fused unless it updates in several passes (lr_scales) or by rows
        (sparse_rows)."""
        if self._segments is not None or self.sparse_rows:
            return None
        return self.state, dict(optimizer="adagrad", lr=self.lr, step=self.steps + 1,
                                lr_decay=self.lr_decay, weight_decay=self.weight_decay,
                                eps=self.eps, eps_placement=self.eps_placement,
                                maximize=self.maximize, clip_value=self.clip_value,
                                max_grad_norm=self.max_grad_norm)

    def state_dict(self) -> dict:
        """Copies of the optimizer's state and settings (for checkpoints)."""
        return {"state": self.state.copy(), "steps": self.steps,
                "settings": {k: getattr(self, k) for k in self._SETTINGS}}

    def load_state_dict(self, sd: dict):
        """Restore what state_dict() returned; validated as the constructor validates."""
        where = "Adagrad.load_state_dict"
        state = np.asarray(sd["state"])
        if state.shape != self.state.shape or state.dtype.kind != "f":
            raise ValueError(f"{where}: state has dtype {state.dtype} and shape {state.shape}, "
                             f"expected floats of shape {self.state.shape}")
        if not np.isfinite(state).all() or (state < 0).any():
            raise ValueError(f"{where}: state must be finite and non-negative")
        steps = positive_int(sd["steps"], "steps", where=where, minimum=0)
        self._configure(dict({k: getattr(self, k) for k in self._SETTINGS},
                             **sd.get("settings", {})), where)
        self.state[...] = state
        self.steps = steps

    def __repr__(self):
        return (f"Adagrad(lr={self.lr}, lr_decay={self.lr_decay}, "
                f"weight_decay={self.weight_decay}, "
                f"initial_accumulator_value={self.initial_accumulator_value}, eps={self.eps}, "
                f"eps_placement={self.eps_placement!r}, maximize={self.maximize}, "
                f"clip_value={self.clip_value}, max_grad_norm={self.max_grad_norm}, "
                f"preset={self.preset!r})")


class SGD(Optimizer):
    """Plain gradient descent, with optional momentum (PyTorch's: dampening 0)::

        g = clip(grad * grad_scale, +-clip_value); g = -g if maximize
        g = g + weight_decay * theta
        buf = momentum * buf + g;  theta = theta - lr * buf     (theta - lr * g if momentum 0)

    Parameters: model (or a (params, grads) pair), lr, momentum, weight_decay, maximize,
    clip_value, max_grad_norm, as for :class:`Adagrad`.
    """

    def __init__(self, model, lr, *, momentum=0.0, weight_decay=0.0, maximize=False,
                 clip_value=None, max_grad_norm=None):
        where = "SGD"
        super().__init__(model, where)
        self.lr = real(lr, "lr", where=where, minimum=0)
        self.momentum = real(momentum, "momentum", where=where, minimum=0)
        self.weight_decay = real(weight_decay, "weight_decay", where=where, minimum=0)
        self.clip_value = real(clip_value, "clip_value", where=where, minimum=0, strict=True,
                               allow_none=True)
        self.max_grad_norm = real(max_grad_norm, "max_grad_norm", where=where, minimum=0,
                                  strict=True, allow_none=True)
        self.maximize = bool(maximize)
        self.momentum_buffer = np.zeros_like(self.params) if self.momentum != 0 else None

    _name = "SGD"

    def step(self):
        """Apply one update to the model's parameters from its current gradients."""
        scale = self._begin_step()
        self._apply(current().sgd_update, self.params, self.grads, self.momentum_buffer,
                    lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                    maximize=self.maximize, clip_value=self.clip_value, grad_scale=scale)

    def fused_update(self):
        return self.momentum_buffer, dict(optimizer="sgd", lr=self.lr, step=self.steps + 1,
                                          weight_decay=self.weight_decay, eps=0.0,
                                          maximize=self.maximize, clip_value=self.clip_value,
                                          momentum=self.momentum,
                                          max_grad_norm=self.max_grad_norm)

    def state_dict(self) -> dict:
        """Copies of the momentum buffer (None without momentum) and the step count."""
        return {"momentum_buffer": None if self.momentum_buffer is None
                else self.momentum_buffer.copy(), "steps": self.steps}

    def load_state_dict(self, sd: dict):
        """Restore what state_dict() returned."""
        where = "SGD.load_state_dict"
        buf = sd.get("momentum_buffer")
        if (buf is None) != (self.momentum_buffer is None):
            raise ValueError(f"{where}: a momentum buffer is {'missing' if buf is None else 'given'}"
                             f" but momentum is {self.momentum}")
        if buf is not None:
            buf = np.asarray(buf)
            if buf.shape != self.momentum_buffer.shape or not np.isfinite(buf).all():
                raise ValueError(f"{where}: momentum_buffer must be finite, of shape "
                                 f"{self.momentum_buffer.shape}")
            self.momentum_buffer[...] = buf
        self.steps = positive_int(sd["steps"], "steps", where=where, minimum=0)

    def __repr__(self):
        return (f"SGD(lr={self.lr}, momentum={self.momentum}, weight_decay={self.weight_decay}, "
                f"maximize={self.maximize}, clip_value={self.clip_value}, "
                f"max_grad_norm={self.max_grad_norm})")


class _Accumulating(Optimizer):
    """An optimizer whose whole state is one accumulator buffer ``state`` and the step
    count: its state_dict and load_state_dict (the accumulator checked as finite, and
    positive where the update divides by it before adding to it)."""

    _positive_state = False

    def state_dict(self) -> dict:
        return {"state": self.state.copy(), "steps": self.steps}

    def load_state_dict(self, sd: dict):
        state = np.asarray(sd["state"])
        positive = self._positive_state
        bad_sign = (state <= 0).any() if positive else (state < 0).any()
        if state.shape != self.state.shape or not np.isfinite(state).all() or bad_sign:
            rule = "positive and finite" if positive else "finite and non-negative"
            raise ValueError(f"{self._name}.load_state_dict: state must be {rule}, of shape "
                             f"{self.state.shape}")
        self.state[...] = state
        self.steps = positive_int(sd["steps"], "steps", where=self._name, minimum=0)


class ProximalAdagrad(_Accumulating):
    """Adagrad with L1 and L2 regularization by proximal steps, TensorFlow's
    ProximalAdagrad (tf.compat.v1.train.ProximalAdagradOptimizer)::

        g = grads * min(1, max_grad_norm / (||grads|| + 1e-6))   if max_grad_norm
        S = S + g * g                                  (S starts at initial_accumulator_value)
        v = theta - lr * g * (1 / sqrt(S))
        theta = sign(v) / (1 + lr * l2) * max(|v| - lr * l1, 0)

    Unlike an L1 penalty added to the gradient, the proximal step sets weights to exactly
    zero: a sparse model. l1 = l2 = 0 is Adagrad with eps = 0 (the accumulator starts
    positive instead).

    >>> import numpy as np, elman
    >>> m = elman.ElmanRNN(10, 8, 2)
    >>> opt = elman.ProximalAdagrad(m, lr=0.1, l1=0.05)
    >>> x = np.random.default_rng(0).standard_normal((5, 4, 10))
    >>> _ = m.forward_backward(x, np.array([0, 1, 1, 0]), last_step_only=True)
    >>> opt.step()
    >>> int((m.params == 0).sum()) > 0          # exact zeros
    True
    """

    def __init__(self, model, lr=0.01, *, l1=0.0, l2=0.0, initial_accumulator_value=0.1,
                 max_grad_norm=None):
        where = "ProximalAdagrad"
        super().__init__(model, where)
        self.lr = real(lr, "lr", where=where, minimum=0)
        self.l1 = real(l1, "l1", where=where, minimum=0)
        self.l2 = real(l2, "l2", where=where, minimum=0)
        self.initial_accumulator_value = real(initial_accumulator_value,
                                              "initial_accumulator_value", where=where,
                                              minimum=0, strict=True)
        self.max_grad_norm = real(max_grad_norm, "max_grad_norm", where=where, minimum=0,
                                  strict=True, allow_none=True)
        self.state = np.full_like(self.params, self.initial_accumulator_value)

    _name, _positive_state = "ProximalAdagrad", True

    def step(self):
        """Apply one update to the model's parameters from its current gradients."""
        scale = self._begin_step()
        self._apply(current().proximal_adagrad_update, self.params, self.grads, self.state,
                    lr=self.lr, l1=self.l1, l2=self.l2, grad_scale=scale)


    def __repr__(self):
        return (f"ProximalAdagrad(lr={self.lr}, l1={self.l1}, l2={self.l2}, "
                f"initial_accumulator_value={self.initial_accumulator_value}, "
                f"max_grad_norm={self.max_grad_norm})")


class RowwiseAdagrad(_Accumulating):
    """Adagrad with one accumulator per row of each weight matrix (FBGEMM's
    rowwise_adagrad), a bias being one row::

        g = grads * min(1, max_grad_norm / (||grads|| + 1e-6))   if max_grad_norm
        S_r = S_r + mean(g_r ** 2)                     (one S per row, starting at 0)
        theta_r = theta_r - lr * g_r / (sqrt(S_r) + eps)

    The state is I + 2H + 2 numbers instead of one per parameter: for a character model
    with V = 65 and H = 100, 267 instead of 23,165 (87 times less); the rows of W_xh are
    the embedding rows, each with its own step size.

    model: an ElmanRNN (its named_params give the rows).
    """

    def __init__(self, model, lr=0.01, *, eps=1e-10, max_grad_norm=None):
        where = "RowwiseAdagrad"
        if not hasattr(model, "named_params"):
            raise TypeError(f"{where}: needs a model with named_params() (an ElmanRNN), got "
                            f"{type(model).__name__}")
        super().__init__(model, where)
        self.lr = real(lr, "lr", where=where, minimum=0)
        self.eps = real(eps, "eps", where=where, minimum=0, strict=True)
        self.max_grad_norm = real(max_grad_norm, "max_grad_norm", where=where, minimum=0,
                                  strict=True, allow_none=True)
        grads = model.named_grads()
        self._segments = []   # (param (rows, cols), grad (rows, cols), state rows)
        rows = 0
        for name, p in model.named_params().items():
            p2 = p if p.ndim == 2 else p.reshape(1, -1)
            g2 = grads[name] if p.ndim == 2 else grads[name].reshape(1, -1)
            self._segments.append((p2, g2, slice(rows, rows + p2.shape[0])))
            rows += p2.shape[0]
        self.state = np.zeros(rows, self.params.dtype)

    _name = "RowwiseAdagrad"

    def step(self):
        """Apply one update to the model's parameters from its current gradients."""
        scale = self._begin_step()
        update = current().rowwise_adagrad_update
        for p, g, rows in self._segments:
            self._apply(update, p, g, self.state[rows], lr=self.lr, eps=self.eps,
                        grad_scale=scale)


    def __repr__(self):
        return (f"RowwiseAdagrad(lr={self.lr}, eps={self.eps}, "
                f"max_grad_norm={self.max_grad_norm}) # {self.state.size} accumulators")


def clip_grad_norm_(grads, max_norm) -> float:
    """Scale ``grads`` in place so that their global L2 norm is at most ``max_norm``.

    grads: a float array (any shape), or a model with ``.grads``. Returns the norm before
    clipping; the scale is min(1, max_norm / (norm + 1e-6)), as torch.nn.utils.clip_grad_norm_.
    Raises NonFiniteError (and leaves grads alone) when the norm is NaN or infinite.
    """
    where = "clip_grad_norm_"
    if hasattr(grads, "grads"):
        grads = grads.grads
    grads = float_array(grads, "grads", where=where, writable=True)
    max_norm = real(max_norm, "max_norm", where=where, minimum=0, strict=True)
    scale, norm = _grad_scale(grads, max_norm, where)
    if scale < 1.0:
        grads *= grads.dtype.type(scale)
    return norm
