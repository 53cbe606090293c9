"""Parity of elman with PyTorch (an outside implementation of the same math).

Model: elman.ElmanRNN vs torch.nn.RNN + torch.nn.Linear with the weights copied across
(elman's row-vector convention: W_xh = weight_ih_l0.T, W_hh = weight_hh_l0.T,
b_h = bias_ih_l0 + bias_hh_l0, W_hy = linear.weight.T, b_y = linear.bias): outputs, final
state, loss values and every gradient, for dense and token-id inputs, tanh and relu,
cross-entropy and MSE, mean and sum, last_step_only, batch_first and a non-zero h0.

Optimizers: elman.Adagrad / elman.SGD vs torch.optim.Adagrad / torch.optim.SGD over several
training steps (with torch.nn.utils.clip_grad_norm_ / clip_grad_value_ for elman's fused
clipping), elman.clip_grad_norm_ vs torch's, and the functional kernel
elman.kernels.adagrad_update vs torch.optim.Adagrad on a single tensor.

float64 is checked tightly (rtol 1e-10), float32 loosely (1e-5 relative). Every comparison
runs on both of elman's backends ("c" and the NumPy reference) where that is cheap.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import elman  # noqa: E402

DTYPES = ["float64", "float32"]
BACKENDS = ["c", "numpy"]
RTOL = {"float64": 1e-10, "float32": 1e-5}
TORCH_DTYPE = {"float64": torch.float64, "float32": torch.float32}
NAMES = ("W_xh", "W_hh", "b_h", "W_hy", "b_y")

T, B, I, H, O = 5, 3, 4, 6, 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(params=BACKENDS)
def backend(request):
    with elman.backend(request.param):
        yield request.param


# ---- helpers ------------------------------------------------------------------------------

def assert_close(actual, expected, dtype, what, factor=1.0):
    """Relative check, with an absolute floor scaled by the largest expected magnitude (so
    that elements near zero, results of cancellation, are judged against the whole array)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    rtol = RTOL[str(dtype)] * factor
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(scale, 1e-30),
                               err_msg=what)


def to_np(t):
    return t.detach().cpu().numpy()


def make_model(dtype, nonlinearity="tanh", seed=1, i=I, h=H, o=O):
    return elman.ElmanRNN(i, h, o, nonlinearity=nonlinearity, dtype=dtype, seed=seed)


def torch_twin(m, *, batch_first=False, split_bias=True, freeze_bias_hh=False, seed=0):
    """torch.nn.RNN + torch.nn.Linear holding the parameters of elman model ``m``.

    split_bias: b_h is split arbitrarily between bias_ih_l0 and bias_hh_l0 (their sum is
    b_h); otherwise bias_ih_l0 = b_h and bias_hh_l0 = 0. freeze_bias_hh: bias_hh_l0 = 0 and
    requires no gradient, so that torch's parameters map one to one onto elman's (needed
    wherever the optimizer or the global gradient norm sees each parameter once)."""
    td = TORCH_DTYPE[m.dtype.name]
    rnn = torch.nn.RNN(m.input_size, m.hidden_size, nonlinearity=m.nonlinearity,
                       batch_first=batch_first, dtype=td)
    lin = torch.nn.Linear(m.hidden_size, m.output_size, dtype=td)
    P = m.named_params()
    if split_bias and not freeze_bias_hh:
        r = np.random.default_rng(seed).uniform(-0.5, 0.5, m.hidden_size).astype(m.dtype)
        b_ih, b_hh = P["b_h"] - r, r
    else:
        b_ih, b_hh = P["b_h"].copy(), np.zeros_like(P["b_h"])
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(P["W_xh"].T.copy()))
        rnn.weight_hh_l0.copy_(torch.from_numpy(P["W_hh"].T.copy()))
        rnn.bias_ih_l0.copy_(torch.from_numpy(np.ascontiguousarray(b_ih)))
        rnn.bias_hh_l0.copy_(torch.from_numpy(np.ascontiguousarray(b_hh)))
        lin.weight.copy_(torch.from_numpy(P["W_hy"].T.copy()))
        lin.bias.copy_(torch.from_numpy(P["b_y"].copy()))
    if freeze_bias_hh:
        rnn.bias_hh_l0.requires_grad_(False)
    return rnn, lin


def torch_params(rnn, lin):
    """Torch's parameters in elman's names and layout."""
    return {"W_xh": to_np(rnn.weight_ih_l0).T, "W_hh": to_np(rnn.weight_hh_l0).T,
            "b_h": to_np(rnn.bias_ih_l0) + to_np(rnn.bias_hh_l0),
            "W_hy": to_np(lin.weight).T, "b_y": to_np(lin.bias)}


def torch_grads(rnn, lin):
    g = {"W_xh": to_np(rnn.weight_ih_l0.grad).T, "W_hh": to_np(rnn.weight_hh_l0.grad).T,
         "b_h": to_np(rnn.bias_ih_l0.grad),
         "W_hy": to_np(lin.weight.grad).T, "b_y": to_np(lin.bias.grad)}
    if rnn.bias_hh_l0.requires_grad:
        # both halves of a split bias get the same gradient, db_h
        np.testing.assert_allclose(to_np(rnn.bias_hh_l0.grad), g["b_h"], rtol=1e-5, atol=1e-6)
    return g


def trainable(rnn, lin):
    return [p for p in list(rnn.parameters()) + list(lin.parameters()) if p.requires_grad]


def make_inputs(rng, kind, dtype, t=T, b=B, i=I):
    if kind == "ids":
        return rng.integers(0, i, size=(t, b))
    return rng.standard_normal((t, b, i)).astype(dtype)


def torch_input(x, dtype, i=I):
    """Dense inputs as they are; token ids one-hot encoded (so X_t @ W_xh is a row gather)."""
    if x.dtype.kind in "iu":
        return F.one_hot(torch.from_numpy(x.astype(np.int64)), i).to(TORCH_DTYPE[dtype])
    return torch.from_numpy(x)


def make_targets(rng, loss, dtype, last_step_only=False, t=T, b=B, o=O):
    if loss == "cross_entropy":
        return rng.integers(0, o, size=(b,) if last_step_only else (t, b))
    return rng.standard_normal((b, o) if last_step_only else (t, b, o)).astype(dtype)


def torch_loss(Yt, y, loss, reduction, *, last_step_only=False, batch_first=False):
    """Loss of torch's outputs Yt ((T, B, O), or (B, T, O) with batch_first)."""
    if last_step_only:
        Yt = Yt[:, -1] if batch_first else Yt[-1]
    if loss == "cross_entropy":
        yt = torch.from_numpy(np.ascontiguousarray(y).astype(np.int64))
        return F.cross_entropy(Yt.reshape(-1, Yt.shape[-1]), yt.reshape(-1),
                               reduction=reduction)
    return F.mse_loss(Yt, torch.from_numpy(np.ascontiguousarray(y)), reduction=reduction)


def torch_run(rnn, lin, x, y, h0, dtype, loss, reduction, *, last_step_only=False,
              batch_first=False):
    """Forward + backward on the torch side; returns (Y, h_T, loss value)."""
    for p in list(rnn.parameters()) + list(lin.parameters()):
        p.grad = None
    xt = torch_input(x, dtype)
    h0t = None if h0 is None else torch.from_numpy(h0)
    out, hT = rnn(xt, h0t)
    Yt = lin(out)
    lt = torch_loss(Yt, y, loss, reduction, last_step_only=last_step_only,
                    batch_first=batch_first)
    lt.backward()
    return to_np(Yt), to_np(hT), lt.item()


def check_grads(m, rnn, lin, dtype, what=""):
    tg = torch_grads(rnn, lin)
    eg = m.named_grads()
    for name in NAMES:
        assert_close(eg[name], tg[name], dtype, f"{what} grad {name}")


def check_params(m, rnn, lin, dtype, what="", factor=1.0):
    tp = torch_params(rnn, lin)
    ep = m.named_params()
    for name in NAMES:
        assert_close(ep[name], tp[name], dtype, f"{what} param {name}", factor)


# ---- 1. model: forward, loss and gradients ------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("kind", ["dense", "ids"])
@pytest.mark.parametrize("with_h0", [False, True], ids=["h0_none", "h0_given"])
def test_forward_matches_torch(backend, dtype, nonlinearity, kind, with_h0):
    rng = np.random.default_rng(10)
    m = make_model(dtype, nonlinearity)
    rnn, lin = torch_twin(m)
    x = make_inputs(rng, kind, dtype)
    h0 = rng.standard_normal((1, B, H)).astype(dtype) if with_h0 else None
    Y, h_T = m.forward(x, h0)
    assert Y.shape == (T, B, O) and h_T.shape == (1, B, H)
    with torch.no_grad():
        out, hT = rnn(torch_input(x, dtype), None if h0 is None else torch.from_numpy(h0))
        Yt = lin(out)
    assert_close(Y, to_np(Yt), dtype, "Y")
    assert_close(h_T, to_np(hT), dtype, "h_T")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("kind", ["dense", "ids"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("case", ["h0_none", "h0_given", "last_step_only"])
def test_forward_backward_matches_torch(backend, dtype, nonlinearity, kind, loss, reduction,
                                        case):
    """Every step scored (with and without h0), or the last step only (sequence
    classification)."""
    last = case == "last_step_only"
    rng = np.random.default_rng(30 if last else 20)
    m = make_model(dtype, nonlinearity)
    rnn, lin = torch_twin(m)
    x = make_inputs(rng, kind, dtype)
    y = make_targets(rng, loss, dtype, last_step_only=last)
    h0 = None if case == "h0_none" else rng.standard_normal((1, B, H)).astype(dtype)
    m.grads[...] = np.nan  # forward_backward must overwrite every gradient
    value, h_T = m.forward_backward(x, y, h0, loss=loss, reduction=reduction,
                                    last_step_only=last)
    _, hT, tvalue = torch_run(rnn, lin, x, y, h0, dtype, loss, reduction, last_step_only=last)
    assert isinstance(value, float)
    assert_close(value, tvalue, dtype, "loss")
    assert_close(h_T, hT, dtype, "h_T")
    check_grads(m, rnn, lin, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["dense", "ids"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("last_step_only", [False, True])
def test_batch_first_matches_torch(backend, dtype, kind, loss, last_step_only):
    rng = np.random.default_rng(40)
    m = make_model(dtype, "tanh")
    rnn, lin = torch_twin(m, batch_first=True)
    # batch-first arrays (B, T, ...); targets too, except the (B,) / (B, O) last-step ones
    x = np.ascontiguousarray(make_inputs(rng, kind, dtype).swapaxes(0, 1))
    y = make_targets(rng, loss, dtype, last_step_only)
    if not last_step_only:
        y = np.ascontiguousarray(y.swapaxes(0, 1))
    h0 = rng.standard_normal((1, B, H)).astype(dtype)

    Y, h_T_fwd = m.forward(x, h0, batch_first=True)
    value, h_T = m.forward_backward(x, y, h0, loss=loss, reduction="mean",
                                    last_step_only=last_step_only, batch_first=True)
    Yt, hT, tvalue = torch_run(rnn, lin, x, y, h0, dtype, loss, "mean",
                               last_step_only=last_step_only, batch_first=True)
    assert Y.shape == (B, T, O)
    assert_close(Y, Yt, dtype, "Y")
    assert_close(h_T_fwd, hT, dtype, "h_T (forward)")
    assert_close(h_T, hT, dtype, "h_T (forward_backward)")
    assert_close(value, tvalue, dtype, "loss")
    check_grads(m, rnn, lin, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_token_ids_match_torch_embedding(backend, dtype):
    """Token ids vs torch.nn.functional.embedding with W_xh as the table, the recurrence
    unrolled by hand: the same loss and, through the embedding, the same dW_xh."""
    rng = np.random.default_rng(45)
    m = make_model(dtype, "tanh")
    x = make_inputs(rng, "ids", dtype)
    y = make_targets(rng, "cross_entropy", dtype)
    h0 = rng.standard_normal((1, B, H)).astype(dtype)
    value, h_T = m.forward_backward(x, y, h0, reduction="sum")

    P = m.named_params()
    emb = torch.nn.Parameter(torch.from_numpy(P["W_xh"].copy()))  # (I, H): row i = W_xh[i]
    W_hh = torch.nn.Parameter(torch.from_numpy(P["W_hh"].copy()))
    b_h = torch.nn.Parameter(torch.from_numpy(P["b_h"].copy()))
    W_hy = torch.nn.Parameter(torch.from_numpy(P["W_hy"].copy()))
    b_y = torch.nn.Parameter(torch.from_numpy(P["b_y"].copy()))
    h = torch.from_numpy(h0[0])
    logits = []
    E = F.embedding(torch.from_numpy(x.astype(np.int64)), emb)  # (T, B, H)
    for t in range(T):
        h = torch.tanh(E[t] + h @ W_hh + b_h)
        logits.append(h @ W_hy + b_y)
    lt = F.cross_entropy(torch.stack(logits).reshape(-1, O),
                         torch.from_numpy(y.astype(np.int64)).reshape(-1), reduction="sum")
    lt.backward()
    assert_close(value, lt.item(), dtype, "loss")
    assert_close(h_T[0], to_np(h), dtype, "h_T")
    g = m.named_grads()
    for name, p in zip(NAMES, (emb, W_hh, b_h, W_hy, b_y)):
        assert_close(g[name], to_np(p.grad), dtype, f"grad {name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["dense", "ids"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_functional_model_dh0_matches_torch(backend, dtype, kind, loss):
    """elman.kernels.model_forward_backward also returns the gradient wrt h0 (dh0)."""
    rng = np.random.default_rng(50)
    m = make_model(dtype, "tanh")
    rnn, lin = torch_twin(m)
    x = make_inputs(rng, kind, dtype)
    y = make_targets(rng, loss, dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    grads = np.zeros_like(m.params)
    dh0 = np.zeros((B, H), dtype)
    value, hs = elman.kernels.model_forward_backward(
        m.params, grads, x, y, h0, input_size=I, hidden_size=H, output_size=O, loss=loss,
        reduction="mean", dh0=dh0)
    h0t = torch.from_numpy(h0[None].copy()).requires_grad_(True)
    out, hT = rnn(torch_input(x, dtype), h0t)
    lt = torch_loss(lin(out), y, loss, "mean")
    lt.backward()
    assert_close(value, lt.item(), dtype, "loss")
    assert_close(hs[1:], to_np(out), dtype, "hs")
    assert_close(hs[-1], to_np(hT)[0], dtype, "h_T")
    assert_close(dh0, to_np(h0t.grad)[0], dtype, "dh0")
    assert_close(grads, np.concatenate([torch_grads(rnn, lin)[n].ravel() for n in NAMES]),
                 dtype, "flat grads")


# ---- 2. optimizers over training steps ----------------------------------------------------

STEPS = 5

ADAGRAD_OPTIONS = [
    {},
    {"lr": 0.1},
    {"lr": 0.05, "lr_decay": 0.3},
    {"lr": 0.05, "weight_decay": 0.2},
    {"lr": 0.05, "initial_accumulator_value": 0.4},
    {"lr": 0.05, "eps": 1e-3},
    {"lr": 0.05, "maximize": True},
    {"lr": 0.05, "maximize": True, "weight_decay": 0.1},
    {"lr": 0.1, "lr_decay": 0.1, "weight_decay": 0.05, "initial_accumulator_value": 0.1,
     "eps": 1e-6, "maximize": True},
]


def _opt_id(opts):
    return ",".join(f"{k}={v}" for k, v in opts.items()) or "defaults"


def trained_twins(dtype, nonlinearity, seed):
    """(model, rnn, lin): an elman model and its torch twin for training side by side, the
    twin's bias_hh frozen at zero (elman has one hidden bias, b_h = bias_ih + bias_hh)."""
    m = make_model(dtype, nonlinearity, seed=seed)
    return (m, *torch_twin(m, freeze_bias_hh=True))


def train_both(m, rnn, lin, elman_opt, torch_step, dtype, *, kind="dense",
               loss="cross_entropy", steps=STEPS, after_step=None, seed=60):
    """``steps`` training steps, each on a fresh batch; parameters compared after each."""
    rng = np.random.default_rng(seed)
    for step in range(1, steps + 1):
        x = make_inputs(rng, kind, dtype)
        y = make_targets(rng, loss, dtype)
        value, _ = m.forward_backward(x, y, loss=loss)
        _, _, tvalue = torch_run(rnn, lin, x, y, None, dtype, loss, "mean")
        assert_close(value, tvalue, dtype, f"step {step} loss")
        elman_opt.step()
        torch_step()
        check_params(m, rnn, lin, dtype, f"after step {step}")
        if after_step is not None:
            after_step(step)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", ADAGRAD_OPTIONS, ids=_opt_id)
def test_adagrad_training_matches_torch(backend, dtype, opts):
    m, rnn, lin = trained_twins(dtype, "tanh", 3)
    opt = elman.Adagrad(m, **opts)
    topt = torch.optim.Adagrad(trainable(rnn, lin), **opts)

    def after(step):
        assert opt.steps == step
        # the accumulators too: torch's state_sum per parameter, in elman's layout
        st = {p: topt.state[p]["sum"] for p in trainable(rnn, lin)}
        flat = np.concatenate([to_np(st[rnn.weight_ih_l0]).T.ravel(),
                               to_np(st[rnn.weight_hh_l0]).T.ravel(),
                               to_np(st[rnn.bias_ih_l0]),
                               to_np(st[lin.weight]).T.ravel(), to_np(st[lin.bias])])
        assert_close(opt.state, flat, dtype, f"after step {step}: accumulator")

    train_both(m, rnn, lin, opt, topt.step, dtype, after_step=after)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["dense", "ids"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_adagrad_training_inputs_and_losses(backend, dtype, kind, loss):
    m, rnn, lin = trained_twins(dtype, "tanh", 4)
    opt = elman.Adagrad(m, lr=0.1, lr_decay=0.01)
    topt = torch.optim.Adagrad(trainable(rnn, lin), lr=0.1, lr_decay=0.01)
    train_both(m, rnn, lin, opt, topt.step, dtype, kind=kind, loss=loss)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_grad_norm", [0.05, 0.5, 1e3], ids=["clip_hard", "clip", "noclip"])
@pytest.mark.parametrize("opts", [{"lr": 0.1}, {"lr": 0.1, "weight_decay": 0.1,
                                                "maximize": True}], ids=_opt_id)
def test_adagrad_max_grad_norm_matches_torch_clip_grad_norm(backend, dtype, max_grad_norm,
                                                            opts):
    m, rnn, lin = trained_twins(dtype, "tanh", 5)
    opt = elman.Adagrad(m, max_grad_norm=max_grad_norm, **opts)
    topt = torch.optim.Adagrad(trainable(rnn, lin), **opts)
    norms = []

    def torch_step():
        norms.append(torch.nn.utils.clip_grad_norm_(trainable(rnn, lin), max_grad_norm).item())
        topt.step()

    def after(step):
        assert_close(opt.last_grad_norm, norms[-1], dtype, f"step {step}: gradient norm")

    train_both(m, rnn, lin, opt, torch_step, dtype, after_step=after)
    if max_grad_norm == 0.05:
        assert max(norms) > max_grad_norm  # the clipping was exercised


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clip_value", [0.003, 0.03, 1e3], ids=["clip_hard", "clip", "noclip"])
@pytest.mark.parametrize("max_grad_norm", [None, 0.1])
def test_adagrad_clip_value_matches_torch_clip_grad_value(backend, dtype, clip_value,
                                                          max_grad_norm):
    m, rnn, lin = trained_twins(dtype, "tanh", 6)
    opt = elman.Adagrad(m, lr=0.05, weight_decay=0.05, clip_value=clip_value,
                        max_grad_norm=max_grad_norm)
    topt = torch.optim.Adagrad(trainable(rnn, lin), lr=0.05, weight_decay=0.05)
    clipped = []

    def torch_step():
        ps = trainable(rnn, lin)
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(ps, max_grad_norm)
        clipped.append(max(float(p.grad.abs().max()) for p in ps) > clip_value)
        torch.nn.utils.clip_grad_value_(ps, clip_value)
        topt.step()

    train_both(m, rnn, lin, opt, torch_step, dtype)
    if clip_value == 0.003:
        assert any(clipped)  # the clipping was exercised


SGD_OPTIONS = [
    {"lr": 0.1},
    {"lr": 0.1, "momentum": 0.9},
    {"lr": 0.1, "weight_decay": 0.1},
    {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.2},
    {"lr": 0.05, "momentum": 0.9, "maximize": True},
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", SGD_OPTIONS, ids=_opt_id)
def test_sgd_training_matches_torch(backend, dtype, opts):
    m, rnn, lin = trained_twins(dtype, "relu", 7)
    opt = elman.SGD(m, **opts)
    topt = torch.optim.SGD(trainable(rnn, lin), **opts)
    train_both(m, rnn, lin, opt, topt.step, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clip", [{"clip_value": 0.01}, {"max_grad_norm": 0.1},
                                  {"clip_value": 0.01, "max_grad_norm": 0.1}], ids=_opt_id)
def test_sgd_clipping_matches_torch(backend, dtype, clip):
    m, rnn, lin = trained_twins(dtype, "tanh", 8)
    opt = elman.SGD(m, lr=0.5, momentum=0.5, **clip)
    topt = torch.optim.SGD(trainable(rnn, lin), lr=0.5, momentum=0.5)

    def torch_step():
        ps = trainable(rnn, lin)
        if "max_grad_norm" in clip:
            torch.nn.utils.clip_grad_norm_(ps, clip["max_grad_norm"])
        if "clip_value" in clip:
            torch.nn.utils.clip_grad_value_(ps, clip["clip_value"])
        topt.step()

    train_both(m, rnn, lin, opt, torch_step, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_norm", [0.01, 0.3, 1e3], ids=["clip_hard", "clip", "noclip"])
@pytest.mark.parametrize("pass_model", [False, True], ids=["grads", "model"])
def test_clip_grad_norm_matches_torch(backend, dtype, max_norm, pass_model):
    rng = np.random.default_rng(70)
    m = make_model(dtype, "tanh", seed=9)
    m.forward_backward(make_inputs(rng, "dense", dtype), make_targets(rng, "cross_entropy",
                                                                      dtype))
    G = m.named_grads()
    ts = []
    for name in NAMES:
        p = torch.nn.Parameter(torch.zeros(G[name].shape, dtype=TORCH_DTYPE[dtype]))
        p.grad = torch.from_numpy(G[name].copy())
        ts.append(p)
    tnorm = torch.nn.utils.clip_grad_norm_(ts, max_norm).item()
    norm = elman.clip_grad_norm_(m if pass_model else m.grads, max_norm)
    assert isinstance(norm, float)
    assert_close(norm, tnorm, dtype, "norm before clipping")
    for name, p in zip(NAMES, ts):
        assert_close(G[name], to_np(p.grad), dtype, f"clipped grad {name}")
    if max_norm == 0.01:
        assert tnorm > max_norm
        # torch's (and elman's) coefficient is max_norm / (norm + 1e-6)
        assert_close(np.sqrt(np.sum(m.grads.astype(np.float64) ** 2)),
                     max_norm * tnorm / (tnorm + 1e-6), dtype, "norm after clipping",
                     factor=10)


# ---- 3. the functional Adagrad kernel ------------------------------------------------------

KERNEL_OPTIONS = [
    {"lr": 0.01},
    {"lr": 0.1},
    {"lr": 0.1, "lr_decay": 0.05},
    {"lr": 0.1, "weight_decay": 0.3},
    {"lr": 0.1, "initial_accumulator_value": 0.7},
    {"lr": 0.1, "eps": 1e-2},
    {"lr": 0.1, "eps": 0.0, "initial_accumulator_value": 0.1},
    {"lr": 0.1, "maximize": True},
    {"lr": 0.1, "maximize": True, "weight_decay": 0.3},
    {"lr": 0.2, "lr_decay": 0.1, "weight_decay": 0.1, "initial_accumulator_value": 0.2,
     "eps": 1e-5, "maximize": True},
]
TORCH_ADAGRAD_ARGS = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps",
                      "maximize")


def run_kernel_vs_torch(dtype, opts, *, clip_value=None, grad_scale=1.0, steps=20,
                        shape=(3, 5), seed=80):
    rng = np.random.default_rng(seed)
    theta0 = rng.standard_normal(shape).astype(dtype)
    param = theta0.copy()
    state = np.full(shape, opts.get("initial_accumulator_value", 0.0), dtype)
    tp = torch.nn.Parameter(torch.from_numpy(theta0.copy()))
    topt = torch.optim.Adagrad([tp], **{k: v for k, v in opts.items()
                                        if k in TORCH_ADAGRAD_ARGS})
    kw = {k: v for k, v in opts.items() if k != "initial_accumulator_value"}
    for step in range(1, steps + 1):
        grad = rng.standard_normal(shape).astype(dtype)
        ret = elman.kernels.adagrad_update(param, grad, state, step=step,
                                           clip_value=clip_value, grad_scale=grad_scale, **kw)
        assert ret is None
        g = torch.from_numpy(grad.copy())
        if grad_scale != 1.0:
            g = g * grad_scale
        tp.grad = g
        if clip_value is not None:
            torch.nn.utils.clip_grad_value_([tp], clip_value)
        topt.step()
        assert_close(param, to_np(tp), dtype, f"step {step}: param")
        assert_close(state, to_np(topt.state[tp]["sum"]), dtype, f"step {step}: state")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", KERNEL_OPTIONS, ids=_opt_id)
def test_adagrad_kernel_matches_torch(backend, dtype, opts):
    run_kernel_vs_torch(dtype, opts)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clip_value,grad_scale", [(0.5, 1.0), (None, 0.25), (0.3, 0.5),
                                                   (1e3, 1.0)])
@pytest.mark.parametrize("opts", [{"lr": 0.1}, {"lr": 0.1, "weight_decay": 0.2,
                                                "maximize": True}], ids=_opt_id)
def test_adagrad_kernel_clip_and_scale_match_torch(backend, dtype, clip_value, grad_scale,
                                                   opts):
    """grad_scale (as global-norm clipping would scale) then clip_value (clip_grad_value_),
    before maximize and weight decay, as torch's clip-then-step order gives."""
    run_kernel_vs_torch(dtype, opts, clip_value=clip_value, grad_scale=grad_scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (2, 3, 4), (257,)])
def test_adagrad_kernel_shapes_match_torch(backend, dtype, shape):
    run_kernel_vs_torch(dtype, {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.01},
                        steps=5, shape=shape)


# ---- weight interchange -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_from_torch_computes_what_torch_computes(dtype, nonlinearity):
    torch.manual_seed(0)
    rnn = torch.nn.RNN(6, 5, nonlinearity=nonlinearity, dtype=dtype)
    linear = torch.nn.Linear(5, 3, dtype=dtype)
    m = elman.ElmanRNN.from_torch(rnn, linear)
    assert m.dtype == (np.float64 if dtype == torch.float64 else np.float32)
    x = torch.randn(4, 2, 6, dtype=dtype)
    h0 = torch.randn(1, 2, 5, dtype=dtype)
    out, h_T = rnn(x, h0)
    want = linear(out).detach().numpy()
    Y, h = m.forward(x.numpy(), h0.numpy())
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(Y, want, **tol)
    np.testing.assert_allclose(h, h_T.detach().numpy(), **tol)


def test_to_torch_round_trips():
    m = elman.ElmanRNN(7, 4, 7, seed=3)
    rnn, linear = m.to_torch()
    back = elman.ElmanRNN.from_torch(rnn, linear)
    np.testing.assert_array_equal(back.params, m.params)
    x = np.random.default_rng(0).standard_normal((3, 2, 7)).astype(np.float32)
    out, _ = rnn(torch.from_numpy(x))
    np.testing.assert_allclose(linear(out).detach().numpy(), m.forward(x)[0], rtol=1e-5,
                               atol=1e-6)


def test_from_torch_refuses_what_elman_does_not_hold():
    with pytest.raises(ValueError, match="inputs"):  # a bidirectional RNN gives 2H
        elman.ElmanRNN.from_torch(torch.nn.RNN(3, 4, bidirectional=True),
                                  torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="inputs"):
        elman.ElmanRNN.from_torch(torch.nn.RNN(3, 4), torch.nn.Linear(5, 2))
    with pytest.raises(TypeError):
        elman.ElmanRNN.from_torch(torch.nn.LSTM(3, 4), torch.nn.Linear(4, 2))
    no_bias = torch.nn.RNN(3, 4, bias=False)
    m = elman.ElmanRNN.from_torch(no_bias, torch.nn.Linear(4, 2))
    assert not m.named_params()["b_h"].any()


def test_grad_h0_and_dh_T_match_torch():
    torch.manual_seed(1)
    rnn = torch.nn.RNN(5, 4, dtype=torch.float64)
    linear = torch.nn.Linear(4, 5, dtype=torch.float64)
    m = elman.ElmanRNN.from_torch(rnn, linear)
    ids = torch.randint(0, 5, (6, 3))
    x = torch.nn.functional.one_hot(ids[:-1], 5).double()
    h0 = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    dh_T = torch.randn(1, 3, 4, dtype=torch.float64)
    out, h_T = rnn(x, h0)
    loss = torch.nn.functional.cross_entropy(linear(out).reshape(-1, 5), ids[1:].reshape(-1))
    (loss + (h_T * dh_T).sum()).backward()
    value, _ = m.forward_backward(ids[:-1].numpy(), ids[1:].numpy(), h0.detach().numpy(),
                                  dh_T=dh_T.numpy())
    assert value == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(m.grad_h0, h0.grad.numpy(), rtol=1e-10, atol=1e-12)
