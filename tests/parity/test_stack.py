"""Stacked, bidirectional, dropout and variable-length models: the C kernels against the
NumPy reference (parity), against central finite differences (gradients), and the layer
kernel's reverse direction and lengths on their own. Parity with torch is in
tests/test_torch_stack.py."""
import copy
import pickle

import numpy as np
import pytest

import elman
from elman import kernels
from elman import reference
from elman._dispatch import BACKENDS
from gradients import numerical_grad
from tolerances import KERNEL, assert_close, stable_seed


def lengths_for(rng, T, B):
    """Lengths covering 1 and T and something between, in no particular order."""
    lens = rng.integers(1, T + 1, size=B)
    lens[0], lens[-1] = 1, T
    return rng.permutation(lens)


# ---- the layer kernel: reverse and lengths -------------------------------------------------

@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("ids", [False, True], ids=["dense", "ids"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_layer_c_matches_reference(dtype, reverse, with_lengths, ids, nonlinearity):
    rng = np.random.default_rng(stable_seed(reverse, with_lengths, ids, nonlinearity))
    T, B, I, H = 6, 5, 4, 7
    x = rng.integers(0, I, (T, B)) if ids else rng.standard_normal((T, B, I)).astype(dtype)
    W_xh = rng.uniform(-0.5, 0.5, (I, H)).astype(dtype)
    W_hh = rng.uniform(-0.5, 0.5, (H, H)).astype(dtype)
    b_h = rng.uniform(-0.5, 0.5, H).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    dH = rng.standard_normal((T, B, H)).astype(dtype)
    dh_T = rng.standard_normal((B, H)).astype(dtype)
    lens = lengths_for(rng, T, B) if with_lengths else None
    kw = dict(nonlinearity=nonlinearity, reverse=reverse, lengths=lens)
    with elman.backend("c"):
        hs = kernels.rnn_forward(x, h0, W_xh, W_hh, b_h, **kw)
        g = kernels.rnn_backward(dH, hs, x, W_xh, W_hh, dh_T=dh_T, need_dx=not ids, **kw)
    want_hs = reference.rnn_forward(x, h0, W_xh, W_hh, b_h, **kw)
    want = reference.rnn_backward(dH, want_hs, x, W_xh, W_hh, dh_T=dh_T, need_dx=not ids, **kw)
    assert_close(hs, want_hs, dtype)
    for name in ("W_xh", "W_hh", "b_h", "h0", "A") + (() if ids else ("x",)):
        assert_close(getattr(g, name), getattr(want, name), dtype, err_msg=name)


def test_layer_padding_keeps_the_state_and_gets_no_gradient():
    rng = np.random.default_rng(3)
    T, B, I, H = 5, 3, 2, 4
    x = rng.standard_normal((T, B, I))
    W_xh, W_hh, b_h = rng.standard_normal((I, H)), 0.3 * rng.standard_normal((H, H)), np.zeros(H)
    h0 = rng.standard_normal((B, H))
    lens = np.array([2, 5, 1])
    hs = kernels.rnn_forward(x, h0, W_xh, W_hh, b_h, lengths=lens)
    for b, L in enumerate(lens):
        # the forward direction's final state is the state at the sequence's own length ...
        full = kernels.rnn_forward(x[:L, b:b + 1].copy(), h0[b:b + 1].copy(), W_xh, W_hh, b_h)
        np.testing.assert_allclose(hs[T, b], full[L, 0], rtol=1e-13)
        np.testing.assert_array_equal(hs[L:, b], np.broadcast_to(hs[L, b], (T + 1 - L, H)))
    rev = kernels.rnn_forward(x, h0, W_xh, W_hh, b_h, lengths=lens, reverse=True)
    for b, L in enumerate(lens):
        # ... and the reverse direction starts each sequence from h0 at its own last step
        alone = kernels.rnn_forward(x[:L, b:b + 1].copy(), h0[b:b + 1].copy(), W_xh, W_hh,
                                   b_h, reverse=True)
        np.testing.assert_allclose(rev[:L, b], alone[:L, 0], rtol=1e-13)
    dH = rng.standard_normal((T, B, H))
    g = kernels.rnn_backward(dH, hs, x, W_xh, W_hh, lengths=lens, need_dx=True)
    for b, L in enumerate(lens):
        assert not g.A[L:, b].any() and not g.x[L:, b].any()


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_layer_gradients_match_finite_differences(backend_name, reverse):
    """loss = <R, outputs at valid steps> + <R_T, final state>, differentiated by hand."""
    rng = np.random.default_rng(11 + reverse)
    T, B, I, H = 5, 4, 3, 3
    x = rng.standard_normal((T, B, I))
    W_xh, W_hh = rng.uniform(-0.7, 0.7, (I, H)), rng.uniform(-0.7, 0.7, (H, H))
    b_h, h0 = rng.uniform(-0.5, 0.5, H), rng.standard_normal((B, H))
    lens = lengths_for(rng, T, B)
    R, R_T = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))
    valid = (np.arange(T)[:, None] < lens)[..., None]
    kw = dict(reverse=reverse, lengths=lens)

    def loss():
        hs = kernels.rnn_forward(x, h0, W_xh, W_hh, b_h, **kw)
        outs, final = (hs[:-1], hs[0]) if reverse else (hs[1:], hs[T])
        return float((R * outs * valid).sum() + (R_T * final).sum())

    hs = kernels.rnn_forward(x, h0, W_xh, W_hh, b_h, **kw)
    g = kernels.rnn_backward(R, hs, x, W_xh, W_hh, dh_T=R_T, need_dx=True, **kw)
    for name, v in (("W_xh", W_xh), ("W_hh", W_hh), ("b_h", b_h), ("h0", h0), ("x", x)):
        np.testing.assert_allclose(getattr(g, name), numerical_grad(loss, v),
                                   rtol=1e-5, atol=1e-7, err_msg=name)


def test_layer_lengths_are_checked():
    x = np.zeros((3, 2, 1))
    w = (np.zeros((1, 2)), np.zeros((2, 2)), np.zeros(2))
    for bad, what in (([0, 2], "at least one step"), ([1, 4], "lengths"), ([1], "lengths"),
                      ([1.0, 2.0], "integers"), ([[1, 2]], "lengths")):
        with pytest.raises((ValueError, TypeError), match=what):
            kernels.rnn_forward(x, None, *w, lengths=np.array(bad))


# ---- the model: C against the reference ----------------------------------------------------

CONFIGS = [
    # (num_layers, bidirectional, dropout, lengths, last_step_only)
    (2, False, 0.0, False, False),
    (3, False, 0.0, True, False),
    (1, True, 0.0, False, False),
    (1, True, 0.0, True, True),
    (2, True, 0.0, True, False),
    (2, True, 0.4, True, False),
    (3, False, 0.3, False, True),
    (2, True, 0.5, False, True),
    (1, False, 0.0, True, False),
    (1, False, 0.0, True, True),
]


def cfg_id(c):
    L, bi, p, lens, last = c
    return f"L{L}{'-bi' if bi else ''}{f'-drop{p}' if p else ''}{'-lengths' if lens else ''}" \
           f"{'-last' if last else ''}"


def model_case(rng, cfg, dtype, ids, loss, T=6, B=4, I=5, H=4, O=3):
    L, bi, p, with_lengths, last = cfg
    _, n = reference.param_layout(I, H, O, L, bi)
    params = rng.uniform(-0.6, 0.6, n).astype(dtype)
    S = L * (2 if bi else 1)
    x = rng.integers(0, I, (T, B)) if ids else rng.standard_normal((T, B, I)).astype(dtype)
    if loss == "cross_entropy":
        y = rng.integers(0, O, (B,) if last else (T, B))
    else:
        y = rng.standard_normal((B, O) if last else (T, B, O)).astype(dtype)
    h0 = (0.5 * rng.standard_normal((S, B, H))).astype(dtype)
    dh_T = rng.standard_normal((S, B, H)).astype(dtype)
    lens = lengths_for(rng, T, B) if with_lengths else None
    kw = dict(input_size=I, hidden_size=H, output_size=O, num_layers=L, bidirectional=bi,
              dropout=p, dropout_seed=int(rng.integers(2**63)), lengths=lens, loss=loss,
              last_step_only=last)
    return params, x, y, h0, dh_T, kw


@pytest.mark.parametrize("cfg", CONFIGS, ids=cfg_id)
@pytest.mark.parametrize("ids", [False, True], ids=["dense", "ids"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_model_c_matches_reference(dtype, cfg, ids, loss):
    rng = np.random.default_rng(stable_seed(cfg, ids, loss))
    params, x, y, h0, dh_T, kw = model_case(rng, cfg, dtype, ids, loss)
    S, B, H = h0.shape
    out = {}
    for be in ("c", "numpy"):
        grads = np.full_like(params, np.nan)
        dh0 = np.full_like(h0, np.nan)
        with elman.backend(be):
            value, hs = kernels.model_forward_backward(params, grads, x, y, h0, dh0=dh0,
                                                       dh_T=dh_T, **kw)
            fkw = {k: kw[k] for k in ("input_size", "hidden_size", "output_size", "num_layers",
                                      "bidirectional", "lengths")}
            Y, hs_f = kernels.model_forward(params, x, h0, **fkw)
        out[be] = (value, grads, dh0, hs, Y, hs_f)
    (v, g, d, hs, Y, hf), (rv, rg, rd, rhs, rY, rhf) = out["c"], out["numpy"]
    assert v == pytest.approx(rv, rel=KERNEL[np.dtype(dtype)]["rtol"])
    assert_close(g, rg, dtype, err_msg="grads")
    assert_close(d, rd, dtype, err_msg="dh0")
    assert_close(hs, rhs, dtype, err_msg="hs")
    assert_close(Y, rY, dtype, err_msg="Y")
    assert_close(hf, rhf, dtype, err_msg="hs of model_forward")
    if kw["lengths"] is not None:  # no output at padded steps
        pad = np.arange(x.shape[0])[:, None] >= kw["lengths"]
        assert not Y[pad].any()


@pytest.mark.parametrize("cfg", CONFIGS, ids=cfg_id)
@pytest.mark.parametrize("ids,loss", [(True, "cross_entropy"), (False, "mse")],
                         ids=["ids-xent", "dense-mse"])
def test_model_gradients_match_finite_differences(backend_name, cfg, ids, loss):
    """Every parameter (a sample of 60 for the larger stacks) and h0, in float64, with an
    upstream gradient on the final states. Dropout uses a fixed seed here, so the loss is a
    smooth function of the parameters."""
    rng = np.random.default_rng(stable_seed(cfg, ids))
    params, x, y, h0, dh_T, kw = model_case(rng, cfg, np.float64, ids=ids, loss=loss, T=5,
                                            B=3, I=4, H=3, O=3)
    grads, dh0 = np.empty_like(params), np.empty_like(h0)

    def loss():
        g = np.empty_like(params)
        value, hs = kernels.model_forward_backward(params, g, x, y, h0, **kw)
        hs = hs.reshape(h0.shape[0], x.shape[0] + 1, *h0.shape[1:])
        T, D = x.shape[0], 2 if kw["bidirectional"] else 1
        states = np.stack([hs[k, 0 if k % D else T] for k in range(hs.shape[0])])
        return value + float((dh_T * states).sum())

    kernels.model_forward_backward(params, grads, x, y, h0, dh0=dh0, dh_T=dh_T, **kw)
    idx = np.sort(rng.choice(params.size, min(60, params.size), replace=False))
    np.testing.assert_allclose(grads[idx], numerical_grad(loss, params, idx), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(dh0, numerical_grad(loss, h0), rtol=1e-5, atol=1e-7)
    assert np.abs(grads).max() > 1e-3


# ---- dropout ------------------------------------------------------------------------------

def test_dropout_masks_follow_the_rule():
    keep = reference.dropout_keep(200_000, 1, 1234, 0.3)
    assert abs(keep.mean() - 0.7) < 0.005
    np.testing.assert_array_equal(keep, reference.dropout_keep(200_000, 1, 1234, 0.3))
    assert (keep != reference.dropout_keep(200_000, 2, 1234, 0.3)).mean() > 0.3
    assert reference.dropout_keep(1000, 0, 1, 0.0).all()


def test_dropout_lanes_number_the_masks_in_the_whole_batch(dtype):
    """Two halves of a batch, each told where its lanes sit (data parallelism), draw the
    masks the whole batch draws: the averaged gradients of the halves equal the whole
    batch's. C and reference agree on the offsets."""
    rng = np.random.default_rng(9)
    T, B, V, H = 5, 6, 7, 4
    _, n = reference.param_layout(V, H, V, 2, True)
    params = rng.uniform(-0.5, 0.5, n).astype(dtype)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    def grads(lo, hi, backend, lanes):
        g = np.empty_like(params)
        BACKENDS[backend].model_forward_backward(
            params, g, np.ascontiguousarray(x[:, lo:hi]), np.ascontiguousarray(y[:, lo:hi]),
            None, input_size=V, hidden_size=H, output_size=V, num_layers=2,
            bidirectional=True, dropout=0.4, dropout_seed=12345, dropout_lanes=lanes)
        return g

    for backend in ("c", "numpy"):
        whole = grads(0, B, backend, (0, 0))
        halves = (grads(0, 3, backend, (B, 0)) + grads(3, B, backend, (B, 3))) / 2
        assert_close(halves, whole, dtype, err_msg=backend)
        wrong = (grads(0, 3, backend, (0, 0)) + grads(3, B, backend, (0, 0))) / 2
        assert np.abs(wrong - whole).max() > 1e-3   # without the offsets the masks repeat
    assert_close(grads(3, B, "c", (B, 3)), grads(3, B, "numpy", (B, 3)), dtype)


def test_dropout_is_deterministic_and_off_at_inference():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 7, (9, 4))

    def train(seed):
        m = elman.ElmanRNN(7, 6, 7, num_layers=2, dropout=0.5, seed=seed, dtype="float64")
        opt = elman.Adagrad(m, lr=0.1)
        losses = [elman.train_step(m, opt, x[:-1], x[1:])[0] for _ in range(5)]
        return m, losses

    a, la = train(1)
    b, lb = train(1)
    np.testing.assert_array_equal(a.params, b.params)
    assert la == lb
    # a new mask at each call: the same inputs give different losses
    m = elman.ElmanRNN(7, 6, 7, num_layers=2, dropout=0.5, seed=3, dtype="float64")
    l1, _ = m.forward_backward(x[:-1], x[1:])
    l2, _ = m.forward_backward(x[:-1], x[1:])
    assert l1 != l2
    # inference: the same as a model without dropout holding the same weights
    ref = elman.ElmanRNN(7, 6, 7, num_layers=2, seed=3, dtype="float64")
    ref.params[...] = m.params
    np.testing.assert_array_equal(m.forward(x)[0], ref.forward(x)[0])
    # with dropout 0 the training loss is the inference loss
    l0, _ = ref.forward_backward(x[:-1], x[1:])
    Y, _ = ref.forward(x[:-1])
    assert l0 == pytest.approx(reference.softmax_cross_entropy(Y.reshape(-1, 7),
                                                               x[1:].reshape(-1))[0], rel=1e-12)


# ---- the ElmanRNN API ---------------------------------------------------------------------

@pytest.mark.parametrize("L,bi", [(2, False), (1, True), (3, True)])
def test_model_states_shapes_and_final_states(L, bi):
    m = elman.ElmanRNN(5, 4, 5, num_layers=L, bidirectional=bi, dtype="float64")
    S = L * (2 if bi else 1)
    assert m.num_states == S and m.init_hidden(3).shape == (S, 3, 4)
    x = np.random.default_rng(0).integers(0, 5, (6, 3))
    lens = np.array([6, 2, 4])
    Y, h = m.forward(x, lengths=lens)
    assert Y.shape == (6, 3, 5) and h.shape == (S, 3, 4)
    # the final states are those of each sequence alone, at its own length
    for b, n in enumerate(lens):
        _, hb = m.forward(x[:n, b:b + 1])
        np.testing.assert_allclose(h[:, b], hb[:, 0], rtol=1e-12)
    loss, h2 = m.forward_backward(x, x, lengths=lens)
    np.testing.assert_allclose(h2, h, rtol=1e-12)
    assert m.grad_h0.shape == (S, 3, 4)
    out = np.empty((S, 3, 4))
    assert m.forward_backward(x, x, lengths=lens, h_out=out)[1] is out
    with pytest.raises(ValueError, match=r"\(num_layers \* directions, B, H\)" if S > 1 else "h0"):
        m.forward(x, np.zeros((3, 4)) if S > 1 else np.zeros((2, 3, 4)))


def test_padding_contents_do_not_matter():
    """Whatever sits in the padded steps (inputs and targets) changes nothing."""
    rng = np.random.default_rng(2)
    m = elman.ElmanRNN(6, 5, 6, num_layers=2, bidirectional=True, dtype="float64")
    x = rng.integers(0, 6, (7, 4))
    y = rng.integers(0, 6, (7, 4))
    lens = np.array([3, 7, 1, 5])
    l1, h1 = m.forward_backward(x, y, lengths=lens)
    g1 = m.grads.copy()
    pad = np.arange(7)[:, None] >= lens
    x2, y2 = x.copy(), y.copy()
    x2[pad], y2[pad] = rng.integers(0, 6, pad.sum()), rng.integers(0, 6, pad.sum())
    l2, h2 = m.forward_backward(x2, y2, lengths=lens)
    assert l1 == l2
    np.testing.assert_array_equal(m.grads, g1)
    np.testing.assert_array_equal(h1, h2)


def test_lengths_all_full_equal_no_lengths():
    rng = np.random.default_rng(4)
    m = elman.ElmanRNN(6, 5, 6, num_layers=2, bidirectional=True, dtype="float64")
    x = rng.integers(0, 6, (7, 4))
    l1, h1 = m.forward_backward(x, x)
    g1 = m.grads.copy()
    l2, h2 = m.forward_backward(x, x, lengths=np.full(4, 7))
    assert l1 == pytest.approx(l2, rel=1e-14)
    np.testing.assert_allclose(m.grads, g1, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h1, h2, rtol=1e-14)


@pytest.mark.parametrize("opt_kind", ["adagrad", "sgd"])
def test_train_step_with_a_stack_equals_the_two_calls(opt_kind):
    """The fused step is forward_backward + opt.step, bit for bit, with lengths and
    dropout (the two models draw the same masks: same seed, same calls)."""
    rng = np.random.default_rng(8)
    x = rng.integers(0, 9, (8, 5))
    lens = np.array([8, 3, 5, 1, 7])
    make = dict(num_layers=2, bidirectional=True, dropout=0.25, seed=4)
    a, b = elman.ElmanRNN(9, 6, 9, **make), elman.ElmanRNN(9, 6, 9, **make)
    new = (lambda m: elman.Adagrad(m, lr=0.1, max_grad_norm=1.0)) if opt_kind == "adagrad" \
        else (lambda m: elman.SGD(m, lr=0.1, momentum=0.9, max_grad_norm=1.0))
    oa, ob = new(a), new(b)
    for _ in range(3):
        la, ha = elman.train_step(a, oa, x[:-1], x[1:], lengths=lens - (lens == 8))
        lb, hb = b.forward_backward(x[:-1], x[1:], lengths=lens - (lens == 8))
        ob.step()
        assert la == lb
        np.testing.assert_array_equal(ha, hb)
    np.testing.assert_array_equal(a.params, b.params)


def test_stacked_sampling_matches_reference_and_forward():
    m = elman.ElmanRNN(11, 8, 11, num_layers=3, dtype="float64", seed=2)
    ids_c, h_c = m.sample(30, start=4, seed=9, return_hidden=True)
    with elman.backend("numpy"):
        ids_r, h_r = m.sample(30, start=4, seed=9, return_hidden=True)
    np.testing.assert_array_equal(ids_c, ids_r)
    np.testing.assert_allclose(h_c, h_r, rtol=1e-12)
    assert h_c.shape == (3, 1, 8)
    # greedy: each id is the argmax of the model's output given the ids so far
    g = m.sample(12, start=1, temperature=0)
    seq = np.concatenate([[1], g])
    Y, _ = m.forward(seq[:-1, None])
    np.testing.assert_array_equal(Y[:, 0].argmax(axis=1), g)
    with pytest.raises(ValueError, match="bidirectional"):
        elman.ElmanRNN(5, 4, 5, bidirectional=True).sample(3)


def test_stacked_model_pickles_and_copies():
    m = elman.ElmanRNN(5, 4, 3, num_layers=2, bidirectional=True, dropout=0.2, seed=1)
    for c in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert (c.num_layers, c.bidirectional, c.dropout) == (2, True, 0.2)
        np.testing.assert_array_equal(c.params, m.params)
        before = c.params.copy()
        c.named_params()["W_hh_l1_reverse"][...] = 0  # a view into the copy's own buffer
        assert (c.params != before).sum() == 16
        assert m.named_params()["W_hh_l1_reverse"].all()
    assert "num_layers=2" in repr(m) and "bidirectional=True" in repr(m)


def test_constructor_checks_the_stack():
    for kw, what in ((dict(num_layers=0), "num_layers"), (dict(dropout=1.0), "dropout"),
                     (dict(dropout=-0.1), "dropout"), (dict(num_layers=1.5), "num_layers")):
        with pytest.raises((ValueError, TypeError), match=what):
            elman.ElmanRNN(3, 2, 3, **kw)
    names = list(elman.ElmanRNN(3, 2, 3, num_layers=2, bidirectional=True).named_params())
    assert names == ["W_xh", "W_hh", "b_h", "W_xh_l0_reverse", "W_hh_l0_reverse",
                     "b_h_l0_reverse", "W_xh_l1", "W_hh_l1", "b_h_l1", "W_xh_l1_reverse",
                     "W_hh_l1_reverse", "b_h_l1_reverse", "W_hy", "b_y"]


# ---- the torch-layout stack (elman.torch's one C call): C against the reference ----------

def _stack_case(rng, dtype, T, B, I, H, L, D, bias, masks, lengths):
    n = L * D
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = (0.5 * rng.standard_normal((n, B, H))).astype(dtype)
    w_ih = [(0.4 * rng.standard_normal((H, I if k < D else D * H))).astype(dtype)
            for k in range(n)]
    w_hh = [(0.4 * rng.standard_normal((H, H))).astype(dtype) for _ in range(n)]
    b_ih = [(0.1 * rng.standard_normal(H)).astype(dtype) for _ in range(n)] if bias else None
    b_hh = [(0.1 * rng.standard_normal(H)).astype(dtype) for _ in range(n)] if bias else None
    m = ((rng.random((L - 1, T, B, D * H)) > 0.3) / 0.7).astype(dtype) \
        if masks and L > 1 else None
    lens = lengths_for(rng, T, B).astype(np.int64) if lengths else None
    return x, h0, w_ih, w_hh, b_ih, b_hh, m, lens


STACKS = [  # T, B, I, H, L, D, bias, masks, lengths
    (5, 3, 4, 6, 1, 1, True, False, False),
    (5, 3, 4, 6, 2, 2, True, True, True),
    (7, 2, 3, 5, 3, 1, False, True, False),
    (4, 3, 7, 3, 2, 2, True, False, False),
    (6, 4, 2, 8, 1, 2, False, False, True),
    (3, 5, 9, 4, 3, 2, True, True, False),   # I wider than D*H
    (1, 1, 1, 1, 2, 2, True, True, False),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("case", STACKS, ids=[f"T{c[0]}B{c[1]}I{c[2]}H{c[3]}L{c[4]}D{c[5]}"
                                               for c in STACKS])
def test_torch_layout_stack_c_matches_reference(dtype, nonlinearity, case):
    """elman_stack_forward / elman_stack_backward against the reference's loop over
    rnn_forward / rnn_backward: outputs, final states and every gradient, with and without
    the output and final-state gradients and the input gradient."""
    T, B, I, H, L, D, bias, masks, lengths = case
    rng = np.random.default_rng(stable_seed("torch-stack", *case, nonlinearity))
    x, h0, w_ih, w_hh, b_ih, b_hh, m, lens = _stack_case(rng, dtype, *case)
    kw = dict(directions=D, nonlinearity=nonlinearity, lengths=lens, masks=m)
    c = BACKENDS["c"].stack_forward(x, h0, w_ih, w_hh, b_ih, b_hh, **kw)
    r = reference.stack_forward(x, h0, w_ih, w_hh, b_ih, b_hh, **kw)
    assert c.out.shape == (T, B, D * H) and c.h_n.shape == (L * D, B, H)
    assert_close(c.out, r.out, dtype, err_msg="out")
    assert_close(c.h_n, r.h_n, dtype, err_msg="h_n")
    d_out = rng.standard_normal(c.out.shape).astype(dtype)
    dh_n = rng.standard_normal(c.h_n.shape).astype(dtype)
    for grads in ((d_out, dh_n, True), (d_out, None, False), (None, dh_n, True)):
        gc = BACKENDS["c"].stack_backward(c.saved, grads[0], grads[1], need_dx=grads[2])
        gr = reference.stack_backward(r.saved, grads[0], grads[1], need_dx=grads[2])
        for k in range(L * D):
            assert gc.w_ih[k].shape == w_ih[k].shape and gc.w_hh[k].shape == w_hh[k].shape
            assert_close(gc.w_ih[k], gr.w_ih[k], dtype, err_msg=f"w_ih[{k}]")
            assert_close(gc.w_hh[k], gr.w_hh[k], dtype, err_msg=f"w_hh[{k}]")
        assert_close(gc.b, gr.b, dtype, err_msg="b")
        assert_close(gc.h0, gr.h0, dtype, err_msg="h0")
        if grads[2]:
            assert_close(gc.x, gr.x, dtype, err_msg="x")
        else:
            assert gc.x is None and gr.x is None


def test_torch_layout_stack_reference_matches_finite_differences():
    """The reference stack's gradients (the specification) against central differences of
    a scalar of its outputs (at valid steps), for a bidirectional two-layer stack with masks
    and lengths."""
    rng = np.random.default_rng(3)
    x, h0, w_ih, w_hh, b_ih, b_hh, m, lens = _stack_case(rng, np.float64, 4, 3, 2, 3, 2, 2,
                                                         True, True, True)
    kw = dict(directions=2, lengths=lens, masks=m)
    # padded steps are not outputs: their gradient is ignored, by contract (elman.h)
    d_out = rng.standard_normal((4, 3, 6)) * (np.arange(4)[:, None] < lens)[:, :, None]
    dh_n = rng.standard_normal((4, 3, 3))

    def loss():
        run = reference.stack_forward(x, h0, w_ih, w_hh, b_ih, b_hh, **kw)
        return float((run.out * d_out).sum() + (run.h_n * dh_n).sum())

    g = reference.stack_backward(reference.stack_forward(x, h0, w_ih, w_hh, b_ih, b_hh,
                                                         **kw).saved, d_out, dh_n,
                                 need_dx=True)
    for got, arr in [(g.x, x), (g.h0, h0), (g.w_ih[2], w_ih[2]), (g.w_hh[1], w_hh[1]),
                     (g.b[3], b_ih[3]), (g.b[0], b_hh[0])]:
        np.testing.assert_allclose(got, numerical_grad(loss, arr), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("T, B, I, H, L, D", [(0, 3, 4, 5, 2, 2), (0, 3, 4, 5, 1, 1),
                                               (4, 0, 4, 5, 2, 2), (4, 3, 0, 5, 2, 2),
                                               (4, 3, 4, 0, 2, 2), (4, 3, 0, 5, 1, 1)])
def test_torch_layout_stack_with_an_empty_axis_matches_reference(T, B, I, H, L, D):
    """No steps, no sequences, no inputs or no units: the C stack runs (empty buffers come
    as NULL) and agrees with the reference; with no steps each final state is its initial
    state, so the gradient on h_n passes to h0 unchanged."""
    rng = np.random.default_rng(T + B + I + H)
    x, h0, w_ih, w_hh, b_ih, b_hh, _, _ = _stack_case(rng, np.float64, T, B, I, H, L, D,
                                                      True, False, False)
    got = []
    for mod in (BACKENDS["c"], reference):
        run = mod.stack_forward(x, h0, w_ih, w_hh, b_ih, b_hh, directions=D)
        g = mod.stack_backward(run.saved, np.ones(run.out.shape), 2 + 0 * run.h_n,
                               need_dx=True)
        got.append([run.out, run.h_n, *g.w_ih, *g.w_hh, g.b, g.h0, g.x])
    for a, b in zip(*got):
        assert a.shape == b.shape
        assert_close(a, b, np.float64)
    if T == 0:
        np.testing.assert_array_equal(got[0][-2], np.full(h0.shape, 2.0))


@pytest.mark.parametrize("reverse", [False, True])
def test_layer_with_no_steps_passes_dh_T_to_dh0_in_both_backends(reverse):
    """T = 0: h_T is h0 itself, so dh0 = dh_T (the reference once returned zeros)."""
    rng = np.random.default_rng(9)
    B, I, H = 3, 2, 4
    x, h0 = np.zeros((0, B, I)), rng.standard_normal((B, H))
    W_xh, W_hh = rng.standard_normal((I, H)), rng.standard_normal((H, H))
    dh_T = rng.standard_normal((B, H))
    for name in ("c", "numpy"):
        with elman.backend(name):
            hs = kernels.rnn_forward(x, h0, W_xh, W_hh, np.zeros(H), reverse=reverse)
            g = kernels.rnn_backward(np.zeros((0, B, H)), hs, x, W_xh, W_hh, dh_T=dh_T,
                                     reverse=reverse)
        np.testing.assert_array_equal(g.h0, dh_T, err_msg=name)
        assert not g.W_hh.any() and not g.W_xh.any() and not g.b_h.any()
