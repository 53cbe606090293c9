"""Functional kernels on NumPy arrays, for people who use elman as a backend.

Every function validates its arguments (dtype, shape, contiguity, aliasing, finiteness,
target range) and then makes one call on the active backend (:mod:`elman._dispatch`):
``"c"`` (the compiled kernels, the default, GIL released) or ``"numpy"``
(:mod:`elman.reference`, the specification). Switch with ``ELMAN_BACKEND=numpy`` in the
environment or, within a block, ``with elman.backend("numpy"): ...``. Both backends compute
the same formulas in the same order, behind the same signatures.

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

from typing import NamedTuple

import numpy as np

from . import _c_backend
from ._dispatch import backend, current
from ._model_args import (check_input, check_lengths, check_model_params,
                          check_sample_args, check_seed, check_seeds, check_stack, check_states,
                          check_targets, check_dropout_seed, check_layer_weights,
                          initial_state)
from ._validate import (NonFiniteError, choice, float_array, index_array,
                        no_overlap, positive_int, real, same_shape)
from .layout import RNNGrads, param_layout, param_views

__all__ = [
    "backend", "adagrad_update", "proximal_adagrad_update", "rowwise_adagrad_update",
    "sgd_update", "sum_squares", "activation",
    "activation_backward", "rnn_forward", "rnn_backward", "rnn_rforward", "RNNGrads", "linear_forward",
    "linear_backward", "softmax_cross_entropy", "mse_loss", "model_forward",
    "model_forward_backward", "model_sample", "param_layout", "param_views", "NonFiniteError",
]

# name -> C code, as the C backend translates them (from the enums of _core.pxd)
NONLINEARITIES = dict(_c_backend.NONLINEARITIES)
LOSSES = dict(_c_backend.LOSSES)
REDUCTIONS = dict(_c_backend.REDUCTIONS)


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
    current().adagrad_update(param, grad, state, lr=lr, step=step, lr_decay=lr_decay,
                             weight_decay=weight_decay, eps=eps, eps_placement=eps_placement,
                             maximize=bool(maximize), clip_value=clip_value,
                             grad_scale=grad_scale)


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
    current().proximal_adagrad_update(param, grad, state, lr=lr, l1=l1, l2=l2,
                                      grad_scale=grad_scale)


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
    current().rowwise_adagrad_update(param, grad, state, lr=lr, eps=eps, grad_scale=grad_scale)


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
    current().sgd_update(param, grad, momentum_buffer if momentum != 0 else None, lr=lr,
                         momentum=momentum, weight_decay=weight_decay, maximize=bool(maximize),
                         clip_value=clip_value, grad_scale=grad_scale)


def sum_squares(x) -> float:
    """sum(x**2) of a float32/float64 array, accumulated in float64 (the squared L2 norm)."""
    x = float_array(x, "x", where="sum_squares")
    return current().sum_squares(x)


# ---- activations --------------------------------------------------------------------------

def activation(a, nonlinearity="tanh"):
    """y = f(a), f = tanh or relu; a new array of a's shape."""
    where = "activation"
    a = float_array(a, "a", where=where)
    choice(nonlinearity, "nonlinearity", tuple(NONLINEARITIES), where=where)
    return current().activation(a, nonlinearity)


def activation_backward(dH, y, nonlinearity="tanh"):
    """dA = dH * f'(A), computed from y = f(A): 1 - y**2 (tanh) or [y > 0] (relu)."""
    where = "activation_backward"
    y = float_array(y, "y", where=where)
    dH = float_array(dH, "dH", where=where, dtype=y.dtype)
    same_shape(where, "y", y, dH=dH)
    choice(nonlinearity, "nonlinearity", tuple(NONLINEARITIES), where=where)
    return current().activation_backward(dH, y, nonlinearity)


# ---- Elman layer --------------------------------------------------------------------------

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
    W_xh, W_hh, b_h = check_layer_weights(where, W_xh, W_hh, b_h)
    (I, H), dt = W_xh.shape, W_hh.dtype
    x, _ = check_input(x, "x", where=where, dtype=dt, num_inputs=I)
    T, B = x.shape[0], x.shape[1]
    h0 = initial_state(h0, where, dt, B, H)
    lengths = check_lengths(lengths, where, T, B)
    if out is not None:
        out = float_array(out, "out", where=where, dtype=dt, shape=(T + 1, B, H), writable=True)
        no_overlap(where, {"out": out}, {"x": x, "h0": h0, "W_xh": W_xh, "W_hh": W_hh,
                                         "b_h": b_h})
    choice(nonlinearity, "nonlinearity", tuple(NONLINEARITIES), where=where)
    return current().rnn_forward(x, h0, W_xh, W_hh, b_h, nonlinearity=nonlinearity,
                                 reverse=bool(reverse), lengths=lengths, out=out)


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
    W_xh, W_hh, _ = check_layer_weights(where, W_xh, W_hh)
    (I, H), dt = W_xh.shape, W_hh.dtype
    dH = float_array(dH, "dH", where=where, dtype=dt, shape=(None, None, H), finite=True)
    T, B = dH.shape[:2]
    hs = float_array(hs, "hs", where=where, dtype=dt, shape=(T + 1, B, H))
    x, _ = check_input(x, "x", where=where, dtype=dt, num_inputs=I, steps=T, batch=B)
    if dh_T is not None:
        dh_T = float_array(dh_T, "dh_T", where=where, dtype=dt, shape=(B, H), finite=True)
    lengths = check_lengths(lengths, where, T, B)
    choice(nonlinearity, "nonlinearity", tuple(NONLINEARITIES), where=where)
    return current().rnn_backward(dH, hs, x, W_xh, W_hh, nonlinearity=nonlinearity, dh_T=dh_T,
                                  need_dx=bool(need_dx), reverse=bool(reverse),
                                  lengths=lengths)


def rnn_rforward(hs, x, W_xh, W_hh, V_xh, V_hh, v_b, *, Rx=None, nonlinearity="tanh",
                 reverse=False, lengths=None):
    """The R-operator's forward pass through one Elman layer: the derivative of every state
    along a direction V = (V_xh, V_hh, v_b) of the layer's parameters,

        R{A_t} = R{X_t} @ W_xh + X_t @ V_xh + R{H_{t-1}} @ W_hh + H_{t-1} @ V_hh + v_b
        R{H_t} = f'(A_t) * R{A_t},   R{h0} = 0

    (the Jacobian-vector product J_H v that Gauss-Newton products start from).

    hs (T+1, B, H): rnn_forward's states at (W_xh, W_hh) with this x, reverse and lengths;
    x: float (T, B, I) or integer token ids (T, B); W_xh, V_xh (I, H); W_hh, V_hh (H, H);
    v_b (H,); Rx (T, B, I) or None: the derivative of a dense input (a layer above the
    first); nonlinearity: the forward's. Returns Rhs (T+1, B, H), laid out as hs: zero where
    hs holds h0, and a padded step (lengths) carries R{H} as it carries H.
    """
    where = "rnn_rforward"
    W_xh, W_hh, _ = check_layer_weights(where, W_xh, W_hh)
    (I, H), dt = W_xh.shape, W_hh.dtype
    V_xh = float_array(V_xh, "V_xh", where=where, dtype=dt, shape=(I, H), finite=True)
    V_hh = float_array(V_hh, "V_hh", where=where, dtype=dt, shape=(H, H), finite=True)
    v_b = float_array(v_b, "v_b", where=where, dtype=dt, shape=(H,), finite=True)
    hs = float_array(hs, "hs", where=where, dtype=dt, shape=(None, None, H), finite=True)
    T, B = hs.shape[0] - 1, hs.shape[1]
    if T < 0:
        raise ValueError(f"{where}: hs must have T+1 >= 1 rows of states, got shape {hs.shape}")
    x, is_ids = check_input(x, "x", where=where, dtype=dt, num_inputs=I, steps=T, batch=B)
    if Rx is not None:
        if is_ids:
            raise ValueError(f"{where}: token-id inputs have no derivative; pass Rx=None")
        Rx = float_array(Rx, "Rx", where=where, dtype=dt, shape=(T, B, I), finite=True)
    lengths = check_lengths(lengths, where, T, B)
    choice(nonlinearity, "nonlinearity", tuple(NONLINEARITIES), where=where)
    return current().rnn_rforward(hs, x, W_xh, W_hh, V_xh, V_hh, v_b, Rx=Rx,
                                  nonlinearity=nonlinearity, reverse=bool(reverse),
                                  lengths=lengths)


# ---- projection and losses ----------------------------------------------------------------

def linear_forward(X, W, b=None):
    """Y (N, O) = X (N, K) @ W (K, O) + b (O,): one GEMM with the bias folded in."""
    where = "linear_forward"
    W = float_array(W, "W", where=where, ndim=2)
    K, O = W.shape
    X = float_array(X, "X", where=where, dtype=W.dtype, shape=(None, K), finite=True)
    if b is not None:
        b = float_array(b, "b", where=where, dtype=W.dtype, shape=(O,))
    return current().linear_forward(X, W, b)


def linear_backward(dY, X, W, *, need_dX=True):
    """Gradients of Y = X @ W + b: returns dW (K, O) = X^T dY, db (O,) = dY summed over rows,
    and dX (N, K) = dY W^T (None unless need_dX)."""
    where = "linear_backward"
    W = float_array(W, "W", where=where, ndim=2)
    K, O = W.shape
    dY = float_array(dY, "dY", where=where, dtype=W.dtype, shape=(None, O), finite=True)
    X = float_array(X, "X", where=where, dtype=W.dtype, shape=(dY.shape[0], K))
    return current().linear_backward(dY, X, W, need_dX=bool(need_dX))


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
    return current().softmax_cross_entropy(logits, targets, reduction=reduction)


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
    return current().mse_loss(pred, target, reduction=reduction)


# ---- whole model --------------------------------------------------------------------------

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
    stack = check_stack(where, num_layers, bidirectional)
    params, I, H, O = check_model_params(where, params, (input_size, hidden_size, output_size),
                                         stack)
    x, _ = check_input(x, "x", where=where, dtype=params.dtype, num_inputs=I)
    T, B = x.shape[:2]
    h0 = check_states(h0, "h0", where, params.dtype, stack, B, H)
    lengths = check_lengths(lengths, where, T, B)
    choice(nonlinearity, "nonlinearity", tuple(NONLINEARITIES), where=where)
    return current().model_forward(params, x, h0, input_size=I, hidden_size=H, output_size=O,
                                   nonlinearity=nonlinearity, num_layers=stack.num_layers,
                                   bidirectional=stack.bidirectional, lengths=lengths)


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
    stack = check_stack(where, num_layers, bidirectional, dropout)
    dropout_seed = check_dropout_seed(dropout_seed, where)
    params, I, H, O = check_model_params(where, params, (input_size, hidden_size, output_size),
                                         stack)
    grads = float_array(grads, "grads", where=where, dtype=params.dtype, shape=params.shape,
                        writable=True)
    x, _ = check_input(x, "x", where=where, dtype=params.dtype, num_inputs=I)
    T, B = x.shape[:2]
    if T == 0 or B == 0:
        raise ValueError(f"{where}: x has shape {x.shape}; a loss needs T >= 1 and B >= 1")
    h0 = check_states(h0, "h0", where, params.dtype, stack, B, H)
    choice(loss, "loss", tuple(LOSSES), where=where)
    choice(reduction, "reduction", tuple(REDUCTIONS), where=where)
    y = check_targets(y, where, loss, params.dtype, T, B, O, bool(last_step_only))
    dh0 = check_states(dh0, "dh0", where, params.dtype, stack, B, H, writable=True,
                       finite=False)
    dh_T = check_states(dh_T, "dh_T", where, params.dtype, stack, B, H)
    lengths = check_lengths(lengths, where, T, B)
    no_overlap(where, {"grads": grads, "dh0": dh0},
               {"params": params, "x": x, "y": y, "h0": h0, "dh_T": dh_T})
    choice(nonlinearity, "nonlinearity", tuple(NONLINEARITIES), where=where)
    return current().model_forward_backward(
        params, grads, x, y, h0, input_size=I, hidden_size=H, output_size=O,
        nonlinearity=nonlinearity, loss=loss, reduction=reduction,
        last_step_only=bool(last_step_only), dh0=dh0, dh_T=dh_T, num_layers=stack.num_layers,
        bidirectional=stack.bidirectional, dropout=stack.dropout, dropout_seed=dropout_seed,
        lengths=lengths)


def model_sample(params, n, first=0, h=None, *, input_size, hidden_size, output_size,
                 nonlinearity="tanh", temperature=1.0, seed=None, num_layers=1, batch=None):
    """Generate n token ids with the model, feeding each back as the next input.

    params: flat buffer (:func:`param_layout`) of a model with output_size <= input_size
    (a character or token model, unidirectional, num_layers deep); first: the id fed at the
    first step; h: (H,) initial state, (L, H) for L layers (zeros if None); temperature:
    > 0 scales the logits by 1/temperature before the softmax, 0 takes the argmax; seed: an
    int, a numpy SeedSequence, or None for fresh entropy. Returns (ids (n,) int64, h_n (H,)
    or (L, H)).

    batch=B: B independent streams in the one call, first one id or (B,) ids, h (B, H) or
    (L, B, H), returns (ids (B, n), h_n (B, H) or (L, B, H)); stream b draws from the child
    ``SeedSequence(seed, spawn_key=(b,))``, as :meth:`ElmanRNN.sample` does (which says how
    far that matches a one-stream call). The C backend runs the whole loop in one call.
    """
    where = "model_sample"
    stack = check_stack(where, num_layers)
    params, I, H, O = check_model_params(where, params, (input_size, hidden_size, output_size),
                                         stack)
    n, first, temperature, B = check_sample_args(where, I, O, n, first, "first", temperature,
                                                 batch)
    L = stack.num_layers
    rows = () if B is None else (B,)
    shape = (*rows, H) if L == 1 else (L, *rows, H)
    if h is None:
        h = np.zeros(shape, params.dtype)
    else:
        # an array, as every float argument here; copied, since the result is returned
        h = float_array(h, "h", where=where, dtype=params.dtype, shape=shape,
                        finite=True).copy()
    choice(nonlinearity, "nonlinearity", tuple(NONLINEARITIES), where=where)
    state = check_seed(seed, where) if B is None else check_seeds(seed, where, B)
    ids, _ = current().model_sample(params, n, first, h, state, input_size=I, hidden_size=H,
                                    output_size=O, nonlinearity=nonlinearity,
                                    temperature=temperature, num_layers=L)
    return ids, h


class Arch(NamedTuple):
    """The stack as ElmanRNN held it before elman.layout.Stack: models pickled then name
    this class, so it stays for them to load (ElmanRNN.__setstate__ converts it to a Stack
    and the model's dropout_calls). Nothing else uses it."""
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    dropout_seed: int = 0
    dropout_batch: int = 0
    dropout_offset: int = 0
