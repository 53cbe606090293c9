"""The ``"c"`` backend: the compiled kernels behind the signatures of :mod:`elman.reference`.

Every function here takes and returns what its twin in ``elman.reference`` does (shaped
arrays, string options, the same return values and exceptions), so that a caller picks one
module, ``elman._dispatch.current()``, and calls it the same way either way. Each
function's documentation is its twin's in the reference. What this module
owns, and nothing else does:

- the flat views the binding (``_core``) takes, with explicit sizes (every layer takes an
  optimizer's buffers in one order, (param, grad, state), as PyTorch does);
- the string-to-code translation of options, from the enums C declares (``_core.pxd``);
- keeping the BLAS on one thread while a kernel runs (``_threads.one_blas_thread``): elman's
  own OpenMP threads share the cores out, one BLAS call per thread;
- turning the binding's FloatingPointError into :class:`elman.NonFiniteError` with the
  reference's message.

Like the reference, nothing here validates beyond what keeps the process safe (the binding
checks every buffer's size): call it through :mod:`elman.kernels`, the model and the
optimizers, which validate first. A few keyword arguments exist for this backend's sake and
are accepted by the reference too: ``out`` (both write into it) and ``workspace`` and
``mask`` (buffers kept across calls, which the reference ignores).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import _core, _threads, _workspace
from ._validate import NonFiniteError
from .layout import RNNGrads, StackGrads, StackRun

NONLINEARITIES = {"tanh": int(_core.elman_nonlinearity.ELMAN_TANH),
                  "relu": int(_core.elman_nonlinearity.ELMAN_RELU)}
LOSSES = {"cross_entropy": int(_core.elman_loss.ELMAN_LOSS_XENT),
          "mse": int(_core.elman_loss.ELMAN_LOSS_MSE)}
REDUCTIONS = {"mean": int(_core.elman_reduction.ELMAN_REDUCE_MEAN),
              "sum": int(_core.elman_reduction.ELMAN_REDUCE_SUM)}

_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32),
          np.dtype(np.float64): np.empty(0, np.float64)}
_NO_IDS = np.empty(0, np.int64)
_UPDATED = {True: "param and state were updated", False: "param was updated"}


def _empty(dtype):
    """The empty array that stands for an absent buffer of this dtype (a numpy dtype)."""
    return _EMPTY[dtype]


def _non_finite(where, state=True):
    return NonFiniteError(f"{where}: grad holds NaN or infinity, or the update made a "
                          f"parameter non-finite ({_UPDATED[state]})")


def _clip(clip_value):
    return math.inf if clip_value is None else clip_value


# ---- optimizers ---------------------------------------------------------------------------

def adagrad_update(param, grad, state, *, lr, step, lr_decay=0.0, weight_decay=0.0,
                   eps=1e-10, eps_placement="outside", maximize=False, clip_value=None,
                   grad_scale=1.0):
    try:
        _core.adagrad_update(param.reshape(-1), grad.reshape(-1), state.reshape(-1), lr,
                             lr_decay, weight_decay, eps, _clip(clip_value), grad_scale, step,
                             eps_placement == "inside", maximize)
    except FloatingPointError:
        raise _non_finite("adagrad_update") from None


def adagrad_update_many(params, grads, states, *, lr, step, lr_decay=0.0, weight_decay=0.0,
                        eps=1e-10, maximize=False):
    if _core.adagrad_update_many(params, grads, states,
                                 bool(params) and params[0].dtype == np.float64, lr=lr,
                                 lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                                 step=step, maximize=maximize):
        raise _non_finite("adagrad_update_many")


def adagrad_rows_update(param, grad, state, ids, *, lr, step, lr_decay=0.0, weight_decay=0.0,
                        eps=1e-10, eps_placement="outside", maximize=False, clip_value=None,
                        grad_scale=1.0, mask=None):
    V, H = param.shape
    if mask is None:
        mask = np.zeros(V, np.uint8)
    try:
        _core.adagrad_rows_update(param.reshape(-1), grad.reshape(-1), state.reshape(-1), ids,
                                  mask, V, H, lr, lr_decay, weight_decay, eps,
                                  _clip(clip_value), grad_scale, step,
                                  eps_placement == "inside", maximize)
    except FloatingPointError:
        raise _non_finite("adagrad_rows_update") from None


def proximal_adagrad_update(param, grad, state, *, lr, l1=0.0, l2=0.0, grad_scale=1.0):
    try:
        _core.proximal_adagrad_update(param.reshape(-1), grad.reshape(-1), state.reshape(-1),
                                      lr, l1, l2, grad_scale)
    except FloatingPointError:
        raise _non_finite("proximal_adagrad_update") from None


def rowwise_adagrad_update(param, grad, state, *, lr, eps=1e-10, grad_scale=1.0):
    try:
        _core.rowwise_adagrad_update(param.reshape(-1), grad.reshape(-1), state,
                                     param.shape[0], param.shape[1], lr, eps, grad_scale)
    except FloatingPointError:
        raise _non_finite("rowwise_adagrad_update") from None


def sgd_update(param, grad, momentum_buffer=None, *, lr, momentum=0.0, weight_decay=0.0,
               maximize=False, clip_value=None, grad_scale=1.0):
    buf = _empty(param.dtype) if momentum_buffer is None else momentum_buffer.reshape(-1)
    try:
        _core.sgd_update(param.reshape(-1), grad.reshape(-1), buf, lr, momentum, weight_decay,
                         _clip(clip_value), grad_scale, maximize)
    except FloatingPointError:
        raise _non_finite("sgd_update", state=False) from None


def sum_squares(x) -> float:
    return _core.sumsq(x.reshape(-1))


# ---- activations --------------------------------------------------------------------------

def activation(a, nonlinearity="tanh"):
    y = np.empty_like(a)
    _core.act_forward(y.reshape(-1), a.reshape(-1), NONLINEARITIES[nonlinearity])
    return y


def activation_backward(dH, y, nonlinearity="tanh"):
    dA = np.empty_like(y)
    _core.act_backward(dA.reshape(-1), dH.reshape(-1), y.reshape(-1),
                       NONLINEARITIES[nonlinearity])
    return dA


# ---- Elman layer --------------------------------------------------------------------------

def _inputs(x, dtype):
    """(dense x or empty, ids or empty, is_ids) of a layer's or model's input."""
    if x.dtype.kind == "f":
        return x.reshape(-1), _NO_IDS, False
    return _empty(dtype), x.reshape(-1), True


def _lengths(lengths):
    return _NO_IDS if lengths is None else lengths


def rnn_forward(x, h0, W_xh, W_hh, b_h, *, nonlinearity="tanh", reverse=False, lengths=None,
                out=None):
    (I, H), dt = W_xh.shape, W_hh.dtype
    T, B = x.shape[0], x.shape[1]
    if out is None:
        out = np.empty((T + 1, B, H), dt)
    out[T if reverse else 0] = 0 if h0 is None else h0
    xf, ids, is_ids = _inputs(x, dt)
    with _threads.one_blas_thread():
        _core.rnn_forward(out.reshape(-1), xf, ids, W_xh.reshape(-1), W_hh.reshape(-1), b_h,
                          T, B, I, H, NONLINEARITIES[nonlinearity], is_ids, _lengths(lengths),
                          bool(reverse))
    return out


def rnn_backward(dH, hs, x, W_xh, W_hh, *, nonlinearity="tanh", dh_T=None, need_dx=False,
                 reverse=False, lengths=None):
    (T, B, H), (I, dt) = dH.shape, (W_xh.shape[0], W_hh.dtype)
    xf, ids, is_ids = _inputs(x, dt)
    dx = np.empty((T, B, I), dt) if need_dx and not is_ids else None
    g = RNNGrads(np.empty_like(W_xh), np.empty_like(W_hh), np.empty(H, dt),
                 np.empty((B, H), dt), dx, np.empty((T, B, H), dt))
    e = _empty(dt)
    with _threads.one_blas_thread():
        _core.rnn_backward(g.W_xh.reshape(-1), g.W_hh.reshape(-1), g.b_h, g.h0.reshape(-1),
                           e if g.x is None else g.x.reshape(-1), g.A.reshape(-1),
                           dH.reshape(-1), e if dh_T is None else dh_T.reshape(-1),
                           hs.reshape(-1), xf, ids, W_xh.reshape(-1), W_hh.reshape(-1), T, B,
                           I, H, NONLINEARITIES[nonlinearity], is_ids, _lengths(lengths),
                           bool(reverse))
    return g


class _StackSaved(NamedTuple):
    """What the C stack's backward reads: the forward's buffers and arguments."""
    wt: np.ndarray
    hs: np.ndarray
    ys: np.ndarray
    x: np.ndarray
    masks: np.ndarray
    sizes: tuple        # (T, B, I, H, L, D)
    work: int
    nonlinearity: int
    lengths: object


def _flat(arrays):
    return [a.reshape(-1) for a in arrays]


def stack_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, directions=1,
                  nonlinearity="tanh", lengths=None, masks=None):
    (T, B, I), D, dt = x.shape, directions, w_hh[0].dtype
    L, H = len(w_ih) // D, w_hh[0].shape[0]
    nw, nh, ny, nk = _core.stack_sizes(T, B, I, H, L, D)
    wt, hs = np.empty(nw, dt), np.empty((L * D, T + 1, B, H), dt)
    ys, h_n = np.empty(ny, dt), np.empty((L * D, B, H), dt)
    out = np.empty((T, B, D * H), dt) if D == 2 else _empty(dt)
    x = np.ascontiguousarray(x)
    m = _empty(dt) if masks is None else np.ascontiguousarray(masks).reshape(-1)
    code = NONLINEARITIES[nonlinearity]
    with _threads.one_blas_thread():
        _core.stack_forward(wt, hs.reshape(-1), ys, out.reshape(-1), h_n.reshape(-1),
                            x.reshape(-1), np.ascontiguousarray(h0).reshape(-1), _flat(w_ih),
                            _flat(w_hh), [] if b_ih is None else _flat(b_ih),
                            [] if b_hh is None else _flat(b_hh), m, T, B, I, H, L, D, code,
                            _lengths(lengths))
    if D == 1:
        out = hs[L - 1, 1:]
    return StackRun(out, h_n, _StackSaved(wt, hs, ys, x, m, (T, B, I, H, L, D), nk, code,
                                          lengths))


def stack_backward(saved, d_out=None, dh_n=None, *, need_dx=False):
    T, B, I, H, L, D = saved.sizes
    dt = saved.hs.dtype
    dw_ih = [np.empty((H, I if k < D else D * H), dt) for k in range(L * D)]
    dw_hh = [np.empty((H, H), dt) for _ in range(L * D)]
    db, dh0 = np.empty((L * D, H), dt), np.empty((L * D, B, H), dt)
    dx = np.empty((T, B, I), dt) if need_dx else None
    e = _empty(dt)
    with _threads.one_blas_thread():
        _core.stack_backward(_flat(dw_ih), _flat(dw_hh), db.reshape(-1), dh0.reshape(-1),
                             e if dx is None else dx.reshape(-1), np.empty(saved.work, dt),
                             e if d_out is None else np.ascontiguousarray(d_out).reshape(-1),
                             e if dh_n is None else np.ascontiguousarray(dh_n).reshape(-1),
                             saved.wt, saved.hs.reshape(-1), saved.ys, saved.x.reshape(-1),
                             saved.masks, T, B, I, H, L, D, saved.nonlinearity,
                             _lengths(saved.lengths))
    return StackGrads(dw_ih, dw_hh, db, dh0, dx)


def rnn_rforward(hs, x, W_xh, W_hh, V_xh, V_hh, v_b, *, Rx=None, nonlinearity="tanh",
                 reverse=False, lengths=None):
    (I, H), dt = W_xh.shape, W_hh.dtype
    T, B = x.shape[0], x.shape[1]
    Rhs = np.empty((T + 1, B, H), dt)
    xf, ids, is_ids = _inputs(x, dt)
    with _threads.one_blas_thread():
        _core.rnn_rforward(Rhs.reshape(-1), _empty(dt) if Rx is None else Rx.reshape(-1),
                           hs.reshape(-1), xf, ids, W_xh.reshape(-1), W_hh.reshape(-1),
                           V_xh.reshape(-1), V_hh.reshape(-1), v_b, T, B, I, H,
                           NONLINEARITIES[nonlinearity], is_ids, _lengths(lengths),
                           bool(reverse))
    return Rhs


# ---- projection and losses ----------------------------------------------------------------

def linear_forward(X, W, b=None):
    (N, K), O = X.shape, W.shape[1]
    Y = np.empty((N, O), W.dtype)
    with _threads.one_blas_thread():
        _core.linear_forward(Y.reshape(-1), X.reshape(-1), W.reshape(-1),
                             _empty(W.dtype) if b is None else b, N, K, O)
    return Y


def linear_backward(dY, X, W, *, need_dX=True):
    (K, O), N = W.shape, dY.shape[0]
    dW, db = np.empty((K, O), W.dtype), np.empty(O, W.dtype)
    dX = np.empty((N, K), W.dtype) if need_dX else None
    with _threads.one_blas_thread():
        _core.linear_backward(dW.reshape(-1), db,
                              _empty(W.dtype) if dX is None else dX.reshape(-1),
                              dY.reshape(-1), X.reshape(-1), W.reshape(-1), N, K, O)
    return dW, db, dX


def softmax_cross_entropy(logits, targets, *, reduction="mean"):
    N, O = logits.shape
    d = np.empty_like(logits)
    scale = 1.0 / N if reduction == "mean" else 1.0
    loss = _core.softmax_xent(d.reshape(-1), logits.reshape(-1), targets, N, O, scale)
    return loss, d


def mse_loss(pred, target, *, reduction="mean"):
    d = np.empty_like(pred)
    scale = 1.0 / pred.size if reduction == "mean" else 1.0
    loss = _core.mse(d.reshape(-1), pred.reshape(-1), target.reshape(-1), scale)
    return loss, d


# ---- whole model --------------------------------------------------------------------------

COMPUTE_DTYPES = {"float32": 0, "bfloat16": 1}  # elman_compute in elman.h


def _arch(num_layers, bidirectional, dropout, dropout_seed, dropout_lanes,
          compute_dtype="float32"):
    """The binding's stack tuple (elman_model_shape's fields)."""
    return (num_layers, bool(bidirectional), dropout, dropout_seed, dropout_lanes[0],
            dropout_lanes[1], COMPUTE_DTYPES[compute_dtype])


def _states(hs, S):
    """hs as the reference returns it: (T+1, B, H) for one slab, else (L*D, T+1, B, H)."""
    return hs[0] if S == 1 else hs


def model_forward(params, x, h0, *, input_size, hidden_size, output_size,
                  nonlinearity="tanh", num_layers=1, bidirectional=False, lengths=None,
                  compute_dtype="float32", workspace=None):
    I, H, O, dt = input_size, hidden_size, output_size, params.dtype
    T, B = x.shape[:2]
    D = 2 if bidirectional else 1
    S = num_layers * D
    ws = {} if workspace is None else workspace
    Y = np.empty((T, B, O), dt)
    hs = _workspace.array(ws, "hs", (S, T + 1, B, H), dt)
    _workspace.set_initial_states(hs, None if h0 is None else h0.reshape(S, B, H), D)
    arch = _arch(num_layers, bidirectional, 0.0, 0, (0, 0), compute_dtype)
    sizes = _core.model_sizes(T, B, I, H, O, 0, False, arch, lengths is not None, dt.itemsize)
    work = _workspace.work_buffer(ws, "work", sizes["work_bytes"])
    xf, ids, is_ids = _inputs(x, dt)
    with _threads.one_blas_thread():
        _core.model_forward(Y.reshape(-1), hs.reshape(-1), work, xf, ids, params, T, B, I, H,
                            O, NONLINEARITIES[nonlinearity], is_ids, arch, _lengths(lengths))
    return Y, _states(hs, S)


def _step_buffers(ws, dt, T, B, I, H, O, S, loss, last_step_only, arch, has_lengths):
    """The training step's buffers in ``ws`` (hs, Y, dA, work), made when the shapes change
    and reused otherwise; the byte workspace sized by C."""
    key = (dt, T, B, I, H, O, last_step_only, arch[0], arch[1], arch[2] > 0, has_lengths,
           loss, arch[6])
    if ws.get("key") != key:
        sizes = _core.model_sizes(T, B, I, H, O, LOSSES[loss], last_step_only, arch,
                                  has_lengths, dt.itemsize)  # every size from C
        ws.update(key=key, hs=np.empty(sizes["hs"], dt).reshape(S, T + 1, B, H),
                  Y=np.empty(sizes["Y"], dt), dA=np.empty(sizes["dA"], dt),
                  work=_workspace.aligned_bytes(sizes["work_bytes"]))
        ws["allocations"] = ws.get("allocations", 0) + 1
    return ws["hs"]


class PreparedTrainStep:
    """model_train_step for one shape, its workspace made once and checked with the shape
    by the binding's TrainStepPlan: the fast path of elman.TrainStep, which has checked the
    batch's dtypes and shapes and hands over the arrays as they are. hs (S, T+1, B, H) holds
    the states of the last step."""

    def __init__(self, dtype, T, B, *, input_size, hidden_size, output_size, nonlinearity,
                 num_layers, bidirectional, dropout, dropout_lanes, loss, reduction,
                 last_step_only, params, grads, state, optimizer, compute_dtype="float32"):
        dt = np.dtype(dtype)
        I, H, O = input_size, hidden_size, output_size
        S = num_layers * (2 if bidirectional else 1)
        arch = _arch(num_layers, bidirectional, dropout, 0, dropout_lanes, compute_dtype)
        ws = {}
        self.hs = _step_buffers(ws, dt, T, B, I, H, O, S, loss, last_step_only, arch, False)
        _threads.ensure_controls()   # before run(), whose plan holds them in C
        self.plan = _core.TrainStepPlan(
            params, grads, _empty(dt) if state is None else state, self.hs.reshape(-1),
            ws["Y"], ws["dA"], ws["work"], T, B, I, H, O, NONLINEARITIES[nonlinearity],
            LOSSES[loss], REDUCTIONS[reduction], bool(last_step_only), optimizer, arch)

    def run(self, x, is_ids, y, h0, h_out, u, dropout_seed=0, repeat=1):
        """(loss, grad norm, stage) as model_train_step returns them, for the optimizer
        settings ``u`` (an optimizer's fused_update()[1]); the final states in h_out (an
        (S, B, H) array, or None to leave them in hs). repeat > 1 (benchmarks): the step
        that many times on this batch, from h0 each time."""
        get = u.get
        clip, max_norm = u["clip_value"], u["max_grad_norm"]
        # the plan holds the BLAS to one thread itself (the binding's blas_hold)
        return self.plan.run(x, is_ids, y, h0, h_out, u["lr"], get("lr_decay", 0.0),
                             u["weight_decay"], u["eps"], math.inf if clip is None else clip,
                             u["step"], get("eps_placement") == "inside", u["maximize"],
                             get("momentum", 0.0), math.inf if max_norm is None else max_norm,
                             dropout_seed, repeat)


def _step_arguments(params, x, y, h0, workspace, I, H, O, loss, last_step_only, arch,
                    lengths):
    """What a training call passes the binding besides its options: the workspace and its
    states hs (the initial states in place), the input as (dense, ids, is_ids), and the
    targets as (class ids, values), the one the loss does not use empty."""
    dt = params.dtype
    T, B = x.shape[:2]
    S = arch[0] * (2 if arch[1] else 1)
    ws = {} if workspace is None else workspace
    hs = _step_buffers(ws, dt, T, B, I, H, O, S, loss, last_step_only, arch,
                       lengths is not None)
    _workspace.set_initial_states(hs, None if h0 is None else h0.reshape(S, B, H),
                                  2 if arch[1] else 1)
    xf, ids, is_ids = _inputs(x, dt)
    ys = (y.reshape(-1), _empty(dt)) if loss == "cross_entropy" else (_NO_IDS, y.reshape(-1))
    return ws, hs, xf, ids, is_ids, ys


def model_forward_backward(params, grads, x, y, h0, *, input_size, hidden_size, output_size,
                           nonlinearity="tanh", loss="cross_entropy", reduction="mean",
                           last_step_only=False, dh0=None, dh_T=None, num_layers=1,
                           bidirectional=False, dropout=0.0, dropout_seed=0, lengths=None,
                           dropout_lanes=(0, 0), compute_dtype="float32", workspace=None):
    arch = _arch(num_layers, bidirectional, dropout, dropout_seed, dropout_lanes,
                 compute_dtype)
    ws, hs, xf, ids, is_ids, ys = _step_arguments(
        params, x, y, h0, workspace, input_size, hidden_size, output_size, loss,
        last_step_only, arch, lengths)
    (S, T, B), e = (hs.shape[0], *x.shape[:2]), _empty(params.dtype)
    try:
        with _threads.one_blas_thread():
            value = _core.model_forward_backward(
                grads, e if dh0 is None else dh0.reshape(-1), hs.reshape(-1), ws["Y"],
                ws["dA"], ws["work"], xf, ids, *ys, e if dh_T is None else dh_T.reshape(-1),
                params, T, B, input_size, hidden_size, output_size,
                NONLINEARITIES[nonlinearity], is_ids, LOSSES[loss], REDUCTIONS[reduction],
                bool(last_step_only), arch, _lengths(lengths))
    except FloatingPointError as err:
        raise NonFiniteError(str(err)) from None
    return value, _states(hs, S)


def model_gauss_newton_prepare(params, x, h0, *, input_size, hidden_size, output_size,
                               nonlinearity="tanh", loss="cross_entropy", last_step_only=False,
                               num_layers=1, bidirectional=False, dropout=0.0, dropout_seed=0,
                               lengths=None, dropout_lanes=(0, 0), workspace=None):
    I, H, O, dt = input_size, hidden_size, output_size, params.dtype
    arch = _arch(num_layers, bidirectional, dropout, dropout_seed, dropout_lanes)
    T, B = x.shape[:2]
    D = 2 if bidirectional else 1
    S = num_layers * D
    ws = {} if workspace is None else workspace
    sizes = _core.model_sizes(T, B, I, H, O, LOSSES[loss], bool(last_step_only), arch,
                              lengths is not None, dt.itemsize)
    hs = _workspace.array(ws, "hs", (S, T + 1, B, H), dt)
    _workspace.set_initial_states(hs, None if h0 is None else h0.reshape(S, B, H), D)
    P = _workspace.array(ws, "P", (sizes["Y"] // O if O else 0, O), dt)
    work = _workspace.work_buffer(ws, "work", sizes["work_bytes"])
    xf, ids, is_ids = _inputs(x, dt)
    shape = (T, B, I, H, O, NONLINEARITIES[nonlinearity], is_ids, LOSSES[loss],
             bool(last_step_only))
    try:
        with _threads.one_blas_thread():
            _core.model_gauss_newton_prepare(P.reshape(-1), hs.reshape(-1), work, xf, ids,
                                             params, *shape, arch, _lengths(lengths))
    except FloatingPointError as err:
        raise NonFiniteError(f"{err}; no Gauss-Newton product exists") from None
    # the product's own buffers, made once per shape
    Rhs = _workspace.array(ws, "Rhs", hs.shape, dt)
    RY = _workspace.array(ws, "RY", P.shape, dt)
    dA = _workspace.array(ws, "dA", (sizes["dA"],), dt)
    Rwork = _workspace.work_buffer(ws, "Rwork", sizes["work_bytes"])
    # the n lengths last: the product passes the ones lengths was checked with
    return dict(hs=hs, P=P, work=work, Rhs=Rhs, RY=RY, dA=dA, Rwork=Rwork, x=xf, ids=ids,
                shape=shape, arch=arch, lengths=_lengths(lengths))


def model_gauss_newton_product(params, v, cache, *, reduction="mean", damping=0.0,
                               structural_damping=0.0, out=None):
    c = cache
    Gv = np.empty_like(params) if out is None else out
    T, B, I, H, O, nl, is_ids, loss, last = c["shape"]
    with _threads.one_blas_thread():
        _core.model_gauss_newton_product(
            Gv, c["Rhs"].reshape(-1), c["RY"].reshape(-1), c["dA"], c["Rwork"],
            c["hs"].reshape(-1), c["work"], c["P"].reshape(-1), v, c["x"], c["ids"], params,
            T, B, I, H, O, nl, is_ids, loss, REDUCTIONS[reduction], last, float(damping),
            float(structural_damping), c["arch"], c["lengths"])
    return Gv


def model_train_step(params, grads, state, x, y, h0, *, input_size, hidden_size,
                     output_size, nonlinearity="tanh", loss="cross_entropy", reduction="mean",
                     last_step_only=False, num_layers=1, bidirectional=False, dropout=0.0,
                     dropout_seed=0, lengths=None, dropout_lanes=(0, 0), optimizer="adagrad",
                     lr, step, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                     eps_placement="outside", maximize=False, clip_value=None, momentum=0.0,
                     max_grad_norm=None, compute_dtype="float32", workspace=None):
    arch = _arch(num_layers, bidirectional, dropout, dropout_seed, dropout_lanes,
                 compute_dtype)
    ws, hs, xf, ids, is_ids, ys = _step_arguments(
        params, x, y, h0, workspace, input_size, hidden_size, output_size, loss,
        last_step_only, arch, lengths)
    (S, T, B), e = (hs.shape[0], *x.shape[:2]), _empty(params.dtype)
    with _threads.one_blas_thread():
        value, norm, stage = _core.model_train_step(
            params, grads, e if state is None else state, hs.reshape(-1), ws["Y"], ws["dA"],
            xf, ids, *ys, T, B, input_size, hidden_size, output_size,
            NONLINEARITIES[nonlinearity], is_ids, LOSSES[loss], REDUCTIONS[reduction],
            bool(last_step_only), optimizer, lr, lr_decay,
            weight_decay, eps, _clip(clip_value), step, eps_placement == "inside", maximize,
            momentum, math.inf if max_grad_norm is None else max_grad_norm, arch,
            _lengths(lengths), ws["work"])
    return value, (None if max_grad_norm is None else norm), stage, _states(hs, S)


def model_sample(params, n, first, h, rng_state, *, input_size, hidden_size, output_size,
                 nonlinearity="tanh", temperature=1.0, num_layers=1, workspace=None):
    H, O = hidden_size, output_size
    single = np.ndim(first) == 0
    firsts = np.ascontiguousarray(np.atleast_1d(first), np.int64)
    B = firsts.shape[0]
    out = np.empty((B, n), np.int64)
    rng = (np.array([rng_state], np.uint64) if single
           else np.ascontiguousarray(rng_state, np.uint64))
    ws = {} if workspace is None else workspace
    work = ws.get("work")
    if work is None or work.shape != (B * (H + O),) or work.dtype != params.dtype:
        work = ws["work"] = np.empty(B * (H + O), params.dtype)
    try:
        _core.model_sample(out.reshape(-1), h.reshape(-1), work, rng, firsts, temperature,
                           params, input_size, H, O, NONLINEARITIES[nonlinearity], num_layers)
    except FloatingPointError as err:
        raise NonFiniteError(str(err)) from None
    if single:
        return out[0], int(rng[0])
    if rng is not rng_state:
        rng_state[:] = rng
    return out, rng_state


def stream_probe(p, s, g):
    _core.stream_probe(p, s, g)
