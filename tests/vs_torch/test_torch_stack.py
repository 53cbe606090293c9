"""Parity with torch.nn.RNN for what one layer does not cover: num_layers, bidirectional,
relu in a stack, and variable-length batches (torch's pack_padded_sequence), in outputs,
final states h_n, loss values, every gradient, and a few steps of Adagrad training.
Skipped when torch is absent (CI installs it)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
pack, unpack = torch.nn.utils.rnn.pack_padded_sequence, torch.nn.utils.rnn.pad_packed_sequence

import elman  # noqa: E402
from elman._interchange import torch_names  # noqa: E402
from tolerances import stable_seed  # noqa: E402

RTOL = {torch.float64: 1e-10, torch.float32: 2e-5}
T, B, I, H, O = 6, 4, 5, 4, 5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def close(actual, expected, dtype, what):
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: {actual.shape} != {expected.shape}"
    scale = max(float(np.abs(expected).max()), 1e-30) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * scale,
                               err_msg=what)


def twins(L, bi, nonlinearity, dtype, seed=0, freeze_bias_hh=False):
    """A torch RNN + Linear and the elman model holding the same function."""
    torch.manual_seed(seed)
    D = 2 if bi else 1
    rnn = torch.nn.RNN(I, H, num_layers=L, bidirectional=bi, nonlinearity=nonlinearity,
                       dtype=dtype)
    lin = torch.nn.Linear(D * H, O, dtype=dtype)
    if freeze_bias_hh:
        for name, p in rnn.named_parameters():
            if name.startswith("bias_hh"):
                p.requires_grad_(False)
                with torch.no_grad():
                    p.zero_()
    return rnn, lin, elman.ElmanRNN.from_torch(rnn, lin)


def torch_grads(m, rnn, lin):
    """torch's gradients in elman's names and layout."""
    g = {}
    for (nx, nh, nb), sfx in torch_names(m):
        g[nx] = getattr(rnn, "weight_ih" + sfx).grad.numpy().T
        g[nh] = getattr(rnn, "weight_hh" + sfx).grad.numpy().T
        g[nb] = getattr(rnn, "bias_ih" + sfx).grad.numpy()
    g["W_hy"] = lin.weight.grad.numpy().T
    g["b_y"] = lin.bias.grad.numpy()
    return g


def torch_forward(rnn, lin, x, h0, lengths):
    """(logits (T, B, O), h_n) with torch's packed-sequence semantics for lengths."""
    if lengths is None:
        out, h_n = rnn(x, h0)
    else:
        packed = pack(x, torch.from_numpy(lengths), enforce_sorted=False)
        out, h_n = rnn(packed, h0)
        out, _ = unpack(out, total_length=x.shape[0])
    return lin(out), h_n


def inputs(rng, kind, dtype):
    ids = rng.integers(0, I, (T, B))
    if kind == "ids":
        return ids, F.one_hot(torch.from_numpy(ids), I).to(dtype)
    x = rng.standard_normal((T, B, I))
    return x.astype(np.float64 if dtype == torch.float64 else np.float32), torch.from_numpy(
        x).to(dtype)


CASES = [(2, False, "tanh"), (2, False, "relu"), (1, True, "tanh"), (2, True, "relu"),
         (3, True, "tanh")]


@pytest.mark.parametrize("L,bi,nl", CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("kind", ["dense", "ids"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_stack_matches_torch(backend, dtype, kind, with_lengths, L, bi, nl):
    rng = np.random.default_rng(stable_seed(L, bi, nl, with_lengths, kind))
    rnn, lin, m = twins(L, bi, nl, dtype, seed=L)
    x, xt = inputs(rng, kind, dtype)
    y = rng.integers(0, O, (T, B))
    lengths = rng.permutation(np.r_[T, 1, rng.integers(1, T + 1, B - 2)]) if with_lengths \
        else None
    h0 = rng.standard_normal((m.num_states, B, H)).astype(m.dtype)
    h0t = torch.from_numpy(h0).requires_grad_(True)
    logits, h_n = torch_forward(rnn, lin, xt, h0t, lengths)
    valid = torch.ones(T, B, dtype=torch.bool) if lengths is None else \
        torch.arange(T)[:, None] < torch.from_numpy(lengths)[None, :]
    loss = F.cross_entropy(logits[valid], torch.from_numpy(y)[valid])
    loss.backward()
    with elman.backend(backend):
        Y, h = m.forward(x, h0, lengths=lengths)
        value, h2 = m.forward_backward(x, y, h0, lengths=lengths)
    close(Y, (logits * valid[..., None]).detach().numpy(), dtype, "outputs")
    close(h, h_n.detach().numpy(), dtype, "h_n")
    close(h2, h_n.detach().numpy(), dtype, "h_n of forward_backward")
    assert value == pytest.approx(loss.item(), rel=RTOL[dtype] * 10)
    tg = torch_grads(m, rnn, lin)
    for name, g in m.named_grads().items():
        close(g, tg[name], dtype, f"grad {name}")
    close(m.grad_h0, h0t.grad.numpy(), dtype, "grad h0")


@pytest.mark.parametrize("L,bi", [(1, False), (2, True)])
@pytest.mark.parametrize("loss_kind", ["cross_entropy", "mse"])
def test_last_step_with_lengths_matches_torch(L, bi, loss_kind):
    """Sequence classification on padded batches: the output at each sequence's own last
    step is scored (torch: out[lengths - 1, b] after pad_packed_sequence)."""
    dtype = torch.float64
    rng = np.random.default_rng(L)
    rnn, lin, m = twins(L, bi, "tanh", dtype)
    x, xt = inputs(rng, "dense", dtype)
    lengths = np.array([3, 6, 1, 4])
    logits, h_n = torch_forward(rnn, lin, xt, None, lengths)
    last = logits[torch.from_numpy(lengths - 1), torch.arange(B)]
    if loss_kind == "cross_entropy":
        y = rng.integers(0, O, B)
        loss = F.cross_entropy(last, torch.from_numpy(y))
    else:
        y = rng.standard_normal((B, O))
        loss = F.mse_loss(last, torch.from_numpy(y))
    loss.backward()
    value, h = m.forward_backward(x, y, loss=loss_kind, last_step_only=True, lengths=lengths)
    assert value == pytest.approx(loss.item(), rel=1e-10)
    close(h, h_n.detach().numpy(), dtype, "h_n")
    tg = torch_grads(m, rnn, lin)
    for name, g in m.named_grads().items():
        close(g, tg[name], dtype, f"grad {name}")


def test_adagrad_training_of_a_stack_matches_torch():
    """Five fused training steps (elman.train_step, clipping included) of a two-layer
    bidirectional model on padded batches against torch.optim.Adagrad + clip_grad_norm_."""
    dtype = torch.float64
    rng = np.random.default_rng(0)
    rnn, lin, m = twins(2, True, "tanh", dtype, freeze_bias_hh=True)
    params = [p for p in list(rnn.parameters()) + list(lin.parameters()) if p.requires_grad]
    topt = torch.optim.Adagrad(params, lr=0.1)
    opt = elman.Adagrad(m, lr=0.1, max_grad_norm=1.0)
    for step in range(5):
        ids = rng.integers(0, I, (T + 1, B))
        lengths = rng.integers(1, T + 1, B)
        valid = torch.arange(T)[:, None] < torch.from_numpy(lengths)[None, :]
        topt.zero_grad()
        logits, _ = torch_forward(rnn, lin, F.one_hot(torch.from_numpy(ids[:-1]), I).to(dtype),
                                  None, lengths)
        loss = F.cross_entropy(logits[valid], torch.from_numpy(ids[1:])[valid])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        topt.step()
        value, _ = elman.train_step(m, opt, ids[:-1], ids[1:], lengths=lengths)
        assert value == pytest.approx(loss.item(), rel=1e-9)
    back = elman.ElmanRNN.from_torch(rnn, lin)
    np.testing.assert_allclose(m.params, back.params, rtol=1e-9, atol=1e-12)


def test_to_torch_round_trips_a_stack():
    m = elman.ElmanRNN(I, H, O, num_layers=3, bidirectional=True, nonlinearity="relu",
                       dropout=0.25, seed=5)
    rnn, lin = m.to_torch()
    assert (rnn.num_layers, rnn.bidirectional, rnn.dropout, rnn.nonlinearity) == \
        (3, True, 0.25, "relu")
    back = elman.ElmanRNN.from_torch(rnn, lin)
    np.testing.assert_array_equal(back.params, m.params)
    assert back.dropout == 0.25
    rnn.eval()  # torch's inference: no dropout, as elman's forward
    x = np.random.default_rng(1).standard_normal((T, B, I)).astype(np.float32)
    out, h_n = rnn(torch.from_numpy(x))
    Y, h = m.forward(x)
    np.testing.assert_allclose(Y, lin(out).detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h, h_n.detach().numpy(), rtol=1e-5, atol=1e-6)
