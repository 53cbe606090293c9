"""Bad input never crashes the process and is rejected with a message naming the argument.

The contract (DESIGN.md, "Errors and trust"): every public entry point validates dtype,
shape, contiguity, aliasing, finiteness and target range before any pointer reaches C; bad
input raises TypeError or ValueError (NonFiniteError subclasses ValueError and
FloatingPointError) whose message names the offending argument; nothing crashes.

Layout of this file:

1. the functional kernels (elman.kernels.*): generic mutations of every array argument
   (dtype, ndim/shape, contiguity, read-only, not-an-array, NaN/inf) generated from one
   table of argument roles, plus explicit aliasing, index-range, empty-array and scalar
   hyperparameter cases, run on both backends (validation comes before the dispatch);
2. ElmanRNN (constructor, forward, forward_backward);
3. Adagrad / SGD constructors and steps, clip_grad_norm_, backend();
4. the private Cython layer elman._core, called directly with inconsistent sizes. Those calls
   run in a child interpreter (one for the whole table, restarted after a crash), so that a
   segfault is reported as a failing test instead of killing the session;
5. a few hypothesis property tests (wrong shapes, hyperparameter ranges, targets).
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import elman
from elman import NonFiniteError
from elman import kernels as K

# Distinct sizes, every one >= 2, so that a transposed or reversed array is never contiguous
# by accident and a wrong size never coincides with a right one.
T, B, I, H, O, N = 3, 2, 4, 5, 6, 7
NPARAMS = I * H + H * H + H + H * O + O

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


@pytest.fixture(params=["c", "numpy"])
def any_backend(request):
    with elman.backend(request.param):
        yield request.param


# ============================================================================================
# 1. Functional kernels
# ============================================================================================

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
    if spec == "model_forward_backward_mse":
        return dict(params=f(NPARAMS), grads=np.zeros(NPARAMS, dt), x=x_in(),
                    y=f(T, B, O), h0=f(B, H), dh0=np.zeros((B, H), dt))
    raise KeyError(spec)


def call(spec: str, args: dict, **extra):
    fn, kwargs, _ = SPECS[spec]
    return fn(**args, **{**kwargs, **extra})


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


def test_every_spec_is_valid_as_built(any_backend):
    """Sanity: the unmutated arguments are accepted (so every failure below is the
    mutation's), on both dtypes and with token ids where x can be ids."""
    for spec in SPECS:
        for dt in FLOAT_DTYPES:
            call(spec, make(spec, dt))
            if "x" in SPECS[spec][2] and "P" in SPECS[spec][2]["x"]:
                call(spec, make(spec, dt, ids=True))


# ---- dtypes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", NONFLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("spec,arg", float_args())
def test_float_arg_rejects_non_float_dtype(any_backend, spec, arg, bad):
    args = make(spec)
    args[arg] = np.zeros(args[arg].shape, dtype=bad)
    # A timedelta x of dense shape: the shape check may come first (timedelta as token ids
    # has its own test below).
    exc = (TypeError, ValueError) if bad == "m8[s]" and "P" in SPECS[spec][2][arg] else TypeError
    with pytest.raises(exc, match=names(arg)):
        call(spec, args)


@pytest.mark.parametrize("bad", INT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("spec,arg", float_args(exclude="P"))
def test_float_arg_rejects_integer_dtype(any_backend, spec, arg, bad):
    args = make(spec)
    args[arg] = np.ones(args[arg].shape, dtype=bad)
    with pytest.raises(TypeError, match=names(arg)):
        call(spec, args)


@pytest.mark.parametrize("spec,arg", float_args("P"))
def test_integer_x_of_dense_shape_is_rejected(any_backend, spec, arg):
    """An integer x means token ids (T, B); an integer (T, B, I) array is a shape error."""
    args = make(spec)
    args[arg] = np.zeros(args[arg].shape, np.int64)
    with pytest.raises(ValueError, match=names(arg)):
        call(spec, args)


@pytest.mark.parametrize("dt", FLOAT_DTYPES, ids=FDT_IDS)
@pytest.mark.parametrize("spec,arg", float_args(exclude="L"))
def test_mixed_float32_float64(any_backend, spec, arg, dt):
    """Every float argument of one call shares the leader's dtype; nothing is cast."""
    args = make(spec, dt)
    other = np.float32 if dt == np.float64 else np.float64
    args[arg] = args[arg].astype(other)
    with pytest.raises(TypeError, match=names(arg)):
        call(spec, args)


@pytest.mark.parametrize("spec,arg", float_args(exclude="N"))
def test_required_array_missing(any_backend, spec, arg):
    """None for a required array (rnn_forward's b_h included) is rejected by name."""
    args = make(spec)
    args[arg] = None
    with pytest.raises((TypeError, ValueError), match=mentions(arg)):
        call(spec, args)


@pytest.mark.parametrize("spec,arg", float_args())
def test_list_instead_of_array(any_backend, spec, arg):
    """Float arguments must be ndarrays: nothing is converted behind the caller's back."""
    args = make(spec)
    args[arg] = args[arg].tolist()
    with pytest.raises(TypeError, match=names(arg)):
        call(spec, args)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
@pytest.mark.parametrize("fn", ["sum_squares", "adagrad_update", "activation"])
def test_ndarray_subclass_whose_reshape_is_not_flat(any_backend, fn):
    """np.matrix passes float_array (it is a C-contiguous float ndarray), but its
    reshape(-1) stays 2-D. It must work (as on the numpy backend) or be rejected by name."""
    m = np.matrix(np.ones((2, 3)))
    try:
        if fn == "sum_squares":
            assert K.sum_squares(m) == 6
        elif fn == "adagrad_update":
            K.adagrad_update(m, np.matrix(np.ones((2, 3))), np.matrix(np.zeros((2, 3))),
                             lr=0.1, step=1)
        else:
            K.activation(m)
    except (TypeError, ValueError) as e:
        assert re.search(r"\b(x|param|grad|state|a)\b", str(e)), f"{type(e).__name__}: {e}"


def test_byte_swapped_float_is_rejected(any_backend):
    p = np.ones(4, ">f8")
    with pytest.raises(TypeError, match=names("param")):
        K.adagrad_update(p, p.copy(), p.copy(), lr=0.1, step=1)


# ---- shapes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["extra_axis", "drop_axis"])
@pytest.mark.parametrize("spec,arg", float_args(exclude="A"))
def test_wrong_ndim(any_backend, spec, arg, how):
    args = make(spec)
    a = args[arg]
    if how == "extra_axis" and spec.startswith("model_") and arg in ("h0", "dh0", "dh_T"):
        # (1, B, H) is the (num_layers * directions, B, H) form of a one-layer model's
        # states: accepted. Two layers' worth is not.
        a = np.concatenate([a[None], a[None]])
        how = "drop_axis_kept"
    args[arg] = np.ascontiguousarray(a[None] if how == "extra_axis" else
                                     a if how == "drop_axis_kept" else a[0])
    with pytest.raises(ValueError, match=names(arg)):
        call(spec, args)


@pytest.mark.parametrize("spec,arg", float_args("S"))
def test_wrong_size_of_a_fixed_shape(any_backend, spec, arg):
    """One more element along the last axis: the buffer no longer matches the others."""
    args = make(spec)
    a = args[arg]
    args[arg] = np.zeros(a.shape[:-1] + (a.shape[-1] + 1,), a.dtype)
    with pytest.raises(ValueError, match=names(arg)):
        call(spec, args)


@pytest.mark.parametrize("which", ["W_hh_not_square", "W_xh_wrong_H", "x_wrong_I"])
def test_rnn_weight_shapes(any_backend, which):
    args = make("rnn_forward")
    if which == "W_hh_not_square":
        args["W_hh"], arg = np.zeros((H, H + 1)), "W_hh"
    elif which == "W_xh_wrong_H":
        args["W_xh"], arg = np.zeros((I, H + 1)), "W_xh"
    else:
        args["x"], arg = np.zeros((T, B, I + 1)), "x"
    with pytest.raises(ValueError, match=names(arg)):
        call("rnn_forward", args)


def test_linear_inner_dimension_mismatch(any_backend):
    with pytest.raises(ValueError, match=names("X")):
        K.linear_forward(np.zeros((N, I + 1)), np.zeros((I, O)))
    with pytest.raises(ValueError, match=names("X")):
        K.linear_backward(np.zeros((N, O)), np.zeros((N + 1, I)), np.zeros((I, O)))


@pytest.mark.parametrize("which", ["params_short", "params_long", "grads_short"])
def test_model_buffer_size_mismatch(any_backend, which):
    args = make("model_forward_backward")
    arg = which.split("_")[0]
    args[arg] = np.zeros(NPARAMS + (1 if which.endswith("long") else -1))
    with pytest.raises(ValueError, match=names(arg)):
        call("model_forward_backward", args)


@pytest.mark.parametrize("sizes,arg", [((I + 1, H, O), "params"), ((I, H - 1, O), "params"),
                                       ((I, H, 2**40), "params"), ((2**62, 2**62, 1), "params")])
def test_model_sizes_disagree_with_params(any_backend, sizes, arg):
    args = make("model_forward")
    with pytest.raises(ValueError, match=names(arg)):
        K.model_forward(args["params"], args["x"],
                        **dict(zip(("input_size", "hidden_size", "output_size"), sizes)))


@pytest.mark.parametrize("value,exc", [(0, ValueError), (-1, ValueError), (-2**70, ValueError),
                                       (1.0, TypeError), (4.5, TypeError), ("4", TypeError),
                                       (True, TypeError), (None, TypeError), (1j, TypeError),
                                       (np.float64(4), TypeError)])
@pytest.mark.parametrize("size", ["input_size", "hidden_size", "output_size"])
@pytest.mark.parametrize("spec", ["model_forward", "model_forward_backward"])
def test_model_size_arguments(any_backend, spec, size, value, exc):
    fn, kwargs, _ = SPECS[spec]
    with pytest.raises(exc, match=names(size)):
        fn(**make(spec), **{**kwargs, size: value})


# ---- layout ---------------------------------------------------------------------------------

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


def _layout_cases():
    """Every float argument in every non-contiguous layout it can have (a 1-D array has no
    Fortran or transposed layout distinct from its C one)."""
    return [pytest.param(p.values[0], p.values[1], layout, id=f"{p.id}-{layout}")
            for p in float_args() for layout in LAYOUTS
            if layout not in ("fortran", "transposed") or make(p.values[0])[p.values[1]].ndim >= 2]


@pytest.mark.parametrize("spec,arg,layout", _layout_cases())
def test_non_contiguous(any_backend, spec, arg, layout):
    args = make(spec)
    a = args[arg]
    args[arg] = LAYOUTS[layout](a)
    assert args[arg].shape == a.shape and not args[arg].flags.c_contiguous
    with pytest.raises(ValueError, match=names(arg) + r".*C-contiguous"):
        call(spec, args)


def test_non_contiguous_token_ids_are_accepted(any_backend):
    """Integer ids are copied to int64 (documented), so their layout does not matter."""
    args = make("rnn_forward", ids=True)
    ref = call("rnn_forward", dict(args, out=None)).copy()
    big = np.zeros((T, 2 * B), np.int32)
    big[:, ::2] = args["x"]
    args["x"] = big[:, ::2]
    np.testing.assert_allclose(call("rnn_forward", dict(args, out=None)), ref)


# ---- read-only outputs ----------------------------------------------------------------------

@pytest.mark.parametrize("spec,arg", float_args("W"))
def test_read_only_output(any_backend, spec, arg):
    args = make(spec)
    before = {k: v.copy() for k, v in args.items()}
    args[arg].flags.writeable = False
    with pytest.raises(ValueError, match=names(arg) + r" is read-only"):
        call(spec, args)
    for k, v in args.items():          # rejected before anything was written
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("spec", list(SPECS))
def test_read_only_inputs_are_fine(any_backend, spec):
    """Only outputs must be writable: read-only inputs are accepted."""
    _, _, roles = SPECS[spec]
    args = make(spec)
    for arg, role in roles.items():
        if "W" not in role:
            args[arg].flags.writeable = False
    call(spec, args)


# ---- NaN and infinity -----------------------------------------------------------------------

@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("spec,arg", float_args("F"))
def test_non_finite_input(any_backend, spec, arg, value):
    args = make(spec)
    args[arg].flat[-1] = value
    with pytest.raises(NonFiniteError, match=names(arg)) as info:
        call(spec, args)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FloatingPointError)


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("spec", ["adagrad_update", "sgd_update"])
def test_non_finite_gradient_in_optimizer_kernels(any_backend, spec, value):
    """The check rides in the update's pass (documented): it raises, naming grad."""
    args = make(spec)
    args["grad"].flat[3] = value
    with pytest.raises(NonFiniteError, match=names("grad")), np.errstate(all="ignore"):
        call(spec, args)


@pytest.mark.parametrize("spec", ["model_forward_backward", "model_forward_backward_mse"])
def test_non_finite_params_give_non_finite_loss(any_backend, spec):
    """params are not scanned; a NaN reaches the loss, which raises (grads untouched)."""
    args = make(spec)
    args["params"][0] = np.nan
    with pytest.raises(NonFiniteError, match="loss"):
        call(spec, args)


def test_logits_that_overflow_are_finite_inputs(any_backend):
    """Huge but finite logits are valid input: no error, a finite loss."""
    logits = np.array([[3e38, -3e38, 0.0]], np.float32)
    with np.errstate(over="ignore"):
        loss, d = K.softmax_cross_entropy(logits, np.array([1]))
    assert math.isfinite(loss) and np.isfinite(d).all()


# ---- aliasing -------------------------------------------------------------------------------

def _alias_cases():
    def adagrad(kind):
        a = make("adagrad_update")
        if kind == "grad=param":
            a["grad"] = a["param"]
        elif kind == "state=param":
            a["state"] = a["param"]
        elif kind == "state=grad":
            a["state"] = a["grad"]
        else:  # overlapping views of one buffer
            base = np.zeros(I * H + 3)
            a["param"], a["state"] = base[:I * H].reshape(I, H), base[3:].reshape(I, H)
        return a

    def sgd(kind):
        a = make("sgd_update")
        if kind == "grad=param":
            a["grad"] = a["param"]
        elif kind == "momentum_buffer=param":
            a["momentum_buffer"] = a["param"]
        else:
            a["momentum_buffer"] = a["grad"]
        return a

    def rnn(kind):
        a = make("rnn_forward")
        flat = np.zeros((T + 1) * B * H + H * H)
        if kind == "out~h0":
            a["h0"] = a["out"][0]
        elif kind == "out~W_hh":
            a["out"] = flat[:(T + 1) * B * H].reshape(T + 1, B, H)
            a["W_hh"] = flat[(T + 1) * B * H - 1:-1].reshape(H, H)
        elif kind == "out~b_h":
            a["b_h"] = a["out"][1, 0]
        else:
            big = np.zeros((T + 1) * B * H)
            a["out"] = big.reshape(T + 1, B, H)
            a["x"] = big[:T * B * I].reshape(T, B, I)
        return a

    def model(kind):
        a = make("model_forward_backward")
        if kind == "grads=params":
            a["grads"] = a["params"]
        elif kind == "dh0=h0":
            a["dh0"] = a["h0"]
        elif kind == "dh0~grads":
            a["dh0"] = a["grads"][:B * H].reshape(B, H)
        elif kind == "grads~x":
            a["x"] = a["grads"][:T * B * I].reshape(T, B, I)
        else:  # dh0 ~ params
            a["dh0"] = a["params"][-B * H:].reshape(B, H)
        return a

    cases = []
    for kind, pair in [("grad=param", ("param", "grad")), ("state=param", ("param", "state")),
                       ("state=grad", ("state", "grad")), ("param~state", ("param", "state"))]:
        cases.append(pytest.param("adagrad_update", adagrad, kind, pair, id=f"adagrad-{kind}"))
    for kind, pair in [("grad=param", ("param", "grad")),
                       ("momentum_buffer=param", ("param", "momentum_buffer")),
                       ("momentum_buffer=grad", ("momentum_buffer", "grad"))]:
        cases.append(pytest.param("sgd_update", sgd, kind, pair, id=f"sgd-{kind}"))
    for kind, pair in [("out~h0", ("out", "h0")), ("out~W_hh", ("out", "W_hh")),
                       ("out~b_h", ("out", "b_h")), ("out~x", ("out", "x"))]:
        cases.append(pytest.param("rnn_forward", rnn, kind, pair, id=f"rnn_forward-{kind}"))
    for kind, pair in [("grads=params", ("grads", "params")), ("dh0=h0", ("dh0", "h0")),
                       ("dh0~grads", ("grads", "dh0")), ("grads~x", ("grads", "x")),
                       ("dh0~params", ("dh0", "params"))]:
        cases.append(pytest.param("model_forward_backward", model, kind, pair,
                                  id=f"model-{kind}"))
    return cases


@pytest.mark.parametrize("spec,build,kind,pair", _alias_cases())
def test_aliasing(any_backend, spec, build, kind, pair):
    args = build(kind)
    snapshot = {k: v.copy() for k, v in args.items()}
    a, b = pair
    with pytest.raises(ValueError, match=rf"{a} and {b} share memory|{b} and {a} share memory"):
        call(spec, args)
    for k, v in args.items():
        np.testing.assert_array_equal(v, snapshot[k])


def test_sgd_unused_momentum_buffer_is_not_validated_but_harmless(any_backend):
    """With momentum 0 the buffer is ignored (documented as needed only with momentum)."""
    a = make("sgd_update")
    K.sgd_update(a["param"], a["grad"], "not an array", lr=0.1)


# ---- token ids and class targets ------------------------------------------------------------

BAD_INDEX_VALUES = [-1, "upper", "upper+1", 2**31, 2**62, np.iinfo(np.int64).max,
                    np.iinfo(np.int64).min]

# (spec, argument, its exclusive upper bound, how to get a valid version with ids)
INDEX_ARGS = [
    pytest.param("softmax_cross_entropy", "targets", O, False, id="softmax-targets"),
    pytest.param("model_forward_backward", "y", O, False, id="model_fb-y"),
    pytest.param("rnn_forward", "x", I, True, id="rnn_forward-ids"),
    pytest.param("rnn_backward", "x", I, True, id="rnn_backward-ids"),
    pytest.param("model_forward", "x", I, True, id="model_forward-ids"),
    pytest.param("model_forward_backward", "x", I, True, id="model_fb-ids"),
]


@pytest.mark.parametrize("value", BAD_INDEX_VALUES, ids=str)
@pytest.mark.parametrize("spec,arg,upper,ids", INDEX_ARGS)
def test_index_out_of_range(any_backend, spec, arg, upper, ids, value):
    args = make(spec, ids=ids)
    v = {"upper": upper, "upper+1": upper + 1}.get(value, value)
    args[arg] = args[arg].copy()
    args[arg].flat[-1] = v
    with pytest.raises(ValueError, match=names(arg)):
        call(spec, args)


@pytest.mark.parametrize("value", [2**63, 2**64 - 1])
@pytest.mark.parametrize("spec,arg,upper,ids", INDEX_ARGS)
def test_index_uint64_beyond_int64(any_backend, spec, arg, upper, ids, value):
    args = make(spec, ids=ids)
    a = args[arg].astype(np.uint64)
    a.flat[0] = value
    args[arg] = a
    with pytest.raises(ValueError, match=names(arg)):
        call(spec, args)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.bool_, np.complex128, object,
                                   "U3", "m8[s]", "M8[s]"], ids=str)
@pytest.mark.parametrize("spec,arg", [("softmax_cross_entropy", "targets"),
                                      ("model_forward_backward", "y")])
def test_targets_must_be_integers(any_backend, spec, arg, dtype):
    """Class targets: any integer dtype, never bool, floats, or times."""
    args = make(spec)
    args[arg] = args[arg].astype(dtype) if dtype != "U3" else args[arg].astype(str)
    with pytest.raises(TypeError, match=names(arg)):
        call(spec, args)


@pytest.mark.parametrize("dtype", [np.bool_, np.complex128, object, "U3", "m8[s]", "M8[s]"],
                         ids=str)
@pytest.mark.parametrize("spec", ["rnn_forward", "rnn_backward", "model_forward",
                                  "model_forward_backward"])
def test_token_ids_of_a_wrong_dtype(any_backend, spec, dtype):
    args = make(spec, ids=True)
    args["x"] = args["x"].astype(dtype) if dtype != "U3" else args["x"].astype(str)
    with pytest.raises(TypeError, match=names("x")):
        call(spec, args)


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_any_integer_dtype_is_a_valid_target(any_backend, dtype):
    args = make("softmax_cross_entropy")
    ref = K.softmax_cross_entropy(args["logits"], args["targets"])[0]
    assert K.softmax_cross_entropy(args["logits"], args["targets"].astype(dtype))[0] == ref


@pytest.mark.parametrize("shape", [(N + 1,), (N - 1,), (N, 1), (), (1, N)], ids=str)
def test_targets_shape(any_backend, shape):
    args = make("softmax_cross_entropy")
    with pytest.raises(ValueError, match=names("targets")):
        K.softmax_cross_entropy(args["logits"], np.zeros(shape, np.int64))


@pytest.mark.parametrize("shape", [(T, B + 1), (T + 1, B), (T * B,), (T, B, 1)], ids=str)
def test_token_ids_shape_in_rnn_backward(any_backend, shape):
    args = make("rnn_backward", ids=True)
    args["x"] = np.zeros(shape, np.int64)
    with pytest.raises(ValueError, match=names("x")):
        call("rnn_backward", args)


def test_rnn_backward_token_ids_give_no_dx(any_backend):
    g = call("rnn_backward", make("rnn_backward", ids=True))
    assert g.x is None


@pytest.mark.parametrize("ragged", ["targets", "x"])
def test_ragged_lists(any_backend, ragged):
    """A ragged nested list is bad input like any other: a named ValueError/TypeError."""
    if ragged == "targets":
        with pytest.raises((TypeError, ValueError), match=mentions("targets")):
            K.softmax_cross_entropy(np.zeros((2, 3)), [[0], [1, 2]])
    else:
        a = make("rnn_forward")
        with pytest.raises((TypeError, ValueError), match=mentions("x")):
            K.rnn_forward([[0, 1], [2]], None, a["W_xh"], a["W_hh"], a["b_h"])


# ---- empty arrays ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(0, B), (T, 0), (0, 0)], ids=["T=0", "B=0", "T=B=0"])
@pytest.mark.parametrize("ids", [False, True], ids=["dense", "ids"])
def test_model_forward_backward_needs_a_step_and_a_sequence(any_backend, shape, ids):
    args = make("model_forward_backward", ids=ids)
    args["x"] = np.zeros(shape, np.int64) if ids else np.zeros(shape + (I,))
    args["y"] = np.zeros(shape, np.int64)
    args["h0"] = args["dh0"] = None
    with pytest.raises(ValueError, match=names("x")):
        call("model_forward_backward", args)


def test_empty_losses(any_backend):
    with pytest.raises(ValueError, match=names("logits")):
        K.softmax_cross_entropy(np.zeros((0, O)), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match=names("pred")):
        K.mse_loss(np.zeros((0, O)), np.zeros((0, O)))
    with pytest.raises(ValueError, match=names("targets")):  # no class can be a target
        K.softmax_cross_entropy(np.zeros((N, 0)), np.zeros(N, np.int64))


@pytest.mark.parametrize("t,b", [(0, B), (T, 0), (0, 0)], ids=["T=0", "B=0", "T=B=0"])
@pytest.mark.parametrize("kind", ["dense", "ids"])
@pytest.mark.parametrize("fn", ["rnn_forward", "rnn_backward", "model_forward"])
def test_empty_sequences_where_no_loss_is_taken(any_backend, fn, kind, t, b):
    """T = 0 or B = 0 passes validation in these three (only the losses demand T, B >= 1).
    Then the call must either return arrays of the right (empty) shapes, or reject x with a
    ValueError naming it; a bare "invalid argument" or a NumPy reshape error is neither."""
    r = np.random.default_rng(1)
    W_xh, W_hh, b_h = r.standard_normal((I, H)), r.standard_normal((H, H)), r.standard_normal(H)
    h0 = r.standard_normal((b, H))
    x = np.zeros((t, b), np.int64) if kind == "ids" else np.zeros((t, b, I))
    try:
        if fn == "rnn_forward":
            hs = K.rnn_forward(x, h0, W_xh, W_hh, b_h)
            assert hs.shape == (t + 1, b, H) and np.array_equal(hs[0], h0)
        elif fn == "rnn_backward":
            hs = np.tile(np.tanh(h0), (t + 1, 1, 1))
            g = K.rnn_backward(np.zeros((t, b, H)), hs, x, W_xh, W_hh, need_dx=True)
            assert g.W_xh.shape == (I, H) and not g.W_xh.any() and g.h0.shape == (b, H)
        else:
            Y, hs = K.model_forward(r.standard_normal(NPARAMS), x, h0, input_size=I,
                                    hidden_size=H, output_size=O)
            assert Y.shape == (t, b, O) and hs.shape == (t + 1, b, H)
    except ValueError as e:
        assert re.search(names("x"), str(e)), f"{type(e).__name__}: {e}"


def test_empty_flat_buffers_are_valid(any_backend):
    e = np.zeros(0)
    K.adagrad_update(e, e.copy(), e.copy(), lr=0.1, step=1)
    K.sgd_update(e, e.copy(), e.copy(), lr=0.1, momentum=0.9)
    assert K.sum_squares(e) == 0
    assert K.activation(e).shape == (0,)
    assert K.activation_backward(e, e.copy()).shape == (0,)
    Y = K.linear_forward(np.zeros((0, I)), np.ones((I, O)), np.ones(O))
    assert Y.shape == (0, O)
    dW, db, dX = K.linear_backward(np.zeros((0, O)), np.zeros((0, I)), np.ones((I, O)))
    assert not dW.any() and not db.any() and dX.shape == (0, I)


@pytest.mark.parametrize("case", ["rnn_forward-I=0", "rnn_backward-I=0", "rnn_backward-H=0"])
def test_empty_weight_matrices_agree_across_backends(case):
    """W_xh (0, H) or W_hh (0, 0) pass validation. The numpy backend then computes a result;
    the C backend must give the same result or a ValueError naming an argument."""
    h = 0 if case.endswith("H=0") else H
    i = 0 if case.endswith("I=0") else I
    W_xh, W_hh, b_h = np.zeros((i, h)), np.full((h, h), 0.1), np.ones(h)
    x = np.ones((T, B, i))

    def run():
        if case.startswith("rnn_forward"):
            return K.rnn_forward(x, None, W_xh, W_hh, b_h)
        hs = np.full((T + 1, B, h), 0.5)
        return K.rnn_backward(np.ones((T, B, h)), hs, x, W_xh, W_hh)

    with elman.backend("numpy"):
        expected = run()
    try:
        got = run()
    except ValueError as e:
        assert re.search(r"\b(x|W_xh|W_hh|b_h|dH|hs)\b", str(e)), str(e)
    else:
        for g, w in zip(got if isinstance(got, tuple) else [got],
                        expected if isinstance(expected, tuple) else [expected]):
            if w is not None:
                np.testing.assert_allclose(g, w)


# ---- scalar arguments -----------------------------------------------------------------------

NUMBER_TYPE_ERRORS = ["0.1", None, 1j, [0.1], True, np.bool_(True)]
NEGATIVE_OR_NONFINITE = [-1e-3, -np.inf, np.inf, np.nan, np.float32(np.nan)]


def _scalar_cases():
    cases = []
    # (spec, name, extra kwargs that make the argument active)
    for spec, name, extra in [
        ("adagrad_update", "lr", {}), ("adagrad_update", "lr_decay", {}),
        ("adagrad_update", "weight_decay", {}), ("adagrad_update", "eps", {}),
        ("adagrad_update", "grad_scale", {}),
        ("sgd_update", "lr", {}), ("sgd_update", "momentum", {}),
        ("sgd_update", "weight_decay", {}), ("sgd_update", "grad_scale", {}),
    ]:
        for v in NUMBER_TYPE_ERRORS:
            cases.append(pytest.param(spec, name, v, TypeError, id=f"{spec}-{name}-{v!r}"))
        for v in NEGATIVE_OR_NONFINITE:
            cases.append(pytest.param(spec, name, v, ValueError, id=f"{spec}-{name}-{v!r}"))
    for spec in ("adagrad_update", "sgd_update"):
        for v in [0, 0.0, -1.0, np.nan, np.inf]:
            cases.append(pytest.param(spec, "clip_value", v, ValueError,
                                      id=f"{spec}-clip_value-{v!r}"))
        cases.append(pytest.param(spec, "clip_value", "5", TypeError, id=f"{spec}-clip-str"))
    for v, exc in [(0, ValueError), (-1, ValueError), (1.0, TypeError), (True, TypeError),
                   ("1", TypeError), (None, TypeError), (np.float64(1), TypeError)]:
        cases.append(pytest.param("adagrad_update", "step", v, exc, id=f"step-{v!r}"))
    for v in ["middle", None, "OUTSIDE", 0]:
        cases.append(pytest.param("adagrad_update", "eps_placement", v, ValueError,
                                  id=f"eps_placement-{v!r}"))
    for spec in ("activation", "activation_backward", "rnn_forward", "rnn_backward",
                 "model_forward", "model_forward_backward"):
        for v in ["sigmoid", "TANH", None, 0, ("tanh",)]:
            cases.append(pytest.param(spec, "nonlinearity", v, ValueError,
                                      id=f"{spec}-nonlinearity-{v!r}"))
    for spec in ("softmax_cross_entropy", "mse_loss", "model_forward_backward"):
        for v in ["avg", None, 0]:
            cases.append(pytest.param(spec, "reduction", v, ValueError,
                                      id=f"{spec}-reduction-{v!r}"))
    for v in ["hinge", None, "MSE", 1]:
        cases.append(pytest.param("model_forward_backward", "loss", v, ValueError,
                                  id=f"loss-{v!r}"))
    return cases


@pytest.mark.parametrize("spec,name,value,exc", _scalar_cases())
def test_scalar_arguments(any_backend, spec, name, value, exc):
    args = make(spec)
    before = {k: v.copy() for k, v in args.items()}
    with pytest.raises(exc, match=names(name)):
        call(spec, args, **{name: value})
    for k, v in args.items():          # validation came before any write
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("where", ["adagrad_update-lr", "sgd_update-lr", "adagrad_update-eps",
                                   "Adagrad-lr", "SGD-momentum", "clip_grad_norm_-max_norm"])
def test_huge_integer_hyperparameter(where):
    """10**400 is an int too large for a float: bad input like inf, so a ValueError (or
    TypeError) naming the argument, not an OverflowError from float()."""
    fn_name, name = where.split("-")
    big = 10**400
    if fn_name in ("adagrad_update", "sgd_update"):
        run = lambda: call(fn_name, make(fn_name), **{name: big})  # noqa: E731
    elif fn_name == "Adagrad":
        run = lambda: elman.Adagrad(elman.ElmanRNN(3, 4, 5), **{name: big})  # noqa: E731
    elif fn_name == "SGD":
        run = lambda: elman.SGD(elman.ElmanRNN(3, 4, 5), lr=0.1, **{name: big})  # noqa: E731
    else:
        run = lambda: elman.clip_grad_norm_(np.ones(3), big)  # noqa: E731
    with pytest.raises((ValueError, TypeError), match=names(name)):
        run()


@pytest.mark.parametrize("step", [2**63 - 1, 2**63, 2**70])
def test_adagrad_step_beyond_int64(any_backend, step):
    """A step the kernel's int64 counter cannot represent is rejected by name (steps are
    capped at 2**62), not leaked as a bare OverflowError from the binding."""
    a = make("adagrad_update")
    try:
        K.adagrad_update(**a, lr=0.1, step=step)
    except (ValueError, TypeError) as e:
        assert re.search(names("step"), str(e)), str(e)


# ============================================================================================
# 2. ElmanRNN
# ============================================================================================

@pytest.mark.parametrize("value,exc", [(0, ValueError), (-3, ValueError), (2.0, TypeError),
                                       ("4", TypeError), (True, TypeError), (None, TypeError),
                                       (np.float32(4), TypeError)])
@pytest.mark.parametrize("pos", [0, 1, 2], ids=["input_size", "hidden_size", "output_size"])
def test_elman_sizes(pos, value, exc):
    sizes = [I, H, O]
    sizes[pos] = value
    name = ("input_size", "hidden_size", "output_size")[pos]
    with pytest.raises(exc, match=names(name)):
        elman.ElmanRNN(*sizes)


def test_elman_numpy_integer_sizes_are_fine():
    m = elman.ElmanRNN(np.int64(I), np.int32(H), np.uint8(O))
    assert (m.input_size, m.hidden_size, m.output_size) == (I, H, O)


@pytest.mark.parametrize("kw,exc,arg", [
    (dict(nonlinearity="sigmoid"), ValueError, "nonlinearity"),
    (dict(nonlinearity=None), ValueError, "nonlinearity"),
    (dict(dtype="float16"), TypeError, "dtype"),
    (dict(dtype=np.int32), TypeError, "dtype"),
    (dict(dtype=np.complex128), TypeError, "dtype"),
    (dict(dtype=object), TypeError, "dtype"),
    (dict(dtype="nonsense"), TypeError, "dtype"),
    (dict(dtype=np.longdouble), TypeError, "dtype"),
    (dict(init="xavier"), ValueError, "init"),
    (dict(init=None), ValueError, "init"),
], ids=lambda v: repr(v) if isinstance(v, dict) else None)
def test_elman_options(kw, exc, arg):
    with pytest.raises(exc, match=names(arg)):
        elman.ElmanRNN(I, H, O, **kw)


@pytest.mark.parametrize("seed,exc", [(-1, ValueError), ("abc", TypeError), (1.5, TypeError)])
def test_elman_bad_seed(seed, exc):
    with pytest.raises(exc, match=mentions("seed")):
        elman.ElmanRNN(I, H, O, seed=seed)


@pytest.mark.parametrize("sizes", [(2**62, 2**62, 1), (1, 2**62, 2**62)], ids=str)
def test_elman_sizes_too_large_for_any_buffer(sizes):
    """Sizes whose parameter count cannot be an array: a ValueError naming a size (not a
    NumPy error about 'dimensions' that names none of the constructor's arguments)."""
    with pytest.raises(ValueError, match=r"\b(input_size|hidden_size|output_size)\b"):
        elman.ElmanRNN(*sizes)


@pytest.fixture
def model():
    return elman.ElmanRNN(I, H, O, dtype="float64", seed=3)


def _ids(shape=(T, B), hi=I):
    return np.random.default_rng(5).integers(0, hi, size=shape)


def _dense(shape=(T, B, I), dtype=np.float64):
    return np.random.default_rng(5).standard_normal(shape).astype(dtype)


X_CASES = [
    ("bool", lambda: np.ones((T, B), bool), TypeError),
    ("complex", lambda: _dense().astype(complex), TypeError),
    ("object", lambda: _dense().astype(object), TypeError),
    ("str", lambda: np.full((T, B), "a"), TypeError),
    ("timedelta", lambda: _ids().astype("m8[s]"), TypeError),
    ("datetime", lambda: _ids().astype("M8[s]"), TypeError),
    ("string-scalar", lambda: "hello", TypeError),
    ("none", lambda: None, TypeError),
    ("dense-wrong-I", lambda: _dense((T, B, I + 1)), ValueError),
    ("dense-2d", lambda: _dense((T, B)), ValueError),
    ("dense-4d", lambda: _dense((T, B, I, 1)), ValueError),
    ("ids-1d", lambda: _ids((T,)), ValueError),
    ("ids-3d", lambda: _ids((T, B, I)), ValueError),
    ("ids-scalar", lambda: np.int64(1), ValueError),
    ("ids-negative", lambda: _ids() - I, ValueError),
    ("ids-equal-I", lambda: np.full((T, B), I), ValueError),
    ("ids-huge", lambda: np.full((T, B), 2**62), ValueError),
    ("ids-uint64-huge", lambda: np.full((T, B), 2**64 - 1, np.uint64), ValueError),
    ("T=0-dense", lambda: _dense((0, B, I)), ValueError),
    ("B=0-dense", lambda: _dense((T, 0, I)), ValueError),
    ("T=0-ids", lambda: _ids((0, B)), ValueError),
    ("B=0-ids", lambda: _ids((T, 0)), ValueError),
    ("nan", lambda: np.where(np.arange(T * B * I).reshape(T, B, I) == 5, np.nan, 0.0),
     NonFiniteError),
    ("inf-float16", lambda: np.full((T, B, I), np.inf, np.float16), NonFiniteError),
]


@pytest.mark.parametrize("method", ["forward", "forward_backward"])
@pytest.mark.parametrize("name,make_x,exc", X_CASES, ids=[c[0] for c in X_CASES])
def test_elman_bad_x(model, method, name, make_x, exc):
    x = make_x()
    before = model.params.copy(), model.grads.copy()
    with pytest.raises(exc, match=mentions("x")):
        if method == "forward":
            model.forward(x)
        else:
            model.forward_backward(x, np.zeros((T, B), np.int64))
    assert np.array_equal(model.params, before[0]) and np.array_equal(model.grads, before[1])


@pytest.mark.parametrize("batch_first", [False, True])
def test_elman_accepts_other_float_dtypes_and_layouts(model, batch_first):
    """Documented: float x of another dtype or layout is cast/copied, not rejected."""
    x = _dense((T, B, I), np.float16)
    x = np.asfortranarray(x.swapaxes(0, 1) if batch_first else x)
    Y, h = model.forward(x, batch_first=batch_first)
    assert np.isfinite(Y).all() and h.shape == (1, B, H)


H0_CASES = [
    ("int", np.zeros((B, H), np.int64), TypeError),
    ("bool", np.zeros((B, H), bool), TypeError),
    ("complex", np.zeros((B, H), complex), TypeError),
    ("str", np.full((B, H), "a"), TypeError),
    ("object", np.zeros((B, H), object), TypeError),
    ("wrong-B", np.zeros((B + 1, H)), ValueError),
    ("wrong-H", np.zeros((B, H + 1)), ValueError),
    ("two-layers", np.zeros((2, B, H)), ValueError),
    ("1d", np.zeros(H), ValueError),
    ("nan", np.full((B, H), np.nan), NonFiniteError),
    ("-inf", np.full((1, B, H), -np.inf), NonFiniteError),
]


@pytest.mark.parametrize("method", ["forward", "forward_backward"])
@pytest.mark.parametrize("name,h0,exc", H0_CASES, ids=[c[0] for c in H0_CASES])
def test_elman_bad_h0(model, method, name, h0, exc):
    x = _ids()
    with pytest.raises(exc, match=mentions("h0")):
        if method == "forward":
            model.forward(x, h0)
        else:
            model.forward_backward(x, np.zeros((T, B), np.int64), h0)


Y_CASES = [
    ("xent-float", "cross_entropy", False, lambda: np.zeros((T, B)), TypeError),
    ("xent-bool", "cross_entropy", False, lambda: np.zeros((T, B), bool), TypeError),
    ("xent-str", "cross_entropy", False, lambda: np.full((T, B), "1"), TypeError),
    ("xent-timedelta", "cross_entropy", False, lambda: np.zeros((T, B), "m8[s]"), TypeError),
    ("xent-negative", "cross_entropy", False, lambda: np.full((T, B), -1), ValueError),
    ("xent-equal-O", "cross_entropy", False, lambda: np.full((T, B), O), ValueError),
    ("xent-huge", "cross_entropy", False, lambda: np.full((T, B), 2**62), ValueError),
    ("xent-uint64", "cross_entropy", False, lambda: np.full((T, B), 2**63, np.uint64),
     ValueError),
    ("xent-wrong-shape", "cross_entropy", False, lambda: np.zeros((T, B + 1), int), ValueError),
    ("xent-last-step-needs-(B,)", "cross_entropy", True, lambda: np.zeros((T, B), int),
     ValueError),
    ("mse-int", "mse", False, lambda: np.zeros((T, B, O), int), TypeError),
    ("mse-complex", "mse", False, lambda: np.zeros((T, B, O), complex), TypeError),
    ("mse-wrong-O", "mse", False, lambda: np.zeros((T, B, O + 1)), ValueError),
    ("mse-last-step-needs-(B,O)", "mse", True, lambda: np.zeros((T, B, O)), ValueError),
    ("mse-nan", "mse", False, lambda: np.full((T, B, O), np.nan), NonFiniteError),
    ("mse-inf", "mse", True, lambda: np.full((B, O), np.inf), NonFiniteError),
]


@pytest.mark.parametrize("name,loss,last,make_y,exc", Y_CASES, ids=[c[0] for c in Y_CASES])
def test_elman_bad_y(model, name, loss, last, make_y, exc):
    before = model.grads.copy()
    with pytest.raises(exc, match=mentions("y")):
        model.forward_backward(_ids(), make_y(), loss=loss, last_step_only=last)
    assert np.array_equal(model.grads, before)


@pytest.mark.parametrize("kw,arg", [(dict(loss="hinge"), "loss"), (dict(loss=None), "loss"),
                                    (dict(reduction="avg"), "reduction"),
                                    (dict(reduction=None), "reduction")])
def test_elman_bad_loss_options(model, kw, arg):
    with pytest.raises(ValueError, match=names(arg)):
        model.forward_backward(_ids(), np.zeros((T, B), int), **kw)


def test_elman_batch_first_shapes(model):
    """batch_first=True swaps the first two axes of x and y; y in time-major order no longer
    fits."""
    x = _ids((B, T))
    model.forward_backward(x, _ids((B, T), O), batch_first=True)
    with pytest.raises(ValueError, match=mentions("y")):
        model.forward_backward(x, _ids((T, B), O) if T != B else _ids((T, B + 1), O),
                               batch_first=True)


def test_elman_forward_backward_rejects_x_aliasing_grads(model):
    """x living inside model.grads is overwritten mid-computation (the gradients written
    before x is read again are wrong); kernels.model_forward_backward rejects this aliasing,
    so must the method."""
    view = model.grads[I * H:I * H + T * B * I].reshape(T, B, I)   # inside dW_hh
    view[...] = 1.0
    with pytest.raises(ValueError, match=mentions("x")):
        model.forward_backward(view, np.zeros((T, B), np.int64))


@pytest.mark.parametrize("tamper", ["params-short", "params-f16", "params-strided",
                                    "grads-short", "grads-readonly", "hidden_size",
                                    "input_size"])
def test_tampered_model_attributes_do_not_crash(tamper):
    """Assigning nonsense to a model's attributes is not an entry point's argument, but it
    must still not crash the process (the binding's own checks are the last line)."""
    m = elman.ElmanRNN(I, H, O)
    replacements = {"params-short": lambda: ("params", m.params[:-1].copy()),
                    "params-f16": lambda: ("params", m.params.astype(np.float16)),
                    "params-strided": lambda: ("params", np.repeat(m.params, 2)[::2]),
                    "grads-short": lambda: ("grads", np.zeros(3, m.dtype))}
    if tamper in replacements:
        # the flat buffers cannot be rebound: the views and optimizers hold on to them
        name, value = replacements[tamper]()
        with pytest.raises(AttributeError):
            setattr(m, name, value)
        m.forward_backward(_ids(), np.zeros((T, B), np.int64))  # the model still works
        return
    if tamper == "grads-readonly":
        m.grads.flags.writeable = False
    elif tamper == "hidden_size":
        m.hidden_size = H + 1
    else:
        m.input_size = 10**6
    forward = lambda: m.forward(_ids())  # noqa: E731
    forward_backward = lambda: m.forward_backward(_ids(), np.zeros((T, B), np.int64))  # noqa: E731
    if tamper == "grads-readonly":
        forward()  # forward does not write the gradients
        with pytest.raises(ValueError, match="read-only"):
            forward_backward()
        return
    for call in (forward, forward_backward):  # any exception, as long as the process survives
        with pytest.raises(Exception):
            call()


# ============================================================================================
# 3. Optimizers, clip_grad_norm_, backend
# ============================================================================================

OPTS = {"Adagrad": lambda model, **kw: elman.Adagrad(model, **kw),
        "SGD": lambda model, **kw: elman.SGD(model, **{"lr": 0.1, **kw})}


def _pair(dt=np.float64, n=8):
    return np.zeros(n, dt), np.zeros(n, dt)


MODEL_ARG_CASES = [
    ("int", lambda: 42, TypeError, None),
    ("str", lambda: "model", TypeError, None),
    ("none", lambda: None, TypeError, None),
    ("one-array", lambda: (np.zeros(3),), TypeError, None),
    ("triple", lambda: (np.zeros(3),) * 3, TypeError, None),
    ("dict", lambda: {"params": np.zeros(3), "grads": np.zeros(3)}, TypeError, None),
    ("params-2d", lambda: (np.zeros((2, 4)), np.zeros((2, 4))), ValueError, "params"),
    ("params-int", lambda: (np.zeros(4, int), np.zeros(4)), TypeError, "params"),
    ("grads-int", lambda: (np.zeros(4), np.zeros(4, int)), TypeError, "grads"),
    ("mixed-float", lambda: (np.zeros(4), np.zeros(4, np.float32)), TypeError, "grads"),
    ("list-params", lambda: ([0.0] * 4, np.zeros(4)), TypeError, "params"),
    ("grads-short", lambda: (np.zeros(4), np.zeros(3)), ValueError, "grads"),
    ("params-strided", lambda: (np.zeros(8)[::2], np.zeros(4)), ValueError, "params"),
    ("grads-reversed", lambda: (np.zeros(4), np.zeros(4)[::-1]), ValueError, "grads"),
    ("params-readonly", lambda: _readonly_pair(), ValueError, "params"),
    ("aliased", lambda: (lambda p: (p, p))(np.zeros(4)), ValueError, "params"),
    ("overlapping", lambda: (lambda b: (b[:4], b[2:6]))(np.zeros(6)), ValueError, "params"),
]


def _readonly_pair():
    p, g = _pair()
    p.flags.writeable = False
    return p, g


@pytest.mark.parametrize("name,make_model,exc,arg", MODEL_ARG_CASES,
                         ids=[c[0] for c in MODEL_ARG_CASES])
@pytest.mark.parametrize("opt", list(OPTS))
def test_optimizer_model_argument(opt, name, make_model, exc, arg):
    with pytest.raises(exc, match=mentions(arg) if arg else f"^{opt}: "):
        OPTS[opt](make_model())


def _hyper_cases():
    cases = []
    common = ["lr", "weight_decay", "clip_value", "max_grad_norm"]
    for opt, extra in [("Adagrad", ["lr_decay", "eps", "initial_accumulator_value"]),
                       ("SGD", ["momentum"])]:
        for name in common + extra:
            for v in [-1.0, np.nan, np.inf, -np.inf]:
                cases.append(pytest.param(opt, name, v, ValueError, id=f"{opt}-{name}-{v}"))
            for v in ["0.1", 1j, True, [1.0]]:
                cases.append(pytest.param(opt, name, v, TypeError, id=f"{opt}-{name}-{v!r}"))
        for name in ("clip_value", "max_grad_norm"):     # strictly positive
            cases.append(pytest.param(opt, name, 0.0, ValueError, id=f"{opt}-{name}-0"))
        cases.append(pytest.param(opt, "lr", None, TypeError, id=f"{opt}-lr-None"))
    for v in ["pytorch", "Torch", 3, ("torch",)]:
        cases.append(pytest.param("Adagrad", "preset", v, ValueError, id=f"preset-{v!r}"))
    for v in ["middle", None, 1]:
        cases.append(pytest.param("Adagrad", "eps_placement", v, ValueError,
                                  id=f"eps_placement-{v!r}"))
    return cases


@pytest.mark.parametrize("opt,name,value,exc", _hyper_cases())
def test_optimizer_hyperparameters(opt, name, value, exc):
    with pytest.raises(exc, match=names(name)):
        OPTS[opt](elman.ElmanRNN(I, H, O), **{name: value})


def test_adagrad_eps_inside_zero_zero():
    with pytest.raises(ValueError, match=mentions("eps")):
        elman.Adagrad(elman.ElmanRNN(I, H, O), eps_placement="inside", eps=0.0,
                      initial_accumulator_value=0.0)


def test_sgd_needs_lr():
    with pytest.raises(TypeError, match="lr"):
        elman.SGD(elman.ElmanRNN(I, H, O))


@pytest.mark.parametrize("opt", list(OPTS))
@pytest.mark.parametrize("max_grad_norm", [None, 1.0])
def test_optimizer_step_with_non_finite_grads(any_backend, opt, max_grad_norm):
    m = elman.ElmanRNN(I, H, O)
    o = OPTS[opt](m, max_grad_norm=max_grad_norm)
    m.grads[7] = np.nan
    before = m.params.copy()
    with pytest.raises(NonFiniteError, match=r"grad"):
        o.step()
    if max_grad_norm is not None:     # the norm is checked first: nothing was updated
        np.testing.assert_array_equal(m.params, before)


CLIP_GRADS = [
    ("int", lambda: np.ones(4, int), TypeError, "grads"),
    ("list", lambda: [1.0, 2.0], TypeError, "grads"),
    ("none", lambda: None, TypeError, "grads"),
    ("complex", lambda: np.ones(4, complex), TypeError, "grads"),
    ("float16", lambda: np.ones(4, np.float16), TypeError, "grads"),
    ("strided", lambda: np.ones(8)[::2], ValueError, "grads"),
    ("fortran", lambda: np.asfortranarray(np.ones((3, 4))), ValueError, "grads"),
    ("readonly", lambda: np.lib.stride_tricks.as_strided(np.ones(4), writeable=False),
     ValueError, "grads"),
]


@pytest.mark.parametrize("name,make_g,exc,arg", CLIP_GRADS, ids=[c[0] for c in CLIP_GRADS])
def test_clip_grad_norm_bad_grads(any_backend, name, make_g, exc, arg):
    with pytest.raises(exc, match=names(arg)):
        elman.clip_grad_norm_(make_g(), 1.0)


@pytest.mark.parametrize("value,exc", [(0.0, ValueError), (-1.0, ValueError),
                                       (np.nan, ValueError), (np.inf, ValueError),
                                       ("1", TypeError), (None, TypeError), (True, TypeError)])
def test_clip_grad_norm_bad_max_norm(any_backend, value, exc):
    g = np.ones(4)
    with pytest.raises(exc, match=names("max_norm")):
        elman.clip_grad_norm_(g, value)
    assert (g == 1).all()


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_clip_grad_norm_non_finite_grads_left_alone(any_backend, value):
    m = elman.ElmanRNN(I, H, O)
    m.grads[:] = 1.0
    m.grads[2] = value
    before = m.grads.copy()
    with pytest.raises(NonFiniteError, match="grad"):
        elman.clip_grad_norm_(m, 0.5)
    np.testing.assert_array_equal(m.grads, before)


@pytest.mark.parametrize("name", ["cuda", "C", "NumPy", "", 0, ["c"], b"c"])
def test_backend_bad_name(name):
    previous = elman.backend()
    with pytest.raises(ValueError, match=names("name")):
        elman.backend(name)
    assert elman.backend() == previous


# ============================================================================================
# 4. The private Cython layer, called directly (in a child interpreter)
# ============================================================================================

# Each case: (id, code, outcome). outcome "raises": the code must raise ValueError,
# OverflowError or TypeError; "nonfinite": FloatingPointError; "survives": it may also
# return normally, but must not crash.
# Names used by the code: np, math, C (elman._core), f64(n), f32(n), i64(*values), E (empty).
CORE_CASES = [
    # sumsq / activations
    ("sumsq-strided", "C.sumsq(f64(6)[::2])", "raises"),
    ("sumsq-2d", "C.sumsq(f64(6).reshape(2, 3))", "raises"),
    ("sumsq-int", "C.sumsq(np.ones(3, np.int64))", "raises"),
    ("sumsq-list", "C.sumsq([1.0, 2.0])", "raises"),
    ("act_forward-y-short", "C.act_forward(f64(3), f64(4), 0)", "raises"),
    ("act_forward-y-long", "C.act_forward(f64(5), f64(4), 0)", "raises"),
    ("act_forward-nl-2", "C.act_forward(f64(3), f64(3), 2)", "raises"),
    ("act_forward-nl-neg", "C.act_forward(f64(3), f64(3), -1)", "raises"),
    ("act_forward-nl-huge", "C.act_forward(f64(3), f64(3), 2**40)", "raises"),
    ("act_forward-mixed", "C.act_forward(f32(3), f64(3), 0)", "raises"),
    ("act_forward-readonly", "y = f64(3); y.flags.writeable = False; C.act_forward(y, f64(3), 0)",
     "raises"),
    ("act_backward-dH-short", "C.act_backward(f64(4), f64(3), f64(4), 0)", "raises"),
    ("act_backward-dA-short", "C.act_backward(f64(3), f64(4), f64(4), 1)", "raises"),
    # optimizers
    ("adagrad-state-short", "C.adagrad_update(f64(4), f64(3), f64(4), .1, 0, 0, 1e-10, math.inf,"
                            " 1., 1, False, False)", "raises"),
    ("adagrad-grad-short", "C.adagrad_update(f64(4), f64(4), f64(0), .1, 0, 0, 1e-10, math.inf,"
                           " 1., 1, False, False)", "raises"),
    ("adagrad-grad-none", "C.adagrad_update(f64(4), f64(4), None, .1, 0, 0, 1e-10, math.inf,"
                          " 1., 1, False, False)", "raises"),
    ("adagrad-step-0", "C.adagrad_update(f64(4), f64(4), f64(4), .1, 0, 0, 1e-10, math.inf, 1.,"
                       " 0, False, False)", "raises"),
    ("adagrad-step-2**63", "C.adagrad_update(f64(4), f64(4), f64(4), .1, 0, 0, 1e-10, math.inf,"
                           " 1., 2**63, False, False)", "raises"),
    ("adagrad-eps-nan", "C.adagrad_update(f64(4), f64(4), f64(4), .1, 0, 0, math.nan, math.inf,"
                        " 1., 1, False, False)", "raises"),
    ("adagrad-clip-0", "C.adagrad_update(f64(4), f64(4), f64(4), .1, 0, 0, 1e-10, 0., 1., 1,"
                       " False, False)", "raises"),
    ("adagrad-mixed", "C.adagrad_update(f64(4), f32(4), f64(4), .1, 0, 0, 1e-10, math.inf, 1.,"
                      " 1, False, False)", "raises"),
    ("sgd-momentum-buf-missing", "C.sgd_update(f64(4), E, f64(4), .1, .9, 0, math.inf, 1., False)",
     "raises"),
    ("sgd-momentum-nan-buf-missing", "C.sgd_update(f64(4), E, f64(4), .1, math.nan, 0, math.inf,"
                                     " 1., False)", "raises"),
    ("sgd-grad-short", "C.sgd_update(f64(4), E, f64(3), .1, 0., 0, math.inf, 1., False)",
     "raises"),
    ("sgd-clip-negative", "C.sgd_update(f64(4), E, f64(4), .1, 0., 0, -1., 1., False)", "raises"),
    # rnn_forward(hs, x, ids, W_xh, W_hh, b_h, T, B, I, H, nl, use_ids)
    ("rnn_forward-hs-short", "C.rnn_forward(f64(5), E, i64(0), f64(3), f64(9), f64(3), 1, 1, 1,"
                             " 3, 0, True)", "raises"),
    ("rnn_forward-x-short", "C.rnn_forward(f64(6), f64(3), i64(), f64(12), f64(9), f64(3), 1, 1,"
                            " 4, 3, 0, False)", "raises"),
    ("rnn_forward-ids-short", "C.rnn_forward(f64(9), E, i64(0), f64(3), f64(9), f64(3), 2, 1,"
                              " 1, 3, 0, True)", "raises"),
    ("rnn_forward-W_xh-short", "C.rnn_forward(f64(6), E, i64(0), f64(2), f64(9), f64(3), 1, 1,"
                               " 1, 3, 0, True)", "raises"),
    ("rnn_forward-W_hh-short", "C.rnn_forward(f64(6), E, i64(0), f64(3), f64(8), f64(3), 1, 1,"
                               " 1, 3, 0, True)", "raises"),
    ("rnn_forward-b_h-empty", "C.rnn_forward(f64(6), E, i64(0), f64(3), f64(9), E, 1, 1, 1, 3,"
                              " 0, True)", "raises"),
    ("rnn_forward-T-negative", "C.rnn_forward(f64(6), E, i64(0), f64(3), f64(9), f64(3), -1, 1,"
                               " 1, 3, 0, True)", "raises"),
    ("rnn_forward-H-2**40", "C.rnn_forward(f64(6), E, i64(0), f64(3), f64(9), f64(3), 1, 1, 1,"
                            " 2**40, 0, True)", "raises"),
    ("rnn_forward-I-2**63", "C.rnn_forward(E, E, i64(5), E, E, E, 1, 1, 2**63, 0, 0, True)",
     "raises"),
    ("rnn_forward-I-2**62-H-0", "C.rnn_forward(E, E, i64(5), E, E, E, 1, 1, 2**62, 0, 0, True)",
     "survives"),
    ("rnn_forward-id-out-of-range", "C.rnn_forward(f64(6), E, i64(1), f64(3), f64(9), f64(3), 1,"
                                    " 1, 1, 3, 0, True)", "raises"),
    ("rnn_forward-id-negative", "C.rnn_forward(f64(6), E, i64(-1), f64(3), f64(9), f64(3), 1, 1,"
                                " 1, 3, 0, True)", "raises"),
    ("rnn_forward-id-2**62", "C.rnn_forward(f64(6), E, i64(2**62), f64(3), f64(9), f64(3), 1, 1,"
                             " 1, 3, 0, True)", "raises"),
    ("rnn_forward-nl-7", "C.rnn_forward(f64(6), E, i64(0), f64(3), f64(9), f64(3), 1, 1, 1, 3,"
                         " 7, True)", "raises"),
    ("rnn_forward-ids-flag-but-x", "C.rnn_forward(f64(6), f64(1), E.astype(np.int64), f64(3),"
                                   " f64(9), f64(3), 1, 1, 1, 3, 0, True)", "raises"),
    ("rnn_forward-T-str", "C.rnn_forward(f64(6), E, i64(0), f64(3), f64(9), f64(3), '1', 1, 1,"
                          " 3, 0, True)", "raises"),
    ("rnn_forward-T-none", "C.rnn_forward(f64(6), E, i64(0), f64(3), f64(9), f64(3), None, 1, 1,"
                           " 3, 0, True)", "raises"),
    ("rnn_forward-T-nan", "C.rnn_forward(f64(6), E, i64(0), f64(3), f64(9), f64(3), math.nan, 1,"
                          " 1, 3, 0, True)", "raises"),
    ("rnn_forward-ids-int32", "C.rnn_forward(f64(6), E, np.zeros(1, np.int32), f64(3), f64(9),"
                              " f64(3), 1, 1, 1, 3, 0, True)", "raises"),
    # rnn_backward(dW_xh, dW_hh, db_h, dh0, dx, dA, dH, dh_T, hs, x, ids, W_xh, W_hh,
    #              T, B, I, H, nl, use_ids) with T=1, B=1, I=2, H=3
    ("rnn_backward-ok", "C.rnn_backward(f64(6), f64(9), f64(3), f64(3), f64(2), f64(3), f64(3),"
                        " f64(3), f64(6), f64(2), i64(), f64(6), f64(9), 1, 1, 2, 3, 0, False)",
     "survives"),
    ("rnn_backward-dA-short", "C.rnn_backward(f64(6), f64(9), f64(3), E, E, f64(2), f64(3), E,"
                              " f64(6), f64(2), i64(), f64(6), f64(9), 1, 1, 2, 3, 0, False)",
     "raises"),
    ("rnn_backward-hs-short", "C.rnn_backward(f64(6), f64(9), f64(3), E, E, f64(3), f64(3), E,"
                              " f64(3), f64(2), i64(), f64(6), f64(9), 1, 1, 2, 3, 0, False)",
     "raises"),
    ("rnn_backward-dh0-wrong", "C.rnn_backward(f64(6), f64(9), f64(3), f64(2), E, f64(3), f64(3),"
                               " E, f64(6), f64(2), i64(), f64(6), f64(9), 1, 1, 2, 3, 0, False)",
     "raises"),
    ("rnn_backward-dh_T-wrong", "C.rnn_backward(f64(6), f64(9), f64(3), E, E, f64(3), f64(3),"
                                " f64(4), f64(6), f64(2), i64(), f64(6), f64(9), 1, 1, 2, 3, 0,"
                                " False)", "raises"),
    ("rnn_backward-dx-with-ids", "C.rnn_backward(f64(6), f64(9), f64(3), E, f64(2), f64(3),"
                                 " f64(3), E, f64(6), E, i64(1), f64(6), f64(9), 1, 1, 2, 3, 0,"
                                 " True)", "raises"),
    ("rnn_backward-id-out-of-range", "C.rnn_backward(f64(6), f64(9), f64(3), E, E, f64(3),"
                                     " f64(3), E, f64(6), E, i64(2), f64(6), f64(9), 1, 1, 2, 3,"
                                     " 0, True)", "raises"),
    ("rnn_backward-huge-sizes", "C.rnn_backward(*[E] * 10, i64(), E, E, 0, 0, 2**62, 2**62, 0,"
                                " False)", "raises"),
    ("rnn_backward-H-0-I-huge", "C.rnn_backward(*[E] * 10, i64(0), E, E, 1, 1, 2**62, 0, 0,"
                                " True)", "survives"),
    # linear_forward(Y, X, W, b, N, K, O) / linear_backward(dW, db, dX, dY, X, W, N, K, O)
    ("linear_forward-Y-short", "C.linear_forward(f64(3), f64(4), f64(4), E, 2, 2, 2)", "raises"),
    ("linear_forward-X-short", "C.linear_forward(f64(4), f64(3), f64(4), E, 2, 2, 2)", "raises"),
    ("linear_forward-W-long", "C.linear_forward(f64(4), f64(4), f64(5), E, 2, 2, 2)", "raises"),
    ("linear_forward-b-wrong", "C.linear_forward(f64(4), f64(4), f64(4), f64(3), 2, 2, 2)",
     "raises"),
    ("linear_forward-N-negative", "C.linear_forward(E, E, E, E, -1, 0, 0)", "raises"),
    ("linear_forward-K-2**40", "C.linear_forward(f64(4), f64(4), f64(4), E, 2, 2**40, 2)",
     "raises"),
    ("linear_forward-wraparound-np-int64",
     "B = np.int64(2**32); C.linear_forward(E, E, E, E, B, np.int64(0), B)", "raises"),
    ("linear_forward-float-sizes", "C.linear_forward(f64(5), f64(5), f64(4), E, 2.5, 2, 2)",
     "raises"),
    ("linear_forward-zero-K-huge-N", "C.linear_forward(E, E, E, E, 2**62, 0, 0)", "survives"),
    ("linear_backward-dW-short", "C.linear_backward(f64(3), E, E, f64(4), f64(4), f64(4), 2, 2,"
                                 " 2)", "raises"),
    ("linear_backward-dY-short", "C.linear_backward(f64(4), E, E, f64(3), f64(4), f64(4), 2, 2,"
                                 " 2)", "raises"),
    ("linear_backward-db-wrong", "C.linear_backward(f64(4), f64(3), E, f64(4), f64(4), f64(4), 2,"
                                 " 2, 2)", "raises"),
    ("linear_backward-dX-wrong", "C.linear_backward(f64(4), E, f64(5), f64(4), f64(4), f64(4), 2,"
                                 " 2, 2)", "raises"),
    ("linear_backward-huge", "C.linear_backward(E, f64(5), E, E, E, E, 2**62, 0, 5)", "raises"),
    # softmax_xent(dlogits, logits, targets, N, O, scale) / mse(dpred, pred, target, scale)
    ("softmax-target-O", "C.softmax_xent(E, f64(3), i64(3), 1, 3, 1.)", "raises"),
    ("softmax-target-negative", "C.softmax_xent(f64(6), f64(6), i64(0, -1), 2, 3, 1.)", "raises"),
    ("softmax-target-int64-max", "C.softmax_xent(E, f64(3), i64(2**63 - 1), 1, 3, 1.)", "raises"),
    ("softmax-targets-short", "C.softmax_xent(E, f64(6), i64(0), 2, 3, 1.)", "raises"),
    ("softmax-logits-short", "C.softmax_xent(E, f64(5), i64(0, 0), 2, 3, 1.)", "raises"),
    ("softmax-dlogits-wrong", "C.softmax_xent(f64(5), f64(6), i64(0, 0), 2, 3, 1.)", "raises"),
    ("softmax-O-0", "C.softmax_xent(E, E, i64(0, 0), 2, 0, 1.)", "raises"),
    ("softmax-scale-nan", "C.softmax_xent(E, f64(3), i64(0), 1, 3, math.nan)", "raises"),
    ("softmax-scale-negative", "C.softmax_xent(E, f64(3), i64(0), 1, 3, -1.)", "raises"),
    ("softmax-targets-float", "C.softmax_xent(E, f64(3), f64(1), 1, 3, 1.)", "raises"),
    ("mse-target-short", "C.mse(E, f64(3), f64(2), 1.)", "raises"),
    ("mse-dpred-wrong", "C.mse(f64(2), f64(3), f64(3), 1.)", "raises"),
    ("mse-scale-negative", "C.mse(E, f64(3), f64(3), -1.)", "raises"),
    # model_forward(Y, hs, work, x, ids, params, T, B, I, H, O, nl, use_ids): T=B=1, I=2,
    # H=3, O=2 -> params 2*3 + 9 + 3 + 6 + 2 = 26; U: an empty workspace (none needed)
    # model_forward_backward(grads, dh0, hs, Y, dA, work, x, ids, y_ids, y_values, dh_T,
    #                        params, T, B, I, H, O, nl, use_ids, loss, reduction, last)
    ('model_forward-ok',
     'C.model_forward(f64(2), f64(6), U, E, i64(1), f64(26), 1, 1, 2, 3, 2, 0, True)',
     'survives'),
    ('model_forward-params-short',
     'C.model_forward(f64(2), f64(6), U, E, i64(1), f64(25), 1, 1, 2, 3, 2, 0, True)',
     'raises'),
    ('model_forward-Y-short',
     'C.model_forward(f64(1), f64(6), U, E, i64(1), f64(26), 1, 1, 2, 3, 2, 0, True)',
     'raises'),
    ('model_forward-hs-short',
     'C.model_forward(f64(2), f64(3), U, E, i64(1), f64(26), 1, 1, 2, 3, 2, 0, True)',
     'raises'),
    ('model_forward-id-out-of-range',
     'C.model_forward(f64(2), f64(6), U, E, i64(2), f64(26), 1, 1, 2, 3, 2, 0, True)',
     'raises'),
    ('model_forward-I-2**62-H-0',
     'C.model_forward(f64(1), E, U, E, i64(2**62 - 1), f64(1), 1, 1, 2**62, 0, 1, 0, True)',
     'survives'),
    ('model_forward-huge-O',
     'C.model_forward(E, E, U, E, i64(), E, 0, 0, 0, 0, 2**62, 0, True)',
     'raises'),
    ('model_fb-ok',
     'C.model_forward_backward(f64(26), E, f64(6), f64(2), f64(3), U, E, i64(1), i64(1), E, E, f64(26), 1, 1, 2, 3, 2, 0, True, 0, 0, False)',
     'survives'),
    ('model_fb-T-0',
     'C.model_forward_backward(f64(26), E, f64(3), E, E, U, E, i64(), i64(), E, E, f64(26), 0, 1, 2, 3, 2, 0, True, 0, 0, False)',
     'raises'),
    ('model_fb-grads-short',
     'C.model_forward_backward(f64(25), E, f64(6), f64(2), f64(3), U, E, i64(1), i64(1), E, E, f64(26), 1, 1, 2, 3, 2, 0, True, 0, 0, False)',
     'raises'),
    ('model_fb-y-short',
     'C.model_forward_backward(f64(26), E, f64(6), f64(2), f64(3), U, E, i64(1), i64(), E, E, f64(26), 1, 1, 2, 3, 2, 0, True, 0, 0, False)',
     'raises'),
    ('model_fb-y-out-of-range',
     'C.model_forward_backward(f64(26), E, f64(6), f64(2), f64(3), U, E, i64(1), i64(2), E, E, f64(26), 1, 1, 2, 3, 2, 0, True, 0, 0, False)',
     'raises'),
    ('model_fb-y-values-short',
     'C.model_forward_backward(f64(26), E, f64(6), f64(2), f64(3), U, E, i64(1), i64(), f64(1), E, f64(26), 1, 1, 2, 3, 2, 0, True, 1, 0, False)',
     'raises'),
    ('model_fb-loss-5',
     'C.model_forward_backward(f64(26), E, f64(6), f64(2), f64(3), U, E, i64(1), i64(), f64(2), E, f64(26), 1, 1, 2, 3, 2, 0, True, 5, 0, False)',
     'raises'),
    ('model_fb-reduction-9',
     'C.model_forward_backward(f64(26), E, f64(6), f64(2), f64(3), U, E, i64(1), i64(1), E, E, f64(26), 1, 1, 2, 3, 2, 0, True, 0, 9, False)',
     'raises'),
    ('model_fb-dh0-wrong',
     'C.model_forward_backward(f64(26), f64(2), f64(6), f64(2), f64(3), U, E, i64(1), i64(1), E, E, f64(26), 1, 1, 2, 3, 2, 0, True, 0, 0, False)',
     'raises'),
    ('model_fb-dh_T-wrong',
     'C.model_forward_backward(f64(26), E, f64(6), f64(2), f64(3), U, E, i64(1), i64(1), E, f64(2), f64(26), 1, 1, 2, 3, 2, 0, True, 0, 0, False)',
     'raises'),
    ('model_fb-last-step-Y-too-big',
     'C.model_forward_backward(f64(26), E, f64(9), f64(4), f64(6), U, E, i64(1, 1), i64(1, 1), E, E, f64(26), 2, 1, 2, 3, 2, 0, True, 0, 0, True)',
     'raises'),
    ('model_fb-huge',
     'C.model_forward_backward(E, E, E, E, E, U, E, i64(), i64(), E, E, E, 2**62, 2**62, 2**62, 2**62, 2**62, 0, True, 0, 0, False)',
     'raises'),
    ('model_fb-nan-params',
     'p = f64(26); p[-1] = math.nan; C.model_forward_backward(f64(26), E, f64(6), f64(2), f64(3), U, E, i64(1), i64(1), E, E, p, 1, 1, 2, 3, 2, 0, True, 0, 0, False)',
     'nonfinite'),
]

# A seeded random fuzz of the same functions: random sizes (including negative, 2**31, 2**40,
# 2**62, 2**63 and wrapping np.int64) with buffers usually, but not always, of the right
# length. Every call must return or raise one of the allowed exceptions.
CORE_FUZZ = r'''
rng = np.random.default_rng(20240601)
SIZES = [0, 1, 2, 3, 5, 2**31, 2**32, 2**40, 2**62, 2**63, -1, -2**40]
def size():
    v = SIZES[rng.integers(len(SIZES))] if rng.random() < 0.4 else int(rng.integers(0, 4))
    if rng.random() < 0.3 and -2**63 <= v < 2**63:
        v = np.int64(v)
    return v
def prod(*a):
    p = 1
    for v in a:
        p *= int(v)
    return p
def buf(want, dt):
    r = rng.random()
    n = want if (r < 0.6 and 0 <= want <= 4000) else (0 if r < 0.8 else int(rng.integers(0, 40)))
    return rng.standard_normal(n).astype(dt)
def ids(want, hi):
    n = want if (0 <= want <= 4000 and rng.random() < 0.7) else int(rng.integers(0, 10))
    return rng.integers(-2, max(int(min(hi, 10)) + 2, 1), size=n).astype(np.int64)
def stack(T, B, H):
    """A random stack (layers, directions, dropout, seed), lengths and workspace: mostly
    sound, sometimes not (lengths out of range or short, a short or misaligned workspace,
    a dropout of 1 or NaN, a negative layer count)."""
    L = int(rng.choice([1, 1, 2, 3, 0, -1]))
    D = int(rng.choice([1, 2]))
    p = float(rng.choice([0.0, 0.0, 0.5, 1.0, np.nan, -0.1]))
    arch = (L, D == 2, p, int(rng.integers(0, 2**63)))
    lens = None
    if rng.random() < 0.4:
        n = int(B) if (0 <= B <= 4000 and rng.random() < 0.8) else int(rng.integers(0, 5))
        hi = int(T) if 0 <= T <= 4000 else 3
        lens = rng.integers(-1, hi + 2, size=n).astype(np.int64)
    r = rng.random()
    nbytes = int(rng.integers(0, 20000)) if r < 0.7 else int(rng.integers(0, 64))
    work = np.zeros(nbytes + 1, np.uint8)[1 if rng.random() < 0.2 else 0:]
    return max(L, 1), D, arch, lens, work
import warnings
warnings.simplefilter("ignore")
for it in range(N_FUZZ):
    dt = np.float32 if rng.random() < 0.5 else np.float64
    f = int(rng.integers(0, 7))
    T, B, I, H, O, N, K = (size() for _ in range(7))
    nl = int(rng.integers(-1, 3)); use_ids = bool(rng.random() < 0.5)
    npar = prod(I, H) + prod(H, H) + int(H) + prod(H, O) + int(O)
    try:
        if f == 0:
            C.rnn_forward(buf(prod(T + 1, B, H), dt), buf(prod(T, B, I), dt), ids(prod(T, B), I),
                          buf(prod(I, H), dt), buf(prod(H, H), dt), buf(int(H), dt),
                          T, B, I, H, nl, use_ids)
        elif f == 1:
            C.rnn_backward(buf(prod(I, H), dt), buf(prod(H, H), dt), buf(int(H), dt),
                           buf(prod(B, H), dt), buf(prod(T, B, I), dt), buf(prod(T, B, H), dt),
                           buf(prod(T, B, H), dt), buf(prod(B, H), dt),
                           buf(prod(T + 1, B, H), dt), buf(prod(T, B, I), dt),
                           ids(prod(T, B), I), buf(prod(I, H), dt), buf(prod(H, H), dt),
                           T, B, I, H, nl, use_ids)
        elif f == 2:
            C.linear_forward(buf(prod(N, O), dt), buf(prod(N, K), dt), buf(prod(K, O), dt),
                             buf(int(O), dt), N, K, O)
        elif f == 3:
            C.linear_backward(buf(prod(K, O), dt), buf(int(O), dt), buf(prod(N, K), dt),
                              buf(prod(N, O), dt), buf(prod(N, K), dt), buf(prod(K, O), dt),
                              N, K, O)
        elif f == 4:
            C.softmax_xent(buf(prod(N, O), dt), buf(prod(N, O), dt), ids(int(N), O), N, O,
                           float(rng.choice([1.0, 0.5, -1.0, np.nan])))
        elif f == 5:
            L, D, arch, lens, work = stack(T, B, H)
            C.model_forward(buf(prod(T, B, O), dt), buf(prod(L * D, T + 1, B, H), dt), work,
                            buf(prod(T, B, I), dt), ids(prod(T, B), I), buf(npar, dt),
                            T, B, I, H, O, nl, use_ids, arch, lens)
        else:
            lso = bool(rng.random() < 0.3)
            NN = B if lso else prod(T, B)
            L, D, arch, lens, work = stack(T, B, H)
            C.model_forward_backward(
                buf(npar, dt), buf(prod(L * D, B, H), dt), buf(prod(L * D, T + 1, B, H), dt),
                buf(prod(NN, O), dt), buf(prod(L * D, T, B, H), dt), work,
                buf(prod(T, B, I), dt), ids(prod(T, B), I), ids(int(NN), O),
                buf(prod(NN, O), dt), buf(prod(L * D, B, H), dt), buf(npar, dt),
                T, B, I, H, O, nl, use_ids, int(rng.integers(-1, 3)), int(rng.integers(-1, 3)),
                lso, arch, lens)
    except (ValueError, OverflowError, TypeError, FloatingPointError):
        pass
'''

CORE_CASES.append(("random-fuzz", CORE_FUZZ.replace("N_FUZZ", "3000"), "survives"))

_RUNNER = r'''
import json, math, sys, traceback
import numpy as np
from elman import _core as C
cases = json.loads(sys.stdin.read())
E = np.zeros(0)
U = np.zeros(0, np.uint8)
def f64(n): return np.linspace(-1.0, 1.0, n)
def f32(n): return f64(n).astype(np.float32)
def i64(*v): return np.array(v, dtype=np.int64)
for cid, code in cases:
    print(json.dumps({"start": cid}), flush=True)
    ns = dict(np=np, math=math, C=C, E=E, U=U, f64=f64, f32=f32, i64=i64)
    try:
        exec(code, ns)
        res = {"id": cid, "exc": None, "msg": ""}
    except BaseException as e:  # report everything, the parent decides
        res = {"id": cid, "exc": type(e).__name__, "msg": str(e)[:300]}
    print(json.dumps(res), flush=True)
'''


@pytest.fixture(scope="module")
def core_results():
    """Run CORE_CASES in child interpreters; a crash marks its case and the rest go on in a
    fresh child."""
    results, todo = {}, [(cid, code) for cid, code, _ in CORE_CASES]
    while todo:
        proc = subprocess.run([sys.executable, "-c", _RUNNER], input=json.dumps(todo),
                              capture_output=True, text=True, timeout=300)
        started = None
        for line in proc.stdout.splitlines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "start" in msg:
                started = msg["start"]
            else:
                results[msg["id"]] = msg
                started = None
        if started is None and len(results) < len(CORE_CASES) and proc.returncode != 0:
            raise RuntimeError(f"the runner failed before any case: {proc.stderr[-2000:]}")
        if started is not None:
            results[started] = {"id": started, "crash": proc.returncode,
                                "stderr": proc.stderr[-2000:]}
        todo = [(cid, code) for cid, code in todo if cid not in results]
    return results


@pytest.mark.parametrize("cid,code,outcome", CORE_CASES, ids=[c[0] for c in CORE_CASES])
def test_core_direct_calls(core_results, cid, code, outcome):
    res = core_results[cid]
    assert "crash" not in res, (f"the interpreter died (exit status {res['crash']}) running:\n"
                                f"{code}\n{res['stderr']}")
    allowed = {"ValueError", "OverflowError", "TypeError"}
    if outcome == "nonfinite":
        assert res["exc"] == "FloatingPointError", f"{code!r} gave {res['exc']}: {res['msg']}"
    elif outcome == "raises":
        assert res["exc"] in allowed, f"{code!r} gave {res['exc']}: {res['msg']}"
    else:
        assert res["exc"] is None or res["exc"] in allowed | {"FloatingPointError"}, \
            f"{code!r} gave {res['exc']}: {res['msg']}"


# ============================================================================================
# 5. Property tests
# ============================================================================================

FIXED_ARGS = [(spec, arg) for spec, (_, _, roles) in SPECS.items()
              for arg, role in roles.items() if "S" in role]


@HYP
@given(data=st.data())
def test_property_any_wrong_shape_of_a_fixed_argument_is_named(data):
    spec, arg = data.draw(st.sampled_from(FIXED_ARGS), label="spec/arg")
    dt = data.draw(st.sampled_from(FLOAT_DTYPES), label="dtype")
    args = make(spec, dt)
    good = args[arg].shape
    shape = data.draw(st.lists(st.integers(0, 7), max_size=4).map(tuple)
                      .filter(lambda s: s != good), label="shape")
    args[arg] = np.zeros(shape, args[arg].dtype)
    with pytest.raises(ValueError, match=names(arg)):
        call(spec, args)


def _real_strategy():
    return st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                     st.integers(-10**6, 10**6))


@HYP
@given(lr=_real_strategy(), eps=_real_strategy(), lr_decay=_real_strategy(),
       weight_decay=_real_strategy(), grad_scale=_real_strategy())
def test_property_adagrad_hyperparameter_ranges(lr, eps, lr_decay, weight_decay, grad_scale):
    """Each of these must be finite and >= 0; exactly the invalid ones are rejected, by name,
    before anything is written; the valid combinations run (never crash)."""
    a = make("adagrad_update")
    before = {k: v.copy() for k, v in a.items()}
    hp = dict(lr=lr, eps=eps, lr_decay=lr_decay, weight_decay=weight_decay,
              grad_scale=grad_scale)
    bad = [k for k, v in hp.items() if not (math.isfinite(v) and v >= 0)]
    if bad:
        with pytest.raises(ValueError, match="|".join(names(k) for k in bad)):
            K.adagrad_update(**a, step=1, **hp)
        for k, v in a.items():
            np.testing.assert_array_equal(v, before[k])
    else:
        with np.errstate(all="ignore"):
            try:
                K.adagrad_update(**a, step=1, **hp)
            except NonFiniteError:
                pass  # grad is finite, but may overflow through huge scales: a fine answer


@HYP
@given(targets=st.lists(st.integers(-2**63, 2**63 - 1), min_size=1, max_size=8),
       O_=st.integers(1, 6),
       dtype=st.sampled_from([np.int64, np.int32, np.int16, np.uint32, np.uint64]))
def test_property_targets_range(targets, O_, dtype):
    info = np.iinfo(dtype)
    t = np.array([min(max(v, info.min), info.max) for v in targets], dtype=dtype)
    logits = np.zeros((t.size, O_))
    if all(0 <= int(v) < O_ for v in t):
        loss, d = K.softmax_cross_entropy(logits, t)
        assert math.isclose(loss, math.log(O_))
    else:
        with pytest.raises(ValueError, match=names("targets")):
            K.softmax_cross_entropy(logits, t)


@HYP
@given(ids=st.lists(st.integers(-5, 3 * I), min_size=T * B, max_size=T * B))
def test_property_model_token_ids_range(ids):
    m = elman.ElmanRNN(I, H, O, seed=1)
    x = np.array(ids).reshape(T, B)
    if ((x >= 0) & (x < I)).all():
        Y, _ = m.forward(x)
        assert np.isfinite(Y).all()
    else:
        with pytest.raises(ValueError, match=mentions("x")):
            m.forward(x)
        with pytest.raises(ValueError, match=mentions("x")):
            m.forward_backward(x, np.zeros((T, B), np.int64))


@HYP
@given(dtype=st.sampled_from(NONFLOAT_DTYPES + INT_DTYPES),
       spec_arg=st.sampled_from([(s, a) for s, (_, _, r) in SPECS.items()
                                 for a, ro in r.items() if "X" not in ro and "P" not in ro]),
       layout=st.sampled_from(["contiguous", "strided", "reversed"]))
def test_property_dtype_is_checked_before_layout(dtype, spec_arg, layout):
    """A wrong dtype is reported as a TypeError naming the argument, whatever its layout."""
    spec, arg = spec_arg
    args = make(spec)
    a = np.zeros(args[arg].shape, dtype=dtype)
    if layout != "contiguous":
        a = LAYOUTS[layout](a)
    args[arg] = a
    with pytest.raises(TypeError, match=names(arg)):
        call(spec, args)
