"""Bad input never crashes the process and is rejected with a message naming the argument:
ElmanRNN: the constructor, forward and forward_backward.

The contract (DESIGN.md, "Errors and trust"): every public entry point validates dtype,
shape, contiguity, aliasing, finiteness and target range before any pointer reaches C; bad
input raises TypeError or ValueError (NonFiniteError subclasses ValueError and
FloatingPointError) whose message names the offending argument; nothing crashes.
"""
from __future__ import annotations


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
    for call in (forward, forward_backward):  # refused (the buffer no longer fits the sizes)
        with pytest.raises(ValueError):
            call()
