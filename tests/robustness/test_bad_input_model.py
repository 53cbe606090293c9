"""Bad input never crashes the process and is rejected with a message naming the argument:
ElmanRNN: the constructor, forward, forward_backward, and the Gauss-Newton products
(gauss_newton, gauss_newton_product, GaussNewton.matvec), whose refusals also name the
function.

The contract (DESIGN.md, "Errors and trust"): every public entry point validates dtype,
shape, contiguity, aliasing, finiteness and target range before any pointer reaches C; bad
input raises TypeError or ValueError (NonFiniteError subclasses ValueError and
FloatingPointError) whose message names the offending argument; nothing crashes.
"""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import elman
from elman import NonFiniteError
from specs import (B, H, I, O, T, mentions, names)


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


METHODS = ["forward", "forward_backward", "gauss_newton", "gauss_newton_product"]


def run_method(model, method, x, h0=None, **kw):
    """One call of ``method`` on x (and h0); the Gauss-Newton operator makes a product."""
    if method == "forward":
        return model.forward(x, h0, **kw)
    if method == "forward_backward":
        return model.forward_backward(x, np.zeros((T, B), np.int64), h0, **kw)
    if method == "gauss_newton":
        return model.gauss_newton(x, h0, **kw).matvec(np.ones(model.num_params))
    return model.gauss_newton_product(np.ones(model.num_params), x, h0, **kw)


def named_by(info, method):
    """The Gauss-Newton entry points' messages begin with the function's name."""
    if method.startswith("gauss_newton"):
        assert str(info.value).startswith(f"ElmanRNN.{method}: "), str(info.value)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name,make_x,exc", X_CASES, ids=[c[0] for c in X_CASES])
def test_elman_bad_x(model, method, name, make_x, exc):
    x = make_x()
    before = model.params.copy(), model.grads.copy()
    with pytest.raises(exc, match=mentions("x")) as info:
        run_method(model, method, x)
    named_by(info, method)
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


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name,h0,exc", H0_CASES, ids=[c[0] for c in H0_CASES])
def test_elman_bad_h0(model, method, name, h0, exc):
    with pytest.raises(exc, match=mentions("h0")) as info:
        run_method(model, method, _ids(), h0)
    named_by(info, method)


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


@pytest.mark.parametrize("method", ["forward_backward", "gauss_newton", "gauss_newton_product"])
@pytest.mark.parametrize("kw,arg", [(dict(loss="hinge"), "loss"), (dict(loss=None), "loss"),
                                    (dict(loss="MSE"), "loss"), (dict(loss=0), "loss"),
                                    (dict(reduction="avg"), "reduction"),
                                    (dict(reduction=None), "reduction"),
                                    (dict(reduction="SUM"), "reduction")])
def test_elman_bad_loss_options(model, method, kw, arg):
    with pytest.raises(ValueError, match=names(arg)) as info:
        run_method(model, method, _ids(), **kw)
    named_by(info, method)


LENGTHS_CASES = [
    ("zero", lambda: np.array([0, 1]), ValueError),
    ("beyond-T", lambda: np.array([1, T + 1]), ValueError),
    ("negative", lambda: np.array([-1, 1]), ValueError),
    ("huge", lambda: np.array([1, 2**62]), ValueError),
    ("uint64-huge", lambda: np.array([1, 2**64 - 1], np.uint64), ValueError),
    ("float", lambda: np.array([1.0, 2.0]), TypeError),
    ("bool", lambda: np.array([True, True]), TypeError),
    ("str", lambda: np.array(["1", "2"]), TypeError),
    ("short", lambda: np.ones(B - 1, np.int64), ValueError),
    ("long", lambda: np.ones(B + 1, np.int64), ValueError),
    ("2d", lambda: np.ones((1, B), np.int64), ValueError),
    ("scalar", lambda: np.int64(1), ValueError),
    ("ragged", lambda: [[1], [1, 2]], ValueError),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name,make_lengths,exc", LENGTHS_CASES,
                         ids=[c[0] for c in LENGTHS_CASES])
def test_elman_bad_lengths(model, method, name, make_lengths, exc):
    with pytest.raises(exc, match=mentions("lengths")) as info:
        run_method(model, method, _ids(), lengths=make_lengths())
    named_by(info, method)


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
    for call in (forward, forward_backward):  # refused (the buffer no longer fits the sizes)
        with pytest.raises(ValueError):
            call()


# ---- Gauss-Newton products: v, damping, out ----------------------------------------------

def gn_entry_points(model, x=None, **gn):
    """(the name its messages carry, a function of (v, damping, structural_damping, out))
    for GaussNewton.matvec and the one-shot ElmanRNN.gauss_newton_product (no out)."""
    x = _ids() if x is None else x
    G = model.gauss_newton(x, **gn)

    def matvec(v, damping=0.0, structural_damping=0.0, out=None):
        return G.matvec(v, damping=damping, structural_damping=structural_damping, out=out)

    def one_shot(v, damping=0.0, structural_damping=0.0, out=None):
        assert out is None
        return model.gauss_newton_product(v, x, damping=damping,
                                          structural_damping=structural_damping, **gn)

    return [("GaussNewton.matvec", matvec), ("ElmanRNN.gauss_newton_product", one_shot)]


def refused(exc, where, arg, fn, *args, **kw):
    """fn(...) raises exc, with a message that begins with the function's name and names
    the argument."""
    with pytest.raises(exc) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert msg.startswith(where + ": "), msg
    assert re.search(names(arg), msg), msg
    return msg


NP = I * H + H * H + H + H * O + O  # the model fixture's parameters

V_CASES = [
    ("int", lambda: np.ones(NP, np.int64), TypeError),
    ("uint8", lambda: np.ones(NP, np.uint8), TypeError),
    ("bool", lambda: np.ones(NP, bool), TypeError),
    ("complex", lambda: np.ones(NP, complex), TypeError),
    ("object", lambda: np.ones(NP, object), TypeError),
    ("str", lambda: np.full(NP, "a"), TypeError),
    ("timedelta", lambda: np.ones(NP, "m8[s]"), TypeError),
    ("none", lambda: None, TypeError),
    ("string-scalar", lambda: "hello", TypeError),
    ("short", lambda: np.ones(NP - 1), ValueError),
    ("long", lambda: np.ones(NP + 1), ValueError),
    ("empty", lambda: np.ones(0), ValueError),
    ("2d", lambda: np.ones((1, NP)), ValueError),
    ("column", lambda: np.ones((NP, 1)), ValueError),
    ("scalar", lambda: 1.0, ValueError),
    ("ragged", lambda: [[1.0], [1.0, 2.0]], ValueError),
    ("nan", lambda: np.where(np.arange(NP) == 7, np.nan, 1.0), NonFiniteError),
    ("inf", lambda: np.full(NP, np.inf), NonFiniteError),
    ("-inf-float32", lambda: np.full(NP, -np.inf, np.float32), NonFiniteError),
]


@pytest.mark.parametrize("name,make_v,exc", V_CASES, ids=[c[0] for c in V_CASES])
def test_gauss_newton_bad_v(model, name, make_v, exc):
    before = model.params.copy(), model.grads.copy()
    for where, fn in gn_entry_points(model):
        refused(exc, where, "v", fn, make_v())
    assert np.array_equal(model.params, before[0]) and np.array_equal(model.grads, before[1])


def test_gauss_newton_v_beyond_float32_is_non_finite():
    """A float64 v cast to a float32 model's dtype: values beyond float32's range become
    infinities, refused as such."""
    m = elman.ElmanRNN(I, H, O, dtype="float32")
    for where, fn in gn_entry_points(m):
        with np.errstate(all="ignore"):  # the cast's own overflow is not the subject
            refused(NonFiniteError, where, "v", fn, np.full(m.num_params, 1e300))


NUMBER_TYPE_ERRORS = ["0.1", None, 1j, [0.1], True, np.bool_(False)]
BAD_NUMBERS = [-1e-3, -1, -np.inf, np.inf, np.nan, np.float32(np.nan), 10**400]


@pytest.mark.parametrize("arg", ["damping", "structural_damping"])
@pytest.mark.parametrize("value", NUMBER_TYPE_ERRORS + BAD_NUMBERS, ids=repr)
def test_gauss_newton_bad_damping(model, arg, value):
    exc = TypeError if any(value is v for v in NUMBER_TYPE_ERRORS) else ValueError
    for where, fn in gn_entry_points(model):
        refused(exc, where, arg, fn, np.ones(model.num_params), **{arg: value})


def test_gauss_newton_good_damping_types(model):
    """ints, NumPy scalars and 0 are numbers like any other."""
    v = np.ones(model.num_params)
    for _, fn in gn_entry_points(model):
        want = fn(v, damping=0.5, structural_damping=2.0)
        for lam, mu in ((np.float32(0.5), 2), (np.float64(0.5), np.int64(2))):
            np.testing.assert_allclose(fn(v, damping=lam, structural_damping=mu), want,
                                       rtol=1e-15)
        np.testing.assert_array_equal(fn(v, damping=0), fn(v))


def _read_only(a):
    a.flags.writeable = False
    return a


OUT_CASES = [  # (id, (model, v) -> out, exception, what the message says besides out)
    ("float32", lambda m, v: np.zeros(m.num_params, np.float32), TypeError, "dtype"),
    ("int", lambda m, v: np.zeros(m.num_params, np.int64), TypeError, "dtype"),
    ("list", lambda m, v: [0.0] * m.num_params, TypeError, "NumPy array"),
    ("short", lambda m, v: np.zeros(m.num_params - 1), ValueError, "shape"),
    ("2d", lambda m, v: np.zeros((1, m.num_params)), ValueError, "shape"),
    ("huge-view", lambda m, v: np.broadcast_to(np.zeros(1), (2**31 + 3,)), ValueError, "shape"),
    ("read-only", lambda m, v: _read_only(np.zeros(m.num_params)), ValueError, "read-only"),
    ("strided", lambda m, v: np.zeros(2 * m.num_params)[::2], ValueError, "C-contiguous"),
    ("reversed", lambda m, v: np.zeros(m.num_params)[::-1], ValueError, "C-contiguous"),
    ("is-v", lambda m, v: v, ValueError, "share memory"),
    ("overlaps-v", lambda m, v: v.base[1:m.num_params + 1], ValueError, "share memory"),
    ("is-params", lambda m, v: m.params, ValueError, "params"),
    ("view-of-params", lambda m, v: m.params[:], ValueError, "params"),
]


@pytest.mark.parametrize("name,make_out,exc,says", OUT_CASES, ids=[c[0] for c in OUT_CASES])
def test_gauss_newton_bad_out(model, name, make_out, exc, says):
    """out: an (n,) writable C-contiguous array of the model's dtype sharing memory with
    neither v nor the parameters. Refused before anything is written."""
    n = model.num_params
    v = np.zeros(n + 1)[:n]  # a view, so that another view can overlap it
    v[...] = np.linspace(-1, 1, n)
    out = make_out(model, v)
    before = model.params.copy(), v.copy()
    # (the huge view is read-only and has no memory behind it: never copy it)
    before_out = (np.array(out, copy=True) if isinstance(out, np.ndarray)
                  and out.size <= n else None)
    where, fn = gn_entry_points(model)[0]
    msg = refused(exc, where, "out", fn, v, out=out)
    assert says in msg, msg
    np.testing.assert_array_equal(model.params, before[0])
    np.testing.assert_array_equal(v, before[1])
    if before_out is not None:
        np.testing.assert_array_equal(out, before_out)


def test_gauss_newton_nothing_written_when_v_is_refused(model):
    """A valid out and a bad v: out stays as it was (validation comes before any write)."""
    G = model.gauss_newton(_ids())
    out = np.full(model.num_params, 7.0)
    with pytest.raises(NonFiniteError, match=names("v")):
        G.matvec(np.full(model.num_params, np.nan), out=out)
    with pytest.raises(ValueError, match=names("damping")):
        G.matvec(np.ones(model.num_params), damping=-1.0, out=out)
    assert (out == 7.0).all()


def test_gauss_newton_accepted_arguments(model):
    """What the documentation allows: v of any float dtype or layout (cast and copied), a
    list of floats, v = the parameters themselves (only read), out = the model's grads."""
    G = model.gauss_newton(_ids())
    n = model.num_params
    v = np.linspace(-1, 1, n)
    want = G.matvec(v)
    np.testing.assert_allclose(G.matvec(v.astype(np.float32)), want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(G.matvec(v.astype(np.float16)), want, rtol=1e-2, atol=1e-3)
    np.testing.assert_array_equal(G.matvec(v.tolist()), want)
    strided = np.zeros(2 * n)
    strided[::2] = v
    np.testing.assert_array_equal(G.matvec(strided[::2]), want)
    np.testing.assert_array_equal(G.matvec(model.params), G.matvec(model.params.copy()))
    assert G.matvec(v, out=model.grads) is model.grads
    np.testing.assert_array_equal(model.grads, want)


@pytest.mark.parametrize("entry", ["GaussNewton.matvec", "ElmanRNN.gauss_newton_product"])
@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_gauss_newton_non_finite_outputs_name_the_function(model, backend, entry):
    """Parameters whose outputs are not finite have no Gauss-Newton product: a
    NonFiniteError, raised by the function called and saying so in its message, the same
    on both backends (not a backend function's name, or none)."""
    model.params[0] = np.nan  # W_xh[0, 0]: every output, for dense x
    x = _dense()
    fn = dict(gn_entry_points(model, x))[entry]
    with elman.backend(backend), pytest.raises(NonFiniteError) as info:
        fn(np.ones(model.num_params))
    msg = str(info.value)
    assert msg.startswith(entry + ": "), msg
    assert "not finite" in msg


def test_gauss_newton_huge_v_is_refused_by_its_shape():
    """A v of the wrong shape is refused by its shape, before anything is made of it: a
    (2**31 + 3,) broadcast view (no memory behind it) is a ValueError naming v, not a
    16 GiB copy (MemoryError under the child's address-space limit). In a child process
    with a limit, so that the copy cannot take the machine's memory (no limit under the
    sanitizers' runtime, whose shadow memory needs the address space)."""
    code = textwrap.dedent("""
        import os, resource
        if "asan" not in os.environ.get("LD_PRELOAD", ""):  # ASan maps terabytes of shadow
            resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))
        import numpy as np, elman
        m = elman.ElmanRNN(4, 3, 2, dtype="float64")
        x = np.zeros((3, 2), np.int64)
        v = np.broadcast_to(np.zeros(1), (2**31 + 3,))
        for call in (lambda: m.gauss_newton(x).matvec(v),
                     lambda: m.gauss_newton_product(v, x)):
            try:
                call()
                print("returned")
            except Exception as e:
                print(type(e).__name__, "|", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2, out.stdout
    for line, where in zip(lines, ("GaussNewton.matvec", "ElmanRNN.gauss_newton_product")):
        kind, _, msg = line.partition(" | ")
        assert kind == "ValueError" and msg.startswith(where + ": ") and \
            re.search(names("v"), msg), line
