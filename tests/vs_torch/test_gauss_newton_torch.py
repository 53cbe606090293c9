"""Gauss-Newton products (ElmanRNN.gauss_newton_product, the GaussNewton operator) against
PyTorch autograd, an outside implementation of the derivatives.

The model's torch twin (``model.to_torch()``: torch.nn.RNN + torch.nn.Linear) is called
functionally (torch.func.functional_call) on parameters cut from one flat vector in elman's
layout (elman.layout.param_layout, torch's names from elman._interchange.torch_names), so
that its outputs Y(θ) are a function of elman's flat θ. Then

    G v = Jᵀ H_L J v:  J v by torch.func.jvp of Y(θ); H_L (J v) by a jvp of the gradient of
    torch's own loss (F.cross_entropy / F.mse_loss, the same reduction) with respect to Y;
    Jᵀ (.) by torch.func.vjp of Y(θ);

and the structural damping term c J_Hᵀ J_H v the same way, with the hidden states of every
layer and direction H(θ) (the stack run one torch layer at a time, so that each layer's
states are seen). Skipped when torch is absent.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
from torch.func import functional_call, grad, jvp, vjp  # noqa: E402

import elman  # noqa: E402
from elman._interchange import torch_names  # noqa: E402
from elman.layout import layer_names, param_layout  # noqa: E402
from tolerances import stable_seed  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 2e-5}
T, B, I, H, O = 5, 3, 4, 5, 3


def close(actual, expected, dtype, what):
    """Relative, with an absolute floor scaled by the largest expected magnitude."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: {actual.shape} != {expected.shape}"
    rtol = RTOL[np.dtype(dtype)]
    np.testing.assert_allclose(actual, expected, rtol=rtol,
                               atol=rtol * max(float(np.abs(expected).max()), 1e-30),
                               err_msg=what)


class TorchTwin:
    """The model's outputs Y(θ) and hidden states H(θ) as torch functions of elman's flat
    parameter vector θ, for torch.func to differentiate."""

    def __init__(self, m, x, h0):
        self.m = m
        self.td = torch.float64 if m.dtype == np.float64 else torch.float32
        self.rnn, self.lin = m.to_torch()
        self.layout, self.n = param_layout(m.input_size, m.hidden_size, m.output_size,
                                           m.num_layers, m.bidirectional)
        assert self.n == m.num_params
        self.D = 2 if m.bidirectional else 1
        self.x = (F.one_hot(torch.from_numpy(x.astype(np.int64)), m.input_size).to(self.td)
                  if x.dtype.kind in "iu" else torch.from_numpy(x))
        self.h0 = torch.from_numpy(h0)
        # one single-layer torch RNN per layer, to see each layer's states
        self.layers = [torch.nn.RNN(m.input_size if l == 0 else self.D * m.hidden_size,
                                    m.hidden_size, nonlinearity=m.nonlinearity,
                                    bidirectional=m.bidirectional, dtype=self.td)
                       for l in range(m.num_layers)]

    def views(self, theta):
        return {name: theta[off:off + int(np.prod(shape))].reshape(shape)
                for name, shape, off in self.layout}

    def rnn_params(self, v, pairs):
        p = {}
        for (nx, nh, nb), sfx in pairs:
            p["weight_ih" + sfx] = v[nx].T
            p["weight_hh" + sfx] = v[nh].T
            p["bias_ih" + sfx] = v[nb]
            p["bias_hh" + sfx] = torch.zeros_like(v[nb])
        return p

    def outputs(self, last_step_only):
        def Y(theta):
            v = self.views(theta)
            out, _ = functional_call(self.rnn, self.rnn_params(v, torch_names(self.m)),
                                     (self.x, self.h0))
            y = functional_call(self.lin, {"weight": v["W_hy"].T, "bias": v["b_y"]}, (out,))
            return y[-1] if last_step_only else y.reshape(-1, y.shape[-1])
        return Y

    def states(self, theta):
        """Every layer's and direction's states at every step, (T, B, L*D*H)."""
        v = self.views(theta)
        D, inp, outs = self.D, self.x, []
        for l, layer in enumerate(self.layers):
            pairs = [(layer_names(l, d), "_l0" + ("_reverse" if d else "")) for d in range(D)]
            inp, _ = functional_call(layer, self.rnn_params(v, pairs),
                                     (inp, self.h0[l * D:(l + 1) * D]))
            outs.append(inp)
        return torch.cat(outs, dim=-1)


def torch_product(twin, v, loss, reduction, last_step_only, targets, damping=0.0,
                  structural_damping=0.0):
    """(G + λ I + λ μ c J_Hᵀ J_H) v by torch.func, as a NumPy array."""
    theta = torch.from_numpy(twin.m.params.copy())
    vt = torch.from_numpy(v)
    Y_of = twin.outputs(last_step_only)

    def loss_of(Y):
        if loss == "cross_entropy":
            return F.cross_entropy(Y, targets, reduction=reduction)
        return F.mse_loss(Y, targets, reduction=reduction)

    Y, Jv = jvp(Y_of, (theta,), (vt,))
    _, HJv = jvp(grad(loss_of), (Y,), (Jv,))
    _, pullback = vjp(Y_of, theta)
    (Gv,) = pullback(HJv)
    if damping:
        Gv = Gv + damping * vt
        if structural_damping:
            _, JHv = jvp(twin.states, (theta,), (vt,))
            _, pull_states = vjp(twin.states, theta)
            c = 1.0 / (T * B) if reduction == "mean" else 1.0
            Gv = Gv + damping * structural_damping * c * pull_states(JHv)[0]
    return Gv.detach().numpy()


CASES = [  # (num_layers, bidirectional, nonlinearity, input, loss, reduction)
    (1, False, "tanh", "dense", "cross_entropy", "mean"),
    (1, False, "tanh", "ids", "cross_entropy", "mean"),
    (2, True, "relu", "dense", "mse", "sum"),
    (2, True, "relu", "ids", "mse", "sum"),
]


def case_id(c):
    L, bi, nl, kind, loss, red = c
    return f"L{L}{'-bi' if bi else ''}-{nl}-{kind}-{loss}-{red}"


@pytest.mark.parametrize("cfg", CASES, ids=case_id)
@pytest.mark.parametrize("last_step_only", [False, True], ids=["all_steps", "last_step"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_gauss_newton_product_matches_torch(backend, dtype, last_step_only, cfg):
    """Plain (G v), damped (+ λ v) and structurally damped (+ λ μ c J_Hᵀ J_H v) products,
    from the one-shot product and from one operator."""
    L, bi, nl, kind, loss, reduction = cfg
    rng = np.random.default_rng(stable_seed("gn-torch", cfg, last_step_only))
    m = elman.ElmanRNN(I, H, O, nonlinearity=nl, num_layers=L, bidirectional=bi, dtype=dtype,
                       seed=2)
    m.params[...] = rng.uniform(-0.6, 0.6, m.num_params)
    x = rng.integers(0, I, (T, B)) if kind == "ids" else \
        rng.standard_normal((T, B, I)).astype(dtype)
    h0 = (0.5 * rng.standard_normal((m.num_states, B, H))).astype(dtype)
    v = rng.standard_normal(m.num_params).astype(dtype)
    N = B if last_step_only else T * B
    targets = (torch.from_numpy(rng.integers(0, O, N)) if loss == "cross_entropy" else
               torch.from_numpy(rng.standard_normal((N, O)).astype(dtype)))
    twin = TorchTwin(m, x, h0)
    kw = dict(loss=loss, reduction=reduction, last_step_only=last_step_only)
    with elman.backend(backend):
        G = m.gauss_newton(x, h0, **kw)
        for lam, mu in ((0.0, 0.0), (0.3, 0.0), (0.3, 2.5)):
            want = torch_product(twin, v, loss, reduction, last_step_only, targets, lam, mu)
            what = f"damping={lam} structural_damping={mu}"
            close(m.gauss_newton_product(v, x, h0, damping=lam, structural_damping=mu, **kw),
                  want, dtype, what)
            close(G.matvec(v, damping=lam, structural_damping=mu), want, dtype,
                  "operator " + what)
        assert G.forwards == 1
    assert np.abs(want).max() > 1e-3


def test_the_twin_computes_the_model():
    """The torch functions are the model: Y(θ) at θ = params is ``forward``'s output, and
    the last layer's part of H(θ) is what the stack's torch.nn.RNN returns."""
    rng = np.random.default_rng(1)
    m = elman.ElmanRNN(I, H, O, num_layers=2, bidirectional=True, nonlinearity="relu",
                       dtype="float64", seed=3)
    x = rng.standard_normal((T, B, I))
    h0 = 0.5 * rng.standard_normal((m.num_states, B, H))
    twin = TorchTwin(m, x, h0)
    theta = torch.from_numpy(m.params.copy())
    Y = twin.outputs(False)(theta).detach().numpy()
    close(Y, m.forward(x, h0)[0].reshape(-1, O), np.float64, "Y")
    out, _ = twin.rnn(twin.x, twin.h0)
    close(twin.states(theta)[..., -2 * H:].detach().numpy(), out.detach().numpy(),
          np.float64, "top layer's states")
