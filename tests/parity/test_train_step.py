"""elman.train_step: one C call for forward, BPTT, clipping and the update, equal bit for
bit to forward_backward followed by opt.step()."""
import numpy as np
import pytest

import elman

OPTIMIZERS = {
    "adagrad-torch-clipnorm": lambda m: elman.Adagrad(m, lr=0.05, max_grad_norm=0.5),
    "adagrad-keras-clipvalue": lambda m: elman.Adagrad(m, preset="keras", lr=0.05,
                                                       clip_value=0.01, weight_decay=0.01),
    "adagrad-minchar-decay": lambda m: elman.Adagrad(m, preset="minchar", lr_decay=0.1,
                                                     maximize=False),
    "sgd-momentum-wd": lambda m: elman.SGD(m, lr=0.1, momentum=0.9, weight_decay=0.01,
                                           max_grad_norm=1.0),
    "sgd-plain": lambda m: elman.SGD(m, lr=0.1),
}


def problem(case, dtype, rng):
    T, B = 7, 3
    if case == "ids":
        m = elman.ElmanRNN(11, 9, 11, dtype=dtype, seed=4)
        x, y, kw = rng.integers(0, 11, (T, B)), rng.integers(0, 11, (T, B)), {}
    elif case == "mse":
        m = elman.ElmanRNN(4, 9, 2, dtype=dtype, seed=4)
        x = rng.standard_normal((T, B, 4))
        y, kw = rng.standard_normal((T, B, 2)), dict(loss="mse", reduction="sum")
    else:
        m = elman.ElmanRNN(4, 9, 3, dtype=dtype, seed=4, nonlinearity="relu")
        x = rng.standard_normal((T, B, 4))
        y, kw = rng.integers(0, 3, B), dict(last_step_only=True)
    return m, x, y, kw


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("case", ["ids", "mse", "last-step"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_step_equals_forward_backward_then_step(opt_name, case, dtype):
    rng = np.random.default_rng(1)
    m1, x, y, kw = problem(case, dtype, rng)
    m2, _, _, _ = problem(case, dtype, np.random.default_rng(1))
    o1, o2 = OPTIMIZERS[opt_name](m1), OPTIMIZERS[opt_name](m2)
    h1 = h2 = None
    for _ in range(15):
        l1, h1 = m1.forward_backward(x, y, h1, **kw)
        o1.step()
        l2, h2 = elman.train_step(m2, o2, x, y, h2, **kw)
        assert l1 == l2
    np.testing.assert_array_equal(m1.params, m2.params)
    np.testing.assert_array_equal(m1.grads, m2.grads)
    np.testing.assert_array_equal(h1, h2)
    assert o1.steps == o2.steps == 15 and o1.last_grad_norm == o2.last_grad_norm
    s1 = o1.state if isinstance(o1, elman.Adagrad) else o1.momentum_buffer
    s2 = o2.state if isinstance(o2, elman.Adagrad) else o2.momentum_buffer
    if s1 is not None:
        np.testing.assert_array_equal(s1, s2)


def test_numpy_backend_takes_the_unfused_path():
    rng = np.random.default_rng(2)
    m1, x, y, kw = problem("ids", "float64", rng)
    m2, _, _, _ = problem("ids", "float64", np.random.default_rng(2))
    o1, o2 = elman.Adagrad(m1, max_grad_norm=1.0), elman.Adagrad(m2, max_grad_norm=1.0)
    elman.train_step(m1, o1, x, y)
    with elman.backend("numpy"):
        elman.train_step(m2, o2, x, y)
    np.testing.assert_allclose(m1.params, m2.params, rtol=1e-12, atol=1e-14)
    assert o2.steps == 1


def test_h_out_and_batch_first():
    rng = np.random.default_rng(3)
    m, x, y, kw = problem("ids", "float32", rng)
    opt = elman.Adagrad(m)
    h = np.zeros((1, 3, 9), np.float32)
    _, out = elman.train_step(m, opt, x.T, y.T, h, h_out=h, batch_first=True)
    assert out is h and np.abs(h).sum() > 0


def test_a_non_finite_loss_updates_nothing():
    rng = np.random.default_rng(4)
    m, x, y, kw = problem("ids", "float32", rng)
    opt = elman.Adagrad(m, max_grad_norm=1.0)
    m.named_params()["b_y"][0] = np.nan
    before = m.params.copy()
    with pytest.raises(elman.NonFiniteError, match="loss"):
        elman.train_step(m, opt, x, y)
    np.testing.assert_array_equal(m.params, before)
    assert opt.steps == 0 and not opt.state.any()


def test_an_update_that_overflows_is_applied_and_reported_as_step_does():
    results = []
    for fused in (True, False):
        m, x, y, kw = problem("ids", "float32", np.random.default_rng(5))
        opt = elman.SGD(m, lr=3e38)  # lr * g leaves float32 wherever |g| > 1.2
        with pytest.raises(elman.NonFiniteError):
            if fused:
                elman.train_step(m, opt, x, y, reduction="sum")
            else:
                m.forward_backward(x, y, reduction="sum")
                opt.step()
        results.append((m.params.copy(), opt.steps))
    assert not np.isfinite(results[0][0]).all()
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1] == 1


def test_arguments_are_checked():
    m = elman.ElmanRNN(5, 4, 5)
    other = elman.ElmanRNN(5, 4, 5)
    x = np.zeros((3, 2), np.int64)
    with pytest.raises(TypeError, match="ElmanRNN"):
        elman.train_step(object(), elman.Adagrad(m), x, x)
    with pytest.raises(TypeError, match="Adagrad or elman.SGD"):
        elman.train_step(m, object(), x, x)
    with pytest.raises(ValueError, match="this model"):
        elman.train_step(m, elman.Adagrad(other), x, x)
    with pytest.raises(ValueError):
        elman.train_step(m, elman.Adagrad(m), x, np.full((3, 2), 7))


def test_grad_h0_is_not_left_stale_by_a_fused_step():
    m = elman.ElmanRNN(5, 4, 5)
    x = np.zeros((3, 2), np.int64)
    m.forward_backward(x, x)
    assert m.grad_h0 is not None
    elman.train_step(m, elman.Adagrad(m), x, x)
    assert m.grad_h0 is None
