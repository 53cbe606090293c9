"""Row-wise Adagrad (FBGEMM's formula): C against the reference on every path, the formula
written out in float64, the optimizer's rows and its memory."""
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


@given(rows=st.integers(1, 20), cols=st.integers(1, 70),
       dt=st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)]),
       seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1.0, 0.25]))
def test_c_matches_the_reference(rows, cols, dt, seed, scale):
    rng = np.random.default_rng(seed)
    p, g = rng.standard_normal((2, rows, cols)).astype(dt)
    s = rng.uniform(0, 1, rows).astype(dt)
    pc, sc, pn, sn = p.copy(), s.copy(), p.copy(), s.copy()
    kernels.rowwise_adagrad_update(pc, g, sc, lr=0.1, grad_scale=scale)
    with elman.backend("numpy"):
        kernels.rowwise_adagrad_update(pn, g, sn, lr=0.1, grad_scale=scale)
    assert_close(pc, pn, dt)
    assert_close(sc, sn, dt)


def test_fbgemm_formula_in_float64():
    rng = np.random.default_rng(1)
    p, g = rng.standard_normal((2, 30, 17))
    s = np.full(30, 0.5)
    s_want = s + (g * g).mean(axis=1)
    want = p - 0.2 * g / (np.sqrt(s_want)[:, None] + 1e-10)
    kernels.rowwise_adagrad_update(p, g, s, lr=0.2)
    np.testing.assert_allclose(s, s_want, rtol=1e-14)
    np.testing.assert_allclose(p, want, rtol=1e-13)


def test_optimizer_rows_memory_and_learning():
    m = elman.ElmanRNN(65, 100, 65, seed=0)
    opt = elman.RowwiseAdagrad(m, lr=0.1, max_grad_norm=5.0)
    assert opt.state.size == 65 + 100 + 1 + 100 + 1 and m.num_params == 23165
    # a learnable sequence (each id determines the next) over ids 0-39, so that W_xh's rows
    # 40-64 are never used: random ids would leave the loss to chance, and this optimizer at
    # lr 0.1 amplifies float32 rounding differences between kernel paths into
    # different trajectories
    t, b = np.arange(26)[:, None], np.arange(8)[None, :]
    x = (3 * t + 5 * b) % 40
    first = m.forward_backward(x[:-1], x[1:])[0]
    for _ in range(60):
        loss, _ = m.forward_backward(x[:-1], x[1:])
        opt.step()
    assert loss < 0.5 * first and opt.steps == 60
    # each named matrix's rows have their own accumulator: W_xh's unused rows stay at 0
    used = np.unique(x[:-1])
    assert (opt.state[:65][np.setdiff1d(np.arange(65), used)] == 0).all()
    assert (opt.state[:65][used] > 0).all()
    other = elman.RowwiseAdagrad(m)
    other.load_state_dict(opt.state_dict())
    np.testing.assert_array_equal(other.state, opt.state)


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"RowwiseAdagrad: needs a model with named_params"):
        elman.RowwiseAdagrad((np.zeros(3), np.zeros(3)))
    with pytest.raises(ValueError, match=r"RowwiseAdagrad: eps\b"):
        elman.RowwiseAdagrad(elman.ElmanRNN(3, 2, 3), eps=0.0)
    with pytest.raises(ValueError, match=r"rowwise_adagrad_update: state\b"):
        kernels.rowwise_adagrad_update(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros(3), lr=0.1)
    with pytest.raises(elman.NonFiniteError, match=r"rowwise_adagrad_update: grad\b"):
        kernels.rowwise_adagrad_update(np.zeros((2, 3)), np.full((2, 3), np.nan), np.zeros(2),
                                       lr=0.1)
