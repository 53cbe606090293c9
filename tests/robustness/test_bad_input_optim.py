"""Bad input never crashes the process and is rejected with a message naming the argument:
the optimizers' constructors and steps, clip_grad_norm_, backend().

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
from specs import H, I, O, mentions, names


@pytest.fixture(params=["c", "numpy"])
def any_backend(request):
    with elman.backend(request.param):
        yield request.param


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
