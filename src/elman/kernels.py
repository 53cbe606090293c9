"""Functional kernels on NumPy arrays, for people who use elman as a backend.

Every function validates its arguments (dtype, shape, contiguity, aliasing, finiteness,
target range) and then runs on the active backend: ``"c"`` (the compiled kernels, the
default, GIL released) or ``"numpy"`` (:mod:`elman.reference`, the specification). Switch
with ``ELMAN_BACKEND=numpy`` in the environment or, within a block, ``with
elman.backend("numpy"): ...``. Both backends compute the same formulas in the same order.

Float arguments of one call share one dtype, float32 or float64, and must be C-contiguous
NumPy arrays: nothing is copied or cast behind your back. Token ids and class targets may be
any integer dtype. In-place functions (``*_update``) return None.

Size letters: T steps, B batch, I input features (vocabulary for token ids), H hidden,
O outputs, N rows, K inputs of a projection.

Example::

    >>> import numpy as np, elman
    >>> p = np.ones(4, np.float32); g = np.full(4, 0.5, np.float32); s = np.zeros(4, np.float32)
    >>> elman.kernels.adagrad_update(p, g, s, lr=0.1, step=1)
    >>> p.round(4)
    array([0.9, 0.9, 0.9, 0.9], dtype=float32)
"""
from __future__ import annotations

import contextvars
import math
import os
import warnings
from typing import NamedTuple

import numpy as np

from . import _core, _threads, reference
from ._validate import (NonFiniteError, Switch, as_array, choice, float_array, index_array,
                        is_integer_array, no_overlap, positive_int, real, same_shape)
from .reference import RNNGrads, param_layout, param_views

__all__ = [
    "backend", "adagrad_update", "proximal_adagrad_update", "rowwise_adagrad_update",
    "sgd_update", "sum_squares", "activation",
    "activation_backward", "rnn_forward", "rnn_backward", "RNNGrads", "linear_forward",
    "linear_backward", "softmax_cross_entropy", "mse_loss", "model_forward",
    "model_forward_backward", "model_sample", "param_layout", "param_views", "NonFiniteError",
]

BACKENDS = ("c", "numpy")
NONLINEARITIES = {"tanh": 0, "relu": 1}
LOSSES = {"cross_entropy": 0, "mse": 1}
REDUCTIONS = {"mean": 0, "sum": 1}
_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32),
          np.dtype(np.float64): np.empty(0, np.float64)}
_NO_IDS = np.empty(0, np.int64)


# ---- backend selection --------------------------------------------------------------------

def _backend_from_env() -> str:
    name = os.environ.get("ELMAN_BACKEND", "c").strip().lower() or "c"
    if name not in BACKENDS:
        warnings.warn(f"ELMAN_BACKEND={name!r} is not one of {BACKENDS}; using 'c'",
                      RuntimeWarning, stacklevel=2)
        name = "c"
    return name


_current = contextvars.ContextVar("elman_backend", default=_backend_from_env())


def backend(name=None):
    """Get or set the kernel backend.

    ``elman.backend()`` returns the active name ("c" or "numpy"). ``elman.backend("numpy")``
    switches (for the current thread/context); used as ``with elman.backend("numpy"): ...``
    the previous backend comes back at the end of the block.
    """
    if name is None:
        return _current.get()
    choice(name, "name", BACKENDS, where="backend")
    token = _current.set(name)
    return Switch("elman.backend", name, lambda: _current.reset(token))


def _nonlinearity_code(nonlinearity, where) -> int:
    """The C code of a nonlinearity name, after checking the name."""
    return NONLINEARITIES[choice(nonlinearity, "nonlinearity", tuple(NONLINEARITIES),
                                 where=where)]


def _use_c() -> bool:
    return _current.get() == "c"


def _empty(dtype):
    return _EMPTY[np.dtype(dtype)]


# ---- optimizers ---------------------------------------------------------------------------

def _grad_transform_args(where, clip_value, grad_scale):
    clip_value = real(clip_value, "clip_value", where=where, minimum=0, strict=True,
                      allow_none=True)
    grad_scale = real(grad_scale, "grad_scale", where=where, minimum=0)
    return clip_value, grad_scale


def _update_buffers(where, param, grad, state):
    """param (written), grad and state (written) of an elementwise optimizer update: float
    arrays of one dtype and shape, the outputs sharing memory with nothing else."""
    param = float_array(param, "param", where=where, writable=True)
    grad = float_array(grad, "grad", where=where, dtype=param.dtype)
    state = float_array(state, "state", where=where, dtype=param.dtype, writable=True)
    same_shape(where, "param", param, grad=grad, state=state)
    no_overlap(where, {"param": param, "state": state}, {"grad": grad})
    return param, grad, state


def adagrad_update(param, grad, state, *, lr, step, lr_decay=0.0, weight_decay=0.0,
                   eps=1e-10, eps_placement="outside", maximize=False, clip_value=None,
                   grad_scale=1.0):
    """One Adagrad step, in place on ``param`` and ``state``.

    param, grad, state: arrays of one shape and dtype (any shape; treated as flat). With
    t = step (1 on the first update)::

        g = grad * grad_scale;  g = clip(g, -clip_value, clip_value);  g = -g if maximize
        g = g + weight_decay * param
        clr = lr / (1 + (t - 1) * lr_decay)
        state += g * g
        param -= clr * g / (sqrt(state) + eps)      eps_placement="outside" (PyTorch)
        param -= clr * g / sqrt(state + eps)        eps_placement="inside" (Keras, optax)

    Raises NonFiniteError when grad holds NaN or infinity or an updated parameter is not
    finite (eps = 0 with a zero state, say); the check rides in the update's single pass, so
    param and state have then been updated all the same.
    """
    where = "adagrad_update"
    param, grad, state = _update_buffers(where, param, grad, state)
    lr = real(lr, "lr", where=where, minimum=0)
    step = positive_int(step, "step", where=where, maximum=2**62)
    lr_decay = real(lr_decay, "lr_decay", where=where, minimum=0)
    weight_decay = real(weight_decay, "weight_decay", where=where, minimum=0)
    eps = real(eps, "eps", where=where, minimum=0)
    choice(eps_placement, "eps_placement", ("outside", "inside"), where=where)
    clip_value, grad_scale = _grad_transform_args(where, clip_value, grad_scale)
    _adagrad_update(where, param.reshape(-1), grad.reshape(-1), state.reshape(-1), lr=lr,
                    step=step, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                    eps_placement=eps_placement, maximize=bool(maximize), clip_value=clip_value,
                    grad_scale=grad_scale)


def _adagrad_update(where, param, grad, state, *, lr, step, lr_decay, weight_decay, eps,
                    eps_placement, maximize, clip_value, grad_scale):
    """Unchecked: flat buffers and hyperparameters the caller has validated (adagrad_update,
    or the Adagrad optimizer once in its constructor)."""
    try:
        if not _use_c():
            return reference.adagrad_update(
                param, grad, state, lr=lr, step=step, lr_decay=lr_decay,
                weight_decay=weight_decay, eps=eps, eps_placement=eps_placement,
                maximize=maximize, clip_value=clip_value, grad_scale=grad_scale)
        _core.adagrad_update(param, state, grad, lr, lr_decay, weight_decay, eps,
                             math.inf if clip_value is None else clip_value, grad_scale, step,
                             eps_placement == "inside", maximize)
    except FloatingPointError:
        raise NonFiniteError(f"{where}: grad holds NaN or infinity, or the update made a "
                             f"parameter non-finite (param and state were updated)") from None


def _adagrad_update_many(where, params, grads, states, *, lr, step, lr_decay, weight_decay,
                         eps, maximize):
    """Unchecked: Adagrad (torch's: eps outside, no clipping) over lists of flat buffers of
    one float dtype, one set of options. Returns True when any buffer met a NaN or infinity
    (every buffer is updated all the same). The C backend does them all in one call."""
    settings = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                    maximize=maximize)
    if _use_c():
        return _core.adagrad_update_many(params, states, grads,
                                         bool(params) and params[0].dtype == np.float64,
                                         step=step, **settings)
    bad = False
    for p, g, s in zip(params, grads, states):
        try:
            _adagrad_update(where, p, g, s, step=step, eps_placement="outside",
                            clip_value=None, grad_scale=1.0, **settings)
        except NonFiniteError:
            bad = True
    return bad


def _adagrad_rows_update(where, param, grad, state, ids, mask, V, H, *, lr, step, lr_decay,
                         weight_decay, eps, eps_placement, maximize, clip_value, grad_scale):
    """Unchecked: Adagrad on the rows ``ids`` (int64, in [0, V)) of flat (V*H,) buffers;
    mask: a (V,) uint8 workspace of zeros (left zero)."""
    try:
        if not _use_c():
            for r in np.unique(ids):
                sl = slice(r * H, (r + 1) * H)
                reference.adagrad_update(
                    param[sl], grad[sl], state[sl], lr=lr, step=step, lr_decay=lr_decay,
                    weight_decay=weight_decay, eps=eps, eps_placement=eps_placement,
                    maximize=maximize, clip_value=clip_value, grad_scale=grad_scale)
            return
        _core.adagrad_rows_update(param, state, grad, ids, mask, V, H, lr, lr_decay,
                                  weight_decay, eps, math.inf if clip_value is None else clip_value,
                                  grad_scale, step, eps_placement == "inside", maximize)
    except FloatingPointError:
        raise NonFiniteError(f"{where}: grad holds NaN or infinity, or the update made a "
                             f"parameter non-finite (param and state were updated)") from None


def proximal_adagrad_update(param, grad, state, *, lr, l1=0.0, l2=0.0, grad_scale=1.0):
    """One Proximal Adagrad step (TensorFlow's ApplyProximalAdagrad), in place::

        g = grad * grad_scale;  state += g * g
        v = param - lr * g * (1 / sqrt(state))
        param = sign(v) / (1 + lr * l2) * max(|v| - lr * l1, 0)

    l1 drives small weights to exactly zero; l2 shrinks all of them. state must start
    positive (TensorFlow uses 0.1). Raises NonFiniteError as adagrad_update does.
    """
    where = "proximal_adagrad_update"
    param, grad, state = _update_buffers(where, param, grad, state)
    lr = real(lr, "lr", where=where, minimum=0)
    l1 = real(l1, "l1", where=where, minimum=0)
    l2 = real(l2, "l2", where=where, minimum=0)
    grad_scale = real(grad_scale, "grad_scale", where=where, minimum=0)
    _proximal_update(where, param.reshape(-1), grad.reshape(-1), state.reshape(-1), lr=lr,
                     l1=l1, l2=l2, grad_scale=grad_scale)


def _proximal_update(where, param, grad, state, *, lr, l1, l2, grad_scale):
    """Unchecked: flat buffers and settings the caller has validated."""
    try:
        if not _use_c():
            return reference.proximal_adagrad_update(param, grad, state, lr=lr, l1=l1, l2=l2,
                                                     grad_scale=grad_scale)
        _core.proximal_adagrad_update(param, state, grad, lr, l1, l2, grad_scale)
    except FloatingPointError:
        raise NonFiniteError(f"{where}: grad holds NaN or infinity, or the update made a "
                             f"parameter non-finite (param and state were updated)") from None


def rowwise_adagrad_update(param, grad, state, *, lr, eps=1e-10, grad_scale=1.0):
    """One row-wise Adagrad step (FBGEMM's rowwise_adagrad), in place::

        g = grad * grad_scale;  state[r] += mean(g[r, :] ** 2)
        param[r, :] -= lr * g[r, :] / (sqrt(state[r]) + eps)

    param, grad: (rows, cols); state: (rows,), one accumulator per row instead of one per
    element (cols times less memory). Raises NonFiniteError as adagrad_update does.
    """
    where = "rowwise_adagrad_update"
    param = float_array(param, "param", where=where, ndim=2, writable=True)
    grad = float_array(grad, "grad", where=where, dtype=param.dtype, shape=param.shape)
    state = float_array(state, "state", where=where, dtype=param.dtype,
                        shape=(param.shape[0],), writable=True)
    no_overlap(where, {"param": param, "state": state}, {"grad": grad})
    lr = real(lr, "lr", where=where, minimum=0)
    eps = real(eps, "eps", where=where, minimum=0)
    grad_scale = real(grad_scale, "grad_scale", where=where, minimum=0)
    _rowwise_update(where, param, grad, state, lr=lr, eps=eps, grad_scale=grad_scale)


def _rowwise_update(where, param, grad, state, *, lr, eps, grad_scale):
    """Unchecked: (rows, cols) param and grad, (rows,) state the caller has validated."""
    try:
        if not _use_c():
            return reference.rowwise_adagrad_update(param, grad, state, lr=lr, eps=eps,
                                                    grad_scale=grad_scale)
        _core.rowwise_adagrad_update(param.reshape(-1), state, grad.reshape(-1),
                                     param.shape[0], param.shape[1], lr, eps, grad_scale)
    except FloatingPointError:
        raise NonFiniteError(f"{where}: grad holds NaN or infinity, or the update made a "
                             f"parameter non-finite (param and state were updated)") from None


def sgd_update(param, grad, momentum_buffer=None, *, lr, momentum=0.0, weight_decay=0.0,
               maximize=False, clip_value=None, grad_scale=1.0):
    """One SGD step, in place on ``param`` (and ``momentum_buffer``, needed when momentum
    != 0; start it at zeros)::

        g = clip(grad * grad_scale, +-clip_value);  g = -g if maximize
        g = g + weight_decay * param
        buf = momentum * buf + g;  param -= lr * buf      (param -= lr * g without momentum)

    PyTorch's SGD with dampening 0, not Nesterov. Raises NonFiniteError (after updating)
    when grad holds NaN or infinity or an updated parameter is not finite.
    """
    where = "sgd_update"
    param = float_array(param, "param", where=where, writable=True)
    grad = float_array(grad, "grad", where=where, dtype=param.dtype)
    same_shape(where, "param", param, grad=grad)
    lr = real(lr, "lr", where=where, minimum=0)
    momentum = real(momentum, "momentum", where=where, minimum=0)
    weight_decay = real(weight_decay, "weight_decay", where=where, minimum=0)
    clip_value, grad_scale = _grad_transform_args(where, clip_value, grad_scale)
    if momentum != 0:
        if momentum_buffer is None:
            raise ValueError(f"{where}: momentum={momentum} needs a momentum_buffer "
                             f"(zeros of param's shape)")
        momentum_buffer = float_array(momentum_buffer, "momentum_buffer", where=where,
                                      dtype=param.dtype, writable=True)
        same_shape(where, "param", param, momentum_buffer=momentum_buffer)
    no_overlap(where, {"param": param, "momentum_buffer": momentum_buffer}, {"grad": grad})
    _sgd_update(where, param.reshape(-1), grad.reshape(-1),
                momentum_buffer.reshape(-1) if momentum != 0 else None, lr=lr,
                momentum=momentum, weight_decay=weight_decay, maximize=bool(maximize),
                clip_value=clip_value, grad_scale=grad_scale)


def _sgd_update(where, param, grad, momentum_buffer, *, lr, momentum, weight_decay, maximize,
                clip_value, grad_scale):
    """Unchecked: flat buffers and hyperparameters the caller has validated (sgd_update, or
    the SGD optimizer once in its constructor). momentum_buffer is None when momentum == 0."""
    try:
        if not _use_c():
            return reference.sgd_update(param, grad, momentum_buffer, lr=lr, momentum=momentum,
                                        weight_decay=weight_decay, maximize=maximize,
                                        clip_value=clip_value, grad_scale=grad_scale)
        buf = momentum_buffer if momentum_buffer is not None else _empty(param.dtype)
        _core.sgd_update(param, buf, grad, lr, momentum, weight_decay,
                         math.inf if clip_value is None else clip_value, grad_scale, maximize)
    except FloatingPointError:
        raise NonFiniteError(f"{where}: grad holds NaN or infinity, or the update made a "
                             f"parameter non-finite (param was updated)") from None


def sum_squares(x) -> float:
    """sum(x**2) of a float32/float64 array, accumulated in float64 (the squared L2 norm)."""
    x = float_array(x, "x", where="sum_squares")
    if not _use_c():
        return reference.sum_squares(x)
    return _core.sumsq(x.reshape(-1))


# ---- activations --------------------------------------------------------------------------

def activation(a, nonlinearity="tanh"):
    """y = f(a), f = tanh or relu; a new array of a's shape."""
    where = "activation"
    a = float_array(a, "a", where=where)
    nl = _nonlinearity_code(nonlinearity, where)
    if not _use_c():
        return reference.activation(a, nonlinearity)
    y = np.empty_like(a)
    _core.act_forward(y.reshape(-1), a.reshape(-1), nl)
    return y


def activation_backward(dH, y, nonlinearity="tanh"):
    """dA = dH * f'(A), computed from y = f(A): 1 - y**2 (tanh) or [y > 0] (relu)."""
    where = "activation_backward"
    y = float_array(y, "y", where=where)
    dH = float_array(dH, "dH", where=where, dtype=y.dtype)
    same_shape(where, "y", y, dH=dH)
    nl = _nonlinearity_code(nonlinearity, where)
    if not _use_c():
        return reference.activation_backward(dH, y, nonlinearity)
    dA = np.empty_like(y)
    _core.act_backward(dA.reshape(-1), dH.reshape(-1), y.reshape(-1), nl)
    return dA


# ---- Elman layer --------------------------------------------------------------------------

_NO_BIAS = object()  # rnn_backward takes no b_h


def _check_layer_weights(where, W_xh, W_hh, b_h=_NO_BIAS):
    W_hh = float_array(W_hh, "W_hh", where=where, ndim=2)
    H = W_hh.shape[0]
    W_hh = float_array(W_hh, "W_hh", where=where, shape=(H, H))
    W_xh = float_array(W_xh, "W_xh", where=where, dtype=W_hh.dtype, shape=(None, H))
    if b_h is not _NO_BIAS:
        b_h = float_array(b_h, "b_h", where=where, dtype=W_hh.dtype, shape=(H,))
    return W_xh, W_hh, b_h


def check_input(x, name, *, where, dtype, num_inputs, batch=None, steps=None, out_ids=None):
    """Token ids (T, B) -> int64 array (copied into out_ids when given and shaped alike);
    dense (T, B, I) -> checked float array. Returns (x, is_ids)."""
    arr = x if isinstance(x, np.ndarray) else as_array(x, name, where=where)
    if is_integer_array(arr):
        ids = index_array(arr, name, where=where, upper=num_inputs, shape=(steps, batch),
                          out=out_ids)
        return ids, True
    arr = float_array(x, name, where=where, dtype=dtype, shape=(steps, batch, num_inputs),
                      finite=True)
    return arr, False


def check_lengths(lengths, where, T, B, out=None):
    """Sequence lengths (B,) as an int64 array with 1 <= lengths[b] <= T (copied into
    ``out`` when given), or None."""
    if lengths is None:
        return None
    arr = index_array(lengths, "lengths", where=where, upper=T + 1, shape=(B,), out=out)
    if arr.size and arr.min() < 1:
        b = int(np.argmin(arr))
        raise ValueError(f"{where}: lengths[{b}] = {int(arr[b])}; every sequence needs at "
                         f"least one step (1 <= lengths <= T = {T})")
    return arr


def rnn_forward(x, h0, W_xh, W_hh, b_h, *, nonlinearity="tanh", out=None, reverse=False,
                lengths=None):
    """Elman layer over T steps: H_t = f(X_t @ W_xh + H_{t-1} @ W_hh + b_h).

    x: float (T, B, I), or integer token ids (T, B) with 0 <= id < I (a row gather of W_xh);
    h0: (B, H) or None for zeros; W_xh (I, H), W_hh (H, H), b_h (H,).
    Returns hs (T+1, B, H): hs[0] = h0, hs[t] = H_t (written into ``out`` if given).
    reverse: run from step T down, H_t from H_{t+1}; then hs[T] = h0 and hs[t-1] = H_t.
    lengths (B,), 1 <= lengths[b] <= T: padded steps keep the state unchanged, so the final
    state is each sequence's own (hs[T] forward, hs[0] in reverse).
    """
    where = "rnn_forward"
    W_xh, W_hh, b_h = _check_layer_weights(where, W_xh, W_hh, b_h)
    (I, H), dt = W_xh.shape, W_hh.dtype
    x, is_ids = check_input(x, "x", where=where, dtype=dt, num_inputs=I)
    T, B = x.shape[0], x.shape[1]
    h0 = _initial_state(h0, where, dt, B, H)
    lengths = check_lengths(lengths, where, T, B)
    reverse = bool(reverse)
    if out is None:
        out = np.empty((T + 1, B, H), dtype=dt)
    else:
        out = float_array(out, "out", where=where, dtype=dt, shape=(T + 1, B, H), writable=True)
        no_overlap(where, {"out": out}, {"x": x, "h0": h0, "W_xh": W_xh, "W_hh": W_hh,
                                         "b_h": b_h})
    _nonlinearity_code(nonlinearity, where)
    return _rnn_forward(out, x, is_ids, h0, W_xh, W_hh, b_h, nonlinearity, reverse, lengths)


def _rnn_forward(out, x, is_ids, h0, W_xh, W_hh, b_h, nonlinearity, reverse, lengths):
    """Unchecked: rnn_forward on the chosen backend, into out (T+1, B, H), once the
    arguments are known to agree (the binding still checks every buffer's size and the
    kernel the lengths' values). Returns out."""
    T, B, H = out.shape[0] - 1, out.shape[1], out.shape[2]
    if not _use_c():
        out[...] = reference.rnn_forward(x, h0, W_xh, W_hh, b_h, nonlinearity=nonlinearity,
                                         reverse=reverse, lengths=lengths)
        return out
    out[T if reverse else 0] = h0
    held = _threads.hold()
    try:
        _core.rnn_forward(out.reshape(-1), _empty(out.dtype) if is_ids else x.reshape(-1),
                          x.reshape(-1) if is_ids else _NO_IDS, W_xh.reshape(-1),
                          W_hh.reshape(-1), b_h, T, B, W_xh.shape[0], H,
                          NONLINEARITIES[nonlinearity], is_ids,
                          _NO_IDS if lengths is None else lengths, reverse)
    finally:
        _threads.release(held)
    return out


def _initial_state(h0, where, dtype, B, H):
    if h0 is None:
        return np.zeros((B, H), dtype=dtype)
    return float_array(h0, "h0", where=where, dtype=dtype, shape=(B, H), finite=True)


def rnn_backward(dH, hs, x, W_xh, W_hh, *, nonlinearity="tanh", dh_T=None, need_dx=False,
                 reverse=False, lengths=None):
    """Backprop through time for one Elman layer.

    dH (T, B, H): gradient of the loss wrt each H_t from above (outputs or the next layer);
    hs (T+1, B, H): from rnn_forward; x: the same input; W_xh (I, H), W_hh (H, H);
    dh_T (B, H): optional extra gradient on the final state. reverse, lengths: as given to
    rnn_forward (dH at padded steps is ignored; dA there is zero). Returns RNNGrads(W_xh,
    W_hh, b_h, h0, x, A): new arrays; x is None for token ids or when need_dx is False; A is
    the gradient wrt the pre-activations (T, B, H).
    """
    where = "rnn_backward"
    W_xh, W_hh, _ = _check_layer_weights(where, W_xh, W_hh)
    (I, H), dt = W_xh.shape, W_hh.dtype
    dH = float_array(dH, "dH", where=where, dtype=dt, shape=(None, None, H), finite=True)
    T, B = dH.shape[:2]
    hs = float_array(hs, "hs", where=where, dtype=dt, shape=(T + 1, B, H))
    x, is_ids = check_input(x, "x", where=where, dtype=dt, num_inputs=I, steps=T, batch=B)
    if dh_T is not None:
        dh_T = float_array(dh_T, "dh_T", where=where, dtype=dt, shape=(B, H), finite=True)
    lengths = check_lengths(lengths, where, T, B)
    reverse = bool(reverse)
    _nonlinearity_code(nonlinearity, where)
    return _rnn_backward(dH, hs, x, is_ids, W_xh, W_hh, nonlinearity, dh_T, need_dx, reverse,
                         lengths)


def _rnn_backward(dH, hs, x, is_ids, W_xh, W_hh, nonlinearity, dh_T, need_dx, reverse,
                  lengths):
    """Unchecked: rnn_backward on the chosen backend, once the arguments are known to
    agree (the binding still checks every buffer's size). Returns RNNGrads."""
    if not _use_c():
        return reference.rnn_backward(dH, hs, x, W_xh, W_hh, nonlinearity=nonlinearity,
                                      dh_T=dh_T, need_dx=need_dx, reverse=reverse,
                                      lengths=lengths)
    (T, B, H), (I, dt) = dH.shape, (W_xh.shape[0], W_hh.dtype)
    g = RNNGrads(np.empty_like(W_xh), np.empty_like(W_hh), np.empty(H, dt),
                 np.empty((B, H), dt), np.empty((T, B, I), dt) if need_dx and not is_ids else None,
                 np.empty((T, B, H), dt))
    e = _empty(dt)
    held = _threads.hold()
    try:
        _core.rnn_backward(g.W_xh.reshape(-1), g.W_hh.reshape(-1), g.b_h, g.h0.reshape(-1),
                           e if g.x is None else g.x.reshape(-1), g.A.reshape(-1),
                           dH.reshape(-1), e if dh_T is None else dh_T.reshape(-1),
                           hs.reshape(-1), e if is_ids else x.reshape(-1),
                           x.reshape(-1) if is_ids else _NO_IDS, W_xh.reshape(-1),
                           W_hh.reshape(-1), T, B, I, H, NONLINEARITIES[nonlinearity],
                           is_ids, _NO_IDS if lengths is None else lengths, reverse)
    finally:
        _threads.release(held)
    return g


# ---- projection and losses ----------------------------------------------------------------

def linear_forward(X, W, b=None):
    """Y (N, O) = X (N, K) @ W (K, O) + b (O,): one GEMM with the bias folded in."""
    where = "linear_forward"
    W = float_array(W, "W", where=where, ndim=2)
    K, O = W.shape
    X = float_array(X, "X", where=where, dtype=W.dtype, shape=(None, K), finite=True)
    if b is not None:
        b = float_array(b, "b", where=where, dtype=W.dtype, shape=(O,))
    if not _use_c():
        return reference.linear_forward(X, W, b)
    Y = np.empty((X.shape[0], O), W.dtype)
    held = _threads.hold()
    try:
        _core.linear_forward(Y.reshape(-1), X.reshape(-1), W.reshape(-1),
                             _empty(W.dtype) if b is None else b, X.shape[0], K, O)
    finally:
        _threads.release(held)
    return Y


def linear_backward(dY, X, W, *, need_dX=True):
    """Gradients of Y = X @ W + b: returns dW (K, O) = X^T dY, db (O,) = dY summed over rows,
    and dX (N, K) = dY W^T (None unless need_dX)."""
    where = "linear_backward"
    W = float_array(W, "W", where=where, ndim=2)
    K, O = W.shape
    dY = float_array(dY, "dY", where=where, dtype=W.dtype, shape=(None, O), finite=True)
    N = dY.shape[0]
    X = float_array(X, "X", where=where, dtype=W.dtype, shape=(N, K))
    if not _use_c():
        return reference.linear_backward(dY, X, W, need_dX=need_dX)
    dW, db = np.empty((K, O), W.dtype), np.empty(O, W.dtype)
    dX = np.empty((N, K), W.dtype) if need_dX else None
    held = _threads.hold()
    try:
        _core.linear_backward(dW.reshape(-1), db,
                              _empty(W.dtype) if dX is None else dX.reshape(-1),
                              dY.reshape(-1), X.reshape(-1), W.reshape(-1), N, K, O)
    finally:
        _threads.release(held)
    return dW, db, dX


def softmax_cross_entropy(logits, targets, *, reduction="mean"):
    """Softmax cross-entropy fused with its gradient, in one pass over the logits.

    logits (N, O) float; targets (N,) integers in [0, O). Returns (loss, dlogits):
    loss = scale * sum_r (logsumexp(logits_r) - logits_r[targets_r]) as a Python float,
    dlogits = scale * (softmax(logits) - onehot(targets)), scale = 1/N ("mean") or 1 ("sum").
    """
    where = "softmax_cross_entropy"
    logits = float_array(logits, "logits", where=where, ndim=2, finite=True)
    N, O = logits.shape
    targets = index_array(targets, "targets", where=where, upper=O, shape=(N,))
    choice(reduction, "reduction", tuple(REDUCTIONS), where=where)
    if N == 0:
        raise ValueError(f"{where}: logits has no rows; the loss of nothing is undefined")
    if not _use_c():
        return reference.softmax_cross_entropy(logits, targets, reduction=reduction)
    d = np.empty_like(logits)
    scale = 1.0 / N if reduction == "mean" else 1.0
    loss = _core.softmax_xent(d.reshape(-1), logits.reshape(-1), targets, N, O, scale)
    return loss, d


def mse_loss(pred, target, *, reduction="mean"):
    """Mean squared error fused with its gradient: returns (loss, dpred) with
    loss = scale * sum (pred - target)^2, dpred = 2 * scale * (pred - target),
    scale = 1/pred.size ("mean") or 1 ("sum"). pred and target share shape and dtype."""
    where = "mse_loss"
    pred = float_array(pred, "pred", where=where, finite=True)
    target = float_array(target, "target", where=where, dtype=pred.dtype, finite=True)
    same_shape(where, "pred", pred, target=target)
    choice(reduction, "reduction", tuple(REDUCTIONS), where=where)
    if pred.size == 0:
        raise ValueError(f"{where}: pred is empty; the loss of nothing is undefined")
    if not _use_c():
        return reference.mse_loss(pred, target, reduction=reduction)
    d = np.empty_like(pred)
    scale = 1.0 / pred.size if reduction == "mean" else 1.0
    loss = _core.mse(d.reshape(-1), pred.reshape(-1), target.reshape(-1), scale)
    return loss, d


# ---- whole model --------------------------------------------------------------------------

class Arch(NamedTuple):
    """The stack of a model: layers, directions, dropout between layers and its seed."""
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    dropout_seed: int = 0
    dropout_batch: int = 0    # data parallelism: the whole batch's lanes (0: this call's)
    dropout_offset: int = 0   # and where this call's lanes start in it

    @property
    def states(self) -> int:
        """L*D: hidden states (and h0 / h_n entries) of the stack."""
        return self.num_layers * (2 if self.bidirectional else 1)


ARCH1 = Arch()
_NO_WORK = np.empty(0, np.uint8)


def check_arch(where, num_layers=1, bidirectional=False, dropout=0.0, dropout_seed=0) -> Arch:
    """Validated Arch."""
    num_layers = positive_int(num_layers, "num_layers", where=where)
    dropout = real(dropout, "dropout", where=where, minimum=0)
    if not dropout < 1:
        raise ValueError(f"{where}: dropout must be in [0, 1), got {dropout}")
    seed = positive_int(dropout_seed, "dropout_seed", where=where, minimum=0,
                        maximum=2**64 - 1)
    return Arch(num_layers, bool(bidirectional), dropout, seed)


def _check_model_params(where, params, sizes, arch=ARCH1):
    I, H, O = (positive_int(v, n, where=where) for v, n in
               zip(sizes, ("input_size", "hidden_size", "output_size")))
    _, n = param_layout(I, H, O, arch.num_layers, arch.bidirectional)
    params = float_array(params, "params", where=where, shape=(n,))
    return params, I, H, O


def _check_targets(y, where, loss, dtype, T, B, O, last_step_only):
    if loss == "cross_entropy":
        return index_array(y, "y", where=where, upper=O,
                           shape=(B,) if last_step_only else (T, B))
    return float_array(y, "y", where=where, dtype=dtype,
                       shape=(B, O) if last_step_only else (T, B, O), finite=True)


def _check_states(h, name, where, dtype, arch, B, H, *, writable=False, finite=True):
    """A stack's states (L*D, B, H); (B, H) is also accepted for one layer, one direction.
    Returned as (L*D, B, H); None stays None."""
    if h is None:
        return None
    S = arch.states
    arr = float_array(h, name, where=where, dtype=dtype, writable=writable, finite=finite)
    if arr.shape == (S, B, H):
        return arr
    if S == 1 and arr.shape == (B, H):
        return arr.reshape(1, B, H)
    raise ValueError(f"{where}: {name} has shape {arr.shape}, expected ({S}, {B}, {H})"
                     + (f" or ({B}, {H})" if S == 1 else "")
                     + " (num_layers * directions, B, H)")


def _arch_kwargs(arch):
    return dict(num_layers=arch.num_layers, bidirectional=arch.bidirectional)


def model_forward(params, x, h0=None, *, input_size, hidden_size, output_size,
                  nonlinearity="tanh", num_layers=1, bidirectional=False, lengths=None):
    """Outputs of the Elman model (stacked layers + output projection) at every step.

    params: flat buffer laid out as :func:`param_layout` says; x: float (T, B, I) or token
    ids (T, B); h0 (L*D, B, H) or None ((B, H) also for one layer, one direction); lengths
    (B,) or None. This is inference: no dropout. Returns (Y (T, B, O), hs): hs (T+1, B, H)
    for one layer and direction, else (L*D, T+1, B, H), as elman.h lays them out. With
    lengths, Y is zero at padded steps.
    """
    where = "model_forward"
    arch = check_arch(where, num_layers, bidirectional)
    params, I, H, O = _check_model_params(where, params, (input_size, hidden_size, output_size),
                                          arch)
    x, is_ids = check_input(x, "x", where=where, dtype=params.dtype, num_inputs=I)
    T, B = x.shape[:2]
    h0 = _check_states(h0, "h0", where, params.dtype, arch, B, H)
    lengths = check_lengths(lengths, where, T, B)
    nl = _nonlinearity_code(nonlinearity, where)
    Y, hs = _model_forward(params, x, is_ids, h0, I, H, O, nl, nonlinearity, arch=arch,
                           lengths=lengths)
    return Y, (hs[0] if arch.states == 1 else hs)


def _set_initial_states(hs, h0, arch):
    """hs (L*D, T+1, B, H): each slab's h0 where elman_rnn_forward reads it (zeros if None)."""
    T = hs.shape[1] - 1
    D = 2 if arch.bidirectional else 1
    for k in range(arch.states):
        hs[k, T if k % D else 0] = 0 if h0 is None else h0[k]


def final_states(hs, arch):
    """The stack's final states (L*D, B, H) from hs (L*D, T+1, B, H), as a view per slab:
    hs[k, T] forward, hs[k, 0] reverse (torch's h_n order)."""
    D = 2 if arch.bidirectional else 1
    T = hs.shape[1] - 1
    return [hs[k, 0 if k % D else T] for k in range(arch.states)]


def _aligned_bytes(nbytes):
    """nbytes of memory aligned to 8 (a float64 array's), as uint8; the empty workspace
    for 0."""
    if nbytes == 0:
        return _NO_WORK
    return np.empty((nbytes + 7) // 8, np.float64).view(np.uint8)


def _work_buffer(ws, key, nbytes):
    """A byte workspace from the dict ``ws``, reused while big enough."""
    buf = ws.get(key)
    if buf is None or buf.size < nbytes:
        buf = ws[key] = _aligned_bytes(nbytes)
        ws["allocations"] = ws.get("allocations", 0) + 1
    return buf


def _model_forward(params, x, is_ids, h0, I, H, O, nl, nonlinearity, hs=None, arch=ARCH1,
                   lengths=None, ws=None):
    """Unchecked: the caller has validated everything; h0 (L*D, B, H) or None. Returns
    (Y, hs (L*D, T+1, B, H))."""
    T, B = x.shape[:2]
    if not _use_c():
        Y, hs = reference.model_forward(params, x, h0, input_size=I, hidden_size=H,
                                        output_size=O, nonlinearity=nonlinearity,
                                        lengths=lengths, **_arch_kwargs(arch))
        return Y, hs.reshape(arch.states, T + 1, B, H)
    dt = params.dtype
    Y = np.empty((T, B, O), dt)
    if hs is None:
        hs = np.empty((arch.states, T + 1, B, H), dt)
    _set_initial_states(hs, h0, arch)
    nbytes = _core.model_work_bytes(T, B, I, H, O, 0, False, tuple(arch), lengths is not None,
                                    dt.itemsize)
    work = _work_buffer({} if ws is None else ws, "work", nbytes)
    held = _threads.hold()
    try:
        _core.model_forward(Y.reshape(-1), hs.reshape(-1), work,
                            _empty(dt) if is_ids else x.reshape(-1),
                            x.reshape(-1) if is_ids else _NO_IDS, params, T, B, I, H, O, nl,
                            is_ids, tuple(arch), _NO_IDS if lengths is None else lengths)
    finally:
        _threads.release(held)
    return Y, hs


def model_forward_backward(params, grads, x, y, h0=None, *, input_size, hidden_size,
                           output_size, nonlinearity="tanh", loss="cross_entropy",
                           reduction="mean", last_step_only=False, dh0=None, dh_T=None,
                           num_layers=1, bidirectional=False, dropout=0.0, dropout_seed=0,
                           lengths=None):
    """Forward, loss and full BPTT of the Elman model in one call.

    params, grads: flat buffers (:func:`param_layout`); grads is overwritten. x: float
    (T, B, I) or token ids (T, B); y: class ids (T, B) for "cross_entropy" or floats
    (T, B, O) for "mse" ((B,) / (B, O) with last_step_only); h0 (L*D, B, H) or None; dh0:
    optional (L*D, B, H) output for the gradient wrt h0; dh_T: optional (L*D, B, H)
    gradient arriving on the final states from outside (a model chained after this one).
    (B, H) is accepted for h0, dh0, dh_T of one layer, one direction.
    num_layers, bidirectional: the stack; dropout: between layers, masks drawn from
    dropout_seed (elman.h gives the rule); lengths (B,): valid steps of each sequence, the
    rest padding with no loss and no gradient. Returns (loss, hs) (hs as model_forward's).
    """
    where = "model_forward_backward"
    arch = check_arch(where, num_layers, bidirectional, dropout, dropout_seed)
    params, I, H, O = _check_model_params(where, params, (input_size, hidden_size, output_size),
                                          arch)
    grads = float_array(grads, "grads", where=where, dtype=params.dtype, shape=params.shape,
                        writable=True)
    x, is_ids = check_input(x, "x", where=where, dtype=params.dtype, num_inputs=I)
    T, B = x.shape[:2]
    if T == 0 or B == 0:
        raise ValueError(f"{where}: x has shape {x.shape}; a loss needs T >= 1 and B >= 1")
    h0 = _check_states(h0, "h0", where, params.dtype, arch, B, H)
    choice(loss, "loss", tuple(LOSSES), where=where)
    choice(reduction, "reduction", tuple(REDUCTIONS), where=where)
    y = _check_targets(y, where, loss, params.dtype, T, B, O, bool(last_step_only))
    dh0 = _check_states(dh0, "dh0", where, params.dtype, arch, B, H, writable=True,
                        finite=False)
    dh_T = _check_states(dh_T, "dh_T", where, params.dtype, arch, B, H)
    lengths = check_lengths(lengths, where, T, B)
    no_overlap(where, {"grads": grads, "dh0": dh0},
               {"params": params, "x": x, "y": y, "h0": h0, "dh_T": dh_T})
    nl = _nonlinearity_code(nonlinearity, where)
    value, hs = _model_forward_backward(params, grads, x, is_ids, y, h0, I, H, O, nl,
                                        nonlinearity, loss, reduction, bool(last_step_only),
                                        dh0, dh_T=dh_T, arch=arch, lengths=lengths)
    return value, (hs[0] if arch.states == 1 else hs)


def _step_workspace(ws, dt, T, B, I, H, O, last_step_only, h0, arch=ARCH1, lengths=None,
                    loss="cross_entropy"):
    """The training step's buffers in the dict ``ws`` (hs, Y, dA, work), made when the
    shapes change and reused otherwise; returns hs (L*D, T+1, B, H) with the initial states
    (zeros if None) in place."""
    S = arch.states
    key = (dt, T, B, I, H, O, last_step_only, arch.num_layers, arch.bidirectional,
           arch.dropout > 0, lengths is not None, loss)
    if ws.get("key") != key:
        N = B if last_step_only else T * B
        nbytes = _core.model_work_bytes(T, B, I, H, O, LOSSES[loss], last_step_only,
                                        tuple(arch), lengths is not None, dt.itemsize)
        ws.update(key=key, hs=np.empty((S, T + 1, B, H), dt), Y=np.empty(N * O, dt),
                  dA=np.empty(S * T * B * H, dt),
                  work=_aligned_bytes(nbytes))
        ws["allocations"] = ws.get("allocations", 0) + 1
    hs = ws["hs"]
    _set_initial_states(hs, h0, arch)
    return hs


def _model_forward_backward(params, grads, x, is_ids, y, h0, I, H, O, nl, nonlinearity, loss,
                            reduction, last_step_only, dh0=None, workspace=None, dh_T=None,
                            arch=ARCH1, lengths=None):
    """Unchecked: the caller has validated everything; h0 (L*D, B, H) or None (zeros);
    dh0, dh_T (L*D, B, H) or None. ``workspace`` is a dict reused across calls of one shape
    (hs, Y, dA, work), so that a training step allocates nothing. Returns (loss, hs
    (L*D, T+1, B, H))."""
    T, B = x.shape[:2]
    if not _use_c():
        value, hs = reference.model_forward_backward(
            params, grads, x, y, h0, input_size=I, hidden_size=H, output_size=O,
            nonlinearity=nonlinearity, loss=loss, reduction=reduction,
            last_step_only=last_step_only, dh0=dh0, dh_T=dh_T, dropout=arch.dropout,
            dropout_seed=arch.dropout_seed, lengths=lengths,
            dropout_lanes=(arch.dropout_batch, arch.dropout_offset), **_arch_kwargs(arch))
        return value, hs.reshape(arch.states, T + 1, B, H)
    ws = workspace if workspace is not None else {}
    hs = _step_workspace(ws, params.dtype, T, B, I, H, O, last_step_only, h0, arch, lengths,
                         loss)
    e = _empty(params.dtype)
    held = _threads.hold()
    try:
        value = _core.model_forward_backward(
            grads, e if dh0 is None else dh0.reshape(-1), hs.reshape(-1), ws["Y"], ws["dA"],
            ws["work"], e if is_ids else x.reshape(-1), x.reshape(-1) if is_ids else _NO_IDS,
            y.reshape(-1) if loss == "cross_entropy" else _NO_IDS,
            y.reshape(-1) if loss == "mse" else e, e if dh_T is None else dh_T.reshape(-1),
            params, T, B, I, H, O, nl, is_ids, LOSSES[loss], REDUCTIONS[reduction],
            last_step_only, tuple(arch), _NO_IDS if lengths is None else lengths)
    except FloatingPointError as err:
        raise NonFiniteError(str(err)) from None
    finally:
        _threads.release(held)
    return value, hs


def model_sample(params, n, first=0, h=None, *, input_size, hidden_size, output_size,
                 nonlinearity="tanh", temperature=1.0, seed=None, num_layers=1):
    """Generate n token ids with the model, feeding each back as the next input.

    params: flat buffer (:func:`param_layout`) of a model with output_size <= input_size
    (a character or token model, unidirectional, num_layers deep); first: the id fed at the
    first step; h: (H,) initial state, (L, H) for L layers (zeros if None); temperature: > 0 scales the logits by 1/temperature before the softmax,
    0 takes the argmax; seed: an int, a numpy SeedSequence, or None for fresh entropy.
    Returns (ids (n,) int64, h_n (H,) or (L, H)). The C backend runs the whole loop in one
    call.
    """
    where = "model_sample"
    arch = check_arch(where, num_layers)
    params, I, H, O = _check_model_params(where, params, (input_size, hidden_size, output_size),
                                          arch)
    n, first, temperature = _sample_args(where, I, O, n, first, "first", temperature)
    L = arch.num_layers
    shape = (H,) if L == 1 else (L, H)
    if h is None:
        h = np.zeros(shape, params.dtype)
    else:
        h = np.array(float_array(as_array(h, "h", where=where), "h", where=where,
                                 dtype=params.dtype, shape=shape, finite=True))
    nl = _nonlinearity_code(nonlinearity, where)
    state = _seed_state(seed, where)
    return _model_sample(params, n, first, h, state, I, H, O, nl, nonlinearity, temperature,
                         num_layers=L)


def _sample_args(where, I, O, n, first, first_name, temperature):
    """(n, first id, temperature) of a sampling call, checked against I inputs, O outputs."""
    if O > I:
        raise ValueError(f"{where}: sampling feeds each output id back as an input id, so "
                         f"output_size ({O}) must be <= input_size ({I})")
    n = positive_int(n, "n", where=where, minimum=0)
    first = positive_int(first, first_name, where=where, minimum=0)
    if first >= I:
        raise ValueError(f"{where}: {first_name}={first} is not a token id in [0, {I})")
    return n, first, real(temperature, "temperature", where=where, minimum=0)


def _seed_state(seed, where) -> int:
    """A 64-bit generator state from an int seed, a SeedSequence, or fresh entropy."""
    if isinstance(seed, np.random.SeedSequence):
        ss = seed
    elif seed is None:
        ss = np.random.SeedSequence()
    else:
        ss = np.random.SeedSequence(positive_int(seed, "seed", where=where, minimum=0))
    return int(ss.generate_state(1, np.uint64)[0])


def _model_sample(params, n, first, h, state, I, H, O, nl, nonlinearity, temperature,
                  work=None, num_layers=1):
    """Unchecked: the caller has validated everything. h (L*H values) is updated in place."""
    if not _use_c():
        ids, _ = reference.model_sample(params, n, first, h, state, input_size=I,
                                        hidden_size=H, output_size=O,
                                        nonlinearity=nonlinearity, temperature=temperature,
                                        num_layers=num_layers)
        return ids, h
    out = np.empty(n, np.int64)
    rng = np.array([state], np.uint64)
    if work is None:
        work = np.empty(H + O, params.dtype)
    try:
        _core.model_sample(out, h.reshape(-1), work, rng, first, temperature, params, I, H, O,
                           nl, num_layers)
    except FloatingPointError as err:
        raise NonFiniteError(str(err)) from None
    return out, h


def _stream_probe(p, s, g):
    """The bandwidth probe of the benchmarks (not a kernel anyone needs): Adagrad's memory
    traffic, read p, s, g and write p, s, with no arithmetic to speak of (s += g, p -= g),
    on the same kernel path and threads as adagrad_update. Arrays (n,) of one float dtype."""
    where = "_stream_probe"
    p = float_array(p, "p", where=where, ndim=1, writable=True)
    s = float_array(s, "s", where=where, dtype=p.dtype, shape=p.shape, writable=True)
    g = float_array(g, "g", where=where, dtype=p.dtype, shape=p.shape)
    no_overlap(where, {"p": p, "s": s}, {"g": g})
    no_overlap(where, {"p": p}, {"s": s})
    if _use_c():
        _core.stream_probe(p, s, g)
    else:
        reference.stream_probe(p, s, g)


def _step_gemm(C, A, W):
    """C (M, N) += A (M, K) @ W (K, N) on elman's register-blocked kernel, the per-step
    product of the recurrence (for the benchmarks; any caller with a small product may use
    it). C-contiguous 2-D arrays of one float dtype; C may not overlap A or W."""
    where = "_step_gemm"
    A = float_array(A, "A", where=where, ndim=2)
    M, K = A.shape
    W = float_array(W, "W", where=where, dtype=A.dtype, shape=(K, None))
    C = float_array(C, "C", where=where, dtype=A.dtype, shape=(M, W.shape[1]), writable=True)
    no_overlap(where, {"C": C}, {"A": A, "W": W})
    if _use_c():
        _core.step_gemm(C.reshape(-1), A.reshape(-1), W.reshape(-1), M, K, W.shape[1])
    else:
        C += A @ W


def _model_train_step(params, grads, x, is_ids, y, h0, I, H, O, nl, loss, reduction,
                      last_step_only, workspace, opt, arch=ARCH1, lengths=None):
    """Unchecked, C backend only: one fused training step over the model's workspace with
    the settings of ``opt`` (an Adagrad or SGD; its step count is not changed here).
    Returns (loss, gradient norm or None, stage, hs); stage as _core.model_train_step."""
    ws = workspace
    hs = _step_workspace(ws, params.dtype, x.shape[0], x.shape[1], I, H, O, last_step_only, h0,
                         arch, lengths, loss)
    T, B = x.shape[:2]
    e = _empty(params.dtype)
    adagrad = hasattr(opt, "state")
    state = opt.state if adagrad else opt.momentum_buffer
    clip, max_norm = opt.clip_value, opt.max_grad_norm
    held = _threads.hold()
    try:
        value, norm, stage = _core.model_train_step(
            params, grads, e if state is None else state, hs.reshape(-1), ws["Y"], ws["dA"],
            e if is_ids else x.reshape(-1), x.reshape(-1) if is_ids else _NO_IDS,
            y.reshape(-1) if loss == "cross_entropy" else _NO_IDS,
            y.reshape(-1) if loss == "mse" else e, T, B, I, H, O, nl, is_ids, LOSSES[loss],
            REDUCTIONS[reduction], last_step_only, "adagrad" if adagrad else "sgd", opt.lr,
            opt.lr_decay if adagrad else 0.0, opt.weight_decay, opt.eps if adagrad else 0.0,
            math.inf if clip is None else clip, opt.steps + 1,
            adagrad and opt.eps_placement == "inside", opt.maximize,
            0.0 if adagrad else opt.momentum, math.inf if max_norm is None else max_norm,
            tuple(arch), _NO_IDS if lengths is None else lengths, ws["work"])
    finally:
        _threads.release(held)
    return value, (None if max_norm is None else norm), stage, hs
