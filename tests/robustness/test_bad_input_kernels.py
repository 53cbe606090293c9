"""Bad input never crashes the process and is rejected with a message naming the argument:
the functional kernels (elman.kernels.*): generic mutations of every array argument
(dtype, ndim/shape, contiguity, read-only, not-an-array, NaN/inf) generated from the
table of argument roles in specs.py, plus explicit aliasing, index-range, empty-array and
scalar hyperparameter cases, run on both backends (validation comes before the dispatch).

The contract (DESIGN.md, "Errors and trust"): every public entry point validates dtype,
shape, contiguity, aliasing, finiteness and target range before any pointer reaches C; bad
input raises TypeError or ValueError (NonFiniteError subclasses ValueError and
FloatingPointError) whose message names the offending argument; nothing crashes.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

import elman
from elman import NonFiniteError
from elman import kernels as K
from specs import (B, FDT_IDS, FLOAT_DTYPES, H, I, INT_DTYPES, LAYOUTS, N, NONFLOAT_DTYPES,
                   NPARAMS, O, SPECS, T, call, float_args, make, mentions, names,
                   refused_before_writing)


@pytest.fixture(params=["c", "numpy"])
def any_backend(request):
    with elman.backend(request.param):
        yield request.param


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


RFORWARD_CASES = [
    # (id, mutation of make("rnn_rforward") or of its ids=True variant, exception, argument)
    ("Rx-with-token-ids", True, lambda a: a.update(Rx=np.zeros((T, B, I))), ValueError, "Rx"),
    ("hs-without-rows", False, lambda a: a.update(hs=np.zeros((0, B, H))), ValueError, "hs"),
    ("hs-wrong-H", False, lambda a: a.update(hs=np.zeros((T + 1, B, H + 1))), ValueError, "hs"),
    ("x-steps-not-hs", False, lambda a: a.update(x=np.zeros((T + 1, B, I))), ValueError, "x"),
    ("x-batch-not-hs", False, lambda a: a.update(x=np.zeros((T, B + 1, I))), ValueError, "x"),
    ("ids-batch-not-hs", True, lambda a: a.update(x=np.zeros((T, B + 1), np.int64)), ValueError,
     "x"),
    ("ids-steps-not-hs", True, lambda a: a.update(x=np.zeros((T - 1, B), np.int64)), ValueError,
     "x"),
    ("Rx-steps", False, lambda a: a.update(Rx=np.zeros((T - 1, B, I))), ValueError, "Rx"),
    ("V_xh-rows-not-W_xh", False, lambda a: a.update(V_xh=np.zeros((I + 1, H))), ValueError,
     "V_xh"),
    ("V_hh-not-square", False, lambda a: a.update(V_hh=np.zeros((H, H + 1))), ValueError,
     "V_hh"),
    ("v_b-2d", False, lambda a: a.update(v_b=np.zeros((1, H))), ValueError, "v_b"),
    ("W_xh-wrong-H", False, lambda a: a.update(W_xh=np.zeros((I, H + 1))), ValueError, "W_xh"),
    ("Rx-list", False, lambda a: a.update(Rx=np.zeros((T, B, I)).tolist()), TypeError, "Rx"),
]


@pytest.mark.parametrize("name,ids,mutate,exc,arg", RFORWARD_CASES,
                         ids=[c[0] for c in RFORWARD_CASES])
def test_rnn_rforward_shapes(any_backend, name, ids, mutate, exc, arg):
    """The R-operator's forward takes its T and B from hs, I from W_xh, H from W_hh; Rx, the
    derivative of a dense input, exists for no token ids."""
    args = make("rnn_rforward", ids=ids)
    mutate(args)
    with pytest.raises(exc, match=mentions(arg)):
        call("rnn_rforward", args)


@pytest.mark.parametrize("bad,what", [([0, 2], "at least one step"), ([1, T + 1], "lengths"),
                                      ([1], "lengths"), ([1.0, 2.0], "integers"),
                                      ([[1, 2]], "lengths"), ([True, True], "integers"),
                                      ([-1, 1], "lengths")])
def test_rnn_rforward_lengths(any_backend, bad, what):
    with pytest.raises((ValueError, TypeError), match=what):
        call("rnn_rforward", make("rnn_rforward"), lengths=np.array(bad))


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
    args[arg].flags.writeable = False
    refused_before_writing(spec, args, ValueError, names(arg) + r" is read-only")


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
    def same(spec):
        def build(kind):  # "target=source": one array passed as both
            a = make(spec)
            target, source = kind.split("=")
            a[target] = a[source]
            return a
        return build

    def adagrad_overlap(kind):  # overlapping views of one buffer
        a = make("adagrad_update")
        base = np.zeros(I * H + 3)
        a["param"], a["state"] = base[:I * H].reshape(I, H), base[3:].reshape(I, H)
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
        if kind == "dh0~grads":
            a["dh0"] = a["grads"][:B * H].reshape(B, H)
        elif kind == "grads~x":
            a["x"] = a["grads"][:T * B * I].reshape(T, B, I)
        else:  # dh0 ~ params
            a["dh0"] = a["params"][-B * H:].reshape(B, H)
        return a

    updates = ["grad=param", "state=param", "state=grad"]
    cases = [pytest.param(spec, same(spec), kind, tuple(kind.split("=")), id=f"{spec}-{kind}")
             for spec, kinds in [("adagrad_update", updates),
                                 ("proximal_adagrad_update", updates),
                                 ("rowwise_adagrad_update", ["grad=param"]),
                                 ("sgd_update", ["grad=param", "momentum_buffer=param",
                                                 "momentum_buffer=grad"]),
                                 ("model_forward_backward", ["grads=params", "dh0=h0"])]
             for kind in kinds]
    cases.append(pytest.param("adagrad_update", adagrad_overlap, "param~state",
                              ("param", "state"), id="adagrad_update-param~state"))
    for kind, pair in [("out~h0", ("out", "h0")), ("out~W_hh", ("out", "W_hh")),
                       ("out~b_h", ("out", "b_h")), ("out~x", ("out", "x"))]:
        cases.append(pytest.param("rnn_forward", rnn, kind, pair, id=f"rnn_forward-{kind}"))
    for kind, pair in [("dh0~grads", ("grads", "dh0")), ("grads~x", ("grads", "x")),
                       ("dh0~params", ("dh0", "params"))]:
        cases.append(pytest.param("model_forward_backward", model, kind, pair,
                                  id=f"model-{kind}"))
    return cases


@pytest.mark.parametrize("spec,build,kind,pair", _alias_cases())
def test_aliasing(any_backend, spec, build, kind, pair):
    a, b = pair
    refused_before_writing(spec, build(kind), ValueError,
                           rf"{a} and {b} share memory|{b} and {a} share memory")


def test_sgd_momentum_buffer_is_ignored_without_momentum(any_backend):
    """With momentum 0 the buffer is documented as unused: whatever is passed there, it is
    not read or written, and the update is the one without a buffer."""
    a, b = make("sgd_update"), make("sgd_update")
    K.sgd_update(a["param"], a["grad"], "not an array", lr=0.1)
    buf = np.full_like(b["param"], 7.0)
    K.sgd_update(b["param"], b["grad"], buf, lr=0.1)
    want = make("sgd_update")
    K.sgd_update(want["param"], want["grad"], None, lr=0.1)
    np.testing.assert_array_equal(a["param"], want["param"])
    np.testing.assert_array_equal(b["param"], want["param"])
    assert (buf == 7.0).all()


# ---- token ids and class targets ------------------------------------------------------------

BAD_INDEX_VALUES = [-1, "upper", "upper+1", 2**31, 2**62, np.iinfo(np.int64).max,
                    np.iinfo(np.int64).min]

# (spec, argument, its exclusive upper bound, how to get a valid version with ids)
INDEX_ARGS = [
    pytest.param("softmax_cross_entropy", "targets", O, False, id="softmax-targets"),
    pytest.param("model_forward_backward", "y", O, False, id="model_fb-y"),
    pytest.param("rnn_forward", "x", I, True, id="rnn_forward-ids"),
    pytest.param("rnn_backward", "x", I, True, id="rnn_backward-ids"),
    pytest.param("rnn_rforward", "x", I, True, id="rnn_rforward-ids"),
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
@pytest.mark.parametrize("spec", ["rnn_forward", "rnn_backward", "rnn_rforward", "model_forward",
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
@pytest.mark.parametrize("fn", ["rnn_forward", "rnn_backward", "rnn_rforward", "model_forward"])
def test_empty_sequences_where_no_loss_is_taken(any_backend, fn, kind, t, b):
    """T = 0 or B = 0 passes validation in these four (only the losses demand T, B >= 1).
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
        elif fn == "rnn_rforward":
            hs = np.tile(np.tanh(h0), (t + 1, 1, 1))
            R = K.rnn_rforward(hs, x, W_xh, W_hh, r.standard_normal((I, H)),
                               r.standard_normal((H, H)), r.standard_normal(H))
            assert R.shape == (t + 1, b, H) and not R[0].any()
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


@pytest.mark.parametrize("case", ["rnn_forward-I=0", "rnn_backward-I=0", "rnn_backward-H=0",
                                  "rnn_rforward-I=0", "rnn_rforward-H=0"])
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
        if case.startswith("rnn_rforward"):
            return K.rnn_rforward(hs, x, W_xh, W_hh, np.full((i, h), 0.2), np.full((h, h), 0.3),
                                  np.ones(h))
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
                 "rnn_rforward", "model_forward", "model_forward_backward"):
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
    refused_before_writing(spec, make(spec), exc, names(name), **{name: value})


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
