"""elman.torch: the drop-in Adagrad optimizer and ElmanRNN module against torch.optim.Adagrad
and torch.nn.RNN (trajectories, outputs, gradients, gradcheck, state_dict interchange,
sparse gradients, packed sequences, refusals). Skipped when torch is absent."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import elman.torch as et  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


TOL = {torch.float64: dict(rtol=1e-12, atol=1e-13), torch.float32: dict(rtol=2e-5, atol=2e-6)}


def assert_close(a, b, dtype, what=""):
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), **TOL[dtype],
                               err_msg=what)


# ---- Adagrad ------------------------------------------------------------------------------

def train(opt_cls, dtype, *, sparse=False, groups=False, steps=20, noncontiguous=False, **kw):
    """A small embedding + linear model trained for ``steps`` steps; returns (parameters,
    optimizer, losses)."""
    torch.manual_seed(0)
    emb = torch.nn.Embedding(40, 6, sparse=sparse, dtype=dtype)
    lin = torch.nn.Linear(6, 3, dtype=dtype)
    if noncontiguous:  # a leaf whose memory is transposed
        lin.weight = torch.nn.Parameter(torch.randn(6, 3, dtype=dtype).t())
    params = list(emb.parameters()) + list(lin.parameters())
    if groups:
        opt = opt_cls([{"params": list(emb.parameters()), "lr": 0.3},
                       {"params": list(lin.parameters())}], **kw)
    else:
        opt = opt_cls(params, **kw)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        ids = torch.randint(0, 40, (16,), generator=gen)
        y = torch.randint(0, 3, (16,), generator=gen)

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(lin(emb(ids)), y)
            loss.backward()
            return loss

        losses.append(float(opt.step(closure).detach()))
    return [p.detach().clone() for p in params], opt, losses


OPTIONS = [dict(), dict(lr=0.1), dict(lr=0.1, lr_decay=0.05), dict(lr=0.1, weight_decay=0.1),
           dict(lr=0.1, initial_accumulator_value=0.3), dict(lr=0.1, eps=1e-3),
           dict(lr=0.1, maximize=True),
           dict(lr=0.05, lr_decay=0.01, weight_decay=0.02, initial_accumulator_value=0.1,
                eps=1e-6, maximize=True),
           dict(lr=torch.tensor(0.1))]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kw", OPTIONS, ids=lambda kw: ",".join(kw) or "defaults")
def test_adagrad_trajectory_matches_torch(dtype, kw):
    want, _, wl = train(torch.optim.Adagrad, dtype, **kw)
    got, opt, gl = train(et.Adagrad, dtype, **kw)
    for a, b in zip(got, want):
        assert_close(a, b, dtype)
    np.testing.assert_allclose(gl, wl, **TOL[dtype])
    assert not opt.found_nonfinite


@pytest.mark.parametrize("case", ["groups", "sparse", "sparse-maximize", "noncontiguous"])
def test_adagrad_groups_sparse_and_layouts_match_torch(case):
    kw = dict(lr=0.1)
    if case == "groups":
        kw["groups"] = True
    elif case.startswith("sparse"):
        kw.update(sparse=True, lr_decay=0.01, maximize=case.endswith("maximize"))
    else:
        kw["noncontiguous"] = True
    want, _, _ = train(torch.optim.Adagrad, torch.float64, **kw)
    got, _, _ = train(et.Adagrad, torch.float64, **kw)
    for a, b in zip(got, want):
        assert_close(a, b, torch.float64)


def test_adagrad_state_dicts_interchange_with_torch():
    """Save from one, load into the other, continue: the same as never switching."""
    ref, ropt, _ = train(torch.optim.Adagrad, torch.float64, lr=0.1, lr_decay=0.01, steps=10)
    for first, second in ((torch.optim.Adagrad, et.Adagrad), (et.Adagrad, torch.optim.Adagrad)):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(5, 4, dtype=torch.float64))
        q = torch.nn.Parameter(p.detach().clone())
        a, b = first([p], lr=0.1, lr_decay=0.01), torch.optim.Adagrad([q], lr=0.1, lr_decay=0.01)
        g = torch.Generator().manual_seed(3)
        grads = [torch.randn(5, 4, generator=g, dtype=torch.float64) for _ in range(8)]
        for grad in grads[:4]:
            p.grad, q.grad = grad.clone(), grad.clone()
            a.step()
            b.step()
        c = second([p], lr=0.1, lr_decay=0.01)
        c.load_state_dict(a.state_dict())
        assert c.state_dict()["param_groups"] == b.state_dict()["param_groups"]
        for grad in grads[4:]:
            p.grad, q.grad = grad.clone(), grad.clone()
            c.step()
            b.step()
        assert_close(p, q, torch.float64, f"{first.__module__} -> {second.__module__}")
        assert c.state_dict()["state"][0]["step"].item() == 8


def test_adagrad_updates_in_place_without_copies():
    p = torch.nn.Parameter(torch.ones(1000))
    ptr, s_ptr = p.data_ptr(), None
    opt = et.Adagrad([p], lr=0.5)
    s_ptr = opt.state[p]["sum"].data_ptr()
    p.grad = torch.full((1000,), 2.0)
    opt.step()
    assert p.data_ptr() == ptr and opt.state[p]["sum"].data_ptr() == s_ptr
    assert torch.allclose(p, torch.full((1000,), 0.5))  # 1 - 0.5 * 2 / sqrt(4)
    assert opt.state[p]["sum"][0].item() == 4.0


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_adagrad_copies_keep_working(how):
    """torch pickles an optimizer's defaults, state and param_groups only: a copy must
    still step (and match the original)."""
    import copy
    import pickle
    p = torch.nn.Parameter(torch.ones(5))
    opt = et.Adagrad([p], lr=0.3)
    p.grad = torch.full((5,), 0.5)
    opt.step()
    if how == "deepcopy":
        p2 = copy.deepcopy(p)
        opt2 = et.Adagrad([p2], lr=0.3)
        opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
        clone = copy.deepcopy(opt)
        clone.step()  # the clone holds copies of p and its state
    else:
        p2, opt2 = pickle.loads(pickle.dumps((p, opt)))
    p2.grad = torch.full((5,), 0.5)
    opt2.step()
    opt.step()
    assert torch.equal(p2, p)


def test_adagrad_refusals():
    with pytest.raises(ValueError, match="on meta"):
        et.Adagrad([torch.nn.Parameter(torch.empty(3, device="meta"))])
    with pytest.raises(TypeError, match="float16"):
        et.Adagrad([torch.nn.Parameter(torch.ones(3, dtype=torch.float16))])
    for kw, what in ((dict(lr=-1), "learning rate"), (dict(eps=-1e-3), "epsilon"),
                     (dict(lr=math.inf), "learning rate"),
                     (dict(differentiable=True), r"torch.optim.Adagrad\(\.\.\., differentiable")):
        with pytest.raises(ValueError, match=what):
            et.Adagrad([torch.nn.Parameter(torch.ones(3))], **kw)
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = et.Adagrad(emb.parameters(), weight_decay=0.1)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


def test_adagrad_non_finite_gradient_is_applied_as_torch_applies_it():
    p, q = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(4))
    a, b = et.Adagrad([p]), torch.optim.Adagrad([q])
    p.grad = q.grad = torch.tensor([1.0, math.nan, 1.0, 1.0])
    a.step()
    b.step()
    np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
    assert a.found_nonfinite


# ---- ElmanRNN -----------------------------------------------------------------------------

def twins(dtype, **kw):
    torch.manual_seed(0)
    ref = torch.nn.RNN(5, 4, dtype=dtype, **kw)
    mine = et.ElmanRNN(5, 4, dtype=dtype, **kw)
    mine.load_state_dict(ref.state_dict())
    return ref, mine


RNN_CASES = [dict(), dict(nonlinearity="relu"), dict(num_layers=2), dict(bidirectional=True),
             dict(num_layers=3, bidirectional=True, nonlinearity="relu"),
             dict(batch_first=True, num_layers=2), dict(bias=False, bidirectional=True)]


def run(m, x, h0):
    out, h_n = m(x, h0)
    # a loss that reaches every output and the final states
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    loss = (out * w).sum() + (h_n ** 2).sum()
    loss.backward()
    return out, h_n


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kw", RNN_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in
                                                                  kw.items()) or "default")
@pytest.mark.parametrize("with_h0", [False, True], ids=["h0_none", "h0"])
def test_rnn_module_matches_torch(dtype, kw, with_h0):
    ref, mine = twins(dtype, **kw)
    D = 2 if kw.get("bidirectional") else 1
    S = kw.get("num_layers", 1) * D
    shape = (3, 6, 5) if kw.get("batch_first") else (6, 3, 5)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(*shape, generator=g, dtype=dtype)
    h0 = torch.randn(S, 3, 4, generator=g, dtype=dtype) if with_h0 else None
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    hs = [None, None] if h0 is None else [h0.clone().requires_grad_() for _ in range(2)]
    o1, h1 = run(ref, xs[0], hs[0])
    o2, h2 = run(mine, xs[1], hs[1])
    assert_close(o2, o1, dtype, "output")
    assert_close(h2, h1, dtype, "h_n")
    for (name, p1), (name2, p2) in zip(ref.named_parameters(), mine.named_parameters()):
        assert name == name2
        assert_close(p2.grad, p1.grad, dtype, f"grad {name}")
    assert_close(xs[1].grad, xs[0].grad, dtype, "grad input")
    if h0 is not None:
        assert_close(hs[1].grad, hs[0].grad, dtype, "grad hx")


@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True,
                                             nonlinearity="relu")], ids=["one", "stack"])
def test_rnn_module_passes_gradcheck(kw):
    torch.manual_seed(1)
    m = et.ElmanRNN(3, 2, dtype=torch.float64, **kw)
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(m.num_layers * (2 if m.bidirectional else 1), 2, 2, dtype=torch.float64,
                     requires_grad=True)

    def f(x, h0, *ps):
        return torch.func.functional_call(m, dict(zip(names, ps)), (x, h0))

    assert torch.autograd.gradcheck(f, (x, h0, *params))


@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True)],
                         ids=["one", "stack"])
def test_rnn_module_packed_sequences_match_torch(kw):
    dtype = torch.float64
    ref, mine = twins(dtype, **kw)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(7, 4, 5, generator=g, dtype=dtype)
    lengths = torch.tensor([3, 7, 1, 5])
    S = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    h0 = torch.randn(S, 4, 4, generator=g, dtype=dtype)
    outs = []
    for m in (ref, mine):
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, h_n = m(packed, h0)
        padded, lens = torch.nn.utils.rnn.pad_packed_sequence(out)
        ((padded ** 2).sum() + h_n.sum()).backward()
        outs.append((padded, h_n, lens))
    assert_close(outs[1][0], outs[0][0], dtype, "output")
    assert_close(outs[1][1], outs[0][1], dtype, "h_n")
    assert torch.equal(outs[1][2], outs[0][2])
    # the output is packed as the input was, as torch's: same batch_sizes, order and rows
    for enforce in (False, True):
        if enforce:
            order = torch.argsort(lengths, descending=True)
            packed = torch.nn.utils.rnn.pack_padded_sequence(x[:, order], lengths[order])
        else:
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
        with torch.no_grad():
            want, got = ref(packed)[0], mine(packed)[0]
        assert torch.equal(got.batch_sizes, want.batch_sizes)
        for a, b in ((got.sorted_indices, want.sorted_indices),
                     (got.unsorted_indices, want.unsorted_indices)):
            assert (a is None and b is None) or torch.equal(a, b)
        assert_close(got.data, want.data, dtype, "packed data")
    for (name, p1), (_, p2) in zip(ref.named_parameters(), mine.named_parameters()):
        assert_close(p2.grad, p1.grad, dtype, f"grad {name}")


def test_rnn_module_unbatched_dropout_and_training_with_adagrad():
    dtype = torch.float64
    ref, mine = twins(dtype, num_layers=2, dropout=0.5)
    x = torch.randn(6, 5, dtype=dtype)  # unbatched (T, I)
    ref.eval()
    mine.eval()  # inference: no dropout, as torch
    o1, h1 = ref(x)
    o2, h2 = mine(x)
    assert o2.shape == (6, 4) and h2.shape == (2, 4)
    assert_close(o2, o1, dtype)
    assert_close(h2, h1, dtype)
    mine.train()
    torch.manual_seed(5)
    a = mine(x)[0]
    torch.manual_seed(5)
    b = mine(x)[0]
    assert torch.equal(a, b) and not torch.allclose(a, o2)  # torch's RNG draws the masks
    # 20 steps of elman.torch (module + Adagrad) against torch's, dropout off
    ref, mine = twins(dtype, num_layers=2, bidirectional=True)
    heads = [torch.nn.Linear(8, 5, dtype=dtype) for _ in range(2)]
    heads[1].load_state_dict(heads[0].state_dict())
    opts = [torch.optim.Adagrad(list(ref.parameters()) + list(heads[0].parameters()), lr=0.1),
            et.Adagrad(list(mine.parameters()) + list(heads[1].parameters()), lr=0.1)]
    g = torch.Generator().manual_seed(6)
    for _ in range(20):
        ids = torch.randint(0, 5, (7, 3), generator=g)
        xx = F.one_hot(ids[:-1], 5).to(dtype)
        for m, head, opt in zip((ref, mine), heads, opts):
            opt.zero_grad()
            F.cross_entropy(head(m(xx)[0]).reshape(-1, 5), ids[1:].reshape(-1)).backward()
            opt.step()
    for p1, p2 in zip(ref.parameters(), mine.parameters()):
        assert_close(p2, p1, dtype)


def test_rnn_module_refusals():
    """What elman cannot compute on is refused with the alternative named; the full
    exception contract against torch.nn.RNN is in test_torch_dropin.py."""
    with pytest.raises(TypeError, match="float16"):
        et.ElmanRNN(3, 2, dtype=torch.float16)
    with pytest.raises(RuntimeError, match="torch.nn.RNN on cuda"):
        et.ElmanRNN(3, 2, device="cuda")
    m = et.ElmanRNN(3, 2).to(torch.bfloat16)
    with pytest.raises(RuntimeError, match="torch.nn.RNN for torch.bfloat16"):
        m(torch.zeros(4, 1, 3, dtype=torch.bfloat16))
    m = et.ElmanRNN(3, 2)
    with pytest.raises(ValueError, match="proj_size=1"):
        et.ElmanRNN(3, 2, proj_size=1)
    assert "num_layers" not in repr(m) and "ElmanRNN(3, 2)" in repr(m)
    assert "nonlinearity='relu'" in repr(et.ElmanRNN(3, 2, nonlinearity="relu"))


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_adagrad_mixed_steps_dtypes_and_aliasing_match_torch(backend):
    """Parameters that skip steps (their step counts differ within a group), float32 and
    float64 in one group, and a gradient that shares its parameter's memory."""
    import elman
    torch.manual_seed(0)
    make = lambda: [torch.nn.Parameter(torch.randn(7, dtype=torch.float64)),  # noqa: E731
                    torch.nn.Parameter(torch.randn(3, 2)),
                    torch.nn.Parameter(torch.randn(5))]
    ours = make()
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    a, b = et.Adagrad(ours, lr=0.2, lr_decay=0.1), torch.optim.Adagrad(ref, lr=0.2, lr_decay=0.1)
    g = torch.Generator().manual_seed(1)
    with elman.backend(backend):
        for k in range(12):
            for i, (p, q) in enumerate(zip(ours, ref)):
                if i == 1 and k % 3 == 0:
                    p.grad = q.grad = None            # this one skips every third step
                elif i == 2 and k == 5:
                    p.grad, q.grad = p.detach(), q.detach().clone()   # aliases p itself
                else:
                    grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
                    p.grad, q.grad = grad.clone(), grad.clone()
            a.step()
            b.step()
    for p, q in zip(ours, ref):
        assert_close(p, q, p.dtype)
    assert [a.state[p]["step"].item() for p in ours] == [12, 8, 12]
