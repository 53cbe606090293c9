"""Proximal Adagrad: C against the reference on every path, the TensorFlow formula written
out in float64, exact zeros from l1, and the reduction to Adagrad without l1 and l2."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import elman
from elman import kernels
from tolerances import assert_close


@pytest.fixture(scope="module", autouse=True, params=elman.cpu_paths())
def cpu_path(request):
    with elman.cpu_path(request.param):
        yield request.param


@given(n=st.integers(1, 300), dt=st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)]),
       seed=st.integers(0, 2**32 - 1), l1=st.sampled_from([0.0, 0.01, 0.5]),
       l2=st.sampled_from([0.0, 0.1]), scale=st.sampled_from([1.0, 0.3]))
def test_c_matches_the_reference(n, dt, seed, l1, l2, scale):
    rng = np.random.default_rng(seed)
    p, g = rng.standard_normal((2, n)).astype(dt)
    s = np.full(n, 0.1, dt)
    pc, sc, pn, sn = p.copy(), s.copy(), p.copy(), s.copy()
    kernels.proximal_adagrad_update(pc, g, sc, lr=0.2, l1=l1, l2=l2, grad_scale=scale)
    with elman.backend("numpy"):
        kernels.proximal_adagrad_update(pn, g, sn, lr=0.2, l1=l1, l2=l2, grad_scale=scale)
    assert_close(pc, pn, dt)
    assert_close(sc, sn, dt)
    assert np.array_equal(pc == 0, pn == 0) or dt == np.float32


def test_tensorflow_formula_in_float64():
    rng = np.random.default_rng(1)
    p, g = rng.standard_normal((2, 1000))
    s = np.full(1000, 0.1)
    lr, l1, l2 = 0.3, 0.2, 0.05
    s_want = s + g * g
    v = p - lr * g / np.sqrt(s_want)
    want = np.sign(v) / (1 + lr * l2) * np.maximum(np.abs(v) - lr * l1, 0)
    kernels.proximal_adagrad_update(p, g, s, lr=lr, l1=l1, l2=l2)
    np.testing.assert_allclose(s, s_want, rtol=1e-15)
    np.testing.assert_allclose(p, want, rtol=1e-13, atol=1e-15)
    assert (p == 0).sum() == (want == 0).sum() > 20


def test_without_l1_l2_it_is_adagrad_with_eps_zero():
    rng = np.random.default_rng(2)
    p, g = rng.standard_normal((2, 500))
    s = np.full(500, 0.1)
    pa, sa = p.copy(), s.copy()
    kernels.proximal_adagrad_update(p, g, s, lr=0.1)
    kernels.adagrad_update(pa, g, sa, lr=0.1, step=1, eps=0.0)
    np.testing.assert_allclose(p, pa, rtol=1e-14)
    np.testing.assert_array_equal(s, sa)


def test_optimizer_trains_a_sparse_model():
    rng = np.random.default_rng(3)
    m = elman.ElmanRNN(10, 8, 2, seed=0)
    opt = elman.ProximalAdagrad(m, lr=0.1, l1=0.02, max_grad_norm=5.0)
    x = rng.standard_normal((6, 16, 10))
    y = (x[:, :, 0].sum(0) > 0).astype(int)
    first = m.forward_backward(x, y, last_step_only=True)[0]
    for _ in range(200):
        loss, _ = m.forward_backward(x, y, last_step_only=True)
        opt.step()
    assert loss < first
    assert (m.params == 0).mean() > 0.2
    assert opt.steps == 200 and opt.last_grad_norm is not None
    sd = opt.state_dict()
    other = elman.ProximalAdagrad(m, lr=0.1, l1=0.02)
    other.load_state_dict(sd)
    np.testing.assert_array_equal(other.state, opt.state)


@pytest.mark.parametrize("kw, err", [
    (dict(lr=-1.0), ValueError), (dict(l1=-0.1), ValueError), (dict(l2=float("nan")), ValueError),
    (dict(initial_accumulator_value=0.0), ValueError), (dict(lr="0.1"), TypeError),
])
def test_bad_settings(kw, err):
    (name,) = kw
    with pytest.raises(err, match=rf"ProximalAdagrad: {name}\b"):
        elman.ProximalAdagrad(elman.ElmanRNN(3, 2, 3), **kw)


def test_nan_gradient_is_reported():
    p, g, s = np.ones(4), np.array([1.0, np.nan, 0.0, 1.0]), np.full(4, 0.1)
    with pytest.raises(elman.NonFiniteError, match=r"proximal_adagrad_update: grad\b"):
        kernels.proximal_adagrad_update(p, g, s, lr=0.1)
