"""elman.HessianFree and its conjugate gradient: the solver against a direct solve, the
iteration's rules (Levenberg-Marquardt, backtracking, line search) as recorded, training
that works, exact resumption, and clear errors."""
import math

import numpy as np
import pytest

import elman
from elman.hf import HessianFree, conjugate_gradient


def _spd(n, seed, cond=50.0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q * np.geomspace(1, cond, n)) @ Q.T, rng.standard_normal(n)


@pytest.mark.parametrize("precondition", [False, True])
def test_cg_solves_a_symmetric_positive_definite_system(precondition):
    A, b = _spd(30, 0)
    pre = (lambda r: r / np.diag(A)) if precondition else None
    x, iterates, phis, reason = conjugate_gradient(lambda v: A @ v, b, precondition=pre,
                                                   max_iters=200, tolerance=1e-12)
    np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=1e-6, atol=1e-8)
    # φ decreases monotonically (CG minimizes the quadratic over growing Krylov spaces)
    assert all(b2 <= a + 1e-12 for a, b2 in zip(phis, phis[1:]))
    assert iterates[-1][0] == len(phis) - 1
    assert reason in ("progress", "residual", "max_iters")


def test_cg_phi_is_the_quadratic_and_saved_iterates_are_the_asked_ones():
    A, b = _spd(12, 1)
    x, iterates, phis, _ = conjugate_gradient(lambda v: A @ v, b, max_iters=8, min_iters=8,
                                              tolerance=1e-30, save=[1, 2, 5])
    assert [i for i, _ in iterates] == [1, 2, 5, 8]
    for i, xi in iterates:
        assert phis[i] == pytest.approx(0.5 * xi @ A @ xi - b @ xi, rel=1e-10, abs=1e-12)


def test_cg_warm_start_and_stopping_rules():
    A, b = _spd(20, 2)
    exact = np.linalg.solve(A, b)
    x, _, phis, _ = conjugate_gradient(lambda v: A @ v, b, exact, max_iters=50)
    np.testing.assert_allclose(x, exact, rtol=1e-9)    # started at the answer, stays there
    assert phis[0] == pytest.approx(-0.5 * b @ exact, rel=1e-12)
    _, it, _, reason = conjugate_gradient(lambda v: A @ v, b, max_iters=3, min_iters=1)
    assert reason == "max_iters" and it[-1][0] == 3
    _, _, _, reason = conjugate_gradient(lambda v: -(A @ v), b, max_iters=10)
    assert reason == "curvature"


def _adding(T, B, seed):
    """Two marked values in [-1, 1]; target 0.5 + (X1 + X2) / 4 at the last step."""
    rng = np.random.default_rng(seed)
    x = np.zeros((T, B, 2))
    x[:, :, 0] = rng.uniform(-1, 1, (T, B))
    i, j = rng.integers(0, T // 2, B), rng.integers(T // 2, T, B)
    x[i, np.arange(B), 1] = 1
    x[j, np.arange(B), 1] = 1
    y = 0.5 + (x[i, np.arange(B), 0] + x[j, np.arange(B), 0]) / 4
    return x, y[:, None]


def test_hf_trains_a_short_adding_problem_and_records_its_rules():
    x, y = _adding(12, 300, 0)
    model = elman.ElmanRNN(2, 16, 1, dtype="float64", seed=3)
    hf = HessianFree(model, damping=1.0, max_cg_iters=60)
    first = None
    for _ in range(20):
        s = hf.step(x, y, loss="mse", last_step_only=True, curvature=0.3)
        first = first or s
        # the Levenberg-Marquardt rule, as recorded
        if s.rho < 0.25:
            assert s.next_damping == pytest.approx(1.5 * s.damping)
        elif s.rho > 0.75:
            assert s.next_damping == pytest.approx(max(s.damping * 2 / 3, hf.min_damping))
        else:
            assert s.next_damping == s.damping
        assert 1 <= s.backtrack <= s.cg_iters <= hf.max_cg_iters
        assert s.curvature_size == 90
        assert s.new_loss <= s.loss                      # Armijo: never an increase
        assert (s.step_size > 0) == (s.new_loss < s.loss)
    assert len(hf.history) == 20 and hf.steps == 20
    assert s.new_loss < 0.01 * first.loss
    Y, _ = model.forward(x)
    assert np.mean(np.abs(Y[-1, :, 0] - y[:, 0]) < 0.04) > 0.9


def test_hf_state_dict_resumes_exactly():
    x, y = _adding(8, 64, 1)

    def run(n, sd=None, params=None):
        m = elman.ElmanRNN(2, 8, 1, dtype="float64", seed=5)
        hf = HessianFree(m, max_cg_iters=20, seed=9)
        if sd is not None:
            m.params[...] = params
            hf.load_state_dict(sd)
        for _ in range(n):
            hf.step(x, y, loss="mse", last_step_only=True, curvature=16)
        return m, hf

    straight, _ = run(5)
    m3, hf3 = run(3)
    resumed, hf5 = run(2, hf3.state_dict(), m3.params.copy())
    np.testing.assert_array_equal(resumed.params, straight.params)
    assert hf5.steps == 5


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hf_cross_entropy_token_ids_lengths_and_sum(dtype):
    rng = np.random.default_rng(2)
    T, B, V = 6, 40, 4
    x = rng.integers(0, V, (T, B))
    y = x[0].copy()                                   # remember the first token
    lengths = rng.integers(2, T + 1, B)
    model = elman.ElmanRNN(V, 12, V, dtype=dtype, seed=1)
    hf = HessianFree(model, structural_damping=0.1, max_cg_iters=30)
    losses = [hf.step(x, y, last_step_only=True, lengths=lengths, reduction="sum",
                      curvature=np.arange(0, B, 2)).new_loss for _ in range(6)]
    assert losses[-1] < 0.8 * hf.history[0].loss
    assert all(math.isfinite(v) for v in losses)
    assert model.params.dtype == np.dtype(dtype)


def test_hf_batch_first_matches_time_major():
    x, y = _adding(6, 20, 4)
    out = []
    for bf in (False, True):
        m = elman.ElmanRNN(2, 6, 1, dtype="float64", seed=2)
        hf = HessianFree(m, max_cg_iters=15)
        hf.step(x.swapaxes(0, 1) if bf else x, y, loss="mse", last_step_only=True,
                batch_first=bf)
        out.append(m.params.copy())
    np.testing.assert_array_equal(out[0], out[1])


def test_hf_bad_arguments():
    m = elman.ElmanRNN(2, 4, 1, dtype="float64")
    with pytest.raises(ValueError, match="HessianFree: damping must be > 0"):
        HessianFree(m, damping=0)
    with pytest.raises(ValueError, match="min_cg_iters"):
        HessianFree(m, min_cg_iters=20, max_cg_iters=10)
    assert HessianFree(m, max_cg_iters=5).min_cg_iters == 5   # the default fits under it
    assert HessianFree(m).min_cg_iters == 10
    with pytest.raises(ValueError, match="cg_decay"):
        HessianFree(m, cg_decay=1.5)
    with pytest.raises(ValueError, match="preconditioner"):
        HessianFree(m, preconditioner="jacobi")
    with pytest.raises(ValueError, match="dropout"):
        HessianFree(elman.ElmanRNN(2, 4, 1, num_layers=2, dropout=0.5))
    with pytest.raises(TypeError, match="elman.ElmanRNN"):
        HessianFree(object())
    hf = HessianFree(m)
    x, y = _adding(5, 10, 0)
    with pytest.raises(ValueError, match="curvature fraction"):
        hf.step(x, y, loss="mse", last_step_only=True, curvature=1.5)
    with pytest.raises(ValueError, match="curvature asks for 11"):
        hf.step(x, y, loss="mse", last_step_only=True, curvature=11)
    with pytest.raises(ValueError, match=r"curvature indices must lie in \[0, 10\)"):
        hf.step(x, y, loss="mse", last_step_only=True, curvature=np.array([3, 10]))
    with pytest.raises(ValueError, match="loss"):
        hf.step(x, y, loss="hinge")
    with pytest.raises(ValueError, match=r"HessianFree.step: ElmanRNN.forward_backward: .*y"):
        hf.step(x, y[:4], loss="mse", last_step_only=True)
    with pytest.raises(ValueError, match="HessianFree.step: x must be"):
        hf.step(np.zeros(5), y, loss="mse")
    with pytest.raises(ValueError, match="the state has no 'rng'"):
        hf.load_state_dict({"damping": 1.0, "steps": 0, "direction": None})
    with pytest.raises(ValueError, match="direction has shape"):
        hf.load_state_dict({"damping": 1.0, "steps": 0, "direction": np.zeros(3),
                            "rng": hf.state_dict()["rng"]})


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_forward_only_loss_is_forward_backward_s(loss, last, reduction):
    """HF compares losses from a forward pass alone; they are forward_backward's."""
    from elman.hf import _scored_loss
    rng = np.random.default_rng(7)
    T, B, V = 5, 6, 4
    x = rng.integers(0, V, (T, B))
    lengths = rng.integers(1, T + 1, B)
    if loss == "cross_entropy":
        y = rng.integers(0, V, B if last else (T, B))
    else:
        y = rng.standard_normal((B, V) if last else (T, B, V))
    m = elman.ElmanRNN(V, 7, V, dtype="float64", seed=4)
    kw = dict(loss=loss, reduction=reduction, last_step_only=last)
    want, _ = m.forward_backward(x, y, lengths=lengths, **kw)
    Y, _ = m.forward(x, lengths=lengths)
    assert _scored_loss(Y, y, lengths, **kw) == pytest.approx(want, rel=1e-12)
