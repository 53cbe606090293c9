"""NumPy implementation of every kernel: the specification, the parity oracle, and the
``"numpy"`` backend.

Each function here has the semantics of its C twin in ``csrc/`` (``elman.h`` states the
formulas) and the signature of its public wrapper in :mod:`elman.kernels`, which validates
arguments before calling either backend. These functions do not validate: call them through
:mod:`elman.kernels` (or with ``elman.backend("numpy")``) unless the inputs are known good.

Size letters: T steps, B batch, I input features (vocabulary for token ids), H hidden,
O outputs, N rows. Arrays are time-major: x (T, B, I), hidden states hs (T+1, B, H).

Arithmetic is done in the arrays' dtype in the order the C kernels use, so float64 results
agree to rounding and float32 results to a few ulps (see ``tests/tolerances.py``).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from ._validate import NonFiniteError

__all__ = [
    "adagrad_update", "proximal_adagrad_update", "rowwise_adagrad_update", "sgd_update", "sum_squares",
    "activation", "activation_backward",
    "rnn_forward", "rnn_backward", "RNNGrads",
    "linear_forward", "linear_backward",
    "softmax_cross_entropy", "mse_loss",
    "model_forward", "model_forward_backward", "model_sample", "param_layout", "param_views",
    "stream_probe", "splitmix64",
]


# ---- optimizers ---------------------------------------------------------------------------

def _transform_grad(grad, dtype, grad_scale, clip_value, maximize):
    """g = clip(grad * grad_scale, -clip_value, clip_value); g = -g if maximize."""
    g = grad * dtype.type(grad_scale)
    if clip_value is not None:
        c = dtype.type(clip_value)
        g = np.where(g > c, c, np.where(g < -c, -c, g))  # NaN passes through, as in C
    return -g if maximize else g


def adagrad_update(param, grad, state, *, lr, step, lr_decay=0.0, weight_decay=0.0,
                   eps=1e-10, eps_placement="outside", maximize=False, clip_value=None,
                   grad_scale=1.0):
    """Adagrad step in place on ``param`` and ``state`` (same shape and dtype as grad).

    Raises FloatingPointError, after updating, when ``grad`` held NaN or infinity.
    """
    dt = param.dtype
    bad = not np.isfinite(grad).all()
    g = _transform_grad(grad, dt, grad_scale, clip_value, maximize)
    if weight_decay != 0:
        g = g + dt.type(weight_decay) * param
    clr = dt.type(lr / (1.0 + (step - 1) * lr_decay))
    state += g * g
    if eps_placement == "inside":
        denom = np.sqrt(state + dt.type(eps))
    else:
        denom = np.sqrt(state) + dt.type(eps)
    with np.errstate(divide="ignore", invalid="ignore"):  # reported below, as C does
        param -= clr * g / denom
    if bad or not np.isfinite(param).all():
        raise NonFiniteError("adagrad_update: grad holds NaN or infinity, or the update made "
                             "a parameter non-finite (param and state were updated)")


def proximal_adagrad_update(param, grad, state, *, lr, l1=0.0, l2=0.0, grad_scale=1.0):
    """TensorFlow's ProximalAdagrad, in place (see elman.h for the formula)."""
    dt = param.dtype.type
    g = grad * dt(grad_scale)
    state += g * g
    v = param - dt(lr) * g * (dt(1) / np.sqrt(state))
    with np.errstate(invalid="ignore"):
        param[...] = (np.copysign(np.maximum(np.abs(v) - dt(lr) * dt(l1), dt(0)), v)
                      * (dt(1) / (dt(1) + dt(lr) * dt(l2))))
    if not (np.isfinite(grad).all() and np.isfinite(param).all()):
        raise NonFiniteError("proximal_adagrad_update: grad holds NaN or infinity, or the "
                             "update made a parameter non-finite (param and state were "
                             "updated)")


def rowwise_adagrad_update(param, grad, state, *, lr, eps=1e-10, grad_scale=1.0):
    """FBGEMM's row-wise Adagrad, in place: param and grad (rows, cols), state (rows,)."""
    dt = param.dtype.type
    g64 = grad.astype(np.float64) * float(dt(grad_scale))
    state += (np.sum(g64 * g64, axis=1) / grad.shape[1]).astype(param.dtype)
    k = dt(lr) * dt(grad_scale) / (np.sqrt(state) + dt(eps))
    param -= k[:, None] * grad
    if not (np.isfinite(grad).all() and np.isfinite(param).all()):
        raise NonFiniteError("rowwise_adagrad_update: grad holds NaN or infinity, or the "
                             "update made a parameter non-finite (param and state were "
                             "updated)")


def sgd_update(param, grad, momentum_buffer=None, *, lr, momentum=0.0, weight_decay=0.0,
               maximize=False, clip_value=None, grad_scale=1.0):
    """SGD step in place on ``param`` (and ``momentum_buffer`` when momentum != 0)."""
    dt = param.dtype
    bad = not np.isfinite(grad).all()
    g = _transform_grad(grad, dt, grad_scale, clip_value, maximize)
    if weight_decay != 0:
        g = g + dt.type(weight_decay) * param
    if momentum != 0:
        momentum_buffer *= dt.type(momentum)
        momentum_buffer += g
        g = momentum_buffer
    param -= dt.type(lr) * g
    if bad or not np.isfinite(param).all():
        raise NonFiniteError("sgd_update: grad holds NaN or infinity, or the update made a "
                             "parameter non-finite (param was updated)")


def sum_squares(x) -> float:
    """sum(x**2), accumulated in float64."""
    x64 = np.asarray(x, dtype=np.float64).reshape(-1)
    return float(np.dot(x64, x64))


# ---- activations --------------------------------------------------------------------------

def activation(a, nonlinearity="tanh"):
    """f(a): tanh, or relu (NaN stays NaN)."""
    if nonlinearity == "tanh":
        return np.tanh(a)
    return np.where(a < 0, a.dtype.type(0), a)


def activation_backward(dH, y, nonlinearity="tanh"):
    """dA = dH * f'(A) written through y = f(A): 1 - y**2 for tanh, [y > 0] for relu."""
    if nonlinearity == "tanh":
        return dH * (y.dtype.type(1) - y * y)
    return dH * (y > 0).astype(y.dtype)


# ---- Elman layer --------------------------------------------------------------------------

def _input_projection(x, W_xh):
    """X_t @ W_xh for every step: (T, B, H). Token ids (T, B) gather rows of W_xh."""
    if x.dtype.kind in "iu":
        return W_xh[x]
    return x @ W_xh


def rnn_forward(x, h0, W_xh, W_hh, b_h, *, nonlinearity="tanh"):
    """Elman layer over T steps.

    x: float (T, B, I) or int token ids (T, B); h0: (B, H); W_xh (I, H), W_hh (H, H), b_h (H,).
    Returns hs (T+1, B, H) with hs[0] = h0 and hs[t] = H_t = f(X_t W_xh + H_{t-1} W_hh + b_h).
    """
    T = x.shape[0]
    B, H = h0.shape
    hs = np.empty((T + 1, B, H), dtype=W_hh.dtype)
    hs[0] = h0
    A = _input_projection(x, W_xh) + b_h
    for t in range(1, T + 1):
        hs[t] = activation(A[t - 1] + hs[t - 1] @ W_hh, nonlinearity)
    return hs


class RNNGrads(NamedTuple):
    """Gradients of one Elman layer: dW_xh (I, H), dW_hh (H, H), db_h (H,), dh0 (B, H),
    dx (T, B, I) or None (token-id input, or not requested), dA (T, B, H)."""
    W_xh: np.ndarray
    W_hh: np.ndarray
    b_h: np.ndarray
    h0: np.ndarray
    x: Optional[np.ndarray]
    A: np.ndarray


def rnn_backward(dH, hs, x, W_xh, W_hh, *, nonlinearity="tanh", dh_T=None, need_dx=False):
    """Backprop through time for one Elman layer.

    dH (T, B, H): gradient wrt each H_t from above (not through the recurrence);
    hs (T+1, B, H) from rnn_forward; x as given to it; dh_T (B, H): extra gradient on H_T.
    Returns RNNGrads; every field is a new array.
    """
    T = dH.shape[0]
    dA = np.empty_like(dH)
    carry = np.zeros_like(hs[0]) if dh_T is None else dh_T.astype(dH.dtype, copy=True)
    for t in range(T, 0, -1):
        g = dH[t - 1] + carry  # dH_t + dA_{t+1} W_hh^T (+ dh_T at t = T)
        dA[t - 1] = activation_backward(g, hs[t], nonlinearity)
        carry = dA[t - 1] @ W_hh.T
    H = hs.shape[2]
    TB = dA.shape[0] * dA.shape[1]
    dA2 = dA.reshape(TB, H)
    dW_hh = hs[:-1].reshape(TB, H).T @ dA2
    if x.dtype.kind in "iu":
        dW_xh = np.zeros_like(W_xh)
        np.add.at(dW_xh, x.reshape(-1), dA2)
        dx = None
    else:
        dW_xh = x.reshape(TB, x.shape[-1]).T @ dA2
        dx = (dA2 @ W_xh.T).reshape(x.shape) if need_dx else None
    db_h = dA2.sum(axis=0)
    return RNNGrads(dW_xh, dW_hh, db_h, carry, dx, dA)  # carry = dA_1 W_hh^T = dh0


# ---- projection and losses ----------------------------------------------------------------

def linear_forward(X, W, b=None):
    """Y (N, O) = X (N, K) @ W (K, O) + b (O,)."""
    Y = X @ W
    return Y if b is None else Y + b


def linear_backward(dY, X, W, *, need_dX=True):
    """Returns dW (K, O) = X^T dY, db (O,) = sum_rows dY, dX (N, K) = dY W^T (or None)."""
    return X.T @ dY, dY.sum(axis=0), (dY @ W.T if need_dX else None)


def _reduction_scale(reduction, count):
    return 1.0 / count if reduction == "mean" else 1.0


def softmax_cross_entropy(logits, targets, *, reduction="mean"):
    """Softmax cross-entropy with integer targets.

    logits (N, O), targets (N,) in [0, O). Returns (loss, dlogits): loss a Python float,
    scale * sum_r (logsumexp(z_r) - z_r[y_r]); dlogits = scale * (softmax(z) - onehot(y));
    scale = 1/N for "mean", 1 for "sum".
    """
    N = logits.shape[0]
    scale = _reduction_scale(reduction, N)
    m = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - m)
    s = e.sum(axis=1, dtype=np.float64, keepdims=True)
    rows = np.arange(N)
    lse = m[:, 0].astype(np.float64) + np.log(s[:, 0])
    loss = float((lse - logits[rows, targets].astype(np.float64)).sum() * scale)
    d = e * (scale / s).astype(logits.dtype)
    d[rows, targets] -= logits.dtype.type(scale)
    return loss, d


def mse_loss(pred, target, *, reduction="mean"):
    """Mean squared error: returns (loss, dpred); loss = scale * sum (p - q)^2,
    dpred = 2 * scale * (p - q), scale = 1/pred.size for "mean", 1 for "sum"."""
    scale = _reduction_scale(reduction, pred.size)
    diff = pred - target
    d64 = diff.astype(np.float64)
    loss = float(np.dot(d64.reshape(-1), d64.reshape(-1)) * scale)
    return loss, pred.dtype.type(2 * scale) * diff


# ---- whole model --------------------------------------------------------------------------

def param_layout(input_size, hidden_size, output_size):
    """Names, shapes and offsets of the flat parameter buffer, in order:
    W_xh (I, H) | W_hh (H, H) | b_h (H,) | W_hy (H, O) | b_y (O,).
    Returns a list of (name, shape, offset) and the total size."""
    I, H, O = input_size, hidden_size, output_size
    layout, offset = [], 0
    for name, shape in (("W_xh", (I, H)), ("W_hh", (H, H)), ("b_h", (H,)),
                        ("W_hy", (H, O)), ("b_y", (O,))):
        layout.append((name, shape, offset))
        offset += int(np.prod(shape))
    return layout, offset


def param_views(flat, input_size, hidden_size, output_size):
    """Named views into a flat buffer laid out as :func:`param_layout` says."""
    layout, _ = param_layout(input_size, hidden_size, output_size)
    return {name: flat[off:off + int(np.prod(shape))].reshape(shape)
            for name, shape, off in layout}


def model_forward(params, x, h0, *, input_size, hidden_size, output_size,
                  nonlinearity="tanh"):
    """Outputs of every step. Returns (Y (T, B, O), hs (T+1, B, H))."""
    p = param_views(params, input_size, hidden_size, output_size)
    hs = rnn_forward(x, h0, p["W_xh"], p["W_hh"], p["b_h"], nonlinearity=nonlinearity)
    Y = hs[1:] @ p["W_hy"] + p["b_y"]
    return Y, hs


def model_forward_backward(params, grads, x, y, h0, *, input_size, hidden_size, output_size,
                           nonlinearity="tanh", loss="cross_entropy", reduction="mean",
                           last_step_only=False, dh0=None, dh_T=None):
    """Forward, loss, BPTT. Overwrites ``grads`` (flat, the layout of ``params``) and
    ``dh0`` (B, H) if given; ``dh_T`` (B, H), if given, is a gradient on the final state
    added to the loss's. Returns (loss, hs).

    y: int (T, B) classes for cross-entropy or float (T, B, O) for MSE; with
    last_step_only, (B,) or (B, O) for the final step alone.
    """
    I, H, O = input_size, hidden_size, output_size
    p = param_views(params, I, H, O)
    g = param_views(grads, I, H, O)
    hs = rnn_forward(x, h0, p["W_xh"], p["W_hh"], p["b_h"], nonlinearity=nonlinearity)
    T, B = hs.shape[0] - 1, hs.shape[1]
    Hy = hs[T] if last_step_only else hs[1:].reshape(T * B, H)
    Y = linear_forward(Hy, p["W_hy"], p["b_y"])
    if loss == "cross_entropy":
        value, dY = softmax_cross_entropy(Y, y.reshape(-1), reduction=reduction)
    else:
        value, dY = mse_loss(Y, y.reshape(Y.shape), reduction=reduction)
    if not np.isfinite(value):
        raise NonFiniteError(f"the loss is not finite ({value}); gradients were not computed")
    dW_hy, db_y, dHy = linear_backward(dY, Hy, p["W_hy"])
    dH = np.zeros((T, B, H), dtype=params.dtype)
    if last_step_only:
        dH[T - 1] = dHy
    else:
        dH[:] = dHy.reshape(T, B, H)
    r = rnn_backward(dH, hs, x, p["W_xh"], p["W_hh"], nonlinearity=nonlinearity, dh_T=dh_T)
    g["W_xh"][...] = r.W_xh
    g["W_hh"][...] = r.W_hh
    g["b_h"][...] = r.b_h
    g["W_hy"][...] = dW_hy
    g["b_y"][...] = db_y
    if dh0 is not None:
        dh0[...] = r.h0
    return value, hs


# ---- generation ---------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1


def splitmix64(state: int):
    """One step of the generator the C sampler uses. Returns (output, new state), both
    unsigned 64-bit integers."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31), state


def model_sample(params, n, first, h, rng_state, *, input_size, hidden_size, output_size,
                 nonlinearity="tanh", temperature=1.0):
    """Generate n token ids, feeding each back as the next input (O <= I).

    Each step: h = f(W_xh[id] + b_h + h @ W_hh); z = h @ W_hy + b_y; the next id is the
    argmax of z when temperature == 0, else the first j whose running sum of
    exp((z - max z) / temperature) exceeds u * (their total), u = (splitmix64 output >> 11)
    * 2**-53. h (H,) is updated in place. Returns (ids (n,) int64, new rng state).
    """
    p = param_views(params, input_size, hidden_size, output_size)
    dt = params.dtype
    kd = 1.0 / temperature if temperature > 0 else 0.0
    greedy = not (0 < kd <= np.finfo(dt).max)
    k = dt.type(kd)
    if not greedy and k < np.finfo(dt).tiny:  # 1/t underflowed: nearly uniform, as C
        k = np.finfo(dt).tiny
    out = np.empty(n, np.int64)
    idx = int(first)
    for i in range(n):
        a = (p["W_xh"][idx] + p["b_h"]) + h @ p["W_hh"]
        h[...] = activation(a, nonlinearity)
        z = p["b_y"] + h @ p["W_hy"]
        best = int(np.argmax(z))
        if not np.isfinite(z).all():
            raise NonFiniteError("the output distribution is not finite")
        if greedy:
            idx = best
        else:
            e = np.exp((z - z[best]) * k)
            total = float(np.sum(e, dtype=np.float64))
            if not 1 <= total < np.inf:
                raise NonFiniteError("the output distribution is not finite")
            bits, rng_state = splitmix64(rng_state)
            u = (bits >> 11) * 2.0**-53 * total
            run = np.cumsum(e, dtype=np.float64)
            hit = np.nonzero(u < run)[0]
            idx = int(hit[0]) if hit.size else best
        out[i] = idx
    return out, rng_state


def stream_probe(p, s, g):
    """The bandwidth probe's traffic, for parity: s += g, p -= g."""
    s += g
    p -= g
