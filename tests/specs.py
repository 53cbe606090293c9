"""The table of every public functional kernel's array arguments and their roles, with
valid arguments for each (``make``): what the bad-input tests (test_bad_input_*.py) mutate
one thing at a time and the fuzzer (test_fuzz.py) several at once. A kernel added to
elman.kernels gets a row here, and with it every generated test."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from elman import kernels as K

# Distinct sizes, every one >= 2, so that a transposed or reversed array is never contiguous
# by accident and a wrong size never coincides with a right one.
T, B, I, H, O, N = 3, 2, 4, 5, 6, 7
NPARAMS = I * H + H * H + H + H * O + O
NSAMPLE = O * H + H * H + H + H * O + O  # a token model: input_size = output_size = O

FLOAT_DTYPES = [np.float32, np.float64]
FDT_IDS = ["f32", "f64"]

# Dtypes no float argument accepts, and the integer ones (token ids for a polymorphic x).
INT_DTYPES = [np.int8, np.int32, np.int64, np.uint8, np.uint64]
NONFLOAT_DTYPES = [np.bool_, np.float16, np.longdouble, np.complex64, np.complex128, object,
                   "U3", "S3", "M8[s]", "m8[s]"]

HYP = settings(max_examples=40, deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def names(arg: str) -> str:
    """Regex: the message names `arg` as its subject ("where: arg ..." or "arg: ...")."""
    return rf"(^|: ){re.escape(arg)}\b"


def mentions(arg: str) -> str:
    """Regex: the message mentions `arg` as a word."""
    return rf"\b{re.escape(arg)}\b"


# Roles of each array argument:
#   L  dtype leader (the others must share its dtype)    W  written into (must be writable)
#   F  must be finite                                     S  shape fully fixed by the others
#   A  any shape (no ndim requirement)                    P  polymorphic x: ints are token ids
#   X  integer index array (targets / token ids)          N  may be None
SPECS = {
    "adagrad_update": (K.adagrad_update, dict(lr=0.1, step=1),
                       {"param": "LWA", "grad": "S", "state": "WS"}),
    "sgd_update": (K.sgd_update, dict(lr=0.1, momentum=0.9),
                   {"param": "LWA", "grad": "S", "momentum_buffer": "WS"}),
    "sum_squares": (K.sum_squares, {}, {"x": "LA"}),
    "activation": (K.activation, {}, {"a": "LA"}),
    "activation_backward": (K.activation_backward, {}, {"dH": "S", "y": "LA"}),
    "rnn_forward": (K.rnn_forward, {},
                    {"x": "PF", "h0": "FSN", "W_xh": "", "W_hh": "L", "b_h": "S",
                     "out": "WSN"}),
    "rnn_backward": (K.rnn_backward, dict(need_dx=True),
                     {"dH": "F", "hs": "S", "x": "PFS", "W_xh": "", "W_hh": "L",
                      "dh_T": "FSN"}),
    # hs sets T and B (as dH does for rnn_backward), so only its last axis is fixed
    "rnn_rforward": (K.rnn_rforward, {},
                     {"hs": "F", "x": "PFS", "W_xh": "", "W_hh": "L", "V_xh": "FS",
                      "V_hh": "FS", "v_b": "FS", "Rx": "FSN"}),
    "linear_forward": (K.linear_forward, {}, {"X": "F", "W": "L", "b": "SN"}),
    "linear_backward": (K.linear_backward, {}, {"dY": "F", "X": "S", "W": "L"}),
    "softmax_cross_entropy": (K.softmax_cross_entropy, {}, {"logits": "LF", "targets": "XS"}),
    "mse_loss": (K.mse_loss, {}, {"pred": "LFA", "target": "FS"}),
    "model_forward": (K.model_forward, dict(input_size=I, hidden_size=H, output_size=O),
                      {"params": "LS", "x": "PF", "h0": "FSN"}),
    "model_forward_backward": (
        K.model_forward_backward, dict(input_size=I, hidden_size=H, output_size=O),
        {"params": "LS", "grads": "WS", "x": "PF", "y": "XS", "h0": "FSN", "dh0": "WSN"}),
    "model_forward_backward_mse": (
        K.model_forward_backward, dict(input_size=I, hidden_size=H, output_size=O, loss="mse"),
        {"params": "LS", "grads": "WS", "x": "PF", "y": "FS", "h0": "FSN", "dh0": "WSN"}),
    "proximal_adagrad_update": (K.proximal_adagrad_update, dict(lr=0.1, l1=0.01, l2=0.01),
                                {"param": "LWA", "grad": "S", "state": "WS"}),
    "rowwise_adagrad_update": (K.rowwise_adagrad_update, dict(lr=0.1),
                               {"param": "LW", "grad": "S", "state": "WS"}),
    # a token model samples its own outputs: input_size = output_size = O
    "model_sample": (K.model_sample, dict(n=4, input_size=O, hidden_size=H, output_size=O,
                                          seed=0),
                     {"params": "LS", "h": "FSN"}),
    # B streams: h (B, H) and one first id per stream
    "model_sample_batch": (K.model_sample, dict(n=4, input_size=O, hidden_size=H,
                                                output_size=O, seed=0, batch=B),
                           {"params": "LS", "first": "XS", "h": "FSN"}),
}


def make(spec: str, dt=np.float64, ids: bool = False) -> dict:
    """Valid arguments (arrays only) for `spec`, fresh every call. ids: x as token ids."""
    r = np.random.default_rng(0)

    def f(*shape):
        return (0.5 * r.standard_normal(shape)).astype(dt)

    def x_in(t=T, b=B):
        return r.integers(0, I, size=(t, b)) if ids else f(t, b, I)

    if spec == "adagrad_update":
        return dict(param=f(I, H), grad=f(I, H), state=np.abs(f(I, H)))
    if spec == "sgd_update":
        return dict(param=f(I, H), grad=f(I, H), momentum_buffer=f(I, H))
    if spec == "sum_squares":
        return dict(x=f(I, H))
    if spec == "activation":
        return dict(a=f(T, B, H))
    if spec == "activation_backward":
        return dict(dH=f(T, B, H), y=np.tanh(f(T, B, H)))
    if spec == "rnn_forward":
        return dict(x=x_in(), h0=f(B, H), W_xh=f(I, H), W_hh=f(H, H), b_h=f(H),
                    out=np.empty((T + 1, B, H), dt))
    if spec == "rnn_backward":
        return dict(dH=f(T, B, H), hs=np.tanh(f(T + 1, B, H)), x=x_in(), W_xh=f(I, H),
                    W_hh=f(H, H), dh_T=f(B, H))
    if spec == "rnn_rforward":  # token ids have no derivative: Rx is None with ids
        return dict(hs=np.tanh(f(T + 1, B, H)), x=x_in(), W_xh=f(I, H), W_hh=f(H, H),
                    V_xh=f(I, H), V_hh=f(H, H), v_b=f(H), Rx=None if ids else f(T, B, I))
    if spec == "linear_forward":
        return dict(X=f(N, I), W=f(I, O), b=f(O))
    if spec == "linear_backward":
        return dict(dY=f(N, O), X=f(N, I), W=f(I, O))
    if spec == "softmax_cross_entropy":
        return dict(logits=f(N, O), targets=r.integers(0, O, size=N))
    if spec == "mse_loss":
        return dict(pred=f(T, B, O), target=f(T, B, O))
    if spec == "model_forward":
        return dict(params=f(NPARAMS), x=x_in(), h0=f(B, H))
    if spec == "model_forward_backward":
        return dict(params=f(NPARAMS), grads=np.zeros(NPARAMS, dt), x=x_in(),
                    y=r.integers(0, O, size=(T, B)), h0=f(B, H), dh0=np.zeros((B, H), dt))
    if spec == "proximal_adagrad_update":
        return dict(param=f(I, H), grad=f(I, H), state=np.abs(f(I, H)) + 0.1)
    if spec == "rowwise_adagrad_update":
        return dict(param=f(I, H), grad=f(I, H), state=np.abs(f(I)))
    if spec == "model_sample":
        return dict(params=f(NSAMPLE), h=f(H))
    if spec == "model_sample_batch":
        return dict(params=f(NSAMPLE), first=r.integers(0, O, size=B), h=f(B, H))
    if spec == "model_forward_backward_mse":
        return dict(params=f(NPARAMS), grads=np.zeros(NPARAMS, dt), x=x_in(),
                    y=f(T, B, O), h0=f(B, H), dh0=np.zeros((B, H), dt))
    raise KeyError(spec)


def call(spec: str, args: dict, **extra):
    fn, kwargs, _ = SPECS[spec]
    return fn(**args, **{**kwargs, **extra})


def refused_before_writing(spec, args, exc, match, **extra):
    """call(spec, args) raises exc (its message matching match), and no argument was
    written first: validation comes before any write."""
    before = {k: v.copy() for k, v in args.items()}
    with pytest.raises(exc, match=match):
        call(spec, args, **extra)
    for k, v in args.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def float_args(*flags, exclude=""):
    """(spec, arg) pairs whose roles include every flag in `flags` and none in `exclude`."""
    out = []
    for spec, (_, _, roles) in SPECS.items():
        for arg, role in roles.items():
            if "X" in role:
                continue
            if all(fl in role for fl in flags) and not any(e in role for e in exclude):
                out.append(pytest.param(spec, arg, id=f"{spec}-{arg}"))
    return out


# Non-contiguous layouts of an array (a 1-D array has no distinct Fortran or transposed one)
def _strided(a):
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    v = big[..., ::2]
    v[...] = a
    return v


LAYOUTS = {
    "strided": _strided,
    "reversed": lambda a: a[::-1],
    "fortran": np.asfortranarray,
    "transposed": lambda a: np.ascontiguousarray(a.T).T,
}
