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

The C backend (:mod:`elman._c_backend`) has these functions' signatures exactly; a few
keyword arguments exist for its sake (``out``, the buffers to write; ``workspace`` and
``mask``, buffers it keeps across calls) and are accepted here too. The place to learn an
algorithm is here: :func:`rnn_backward` is backprop through time in 40 lines.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validate import NonFiniteError
from .layout import RNNGrads, StackGrads, StackRun, param_layout, param_views, scored_rows, valid_steps
from .layout import layer_names as _layer_names
from .rng import dropout_keep, splitmix64

__all__ = [
    "adagrad_update", "adagrad_update_many", "adagrad_rows_update", "proximal_adagrad_update",
    "rowwise_adagrad_update", "sgd_update", "sum_squares",
    "activation", "activation_backward",
    "rnn_forward", "rnn_backward", "rnn_rforward", "RNNGrads",
    "stack_forward", "stack_backward",
    "linear_forward", "linear_backward",
    "softmax_cross_entropy", "mse_loss",
    "model_forward", "model_forward_backward", "model_train_step", "model_sample",
    "model_gauss_newton_prepare", "model_gauss_newton_product",
    "param_layout", "param_views",
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


def _every_update(where, updates):
    """Runs every update, even after one meets a NaN or infinity, then raises as one."""
    bad = False
    for update, args in updates:
        try:
            update(*args)
        except NonFiniteError:
            bad = True
    if bad:
        raise NonFiniteError(f"{where}: grad holds NaN or infinity, or the update made a "
                             f"parameter non-finite (param and state were updated)")


def adagrad_update_many(params, grads, states, *, lr, step, lr_decay=0.0, weight_decay=0.0,
                        eps=1e-10, maximize=False):
    """adagrad_update (eps outside, no clipping) over lists of buffers with one set of
    options, every buffer updated even when one meets a NaN or infinity, then raises."""
    def one(p, g, s):
        adagrad_update(p, g, s, lr=lr, step=step, lr_decay=lr_decay,
                       weight_decay=weight_decay, eps=eps, maximize=maximize)
    _every_update("adagrad_update_many", ((one, b) for b in zip(params, grads, states)))


def adagrad_rows_update(param, grad, state, ids, *, lr, step, lr_decay=0.0, weight_decay=0.0,
                        eps=1e-10, eps_placement="outside", maximize=False, clip_value=None,
                        grad_scale=1.0, mask=None):
    """adagrad_update on the rows ``ids`` of (V, H) buffers alone, each distinct row once;
    the other rows and their state are not touched. (mask: the C backend's workspace.)"""
    def one(r):
        adagrad_update(param[r], grad[r], state[r], lr=lr, step=step, lr_decay=lr_decay,
                       weight_decay=weight_decay, eps=eps, eps_placement=eps_placement,
                       maximize=maximize, clip_value=clip_value, grad_scale=grad_scale)
    _every_update("adagrad_rows_update", ((one, (r,)) for r in np.unique(ids)))


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


# ---- compute dtype: the bfloat16 rounding model ---------------------------------------------

def bf16_round(a):
    """float32 values rounded to the nearest bfloat16 (8-bit significand, ties to even),
    returned as float32; a NaN stays a NaN. The rounding every product operand gets when a
    model's compute dtype is bfloat16 (csrc/bf16.c)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    r = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
         & np.uint32(0xFFFF0000))
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    r = np.where(nan, (u & np.uint32(0xFFFF0000)) | np.uint32(0x00400000), r)
    return r.astype(np.uint32).view(np.float32).reshape(np.shape(a))


def _bf16_matmul(a, b):
    """a @ b with both operands rounded to bfloat16; the products (exact in float32) summed
    in float64 and the sum rounded to float32: the C kernel sums in float32, so the two
    differ by its accumulation's rounding alone."""
    return (bf16_round(a).astype(np.float64) @ bf16_round(b).astype(np.float64)).astype(
        np.float32)


def _matmul_of(compute_dtype):
    """The product a model's layers use: numpy's matmul, or the bfloat16 model."""
    return _bf16_matmul if compute_dtype == "bfloat16" else np.matmul


# ---- Elman layer --------------------------------------------------------------------------

def _input_projection(x, W_xh, mm=np.matmul):
    """X_t @ W_xh for every step: (T, B, H). Token ids (T, B) gather rows of W_xh."""
    if x.dtype.kind in "iu":
        return W_xh[x]
    return mm(x, W_xh)


def rnn_forward(x, h0, W_xh, W_hh, b_h, *, nonlinearity="tanh", reverse=False, lengths=None,
                out=None):
    """Elman layer over T steps.

    x: float (T, B, I) or int token ids (T, B); h0: (B, H); W_xh (I, H), W_hh (H, H), b_h (H,).
    Returns hs (T+1, B, H): forward, hs[0] = h0 and hs[t] = H_t = f(X_t W_xh + H_{t-1} W_hh
    + b_h); reverse, hs[T] = h0 and hs[t-1] = H_t = f(X_t W_xh + H_{t+1} W_hh + b_h), run
    from t = T down. lengths (B,), 1 <= lengths[b] <= T: a padded step keeps the state as it
    was, so that the forward's hs[T] is each sequence's state at its own length and the
    reverse starts each sequence from h0 at its own last step. Written into ``out``
    (T+1, B, H) when given. h0 None: zeros.
    """
    return _rnn_forward(x, h0, W_xh, W_hh, b_h, nonlinearity, reverse, lengths, out)


def _rnn_forward(x, h0, W_xh, W_hh, b_h, nonlinearity, reverse, lengths, out, mm=np.matmul):
    """rnn_forward with its products made by ``mm`` (the compute dtype's)."""
    T, B, H = x.shape[0], x.shape[1], W_hh.shape[0]
    hs = np.empty((T + 1, B, H), dtype=W_hh.dtype)
    hs[T if reverse else 0] = 0 if h0 is None else h0
    A = _input_projection(x, W_xh, mm) + b_h
    valid = valid_steps(lengths, T, B)
    for t in (range(T, 0, -1) if reverse else range(1, T + 1)):
        i, prev = (t - 1, t) if reverse else (t, t - 1)
        h = activation(A[t - 1] + mm(hs[prev], W_hh), nonlinearity)
        hs[i] = np.where(valid[t - 1][:, None], h, hs[prev])
    if out is not None:
        out[...] = hs
        return out
    return hs


def rnn_backward(dH, hs, x, W_xh, W_hh, *, nonlinearity="tanh", dh_T=None, need_dx=False,
                 reverse=False, lengths=None):
    """Backprop through time for one Elman layer.

    dH (T, B, H): gradient wrt each H_t from above (not through the recurrence);
    hs (T+1, B, H) from rnn_forward; x as given to it; dh_T (B, H): extra gradient on the
    final state. reverse, lengths: as given to rnn_forward; dH at padded steps is ignored.
    Returns RNNGrads; every field is a new array.
    """
    return _rnn_backward(dH, hs, x, W_xh, W_hh, nonlinearity, dh_T, need_dx, reverse, lengths)


def _rnn_backward(dH, hs, x, W_xh, W_hh, nonlinearity, dh_T, need_dx, reverse, lengths,
                  mm=np.matmul):
    """rnn_backward with its products made by ``mm`` (the compute dtype's)."""
    T, B = dH.shape[:2]
    H = hs.shape[2]
    dA = np.empty_like(dH)
    valid = valid_steps(lengths, T, B)
    lens = np.full(B, T) if lengths is None else np.asarray(lengths)
    outs = hs[:-1] if reverse else hs[1:]          # H_t of step t at outs[t-1]
    prevs = hs[1:] if reverse else hs[:-1]
    carry = np.zeros((B, H), dH.dtype)             # dA_next W_hh^T
    dh0 = np.zeros((B, H), dH.dtype)
    for t in (range(1, T + 1) if reverse else range(T, 0, -1)):
        g = np.where(valid[t - 1][:, None], dH[t - 1], 0)
        if dh_T is not None:  # where each sequence's final state was made
            final = np.full(B, t == 1) if reverse else (lens == t)
            g = g + np.where(final[:, None], dh_T, 0)
        g = g + carry
        dA[t - 1] = np.where(valid[t - 1][:, None],
                             activation_backward(g, outs[t - 1], nonlinearity), 0)
        carry = mm(dA[t - 1], W_hh.T)
        if reverse:  # the step that read h0: t = lengths[b] (T without lengths)
            dh0 = np.where((lens == t)[:, None], carry, dh0)
    if not reverse:
        dh0 = carry
    if T == 0:   # no steps: the final state is h0 itself
        dh0 = np.zeros((B, H), dH.dtype) if dh_T is None else np.array(dh_T, dH.dtype)
    TB = T * B
    dA2 = dA.reshape(TB, H)
    dW_hh = mm(prevs.reshape(TB, H).T, dA2)
    if x.dtype.kind in "iu":
        dW_xh = np.zeros_like(W_xh)
        np.add.at(dW_xh, x.reshape(-1), dA2)
        dx = None
    else:
        dW_xh = mm(x.reshape(TB, x.shape[-1]).T, dA2)
        dx = mm(dA2, W_xh.T).reshape(x.shape) if need_dx else None
    db_h = dA2.sum(axis=0)
    return RNNGrads(dW_xh, dW_hh, db_h, dh0, dx, dA)


def stack_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, directions=1,
                  nonlinearity="tanh", lengths=None, masks=None):
    """A torch.nn.RNN stack: L = len(w_ih) / D layers of D directions, in torch's layout.

    x (T, B, I); h0 (L*D, B, H); w_ih, w_hh, b_ih, b_hh: lists of L*D arrays, k = l*D + d,
    w_ih[k] (H, I_l) (I_0 = I, I_l = D*H), w_hh[k] (H, H), biases (H,) or None; masks
    (L-1, T, B, D*H) dropout scales applied to each layer's outputs before the next, or None.
    Direction 1 runs in reverse. Returns StackRun(out (T, B, D*H), h_n (L*D, B, H), saved)."""
    D = directions
    L = len(w_ih) // D
    H = w_hh[0].shape[0]
    inputs, hss, finals = [], [], []
    layer_in = x
    for l in range(L):
        outs = []
        for d in range(D):
            k = l * D + d
            b = np.zeros(H, w_hh[k].dtype) if b_ih is None else b_ih[k] + b_hh[k]
            hs = rnn_forward(layer_in, h0[k], w_ih[k].T, w_hh[k].T, b,
                             nonlinearity=nonlinearity, reverse=bool(d), lengths=lengths)
            hss.append(hs)
            outs.append(hs[:-1] if d else hs[1:])
            finals.append(hs[0] if d else hs[-1])
        inputs.append(layer_in)
        layer_in = np.concatenate(outs, axis=2)
        if masks is not None and l + 1 < L:
            layer_in = layer_in * masks[l]
    saved = (inputs, hss, w_ih, w_hh, D, nonlinearity, lengths, masks)
    return StackRun(layer_in, np.stack(finals), saved)


def stack_backward(saved, d_out=None, dh_n=None, *, need_dx=False):
    """The gradients of stack_forward's outputs: d_out (T, B, D*H) on out, dh_n (L*D, B, H)
    on h_n (None: zero). Returns StackGrads(w_ih, w_hh, b, h0, x)."""
    inputs, hss, w_ih, w_hh, D, nonlinearity, lengths, masks = saved
    L = len(w_ih) // D
    T, B, H = hss[0].shape[0] - 1, hss[0].shape[1], hss[0].shape[2]
    dt = hss[0].dtype
    dY = np.zeros((T, B, D * H), dt) if d_out is None else d_out
    dw_ih, dw_hh = [None] * (L * D), [None] * (L * D)
    db, dh0 = np.empty((L * D, H), dt), np.empty((L * D, B, H), dt)
    dx = None
    for l in range(L - 1, -1, -1):
        want = l > 0 or need_dx
        dX = 0
        for d in range(D):
            k = l * D + d
            g = rnn_backward(np.ascontiguousarray(dY[:, :, d * H:(d + 1) * H]), hss[k],
                             inputs[l], w_ih[k].T, w_hh[k].T, nonlinearity=nonlinearity,
                             dh_T=None if dh_n is None else dh_n[k], need_dx=want,
                             reverse=bool(d), lengths=lengths)
            dw_ih[k], dw_hh[k], db[k], dh0[k] = g.W_xh.T.copy(), g.W_hh.T.copy(), g.b_h, g.h0
            if want:
                dX = dX + g.x
        if l > 0:
            dY = dX * masks[l - 1] if masks is not None else dX
        elif need_dx:
            dx = dX
    return StackGrads(dw_ih, dw_hh, db, dh0, dx)


def rnn_rforward(hs, x, W_xh, W_hh, V_xh, V_hh, v_b, *, Rx=None, nonlinearity="tanh",
                 reverse=False, lengths=None):
    """The forward pass of the R-operator: the derivative of every state along a direction
    V = (V_xh, V_hh, v_b) of the layer's parameters (Pearlmutter's R{.}):

        R{A_t} = R{X_t} @ W_xh + X_t @ V_xh + R{H_{t-1}} @ W_hh + H_{t-1} @ V_hh + v_b
        R{H_t} = f'(A_t) * R{A_t},   R{h0} = 0

    hs (T+1, B, H) from rnn_forward at (W_xh, W_hh) with the same x, reverse and lengths
    (a padded step carries R{H} as it carries H); Rx (T, B, I) or None: the derivative of a
    dense input (a layer above the first). Returns Rhs (T+1, B, H), laid out as hs (zero
    where hs holds h0).
    """
    T, B = x.shape[0], x.shape[1]
    Rhs = np.zeros_like(hs)
    RA = _input_projection(x, V_xh) + v_b
    if Rx is not None:
        RA = RA + Rx @ W_xh
    outs, prevs = (hs[:-1], hs[1:]) if reverse else (hs[1:], hs[:-1])
    RA = RA + prevs @ V_hh
    valid = valid_steps(lengths, T, B)
    for t in (range(T, 0, -1) if reverse else range(1, T + 1)):
        i, prev = (t - 1, t) if reverse else (t, t - 1)
        r = activation_backward(RA[t - 1] + Rhs[prev] @ W_hh, outs[t - 1], nonlinearity)
        Rhs[i] = np.where(valid[t - 1][:, None], r, Rhs[prev])
    return Rhs


# ---- projection and losses ----------------------------------------------------------------

def linear_forward(X, W, b=None):
    """Y (N, O) = X (N, K) @ W (K, O) + b (O,)."""
    return _linear_forward(X, W, b)


def _linear_forward(X, W, b, mm=np.matmul):
    Y = mm(X, W)
    return Y if b is None else Y + b


def linear_backward(dY, X, W, *, need_dX=True):
    """Returns dW (K, O) = X^T dY, db (O,) = sum_rows dY, dX (N, K) = dY W^T (or None)."""
    return _linear_backward(dY, X, W, need_dX)


def _linear_backward(dY, X, W, need_dX, mm=np.matmul):
    return mm(X.T, dY), dY.sum(axis=0), (mm(dY, W.T) if need_dX else None)


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

def _dropout(a, layer, seed, p, lanes=(0, 0)):
    """a * keep / (1 - p), a (T, B, D*H); lanes = (the batch's lanes or 0, this call's
    first lane in it), numbering the elements as elman.h says."""
    T, B, DH = a.shape
    Bg = lanes[0] or B
    t, b, j = np.meshgrid(np.arange(T), np.arange(B), np.arange(DH), indexing="ij")
    index = (t * Bg + lanes[1] + b) * DH + j
    keep = dropout_keep(a.size, layer, seed, p, index.reshape(-1)).reshape(a.shape)
    return np.where(keep, a * a.dtype.type(1.0 / (1.0 - p)), a.dtype.type(0))


class _Arch(NamedTuple):
    I: int
    H: int
    O: int
    L: int
    D: int
    nl: str


def _layers_forward(p, x, h0, arch, lengths, dropout, seed, train, lanes=(0, 0),
                    mm=np.matmul):
    """Every layer; returns (hs (L*D, T+1, B, H), inputs of each layer, top (T, B, D*H))."""
    I, H, O, L, D, nl = arch
    hs, inputs = [], []
    inp = x
    for l in range(L):
        inputs.append(inp)
        outs = []
        for d in range(D):
            nx, nh, nb = _layer_names(l, d)
            k = l * D + d
            s = _rnn_forward(inp, h0[k], p[nx], p[nh], p[nb], nl, bool(d), lengths, None, mm)
            hs.append(s)
            outs.append(s[:-1] if d else s[1:])
        inp = np.concatenate(outs, axis=2) if D > 1 else outs[0]
        if train and dropout > 0 and l + 1 < L:
            inp = _dropout(inp, l, seed, dropout, lanes)
    return np.stack(hs), inputs, inp


def _state(h0, arch, B, dtype):
    """Initial states (L*D, B, H); (B, H) is accepted for one layer, one direction."""
    n = arch.L * arch.D
    if h0 is None:
        return np.zeros((n, B, arch.H), dtype)
    return np.asarray(h0).reshape(n, B, arch.H)


def model_forward(params, x, h0, *, input_size, hidden_size, output_size,
                  nonlinearity="tanh", num_layers=1, bidirectional=False, lengths=None,
                  compute_dtype="float32", workspace=None):
    """Outputs of every step (no dropout: this is inference). h0 (L*D, B, H) or (B, H) for
    one layer. Returns (Y (T, B, O), hs (L*D, T+1, B, H); (T+1, B, H) for one layer, one
    direction). With lengths, Y is zero at padded steps. compute_dtype "bfloat16": every
    product's operands rounded by :func:`bf16_round` (float32 parameters only)."""
    mm = _matmul_of(compute_dtype)
    arch = _Arch(input_size, hidden_size, output_size, num_layers, 2 if bidirectional else 1,
                 nonlinearity)
    p = param_views(params, input_size, hidden_size, output_size, num_layers, bidirectional)
    T, B = x.shape[:2]
    hs, _, top = _layers_forward(p, x, _state(h0, arch, B, params.dtype), arch, lengths, 0.0,
                                 0, False, mm=mm)
    Y = mm(top, p["W_hy"]) + p["b_y"]
    if lengths is not None:
        Y = np.where(valid_steps(lengths, T, B)[..., None], Y, Y.dtype.type(0))
    return Y, (hs[0] if arch.L * arch.D == 1 else hs)


def _model_backward(p, g, dY, Hy, rows, hs, inputs, arch, lengths, dropout, seed, lanes,
                    dh0=None, dh_T=None, Rhs=None, coef=0.0, mm=np.matmul):
    """From dY, the gradient on the scored outputs Y = Hy @ W_hy + b_y at ``rows`` of the
    top layer's (T, B, D*H) outputs, down to every parameter (into the views ``g``) and h0
    (dh0). With Rhs, coef * Rhs[k] joins the gradient arriving on slab k's outputs (the
    structural damping of Gauss-Newton products)."""
    I, H, O, L, D, nl = arch
    T, B = hs.shape[1] - 1, hs.shape[2]
    dW_hy, db_y, dHy = _linear_backward(dY, Hy, p["W_hy"], True, mm)
    g["W_hy"][...] = dW_hy
    g["b_y"][...] = db_y
    dtop = np.zeros((T, B, D * H), dtype=dY.dtype)
    dtop[rows] = dHy
    dh_T = None if dh_T is None else np.asarray(dh_T).reshape(L * D, B, H)
    for l in range(L - 1, -1, -1):
        dX = None
        for d in range(D):
            k = l * D + d
            nx, nh, nb = _layer_names(l, d)
            dH = dtop[..., d * H:(d + 1) * H]
            if Rhs is not None:
                dH = dH + dY.dtype.type(coef) * (Rhs[k][:-1] if d else Rhs[k][1:])
            r = _rnn_backward(dH, hs[k], inputs[l], p[nx], p[nh], nl,
                              None if dh_T is None else dh_T[k], False, bool(d), lengths, mm)
            g[nx][...], g[nh][...], g[nb][...] = r.W_xh, r.W_hh, r.b_h
            if dh0 is not None:
                dh0.reshape(L * D, B, H)[k] = r.h0
            if l > 0:
                part = mm(r.A, p[nx].T)
                dX = part if dX is None else dX + part
        if l > 0:
            if dropout > 0:
                dX = _dropout(dX, l - 1, seed, dropout, lanes)
            dtop = dX


def _loss_and_grads(params, grads, x, y, h0, *, input_size, hidden_size, output_size,
                    nonlinearity, loss, reduction, last_step_only, num_layers, bidirectional,
                    dropout, dropout_seed, lengths, dropout_lanes, dh0=None, dh_T=None,
                    compute_dtype="float32"):
    """model_forward_backward's work; (loss, None) when the loss is not finite (grads
    then untouched)."""
    I, H, O = input_size, hidden_size, output_size
    mm = _matmul_of(compute_dtype)
    arch = _Arch(I, H, O, num_layers, 2 if bidirectional else 1, nonlinearity)
    L, D = arch.L, arch.D
    p = param_views(params, I, H, O, L, bidirectional)
    g = param_views(grads, I, H, O, L, bidirectional)
    T, B = x.shape[:2]
    hs, inputs, top = _layers_forward(p, x, _state(h0, arch, B, params.dtype), arch, lengths,
                                      dropout, dropout_seed, True, dropout_lanes, mm=mm)
    rows = scored_rows(lengths, last_step_only, T, B)
    yy = y if last_step_only else y[rows]
    Hy = top[rows]
    Y = _linear_forward(Hy, p["W_hy"], p["b_y"], mm)
    if loss == "cross_entropy":
        value, dY = softmax_cross_entropy(Y, yy.reshape(-1), reduction=reduction)
    else:
        value, dY = mse_loss(Y, yy.reshape(Y.shape), reduction=reduction)
    if not np.isfinite(value):
        return value, None
    _model_backward(p, g, dY, Hy, rows, hs, inputs, arch, lengths, dropout, dropout_seed,
                    dropout_lanes, dh0=dh0, dh_T=dh_T, mm=mm)
    return value, (hs[0] if L * D == 1 else hs)


def model_forward_backward(params, grads, x, y, h0, *, input_size, hidden_size, output_size,
                           nonlinearity="tanh", loss="cross_entropy", reduction="mean",
                           last_step_only=False, dh0=None, dh_T=None, num_layers=1,
                           bidirectional=False, dropout=0.0, dropout_seed=0, lengths=None,
                           dropout_lanes=(0, 0), compute_dtype="float32", workspace=None):
    """Forward, loss, BPTT. Overwrites ``grads`` (flat, the layout of ``params``) and
    ``dh0`` (L*D, B, H) if given; ``dh_T`` (L*D, B, H), if given, is a gradient on the final
    states added to the loss's. Returns (loss, hs) (hs as model_forward's).

    y: int (T, B) classes for cross-entropy or float (T, B, O) for MSE; with
    last_step_only, (B,) or (B, O) for the final step alone (each sequence's own last step
    with lengths). With lengths, padded steps give no loss and "mean" averages over the
    valid ones. dropout applies between layers, with masks from dropout_seed.
    compute_dtype "bfloat16": the products in the bfloat16 rounding model (model_forward).
    """
    value, hs = _loss_and_grads(
        params, grads, x, y, h0, input_size=input_size, hidden_size=hidden_size,
        output_size=output_size, nonlinearity=nonlinearity, loss=loss, reduction=reduction,
        last_step_only=last_step_only, dh0=dh0, dh_T=dh_T, num_layers=num_layers,
        bidirectional=bidirectional, dropout=dropout, dropout_seed=dropout_seed,
        lengths=lengths, dropout_lanes=dropout_lanes, compute_dtype=compute_dtype)
    if hs is None:
        raise NonFiniteError(f"the loss is not finite ({value}); gradients were not computed")
    return value, hs


def model_gauss_newton_prepare(params, x, h0, *, input_size, hidden_size, output_size,
                               nonlinearity="tanh", loss="cross_entropy", last_step_only=False,
                               num_layers=1, bidirectional=False, dropout=0.0, dropout_seed=0,
                               lengths=None, dropout_lanes=(0, 0), workspace=None):
    """The forward at ``params`` that Gauss-Newton products reuse (dropout, if any, with the
    masks of dropout_seed, as model_forward_backward's). Returns the cache that
    model_gauss_newton_product reads: the states, each layer's input, the scored rows Hy
    and P, their softmax (cross-entropy) or the predictions (MSE), (N, O)."""
    I, H, O = input_size, hidden_size, output_size
    arch = _Arch(I, H, O, num_layers, 2 if bidirectional else 1, nonlinearity)
    p = param_views(params, I, H, O, num_layers, bidirectional)
    T, B = x.shape[:2]
    hs, inputs, top = _layers_forward(p, x, _state(h0, arch, B, params.dtype), arch, lengths,
                                      dropout, dropout_seed, True, dropout_lanes)
    rows = scored_rows(lengths, last_step_only, T, B)
    Hy = top[rows]
    P = linear_forward(Hy, p["W_hy"], p["b_y"])
    if not np.isfinite(P).all():
        raise NonFiniteError("the outputs are not finite; no Gauss-Newton product exists")
    if loss == "cross_entropy":
        e = np.exp(P - P.max(axis=1, keepdims=True))
        P = e * (1.0 / e.sum(axis=1, dtype=np.float64, keepdims=True)).astype(P.dtype)
    return dict(x=x, arch=arch, lengths=lengths, loss=loss, rows=rows, hs=hs, inputs=inputs,
                Hy=Hy, P=P, dropout=(dropout, dropout_seed, dropout_lanes),
                bidirectional=bidirectional)


def model_gauss_newton_product(params, v, cache, *, reduction="mean", damping=0.0,
                               structural_damping=0.0, out=None):
    """(G + damping I + damping * structural_damping * c G_S) v for the prepared forward.

    G = J^T H_L J: J the Jacobian of the scored outputs (logits, or the MSE predictions)
    with respect to the flat parameters, H_L the Hessian of the loss with respect to them,
    scaled as ``reduction`` scales the loss: per row diag(p) - p p^T (softmax p) for
    cross-entropy, 2 I for MSE, times 1/N (1/(N*O) for MSE) under "mean". G_S = J_H^T J_H,
    J_H the Jacobian of the hidden states of every layer and direction at the valid steps
    (the Gauss-Newton matrix of 1/2 sum |H(params + v) - H(params)|^2), c = 1/(valid steps)
    under "mean", 1 under "sum". Computed as R{Y} by the R-operator's forward
    (rnn_rforward), then H_L R{Y}, then backprop through time. Returns the flat (n,)
    product (written into ``out`` if given).
    """
    arch, lengths, x = cache["arch"], cache["lengths"], cache["x"]
    I, H, O, L, D, nl = arch
    bidirectional = cache["bidirectional"]
    dropout, seed, lanes = cache["dropout"]
    p = param_views(params, I, H, O, L, bidirectional)
    q = param_views(v, I, H, O, L, bidirectional)
    hs, inputs, rows = cache["hs"], cache["inputs"], cache["rows"]
    T, B = x.shape[:2]
    Rhs, Rin = [], None
    for l in range(L):
        outs = []
        for d in range(D):
            k = l * D + d
            nx, nh, nb = _layer_names(l, d)
            r = rnn_rforward(hs[k], inputs[l], p[nx], p[nh], q[nx], q[nh], q[nb], Rx=Rin,
                             nonlinearity=nl, reverse=bool(d), lengths=lengths)
            Rhs.append(r)
            outs.append(r[:-1] if d else r[1:])
        Rin = np.concatenate(outs, axis=2) if D > 1 else outs[0]
        if dropout > 0 and l + 1 < L:
            Rin = _dropout(Rin, l, seed, dropout, lanes)
    Rhs = np.stack(Rhs)
    Hy, P = cache["Hy"], cache["P"]
    RY = Rin[rows] @ p["W_hy"] + q["b_y"] + Hy @ q["W_hy"]
    N = RY.shape[0]
    mean = reduction == "mean"
    if cache["loss"] == "cross_entropy":
        pr = np.sum(P.astype(np.float64) * RY, axis=1, keepdims=True).astype(RY.dtype)
        dY = RY.dtype.type(1.0 / N if mean else 1.0) * P * (RY - pr)
    else:
        dY = RY.dtype.type(2.0 / (N * O) if mean else 2.0) * RY
    coef = float(damping) * float(structural_damping)
    if coef > 0 and mean:
        coef /= float(np.sum(lengths)) if lengths is not None else float(T * B)
    Gv = np.empty_like(params) if out is None else out
    g = param_views(Gv, I, H, O, L, bidirectional)
    _model_backward(p, g, dY, Hy, rows, hs, inputs, arch, lengths, dropout, seed, lanes,
                    Rhs=Rhs if coef > 0 else None, coef=coef)
    if damping > 0:
        Gv += Gv.dtype.type(damping) * v
    return Gv


def model_train_step(params, grads, state, x, y, h0, *, input_size, hidden_size,
                     output_size, nonlinearity="tanh", loss="cross_entropy", reduction="mean",
                     last_step_only=False, num_layers=1, bidirectional=False, dropout=0.0,
                     dropout_seed=0, lengths=None, dropout_lanes=(0, 0), optimizer="adagrad",
                     lr, step, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                     eps_placement="outside", maximize=False, clip_value=None, momentum=0.0,
                     max_grad_norm=None, compute_dtype="float32", workspace=None):
    """A whole training step: model_forward_backward, global-norm clipping (torch's
    clip_grad_norm_: coefficient min(1, max_grad_norm / (norm + 1e-6))) and the update of
    ``optimizer`` ("adagrad", whose accumulator is ``state``, or "sgd", whose momentum
    buffer it is, None without momentum), at step count ``step``. Returns (loss, gradient
    norm or None without max_grad_norm, stage, hs): stage 0 when all was finite, else the
    first stage that was not (1 the loss: nothing computed; 2 the gradient norm: nothing
    updated; 3 the update: it was applied), as the C kernel reports it."""
    value, hs = _loss_and_grads(
        params, grads, x, y, h0, input_size=input_size, hidden_size=hidden_size,
        output_size=output_size, nonlinearity=nonlinearity, loss=loss, reduction=reduction,
        last_step_only=last_step_only, num_layers=num_layers, bidirectional=bidirectional,
        dropout=dropout, dropout_seed=dropout_seed, lengths=lengths,
        dropout_lanes=dropout_lanes, compute_dtype=compute_dtype)
    if hs is None:
        return value, None, 1, None
    norm, scale = None, 1.0
    if max_grad_norm is not None:
        norm = float(np.sqrt(sum_squares(grads)))
        if not np.isfinite(norm):
            return value, norm, 2, hs
        scale = min(1.0, max_grad_norm / (norm + 1e-6))
    try:
        if optimizer == "adagrad":
            adagrad_update(params, grads, state, lr=lr, step=step, lr_decay=lr_decay,
                           weight_decay=weight_decay, eps=eps, eps_placement=eps_placement,
                           maximize=maximize, clip_value=clip_value, grad_scale=scale)
        else:
            sgd_update(params, grads, state, lr=lr, momentum=momentum,
                       weight_decay=weight_decay, maximize=maximize, clip_value=clip_value,
                       grad_scale=scale)
    except NonFiniteError:
        return value, norm, 3, hs
    return value, norm, 0, hs


# ---- generation ---------------------------------------------------------------------------

def model_sample(params, n, first, h, rng_state, *, input_size, hidden_size, output_size,
                 nonlinearity="tanh", temperature=1.0, num_layers=1, workspace=None):
    """Generate n token ids, feeding each back as the next input (O <= I), in one stream or
    in B independent ones.

    Each step: h = f(W_xh[id] + b_h + h @ W_hh); z = h @ W_hy + b_y; the next id is the
    argmax of z when temperature == 0, else the first j whose running sum of
    exp((z - max z) / temperature) exceeds u * (their total), u = (splitmix64 output >> 11)
    * 2**-53. With num_layers = L, layer l reads layer l-1's new state: h_l = f(h_{l-1} @
    W_xh_l + b_h_l + h_l @ W_hh_l); z is made from the last.

    One stream: first an int, rng_state an int, h (L, H) (or (H,)) updated in place;
    returns (ids (n,) int64, new rng state). B streams: first (B,) ints, rng_state (B,)
    uint64 (advanced in place), h (L, B, H) updated in place, row b of every array stream
    b's; returns (ids (B, n) int64, rng_state).
    """
    p = param_views(params, input_size, hidden_size, output_size, num_layers)
    single = np.ndim(first) == 0
    idx = np.atleast_1d(np.asarray(first, np.int64)).copy()
    B = idx.shape[0]
    states = [int(rng_state)] if single else [int(r) for r in rng_state]
    hl = h.reshape(num_layers, B, hidden_size)
    dt = params.dtype
    kd = 1.0 / temperature if temperature > 0 else 0.0
    greedy = not (0 < kd <= np.finfo(dt).max)
    k = dt.type(kd)
    if not greedy and k < np.finfo(dt).tiny:  # 1/t underflowed: nearly uniform, as C
        k = np.finfo(dt).tiny
    out = np.empty((B, n), np.int64)
    for i in range(n):
        for l in range(num_layers):
            nx, nh, nb = _layer_names(l, 0)
            a = p[nx][idx] + p[nb] if l == 0 else p[nb] + hl[l - 1] @ p[nx]
            hl[l] = activation(a + hl[l] @ p[nh], nonlinearity)
        Z = p["b_y"] + hl[-1] @ p["W_hy"]
        for b, z in enumerate(Z):
            best = int(np.argmax(z))
            if not np.isfinite(z).all():
                raise NonFiniteError("the output distribution is not finite")
            if greedy:
                idx[b] = best
                continue
            e = np.exp((z - z[best]) * k)
            total = float(np.sum(e, dtype=np.float64))
            if not 1 <= total < np.inf:
                raise NonFiniteError("the output distribution is not finite")
            bits, states[b] = splitmix64(states[b])
            u = (bits >> 11) * 2.0**-53 * total
            run = np.cumsum(e, dtype=np.float64)
            hit = np.nonzero(u < run)[0]
            idx[b] = int(hit[0]) if hit.size else best
        out[:, i] = idx
    if single:
        return out[0], states[0]
    rng_state[:] = np.array(states, np.uint64)
    return out, rng_state


def stream_probe(p, s, g):
    """The bandwidth probe's traffic, for parity: s += g, p -= g."""
    s += g
    p -= g
