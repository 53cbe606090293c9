"""Gradients against central finite differences of the loss, in float64, on both backends:
dense and token-id inputs, both losses, both reductions, last_step_only, tanh and relu, and
the gradients with respect to h0, x and an upstream dh_T."""
import numpy as np
import pytest

import elman
from elman import kernels
from gradients import numerical_grad
from tolerances import stable_seed


def make_case(rng, ids, loss, last, nonlinearity="tanh", T=4, B=3, I=5, H=4, O=3):
    m = elman.ElmanRNN(I, H, O, dtype="float64", seed=int(rng.integers(1000)),
                       nonlinearity=nonlinearity)
    m.params[...] = rng.uniform(-0.6, 0.6, m.params.size)
    x = rng.integers(0, I, size=(T, B)) if ids else rng.standard_normal((T, B, I))
    if loss == "cross_entropy":
        y = rng.integers(0, O, size=(B,) if last else (T, B))
    else:
        y = rng.standard_normal((B, O) if last else (T, B, O))
    h0 = 0.5 * rng.standard_normal((1, B, H))
    return m, x, y, h0


@pytest.mark.parametrize("ids", [False, True], ids=["dense", "ids"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("last", [False, True], ids=["all_steps", "last_step"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_forward_backward_matches_finite_differences(backend_name, ids, loss, last, reduction,
                                                     nonlinearity):
    rng = np.random.default_rng(stable_seed(ids, loss, last, reduction, nonlinearity))
    m, x, y, h0 = make_case(rng, ids, loss, last, nonlinearity)
    kw = dict(loss=loss, reduction=reduction, last_step_only=last)
    m.forward_backward(x, y, h0, **kw)
    analytic = m.grads.copy()
    numeric = numerical_grad(lambda: m.forward_backward(x, y, h0, **kw)[0], m.params)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)
    assert np.abs(analytic).max() > 1e-3  # the check is not vacuous


@pytest.mark.parametrize("ids", [False, True], ids=["dense", "ids"])
def test_gradient_wrt_h0(backend_name, ids):
    rng = np.random.default_rng(7)
    m, x, y, h0 = make_case(rng, ids, "cross_entropy", False)
    sizes = dict(input_size=m.input_size, hidden_size=m.hidden_size, output_size=m.output_size)
    h = h0[0].copy()
    dh0 = np.empty_like(h)
    grads = np.empty_like(m.params)

    def loss():
        return kernels.model_forward_backward(m.params, grads, x, y, h, **sizes)[0]

    kernels.model_forward_backward(m.params, grads, x, y, h, dh0=dh0, **sizes)
    np.testing.assert_allclose(dh0, numerical_grad(loss, h), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_layer_backward_dx_and_dh_T(backend_name, nonlinearity):
    """rnn_backward's dx (for stacked layers) and an upstream gradient on h_T, against
    finite differences of L = sum(hs[1:] * G) + sum(hs[T] * G_T)."""
    rng = np.random.default_rng(3)
    T, B, I, H = 3, 2, 4, 5
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((B, H))
    W_xh, W_hh, b_h = rng.standard_normal((I, H)), 0.5 * rng.standard_normal((H, H)), \
        rng.standard_normal(H)
    G, G_T = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))

    def L():
        hs = kernels.rnn_forward(x, h0, W_xh, W_hh, b_h, nonlinearity=nonlinearity)
        return float((hs[1:] * G).sum() + (hs[T] * G_T).sum())

    hs = kernels.rnn_forward(x, h0, W_xh, W_hh, b_h, nonlinearity=nonlinearity)
    g = kernels.rnn_backward(G, hs, x, W_xh, W_hh, nonlinearity=nonlinearity, dh_T=G_T,
                             need_dx=True)
    for name, v in (("x", x), ("h0", h0), ("W_xh", W_xh), ("W_hh", W_hh), ("b_h", b_h)):
        np.testing.assert_allclose(getattr(g, name), numerical_grad(L, v), rtol=1e-5,
                                   atol=1e-7, err_msg=name)


def test_loss_kernels_match_finite_differences(backend_name):
    rng = np.random.default_rng(11)
    z, t = rng.standard_normal((5, 7)), rng.integers(0, 7, size=5)
    _, dz = kernels.softmax_cross_entropy(z, t)
    np.testing.assert_allclose(
        dz, numerical_grad(lambda: kernels.softmax_cross_entropy(z, t)[0], z), rtol=1e-6,
        atol=1e-9)
    p, q = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    _, dp = kernels.mse_loss(p, q, reduction="sum")
    np.testing.assert_allclose(
        dp, numerical_grad(lambda: kernels.mse_loss(p, q, reduction="sum")[0], p), rtol=1e-6,
        atol=1e-9)


@pytest.mark.parametrize("ids", [False, True], ids=["dense", "ids"])
@pytest.mark.parametrize("last", [False, True], ids=["all_steps", "last_step"])
def test_model_grad_h0_and_upstream_dh_T(backend_name, ids, last):
    """grad_h0 and dh_T of ElmanRNN.forward_backward: the objective is the loss plus
    <dh_T, h_T>, as when a model chained after this one sends dh_T back."""
    rng = np.random.default_rng(11)
    m, x, y, h0 = make_case(rng, ids, "cross_entropy", last)
    dh_T = rng.standard_normal(h0.shape)

    def objective():
        Y, h_T = m.forward(x, h0)
        value, _ = kernels.softmax_cross_entropy(
            np.ascontiguousarray(Y[-1] if last else Y.reshape(-1, Y.shape[-1])),
            y.reshape(-1))
        return value + float(np.sum(dh_T * h_T))

    m.forward_backward(x, y, h0, last_step_only=last, dh_T=dh_T)
    analytic_params, analytic_h0 = m.grads.copy(), m.grad_h0.copy()
    np.testing.assert_allclose(analytic_params, numerical_grad(objective, m.params),
                               rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(analytic_h0, numerical_grad(objective, h0), rtol=1e-5,
                               atol=1e-8)


def test_grad_h0_is_read_only_and_fresh_per_call():
    m = elman.ElmanRNN(4, 3, 4, dtype="float64")
    assert m.grad_h0 is None
    x = np.array([[1, 2], [3, 0]])
    m.forward_backward(x, x)
    g = m.grad_h0
    assert g.shape == (1, 2, 3) and not g.flags.writeable
    with pytest.raises(ValueError):
        m.forward_backward(x, x, dh_T=np.zeros((2, 4)))
    with pytest.raises(elman.NonFiniteError):
        m.forward_backward(x, x, dh_T=np.full((1, 2, 3), np.nan))
