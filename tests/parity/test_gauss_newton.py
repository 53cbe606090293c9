"""Gauss-Newton products: ElmanRNN.gauss_newton (the GaussNewton operator),
ElmanRNN.gauss_newton_product, the backends' model_gauss_newton_prepare / _product, and the
R-operator's layer kernel kernels.rnn_rforward.

- parity: the C kernels against the NumPy reference over every model kind (one or two
  layers, either direction, token ids and dense input, tanh and relu, both losses, both
  reductions, last_step_only, lengths, dropout, damping and structural damping on and off),
  float32 and float64, within tests/tolerances.py; rnn_rforward likewise (reverse, lengths,
  ids, Rx);
- the math, in float64 on both backends: rnn_rforward is the derivative of rnn_forward;
  G v = Jᵀ H_L J v with J by central differences of the model's outputs; the Hessian where
  the residual is zero; symmetry, linearity, positive semi-definiteness; structural damping
  as c J_Hᵀ J_H with J_H by central differences of the hidden states; damping adds λ v;
- the operator: one forward per parameter vector and backend, ``out=``, its own copy of
  the batch, dropout masks fixed per operator (those of the loss forward_backward trains).
"""
import copy
import itertools

import numpy as np
import pytest

import elman
from elman import _c_backend, kernels, reference
from conftest import count_core_calls
from gradients import numerical_jacobian, numerical_jvp
from tolerances import assert_close, stable_seed


def lengths_for(rng, T, B):
    """Lengths covering 1 and T and something between, in no particular order."""
    lens = rng.integers(1, T + 1, size=B)
    lens[0], lens[-1] = 1, T
    return rng.permutation(lens)


def case(rng, L=1, bi=False, p=0.0, nl="tanh", dtype=np.float64, ids=False,
         with_lengths=False, T=6, B=4, I=5, H=4, O=3, seed=3):
    """A model with parameters from U(-0.6, 0.6), a batch, non-zero h0 and lengths."""
    m = elman.ElmanRNN(I, H, O, nonlinearity=nl, num_layers=L, bidirectional=bi, dropout=p,
                       dtype=dtype, seed=seed)
    m.params[...] = rng.uniform(-0.6, 0.6, m.num_params)
    x = rng.integers(0, I, (T, B)) if ids else rng.standard_normal((T, B, I)).astype(dtype)
    h0 = (0.5 * rng.standard_normal((m.num_states, B, H))).astype(dtype)
    lens = lengths_for(rng, T, B) if with_lengths else None
    return m, x, h0, lens


def valid_steps(lengths, T, B):
    return np.arange(T)[:, None] < (np.full(B, T) if lengths is None else lengths)[None, :]


def scored(Y, lengths, last_step_only):
    """The rows of Y (T, B, O) that carry a loss: each sequence's last step, or every valid
    step."""
    T, B = Y.shape[:2]
    if last_step_only:
        t = (np.full(B, T) if lengths is None else np.asarray(lengths)) - 1
        return Y[t, np.arange(B)]
    return Y[valid_steps(lengths, T, B)]


def loss_hessian_times(Y, U, loss, reduction):
    """H_L U, the Hessian of the loss with respect to the scored outputs Y (N, O) applied to
    U (N, O), from its definition: per row diag(p) - p pᵀ (p = softmax) for cross-entropy,
    2 I for MSE; divided by N (cross-entropy) or N*O (MSE) under "mean"."""
    N, O = Y.shape
    if loss == "mse":
        return 2.0 * U / (N * O if reduction == "mean" else 1)
    e = np.exp(Y - Y.max(axis=1, keepdims=True))
    P = e / e.sum(axis=1, keepdims=True)
    HU = np.stack([(np.diag(p) - np.outer(p, p)) @ u for p, u in zip(P, U)])
    return HU / (N if reduction == "mean" else 1)


# ---- parity: the model's product, C against the reference ---------------------------------

STACKS = [(1, False, 0.0), (1, True, 0.0), (2, False, 0.0), (2, True, 0.0), (2, False, 0.3),
          (2, True, 0.5)]
# (damping, structural_damping): off, damping alone, both
VARIANTS = [(0.0, 0.0), (0.4, 0.0), (0.4, 1.5)]


def stack_id(s):
    L, bi, p = s
    return f"L{L}{'-bi' if bi else ''}{f'-drop{p}' if p else ''}"


@pytest.mark.parametrize("stack", STACKS, ids=stack_id)
@pytest.mark.parametrize("ids", [False, True], ids=["dense", "ids"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_product_c_matches_reference(dtype, stack, ids, loss):
    """Every nonlinearity, reduction, last_step_only and lengths for this stack, input and
    loss; three products (damping off, on, with structural damping) of one operator per
    backend. With dropout both backends draw the same masks (dropout_calls is reset)."""
    L, bi, p = stack
    for nl, reduction, last, with_lengths in itertools.product(
            ("tanh", "relu"), ("mean", "sum"), (False, True), (False, True)):
        sub = (f"{nl}-{reduction}-{'last' if last else 'all'}-"
               f"{'lengths' if with_lengths else 'full'}")
        rng = np.random.default_rng(stable_seed(stack, ids, loss, sub))
        m, x, h0, lens = case(rng, L, bi, p, nl, dtype, ids, with_lengths)
        v = rng.standard_normal(m.num_params).astype(dtype)
        kw = dict(loss=loss, reduction=reduction, last_step_only=last, lengths=lens)
        got = {}
        for be in ("c", "numpy"):
            m.dropout_calls = 0
            with elman.backend(be), count_core_calls() as calls:
                G = m.gauss_newton(x, h0, **kw)
                got[be] = [G.matvec(v, damping=lam, structural_damping=mu).copy()
                           for lam, mu in VARIANTS]
            assert bool(calls) == (be == "c"), (be, calls)  # each backend ran its own code
            assert G.forwards == 1
        for (lam, mu), c, r in zip(VARIANTS, got["c"], got["numpy"]):
            assert c.dtype == dtype and c.shape == (m.num_params,)
            assert_close(c, r, dtype, err_msg=f"{sub} damping={lam} structural_damping={mu}")
        plain, damped, structural = got["numpy"]
        assert np.abs(plain).max() > 1e-3, sub  # not vacuous
        assert not np.allclose(structural, damped), sub  # the structural term is there


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_dropout_lanes_c_matches_reference(dtype, loss):
    """The backends with explicit dropout seeds and lanes (a rank's part of a larger batch):
    the same masks, hence the same products; the lanes change the masks."""
    rng = np.random.default_rng(stable_seed("lanes", loss))
    m, x, h0, lens = case(rng, 2, True, 0.4, "tanh", dtype, True, True)
    v = rng.standard_normal(m.num_params).astype(dtype)
    B = x.shape[1]
    kw = dict(m._shape_kwargs(), loss=loss, last_step_only=False, lengths=lens, dropout=0.4,
              dropout_seed=987654321)
    out = {}
    for lanes in ((0, 0), (3 * B, B)):
        for name, be in (("c", _c_backend), ("numpy", reference)):
            cache = be.model_gauss_newton_prepare(m.params, x, h0, dropout_lanes=lanes, **kw)
            out[name, lanes] = be.model_gauss_newton_product(
                m.params, v, cache, reduction="mean", damping=0.2, structural_damping=1.0)
        assert_close(out["c", lanes], out["numpy", lanes], dtype, err_msg=str(lanes))
    a, b = out["numpy", (0, 0)], out["numpy", (3 * B, B)]
    assert np.abs(a - b).max() > 1e-3 * np.abs(a).max()


@pytest.mark.parametrize("path", elman.cpu_paths())
@pytest.mark.parametrize("threads", [1, 2])
def test_product_on_every_cpu_path_and_thread_count(dtype, path, threads):
    """Sizes that are no multiple of any SIMD width, on every kernel path this CPU has
    (generic, avx2, avx512) and with one and two OpenMP threads: the product and the layer's
    R-forward match the reference."""
    rng = np.random.default_rng(stable_seed("paths", path, threads))
    m, x, h0, lens = case(rng, 2, True, 0.3, "tanh", dtype, False, True, T=7, B=11, I=13,
                          H=37, O=19)
    v = rng.standard_normal(m.num_params).astype(dtype)
    kw = dict(loss="cross_entropy", lengths=lens)
    m.dropout_calls = 0
    with elman.backend("numpy"):
        want = m.gauss_newton(x, h0, **kw).matvec(v, damping=0.3, structural_damping=0.7)
    W_xh, W_hh, b_h = (m.named_params()[k] for k in ("W_xh", "W_hh", "b_h"))
    hs = reference.rnn_forward(x, h0[0], W_xh, W_hh, b_h, lengths=lens)
    V = tuple(rng.standard_normal(a.shape).astype(dtype) for a in (W_xh, W_hh, b_h))
    R_want = reference.rnn_rforward(hs, x, W_xh, W_hh, *V, lengths=lens)
    before = elman.get_num_threads()
    try:
        elman.set_num_threads(threads)
        with elman.cpu_path(path), elman.backend("c"):
            m.dropout_calls = 0
            got = m.gauss_newton(x, h0, **kw).matvec(v, damping=0.3, structural_damping=0.7)
            R = kernels.rnn_rforward(hs, x, W_xh, W_hh, *V, lengths=lens)
    finally:
        elman.set_num_threads(before)
    assert_close(got, want, dtype)
    assert_close(R, R_want, dtype)


# ---- parity and derivative: the R-operator's layer kernel ----------------------------------

INPUTS = ["dense", "dense+Rx", "ids"]


def layer_case(rng, dtype, inp, reverse, with_lengths, nonlinearity, T=6, B=5, I=4, H=7):
    x = rng.integers(0, I, (T, B)) if inp == "ids" else \
        rng.standard_normal((T, B, I)).astype(dtype)
    W_xh, W_hh = (rng.uniform(-0.6, 0.6, s).astype(dtype) for s in ((I, H), (H, H)))
    b_h = rng.uniform(-0.5, 0.5, H).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    V = tuple(rng.standard_normal(s).astype(dtype) for s in ((I, H), (H, H), (H,)))
    Rx = rng.standard_normal((T, B, I)).astype(dtype) if inp == "dense+Rx" else None
    lens = lengths_for(rng, T, B) if with_lengths else None
    kw = dict(nonlinearity=nonlinearity, reverse=reverse, lengths=lens)
    return x, h0, (W_xh, W_hh, b_h), V, Rx, kw


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("inp", INPUTS)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rforward_c_matches_reference(dtype, reverse, with_lengths, inp, nonlinearity):
    rng = np.random.default_rng(stable_seed("rforward", reverse, with_lengths, inp,
                                            nonlinearity))
    x, h0, (W_xh, W_hh, b_h), V, Rx, kw = layer_case(rng, dtype, inp, reverse, with_lengths,
                                                     nonlinearity)
    hs = reference.rnn_forward(x, h0, W_xh, W_hh, b_h, **kw)
    out = {}
    for be in ("c", "numpy"):
        with elman.backend(be), count_core_calls() as calls:
            out[be] = kernels.rnn_rforward(hs, x, W_xh, W_hh, *V, Rx=Rx, **kw)
        assert bool(calls) == (be == "c"), (be, calls)
    assert out["c"].shape == hs.shape and out["c"].dtype == dtype
    assert_close(out["c"], out["numpy"], dtype)
    T = x.shape[0]
    assert not out["c"][T if reverse else 0].any()  # where hs holds h0
    assert np.abs(out["numpy"]).max() > 1e-2


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("inp", INPUTS)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rforward_is_the_derivative_of_rnn_forward(backend_name, reverse, with_lengths, inp,
                                                    nonlinearity):
    """R{hs} = d/ds rnn_forward(x + s Rx, h0, W_xh + s V_xh, W_hh + s V_hh, b_h + s v_b) at
    s = 0, by central differences (float64); padded steps carry it as hs carries H."""
    rng = np.random.default_rng(stable_seed("rforward-fd", reverse, with_lengths, inp,
                                            nonlinearity))
    x, h0, W, V, Rx, kw = layer_case(rng, np.float64, inp, reverse, with_lengths,
                                     nonlinearity)
    hs = kernels.rnn_forward(x, h0, *W, **kw)
    R = kernels.rnn_rforward(hs, x, W[0], W[1], *V, Rx=Rx, **kw)

    def at(s):
        xs = x if Rx is None else x + s * Rx
        return kernels.rnn_forward(xs, h0, *(w + s * d for w, d in zip(W, V)), **kw)

    eps = 1e-6
    want = (at(eps) - at(-eps)) / (2 * eps)
    np.testing.assert_allclose(R, want, rtol=1e-6, atol=1e-8 * np.abs(want).max())
    T, B = x.shape[:2]
    lens = kw["lengths"] if with_lengths else np.full(B, T)
    for b, n in enumerate(lens):  # padded steps: forward carries R{H_n}, reverse holds 0
        if reverse:
            assert not R[n:, b].any()
        else:
            np.testing.assert_array_equal(R[n:, b], np.broadcast_to(R[n, b], R[n:, b].shape))


# ---- the math: G = Jᵀ H_L J, against finite differences (float64) ------------------------

MATH = [  # (num_layers, bidirectional, nonlinearity, ids, loss, reduction, last, lengths)
    (1, False, "tanh", False, "cross_entropy", "mean", False, False),
    (1, False, "relu", True, "mse", "sum", False, True),
    (1, True, "tanh", True, "cross_entropy", "sum", True, True),
    (2, False, "tanh", False, "mse", "mean", True, False),
    (2, True, "relu", False, "cross_entropy", "mean", False, True),
    (2, True, "tanh", True, "mse", "mean", True, True),
    (1, False, "tanh", False, "cross_entropy", "mean", True, True),
]


def math_id(c):
    L, bi, nl, ids, loss, red, last, lens = c
    return (f"L{L}{'-bi' if bi else ''}-{nl}-{'ids' if ids else 'dense'}-{loss}-{red}"
            f"{'-last' if last else ''}{'-lengths' if lens else ''}")


def small_case(cfg, T=4, B=3, I=3, H=3, O=3):
    L, bi, nl, ids, loss, reduction, last, with_lengths = cfg
    rng = np.random.default_rng(stable_seed("math", cfg))
    m, x, h0, lens = case(rng, L, bi, 0.0, nl, np.float64, ids, with_lengths, T, B, I, H, O)
    kw = dict(loss=loss, reduction=reduction, last_step_only=last, lengths=lens)
    return rng, m, x, h0, kw


@pytest.mark.parametrize("cfg", MATH, ids=math_id)
def test_product_is_jt_hl_j_by_finite_differences(backend_name, cfg):
    """wᵀ G v = (J w)ᵀ H_L (J v), J the Jacobian of ``forward``'s outputs at the scored rows
    by central differences and H_L from its definition; for w = every unit vector, that is
    the whole product G v = Jᵀ H_L J v."""
    rng, m, x, h0, kw = small_case(cfg)
    lens, last = kw["lengths"], kw["last_step_only"]

    def outputs():
        return scored(m.forward(x, h0, lengths=lens)[0], lens, last)

    Y = outputs()
    N, O = Y.shape
    J = numerical_jacobian(outputs, m.params)                     # (N*O, n)
    v, w = rng.standard_normal((2, m.num_params))
    Gv = m.gauss_newton(x, h0, **kw).matvec(v)
    HJv = loss_hessian_times(Y, (J @ v).reshape(N, O), kw["loss"], kw["reduction"])
    assert w @ Gv == pytest.approx(np.sum((J @ w).reshape(N, O) * HJv), rel=1e-6)
    want = J.T @ HJv.reshape(-1)
    np.testing.assert_allclose(Gv, want, rtol=1e-6, atol=1e-8 * np.abs(want).max())
    assert np.abs(want).max() > 1e-3


ZERO_RESIDUAL = [  # (num_layers, bidirectional, nonlinearity, ids, reduction, last, lengths)
    (1, False, "tanh", False, "mean", False, False),
    (1, False, "relu", True, "sum", True, False),
    (2, True, "tanh", False, "sum", False, True),
    (2, False, "relu", True, "mean", True, True),
    (1, True, "tanh", True, "mean", False, True),
]


@pytest.mark.parametrize("cfg", ZERO_RESIDUAL,
                         ids=lambda c: math_id(c[:4] + ("mse",) + c[4:]))
def test_zero_residual_mse_hessian_is_g(backend_name, cfg):
    """Targets = the model's own outputs: the loss is 0, the residual is 0, and the Hessian
    of the loss (central differences of forward_backward's gradient along v) is G. Away
    from zero residual it is not (the check can tell them apart)."""
    L, bi, nl, ids, reduction, last, with_lengths = cfg
    rng, m, x, h0, kw = small_case((L, bi, nl, ids, "mse", reduction, last, with_lengths))
    lens = kw["lengths"]
    Y = m.forward(x, h0, lengths=lens)[0]
    y = np.ascontiguousarray(scored(Y, lens, True)) if last else Y.copy()
    v = rng.standard_normal(m.num_params)

    def gradient(targets):
        def g():
            m.forward_backward(x, targets, h0, **kw)
            return m.grads.copy()
        return g

    assert m.forward_backward(x, y, h0, **kw)[0] == pytest.approx(0, abs=1e-25)
    Hv = numerical_jvp(gradient(y), m.params, v, eps=1e-5)
    Gv = m.gauss_newton_product(v, x, h0, **kw)
    np.testing.assert_allclose(Gv, Hv, rtol=1e-5, atol=1e-7 * np.abs(Hv).max())
    other = y + rng.standard_normal(y.shape)
    Hv_other = numerical_jvp(gradient(other), m.params, v, eps=1e-5)
    assert np.abs(Hv_other - Gv).max() > 1e-3 * np.abs(Gv).max()


SYMMETRY = [  # (layers, bidirectional, dropout, nonlinearity, ids, loss, reduction, last, lengths)
    (1, False, 0.0, "tanh", True, "cross_entropy", "mean", False, False),
    (1, True, 0.0, "relu", False, "mse", "sum", True, True),
    (2, True, 0.0, "tanh", True, "mse", "mean", False, True),
    (2, True, 0.5, "relu", False, "cross_entropy", "sum", False, True),
    (2, False, 0.3, "tanh", True, "cross_entropy", "mean", True, False),
]


def sym_id(c):
    L, bi, p, *rest = c
    return f"L{L}{'-bi' if bi else ''}{f'-drop{p}' if p else ''}-" + "-".join(map(str, rest))


def sym_case(cfg, dtype, **sizes):
    L, bi, p, nl, ids, loss, reduction, last, with_lengths = cfg
    rng = np.random.default_rng(stable_seed("sym", cfg))
    m, x, h0, lens = case(rng, L, bi, p, nl, dtype, ids, with_lengths, **sizes)
    G = m.gauss_newton(x, h0, loss=loss, reduction=reduction, last_step_only=last,
                       lengths=lens)
    return rng, m, G


@pytest.mark.parametrize("cfg", SYMMETRY, ids=sym_id)
def test_symmetric_and_linear(backend_name, dtype, cfg):
    """wᵀ A v = vᵀ A w to rounding and A (2v - 3w) = 2 A v - 3 A w, for A = G and for the
    damped matrix G + λ I + λ μ c G_S (dropout: the operator's fixed masks)."""
    rng, m, G = sym_case(cfg, dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for lam, mu in ((0.0, 0.0), (0.3, 2.0)):
        for _ in range(3):
            v, w = rng.standard_normal((2, m.num_params)).astype(dtype)
            Gv = G.matvec(v, damping=lam, structural_damping=mu).astype(np.float64)
            Gw = G.matvec(w, damping=lam, structural_damping=mu).astype(np.float64)
            v64, w64 = v.astype(np.float64), w.astype(np.float64)
            scale = np.linalg.norm(w64) * np.linalg.norm(Gv) + \
                np.linalg.norm(v64) * np.linalg.norm(Gw)
            assert abs(w64 @ Gv - v64 @ Gw) <= tol * scale, (lam, mu)
            u = (2 * v64 - 3 * w64).astype(dtype)
            assert_close(G.matvec(u, damping=lam, structural_damping=mu), 2 * Gv - 3 * Gw,
                         dtype, err_msg=f"linearity, damping={lam}")


@pytest.mark.parametrize("cfg", SYMMETRY, ids=sym_id)
def test_positive_semidefinite(backend_name, cfg):
    """vᵀ G v >= 0 (to rounding) for random v; on a tiny model the dense G (n products) is
    symmetric with smallest eigenvalue >= -1e-10 max, and the damped matrix's eigenvalues
    are >= λ (G and G_S are both positive semi-definite)."""
    rng, m, G = sym_case(cfg, np.float64, T=3, B=2, I=2, H=2, O=3)
    n = m.num_params
    for _ in range(30):
        v = rng.standard_normal(n)
        Gv = G.matvec(v)
        assert v @ Gv >= -1e-12 * np.linalg.norm(v) * np.linalg.norm(Gv)
    eye = np.eye(n)
    dense = np.stack([G.matvec(eye[i]) for i in range(n)], axis=1)
    top = np.abs(dense).max()
    assert top > 1e-3
    np.testing.assert_allclose(dense, dense.T, rtol=0, atol=1e-12 * top)
    eig = np.linalg.eigvalsh(dense)
    assert eig.min() >= -1e-10 * eig.max(), eig[:3]
    lam, mu = 0.25, 3.0
    damped = np.stack([G.matvec(eye[i], damping=lam, structural_damping=mu)
                       for i in range(n)], axis=1)
    assert np.linalg.eigvalsh((damped + damped.T) / 2).min() >= lam * (1 - 1e-9)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_is_blind_to_shifting_every_logit(backend_name, reduction):
    """The softmax does not change when b_y moves by a constant: H_L 1 = 0, so G u = 0 for u
    = 1 on b_y (and MSE sees the shift)."""
    rng = np.random.default_rng(5)
    m, x, h0, lens = case(rng, 2, True, 0.0, "tanh", np.float64, True, True)
    u = np.zeros(m.num_params)
    kernels.param_views(u, m.input_size, m.hidden_size, m.output_size, m.num_layers,
                        m.bidirectional)["b_y"][...] = 1.0
    G = m.gauss_newton(x, h0, reduction=reduction, lengths=lens)
    scale = np.abs(G.matvec(rng.standard_normal(m.num_params))).max()
    assert np.abs(G.matvec(u)).max() <= 1e-12 * scale
    assert np.abs(m.gauss_newton_product(u, x, h0, loss="mse", lengths=lens)).max() > 1e-3


# ---- structural damping and damping -------------------------------------------------------

STRUCTURAL = [  # (num_layers, bidirectional, nonlinearity, ids, loss, reduction, last, lengths)
    (1, False, "tanh", False, "cross_entropy", "mean", False, False),
    (1, True, "relu", True, "mse", "sum", True, True),
    (2, True, "tanh", False, "mse", "mean", False, True),
    (2, False, "relu", True, "cross_entropy", "sum", True, False),
    (2, True, "tanh", True, "cross_entropy", "mean", True, True),
]


@pytest.mark.parametrize("cfg", STRUCTURAL, ids=math_id)
def test_structural_damping_is_jht_jh_by_finite_differences(backend_name, cfg):
    """(A(λ, μ) - A(λ, 0)) v / (λ μ) = c J_Hᵀ J_H v: J_H the Jacobian of the hidden states
    of every layer and direction at the valid steps (central differences of model_forward's
    states), c = 1/(valid steps) under "mean" (also with last_step_only), 1 under "sum"."""
    rng, m, x, h0, kw = small_case(cfg)
    lens = kw["lengths"]
    T, B = x.shape[:2]
    S, D, H = m.num_states, 2 if m.bidirectional else 1, m.hidden_size
    valid = valid_steps(lens, T, B)
    shape = dict(input_size=m.input_size, hidden_size=H, output_size=m.output_size,
                 nonlinearity=m.nonlinearity, num_layers=m.num_layers,
                 bidirectional=m.bidirectional, lengths=lens)

    def states():
        hs = kernels.model_forward(m.params, x, h0, **shape)[1].reshape(S, T + 1, B, H)
        # H_t of slab k at step t: hs[k, t+1] forward, hs[k, t] reverse
        return np.stack([hs[k, :-1] if k % D else hs[k, 1:] for k in range(S)])[:, valid]

    JH = numerical_jacobian(states, m.params)
    c = 1.0 / valid.sum() if kw["reduction"] == "mean" else 1.0
    lam, mu = 0.3, 2.0
    G = m.gauss_newton(x, h0, **kw)
    v, w = rng.standard_normal((2, m.num_params))
    GSv = (G.matvec(v, damping=lam, structural_damping=mu) - G.matvec(v, damping=lam)) / \
        (lam * mu)
    want = c * JH.T @ (JH @ v)
    np.testing.assert_allclose(GSv, want, rtol=1e-6, atol=1e-8 * np.abs(want).max())
    assert w @ GSv == pytest.approx(c * (JH @ w) @ (JH @ v), rel=1e-6)


def test_damping_adds_lambda_v(backend_name, dtype):
    """damping=λ adds λ v (to the rounding of one addition); structural damping without
    damping adds nothing; the one-shot product is the operator's."""
    rng = np.random.default_rng(8)
    m, x, h0, lens = case(rng, 2, True, 0.0, "relu", dtype, True, True)
    kw = dict(loss="cross_entropy", reduction="mean", lengths=lens)
    G = m.gauss_newton(x, h0, **kw)
    v = rng.standard_normal(m.num_params).astype(dtype)
    g0 = G.matvec(v).copy()
    eps = np.finfo(dtype).eps
    for lam in (1e-3, 0.37, 25.0):
        g1 = G.matvec(v, damping=lam)
        want = g0 + dtype.type(lam) * v
        np.testing.assert_allclose(g1, want, rtol=4 * eps, atol=4 * eps * np.abs(want).max(),
                                   err_msg=f"damping={lam}")
    np.testing.assert_array_equal(G.matvec(v, structural_damping=5.0), g0)
    np.testing.assert_array_equal(
        m.gauss_newton_product(v, x, h0, damping=0.37, structural_damping=2.0, **kw),
        G.matvec(v, damping=0.37, structural_damping=2.0))


def test_out_is_written_and_returned(backend_name, dtype):
    rng = np.random.default_rng(9)
    m, x, h0, lens = case(rng, 1, True, 0.0, "tanh", dtype, False, True)
    G = m.gauss_newton(x, h0, loss="mse", lengths=lens)
    v, w = rng.standard_normal((2, m.num_params)).astype(dtype)
    buf = np.full(m.num_params, np.nan, dtype)
    r = G.matvec(v, damping=0.2, structural_damping=1.0, out=buf)
    assert r is buf
    np.testing.assert_array_equal(buf, G.matvec(v, damping=0.2, structural_damping=1.0))
    assert G.matvec(w, out=buf) is buf  # reused: the new product, wholly
    np.testing.assert_array_equal(buf, G.matvec(w))
    # v of another float dtype is cast; the result has the model's dtype
    other = np.float32 if dtype == np.float64 else np.float64
    r = G.matvec(v.astype(other))
    assert r.dtype == dtype
    assert_close(r, G.matvec(v.astype(other).astype(dtype)), dtype)


# ---- the operator -------------------------------------------------------------------------

def test_the_operator_reuses_its_forward(dtype):
    """One forward per parameter vector and backend: many products with the params
    unchanged run one prepare; an optimizer step (or any write) is noticed; a backend
    switch prepares again. Nothing of the model is written (params, grads)."""
    rng = np.random.default_rng(10)
    m, x, h0, lens = case(rng, 2, True, 0.0, "tanh", dtype, True, True)
    n = m.num_params
    vs = rng.standard_normal((6, n)).astype(dtype)
    with elman.backend("c"):
        G = m.gauss_newton(x, h0, lengths=lens)
        assert G.forwards == 0 and G.shape == (n, n) and G.dtype == m.dtype
        params, grads = m.params.copy(), m.grads.copy()
        with count_core_calls() as calls:
            first = [G.matvec(v, damping=0.1 * k, structural_damping=k).copy()
                     for k, v in enumerate(vs)]
        assert G.forwards == 1
        assert calls.count("model_gauss_newton_prepare") == 1
        assert calls.count("model_gauss_newton_product") == len(vs)
        np.testing.assert_array_equal(m.params, params)
        np.testing.assert_array_equal(m.grads, grads)
        np.testing.assert_array_equal(m.gauss_newton(x, h0, lengths=lens).matvec(vs[0]),
                                      first[0])
        # an optimizer step between products
        m.forward_backward(x, x % m.output_size, h0, lengths=lens)
        elman.SGD(m, lr=0.1).step()
        after = G.matvec(vs[0])
        assert G.forwards == 2
        np.testing.assert_array_equal(after, m.gauss_newton(x, h0, lengths=lens).matvec(vs[0]))
        assert np.abs(after - first[0]).max() > 1e-4 * np.abs(first[0]).max()
        G.matvec(vs[1])
        assert G.forwards == 2
        m.params[...] = params  # back where it was: the first products again
        np.testing.assert_array_equal(G.matvec(vs[0]), first[0])
        assert G.forwards == 3
    with elman.backend("numpy"), count_core_calls() as calls:
        r = G.matvec(vs[0])
        assert G.forwards == 4 and not calls
        assert_close(r, first[0], dtype)
        G.matvec(vs[1])
        assert G.forwards == 4
    with elman.backend("c"):
        np.testing.assert_array_equal(G.matvec(vs[0]), first[0])
        assert G.forwards == 5


def test_the_operator_owns_its_batch(backend_name):
    """x, h0 and lengths are copied when the operator is made (its forward runs at the
    first product): later edits of the caller's arrays change nothing."""
    rng = np.random.default_rng(11)
    m, x, h0, lens = case(rng, 1, True, 0.0, "tanh", np.float64, False, True)
    v = rng.standard_normal(m.num_params)
    want = m.gauss_newton(x.copy(), h0.copy(), lengths=lens.copy()).matvec(v)
    G = m.gauss_newton(x, h0, lengths=lens)
    x[...], h0[...], lens[...] = 0.0, 1.0, 1
    np.testing.assert_array_equal(G.matvec(v), want)


def test_a_failed_forward_leaves_no_stale_cache(backend_name):
    """A product at parameters whose outputs are not finite raises; with the parameters
    back, the products are those from before (not those of a forward half-written by the
    failed one)."""
    rng = np.random.default_rng(12)
    m, x, h0, lens = case(rng, 2, True, 0.0, "tanh", np.float64, False, True)
    v = rng.standard_normal(m.num_params)
    G = m.gauss_newton(x, h0, lengths=lens)
    want = G.matvec(v).copy()
    saved = m.params.copy()
    m.params[0] = np.nan  # W_xh[0, 0]: every output
    with pytest.raises(elman.NonFiniteError):
        G.matvec(v)
    m.params[...] = saved
    np.testing.assert_array_equal(G.matvec(v), want)


def test_unchanged_parameters_holding_nan_are_unchanged(backend_name):
    """A NaN in a row of W_xh no token id reads leaves the outputs finite; the parameters
    do not change between products, so the operator runs one forward (NaN != NaN must not
    make every product look like one after a step)."""
    rng = np.random.default_rng(13)
    m = elman.ElmanRNN(6, 4, 3, dtype="float64", seed=1)
    m.named_params()["W_xh"][5] = np.nan
    x = rng.integers(0, 5, (5, 3))
    G = m.gauss_newton(x)
    v = rng.standard_normal(m.num_params)
    results = [G.matvec(v) for _ in range(3)]
    assert np.isfinite(results[0]).all()
    assert G.forwards == 1


def test_batch_first(backend_name):
    rng = np.random.default_rng(14)
    for ids in (False, True):
        m, x, h0, lens = case(rng, 2, True, 0.0, "relu", np.float64, ids, True)
        v = rng.standard_normal(m.num_params)
        kw = dict(loss="mse", last_step_only=True, lengths=lens)
        want = m.gauss_newton(x, h0, **kw).matvec(v, damping=0.2, structural_damping=0.5)
        got = m.gauss_newton(x.swapaxes(0, 1), h0, batch_first=True, **kw).matvec(
            v, damping=0.2, structural_damping=0.5)
        np.testing.assert_array_equal(got, want)


def test_as_linear_operator_with_scipy_cg(backend_name):
    cg = pytest.importorskip("scipy.sparse.linalg").cg
    rng = np.random.default_rng(15)
    m, x, h0, lens = case(rng, 2, True, 0.0, "tanh", np.float64, True, True)
    n = m.num_params
    G = m.gauss_newton(x, h0, lengths=lens)
    A = G.as_linear_operator(damping=0.5, structural_damping=0.3)
    assert A.shape == (n, n) and A.dtype == m.dtype
    v = rng.standard_normal(n)
    np.testing.assert_array_equal(A @ v, G.matvec(v, damping=0.5, structural_damping=0.3))
    g = rng.standard_normal(n)
    s, info = cg(A, g, rtol=1e-12, maxiter=20 * n)
    assert info == 0
    np.testing.assert_allclose(G.matvec(s, damping=0.5, structural_damping=0.3), g,
                               rtol=1e-8, atol=1e-8 * np.abs(g).max())


# ---- dropout ------------------------------------------------------------------------------

def test_dropout_masks_are_fixed_per_operator(dtype):
    """An operator draws one set of masks when it is made (one training call's worth:
    dropout_calls advances by one) and uses it for every product, whatever the model does
    in between; a new operator draws new masks; the reference, given the seed of that call,
    computes the same product."""
    rng = np.random.default_rng(16)
    m, x, h0, lens = case(rng, 2, True, 0.5, "tanh", dtype, True, True)
    twin = copy.deepcopy(m)
    v = rng.standard_normal(m.num_params).astype(dtype)
    kw = dict(loss="cross_entropy", reduction="mean", last_step_only=False, lengths=lens)
    with elman.backend("c"):
        calls = m.dropout_calls
        G = m.gauss_newton(x, h0, **kw)
        assert m.dropout_calls == calls + 1
        a = G.matvec(v).copy()
        m.forward_backward(x, x % m.output_size, h0, lengths=lens)  # the next masks
        np.testing.assert_array_equal(G.matvec(v), a)
        other = m.gauss_newton(x, h0, **kw).matvec(v)
        assert np.abs(other - a).max() > 1e-3 * np.abs(a).max()
    drawn = twin._dropout_draw()  # the masks of the same call of the same model
    assert drawn["dropout"] == 0.5
    cache = reference.model_gauss_newton_prepare(twin.params, x, h0, loss=kw["loss"],
                                                 last_step_only=False, lengths=lens,
                                                 **twin._shape_kwargs(), **drawn)
    assert_close(a, reference.model_gauss_newton_product(twin.params, v, cache), dtype)
    twin.dropout_calls = calls
    with elman.backend("numpy"):
        assert_close(a, twin.gauss_newton(x, h0, **kw).matvec(v), dtype)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_dropout_product_is_that_of_the_masked_loss(backend_name, loss):
    """With dropout, G is the Gauss-Newton matrix of the loss forward_backward computes at
    the call the operator drew (dropout_calls pinned there): the masked outputs Y are read
    off forward_backward's MSE loss with "sum" (Y_j = (L(0) - L(e_j) + 1) / 2), J by central
    differences of them, and wᵀ G v = (J w)ᵀ H_L (J v)."""
    T, B, I, H, O = 4, 3, 3, 3, 2
    rng = np.random.default_rng(stable_seed("masked", loss))
    m, x, h0, _ = case(rng, 2, True, 0.5, "tanh", np.float64, False, False, T, B, I, H, O)
    k = m.dropout_calls
    G = m.gauss_newton(x, h0, loss=loss, reduction="sum")

    def masked_outputs():
        def L(y):
            m.dropout_calls = k  # the call the operator drew
            return m.forward_backward(x, y, h0, loss="mse", reduction="sum")[0]
        zero = np.zeros((T, B, O))
        L0 = L(zero)
        Y = np.empty((T, B, O))
        for j in np.ndindex(T, B, O):
            e = zero.copy()
            e[j] = 1.0
            Y[j] = (L0 - L(e) + 1) / 2
        return Y.reshape(-1, O)

    v, w = rng.standard_normal((2, m.num_params))
    Jv = numerical_jvp(masked_outputs, m.params, v, eps=1e-5)
    Jw = numerical_jvp(masked_outputs, m.params, w, eps=1e-5)
    Y = masked_outputs()
    want = np.sum(Jw * loss_hessian_times(Y, Jv, loss, "sum"))
    assert w @ G.matvec(v) == pytest.approx(want, rel=2e-6)
    # the masks matter: the outputs are not the inference outputs
    assert np.abs(Y - m.forward(x, h0)[0].reshape(-1, O)).max() > 1e-2
