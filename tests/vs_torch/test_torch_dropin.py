"""elman.torch as a drop-in for torch.nn.RNN and torch.optim.Adagrad where user code leans
on more than the forward: double backward, batched gradients and torch.func transforms,
forward-mode AD, older optimizer state_dicts, nn.RNN's members, its exception types, meta
devices, DistributedDataParallel and torch.compile. Each behaviour is compared with torch's
own on the same weights and inputs."""
import copy
import io
import os
import pathlib
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import elman.torch as et  # noqa: E402
from elman.torch import _layer, rnn as et_rnn  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = pathlib.Path(__file__).resolve().parents[2]
F64 = torch.float64
CASES = [dict(), dict(nonlinearity="relu"), dict(num_layers=2, bidirectional=True),
         dict(num_layers=2, batch_first=True, bias=False)]
IDS = ["tanh", "relu", "stack_bi", "batch_first_nobias"]


def twins(dtype=F64, I=3, H=4, **kw):
    """torch.nn.RNN and elman.torch.ElmanRNN with the same weights."""
    torch.manual_seed(0)
    ref = torch.nn.RNN(I, H, dtype=dtype, **kw)
    mine = et.ElmanRNN(I, H, dtype=dtype, **kw)
    mine.load_state_dict(ref.state_dict())
    return ref, mine


def inputs(m, T=5, B=2, dtype=F64, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (B, T, m.input_size) if m.batch_first else (T, B, m.input_size)
    x = torch.randn(*shape, generator=g, dtype=dtype, requires_grad=True)
    S = m.num_layers * (2 if m.bidirectional else 1)
    h0 = torch.randn(S, B, m.hidden_size, generator=g, dtype=dtype, requires_grad=True)
    return x, h0


def close(a, b, rtol=1e-9, atol=1e-11):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


# ---- 1. double backward -------------------------------------------------------------------

def penalty_grads(m, x, h0):
    """A gradient-penalty loss (the squared norm of d loss / d (weights, x, h0)) and its
    gradient: what WGAN-GP or a Hessian-vector product needs from the RNN."""
    out, h_n = m(x, h0)
    loss = (out.sin()).sum() + (h_n ** 2).sum()
    wrt = list(m.parameters()) + [x, h0]
    first = torch.autograd.grad(loss, wrt, create_graph=True)
    assert all(g.requires_grad for g in first)
    pen = sum((g ** 2).sum() for g in first)
    return first, torch.autograd.grad(pen, wrt)


@pytest.mark.parametrize("kw", CASES, ids=IDS)
def test_double_backward_matches_torch(kw):
    ref, mine = twins(**kw)
    x, h0 = inputs(ref)
    first_ref, second_ref = penalty_grads(ref, x, h0)
    first, second = penalty_grads(mine, x, h0)
    for a, b in zip(first + second, first_ref + second_ref):
        close(a, b)


def test_double_backward_of_packed_sequences_matches_torch():
    ref, mine = twins(num_layers=2, bidirectional=True)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 3, 3, generator=g, dtype=F64, requires_grad=True)
    lengths = torch.tensor([6, 2, 4])
    results = []
    for m in (ref, mine):
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, h_n = m(packed)
        loss = (out.data ** 3).sum() + h_n.sum()
        first = torch.autograd.grad(loss, list(m.parameters()) + [x], create_graph=True)
        results.append(torch.autograd.grad(sum(f.sum() for f in first),
                                           list(m.parameters()) + [x]))
    for a, b in zip(*results):
        close(a, b)


@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True,
                                             nonlinearity="relu")], ids=["one", "stack"])
def test_gradgradcheck(kw):
    torch.manual_seed(2)
    m = et.ElmanRNN(3, 2, dtype=F64, **kw)
    x, h0 = inputs(m, T=3, B=2)
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]

    def f(x, h0, *ps):
        return torch.func.functional_call(m, dict(zip(names, ps)), (x, h0))

    assert torch.autograd.gradgradcheck(f, (x, h0, *params), check_batched_grad=True)


def test_plain_calls_run_the_c_kernels(monkeypatch):
    """The torch-ops layer is only for what needs it: a plain forward and backward (the
    training loop) never touch it, and create_graph=True does."""
    ref, mine = twins(num_layers=2)
    x, h0 = inputs(mine)
    calls = []
    real = _layer.torch_layer

    def spy(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(_layer, "torch_layer", spy)
    monkeypatch.setattr(et_rnn, "torch_layer", spy)
    out, h_n = mine(x, h0)
    (out.sum() + h_n.sum()).backward()
    assert calls == []
    torch.autograd.grad(mine(x, h0)[0].sum(), [x], create_graph=True)
    assert len(calls) == 2   # each layer's backward recomputed in torch ops


def test_a_stack_is_one_c_call_forward_and_one_backward(monkeypatch):
    """Three bidirectional layers with dropout in training: one elman_stack_forward and one
    elman_stack_backward, no per-layer call."""
    from elman import _c_backend
    calls = []
    for name in ("stack_forward", "stack_backward", "rnn_forward", "rnn_backward"):
        real = getattr(_c_backend, name)
        monkeypatch.setattr(_c_backend, name,
                            lambda *a, _r=real, _n=name, **k: calls.append(_n) or _r(*a, **k))
    _, mine = twins(num_layers=3, bidirectional=True, dropout=0.3)
    x, h0 = inputs(mine)
    out, h_n = mine(x, h0)
    (out.sin().sum() + h_n.sum()).backward()
    assert calls == ["stack_forward", "stack_backward"]


@pytest.mark.parametrize("kw", [dict(num_layers=3, dropout=0.4),
                                dict(num_layers=2, bidirectional=True, dropout=0.5),
                                dict(num_layers=2, dropout=1.0)], ids=["uni", "bi", "p1"])
def test_dropout_in_training_matches_torch_under_one_seed(kw):
    """Training-mode dropout draws torch's masks in torch's order: under the same seed the
    outputs, final states and every gradient equal torch.nn.RNN's."""
    ref, mine = twins(**kw)
    x, h0 = inputs(ref)
    results = []
    for m in (ref, mine):
        m.train()
        torch.manual_seed(11)
        out, h_n = m(x, h0)
        grads = torch.autograd.grad(out.sin().sum() + (h_n ** 2).sum(),
                                    [x, h0] + list(m.parameters()))
        results.append([out, h_n, *grads])
    for a, b in zip(*results):
        close(a, b)


def test_double_backward_keeps_the_forwards_dropout_masks():
    """The differentiable backward (create_graph=True) recomputes the stack with the masks
    the forward drew: its gradients equal the C backward's, and torch's."""
    ref, mine = twins(num_layers=3, bidirectional=True, dropout=0.5)
    x, h0 = inputs(ref)
    got = []
    for m, create in ((mine, False), (mine, True), (ref, True)):
        torch.manual_seed(5)
        out, h_n = m(x, h0)
        got.append(torch.autograd.grad(out.sum() + h_n.sum(), [x] + list(m.parameters()),
                                       create_graph=create))
    for a, b, c in zip(*got):
        close(a, b)
        close(b, c)


# ---- 2. batched gradients, torch.func, forward-mode AD ------------------------------------

@pytest.mark.parametrize("kw", CASES, ids=IDS)
def test_batched_gradients_match_one_at_a_time(kw):
    _, mine = twins(**kw)
    x, h0 = inputs(mine)
    out, h_n = mine(x, h0)
    wrt = list(mine.parameters()) + [x, h0]
    v = torch.randn(3, *out.shape, dtype=F64)
    batched = torch.autograd.grad(out, wrt, v, is_grads_batched=True, retain_graph=True)
    for i in range(3):
        for b, one in zip(batched, torch.autograd.grad(out, wrt, v[i], retain_graph=True)):
            close(b[i], one)
    # vmap over a vjp, the torch.func spelling of the same thing
    _, vjp = torch.func.vjp(lambda x, h0: mine(x, h0)[0], x, h0)
    gx, gh = torch.func.vmap(vjp)(v)
    close(gx, batched[-2])
    close(gh, batched[-1])


def test_gradcheck_with_batched_grad_and_forward_ad():
    torch.manual_seed(4)
    m = et.ElmanRNN(3, 2, num_layers=2, bidirectional=True, dtype=F64)
    x, h0 = inputs(m, T=3, B=2)
    assert torch.autograd.gradcheck(lambda x, h0: m(x, h0), (x, h0), check_batched_grad=True,
                                    check_forward_ad=True, check_batched_forward_grad=True)


@pytest.mark.parametrize("kw", CASES, ids=IDS)
def test_torch_func_transforms_match_torch(kw):
    ref, mine = twins(**kw)
    x, h0 = inputs(ref)

    def loss(m):
        return lambda p, x: torch.func.functional_call(m, p, (x, h0))[0].pow(2).sum()

    g_ref = torch.func.grad(loss(ref))(dict(ref.named_parameters()), x)
    g = torch.func.grad(loss(mine))(dict(mine.named_parameters()), x)
    for k in g_ref:
        close(g[k], g_ref[k])
    # jvp (forward-mode AD) through the recurrence
    t = torch.randn_like(x)
    _, j_ref = torch.func.jvp(lambda x: ref(x, h0)[0], (x,), (t,))
    _, j = torch.func.jvp(lambda x: mine(x, h0)[0], (x,), (t,))
    close(j, j_ref)
    # vmap over a batch of inputs (torch.nn.RNN itself has no batching rule: compare with
    # a loop) and over an ensemble of stacked weights
    xs = torch.randn(3, *x.shape, dtype=F64)
    close(torch.func.vmap(lambda x: mine(x, h0)[0])(xs),
          torch.stack([ref(xi, h0)[0] for xi in xs]))
    members = [twins(**kw)[1] for _ in range(2)]
    for k, m in enumerate(members):
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(1 + k)
    params, buffers = torch.func.stack_module_state(members)
    ens = torch.func.vmap(lambda p, b: torch.func.functional_call(mine, (p, b), (x, h0))[0])
    close(ens(params, buffers), torch.stack([m(x, h0)[0] for m in members]))


def test_per_sample_gradients_by_vmap_of_grad_match_a_loop_over_torch():
    """vmap(grad(loss)) over the batch, the torch.func recipe for per-sample gradients
    (differential privacy, influence functions), against one torch.nn.RNN backward per
    sample."""
    ref, mine = twins(num_layers=2, batch_first=True)
    g = torch.Generator().manual_seed(5)
    xs = torch.randn(4, 6, 3, generator=g, dtype=F64)     # 4 samples of (T=6, I=3)
    ys = torch.randn(4, 6, 4, generator=g, dtype=F64)

    def loss(params, x, y):   # one unbatched sample
        out, _ = torch.func.functional_call(mine, params, (x,))
        return ((out - y) ** 2).mean()

    params = {k: v.detach() for k, v in mine.named_parameters()}
    per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(params, xs, ys)
    for i in range(4):
        ref.zero_grad()
        ((ref(xs[i])[0] - ys[i]) ** 2).mean().backward()
        for name, p in ref.named_parameters():
            close(per_sample[name][i], p.grad)


# ---- 3. older Adagrad state_dicts ---------------------------------------------------------

def adagrad_run(cls, load=None, steps=3):
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3, dtype=F64)
    opt = cls(lin.parameters(), lr=0.1, lr_decay=0.01, weight_decay=0.1)
    if load is not None:
        lin.load_state_dict(load[0])
        opt.load_state_dict(load[1])
    g = torch.Generator().manual_seed(len(opt.state))
    for _ in range(steps):
        opt.zero_grad()
        lin(torch.randn(8, 4, generator=g, dtype=F64)).pow(2).sum().backward()
        opt.step()
    return lin, opt


def aged(state_dict, *, drop_keys, python_step):
    """A state_dict as older torch releases wrote it."""
    sd = copy.deepcopy(state_dict)
    for group in sd["param_groups"]:
        for key in drop_keys:
            group.pop(key, None)
    if python_step:
        for s in sd["state"].values():
            s["step"] = float(s["step"])
    return sd


@pytest.mark.parametrize("drop_keys,python_step", [
    (("maximize", "foreach", "differentiable", "fused"), False), ((), True),
    (("maximize", "foreach", "differentiable", "fused"), True)],
    ids=["no_flags", "python_step", "both"])
def test_adagrad_loads_older_state_dicts_as_torch_does(drop_keys, python_step):
    lin, opt = adagrad_run(torch.optim.Adagrad)
    old = (lin.state_dict(), aged(opt.state_dict(), drop_keys=drop_keys,
                                  python_step=python_step))
    ref, ref_opt = adagrad_run(torch.optim.Adagrad, load=copy.deepcopy(old))
    mine, my_opt = adagrad_run(et.Adagrad, load=copy.deepcopy(old))
    for a, b in zip(mine.parameters(), ref.parameters()):
        close(a, b, rtol=1e-13, atol=1e-15)
    for group in my_opt.param_groups:
        assert {k: group[k] for k in ("maximize", "foreach", "differentiable", "fused")} \
            == dict(maximize=False, foreach=None, differentiable=False, fused=None)
    for s in my_opt.state.values():
        assert torch.is_tensor(s["step"]) and float(s["step"]) == 6.0


def test_adagrad_steps_in_float64_under_a_float64_default_dtype():
    """torch keeps "step" in float64 when that is the default dtype; elman too, and a
    state_dict from either loads into the other."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        lin, ref_opt = adagrad_run(torch.optim.Adagrad)
        mine, my_opt = adagrad_run(et.Adagrad, load=(lin.state_dict(), ref_opt.state_dict()))
        assert all(s["step"].dtype == torch.float64 for s in my_opt.state.values())
        _, back = adagrad_run(torch.optim.Adagrad, load=(mine.state_dict(),
                                                         my_opt.state_dict()))
        assert all(float(s["step"]) == 9.0 for s in back.state.values())
    finally:
        torch.set_default_dtype(before)


# ---- 4. nn.RNN's members ------------------------------------------------------------------

@pytest.mark.parametrize("kw", CASES, ids=IDS)
def test_members_are_torch_rnns(kw):
    ref, mine = twins(**kw)
    assert isinstance(mine, torch.nn.RNNBase)
    for name in ("mode", "_flat_weights_names", "_all_weights", "proj_size", "input_size",
                 "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                 "bidirectional", "nonlinearity"):
        assert getattr(mine, name) == getattr(ref, name), name
    assert [[tuple(p.shape) for p in ps] for ps in mine.all_weights] == \
        [[tuple(p.shape) for p in ps] for ps in ref.all_weights]
    assert all(a is b for a, b in zip(mine._flat_weights, mine.parameters()))
    assert mine.flatten_parameters() is None
    x, h0 = inputs(ref)
    assert mine.get_expected_hidden_size(x, None) == ref.get_expected_hidden_size(x, None)
    mine.check_forward_args(x, h0, None)
    perm = torch.tensor([1, 0])
    close(mine.permute_hidden(h0, perm), ref.permute_hidden(h0, perm))
    assert mine.permute_hidden(h0, None) is h0
    # _flat_weights follows .to(), a replaced parameter and a pickle round trip
    mine.float()
    assert mine._flat_weights[0] is mine.weight_ih_l0 and mine._flat_weights[0].dtype == \
        torch.float32
    mine.weight_hh_l0 = torch.nn.Parameter(torch.zeros_like(mine.weight_hh_l0))
    assert mine._flat_weights[1] is mine.weight_hh_l0
    buf = io.BytesIO()
    torch.save(mine, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    assert back._flat_weights_names == mine._flat_weights_names
    close(back(x.float(), h0.float())[0], mine(x.float(), h0.float())[0], rtol=0, atol=0)
    clone = copy.deepcopy(mine)
    assert clone._flat_weights[0] is clone.weight_ih_l0


def test_proj_size_zero_is_accepted_and_others_refused():
    assert et.ElmanRNN(3, 4, proj_size=0).proj_size == 0
    for bad, err in ((2, ValueError), (-1, ValueError), (1.5, TypeError)):
        with pytest.raises(err, match="proj_size"):
            et.ElmanRNN(3, 4, proj_size=bad)
    with pytest.raises(ValueError):
        torch.nn.RNN(3, 4, proj_size=2)   # torch's refusal, for comparison


# ---- 5. the exception contract ------------------------------------------------------------

def raised(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the type is the point
        return e
    return None


CTOR_MISTAKES = {
    "nonlinearity": dict(nonlinearity="sigmoid"), "bias_str": dict(bias="False"),
    "batch_first_str": dict(batch_first="False"), "input_size_0": dict(input_size=0),
    "hidden_size_0": dict(hidden_size=0), "hidden_size_float": dict(hidden_size=4.0),
    "input_size_float": dict(input_size=3.0), "num_layers_0": dict(num_layers=0),
    "num_layers_float": dict(num_layers=1.5), "dropout_high": dict(dropout=1.5),
    "dropout_bool": dict(dropout=True), "dropout_str": dict(dropout="0.1"),
}


@pytest.mark.parametrize("name", CTOR_MISTAKES)
def test_constructor_mistakes_raise_torchs_types(name):
    kw = dict(input_size=3, hidden_size=4) | CTOR_MISTAKES[name]
    theirs, ours = raised(lambda: torch.nn.RNN(**kw)), raised(lambda: et.ElmanRNN(**kw))
    assert theirs is not None and ours is not None
    assert type(ours) is type(theirs), (ours, theirs)


FORWARD_MISTAKES = {
    "input_dtype": lambda: (torch.zeros(5, 2, 3, dtype=torch.float64), None),
    "input_int": lambda: (torch.zeros(5, 2, 3, dtype=torch.int64), None),
    "input_4d": lambda: (torch.zeros(5, 2, 3, 1), None),
    "input_1d": lambda: (torch.zeros(5), None),
    "features": lambda: (torch.zeros(5, 2, 2), None),
    "hx_shape": lambda: (torch.zeros(5, 2, 3), torch.zeros(1, 3, 4)),
    "hx_dtype": lambda: (torch.zeros(5, 2, 3), torch.zeros(1, 2, 4, dtype=torch.float64)),
    "hx_rank_batched": lambda: (torch.zeros(5, 2, 3), torch.zeros(2, 4)),
    "hx_rank_unbatched": lambda: (torch.zeros(5, 3), torch.zeros(1, 1, 4)),
    "no_steps": lambda: (torch.zeros(0, 2, 3), None),
}


@pytest.mark.parametrize("name", FORWARD_MISTAKES)
def test_forward_mistakes_raise_torchs_types(name):
    ref, mine = twins(dtype=torch.float32)
    x, hx = FORWARD_MISTAKES[name]()
    theirs, ours = raised(lambda: ref(x, hx)), raised(lambda: mine(x, hx))
    assert theirs is not None and ours is not None
    assert type(ours) is type(theirs), (ours, theirs)
    assert str(ours).startswith("elman.torch.ElmanRNN: ")


def test_check_members_raise_torchs_types():
    ref, mine = twins(dtype=torch.float32)
    x = torch.zeros(5, 2, 3)
    for args in ((torch.zeros(5, 2, 2), torch.zeros(1, 2, 4), None),
                 (torch.zeros(10, 3), torch.zeros(1, 3, 4), torch.tensor([2, 2, 2, 2, 2])),
                 (x, torch.zeros(1, 3, 4), None), (x.double(), torch.zeros(1, 2, 4), None)):
        theirs = raised(lambda: ref.check_forward_args(*args))
        ours = raised(lambda: mine.check_forward_args(*args))
        assert type(ours) is type(theirs) and theirs is not None, args
    msg = "want {}, have {}"
    with pytest.raises(RuntimeError, match=r"want \(1, 2, 4\), have \[1, 3, 4\]"):
        mine.check_hidden_size(torch.zeros(1, 3, 4), (1, 2, 4), msg)


ADAGRAD_MISTAKES = {
    "lr_tensor": (dict(lr=torch.tensor([0.1, 0.2])), "Tensor lr must be 1-element"),
    "lr": (dict(lr=-0.1), "Invalid learning rate: -0.1"),
    "lr_decay": (dict(lr_decay=-0.5), "Invalid lr_decay value: -0.5"),
    "weight_decay": (dict(weight_decay=-1), "Invalid weight_decay value: -1"),
    "initial_accumulator_value": (dict(initial_accumulator_value=-1),
                                  "Invalid initial_accumulator_value value: -1"),
    "eps": (dict(eps=-1e-3), "Invalid epsilon value: -0.001"),
    "fused_and_foreach": (dict(fused=True, foreach=True),
                          "`fused` and `foreach` cannot be `True` together"),
}


@pytest.mark.parametrize("name", ADAGRAD_MISTAKES)
def test_adagrad_mistakes_raise_torchs_types_and_words(name):
    """The same type as torch.optim.Adagrad, and a message that still holds torch's words
    (PyTorch's own test_optim matches on them)."""
    kw, words = ADAGRAD_MISTAKES[name]
    params = [torch.nn.Parameter(torch.zeros(3))]
    theirs = raised(lambda: torch.optim.Adagrad(params, **kw))
    ours = raised(lambda: et.Adagrad(params, **kw))
    assert theirs is not None and type(ours) is type(theirs), (ours, theirs)
    assert words in str(theirs) and words in str(ours)


def test_rnn_messages_hold_torchs_words():
    ref, mine = twins(dtype=torch.float32)
    x = torch.zeros(5, 2, 3, dtype=torch.float64)
    pattern = (r"RNN input dtype .* does not match weight dtype .* Convert input: "
               r"input\.to\(.*\), or convert model: model\.to\(.*\)")
    for m in (ref, mine):
        with pytest.raises(ValueError, match=pattern):
            m(x)
        with pytest.raises(ValueError, match="Unknown nonlinearity"):
            type(m)(3, 4, nonlinearity="garbage")


def test_empty_batch_gives_empty_results_as_torch():
    ref, mine = twins()
    x = torch.zeros(5, 0, 3, dtype=F64, requires_grad=True)
    (o1, h1), (o2, h2) = ref(x), mine(x)
    assert o1.shape == o2.shape and h1.shape == h2.shape
    o2.sum().backward()
    assert x.grad.shape == x.shape


# ---- 6. meta devices ----------------------------------------------------------------------

@pytest.mark.parametrize("how", ["context", "argument"])
def test_meta_construction_then_materialize(how):
    kw = dict(num_layers=2, bidirectional=True)
    if how == "context":
        with torch.device("meta"):
            m = et.ElmanRNN(3, 4, **kw)
    else:
        m = et.ElmanRNN(3, 4, device="meta", **kw)
    assert all(p.is_meta for p in m.parameters())
    out, h_n = m(torch.empty(5, 2, 3, device="meta"))   # shapes without memory
    assert out.is_meta and out.shape == (5, 2, 8) and h_n.shape == (4, 2, 4)
    m.to_empty(device="cpu")
    m.reset_parameters()
    k = 1 / 4 ** 0.5
    assert all(p.device.type == "cpu" and p.abs().max() <= k for p in m.parameters())
    ref = torch.nn.RNN(3, 4, **kw)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(m(x)[0], ref(x)[0], rtol=2e-5, atol=2e-6)


# ---- 7. torch.compile ---------------------------------------------------------------------

class CharModel(torch.nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.rnn = et.ElmanRNN(5, 8, batch_first=True, **kw)
        self.head = torch.nn.Linear(8 * (2 if self.rnn.bidirectional else 1), 5)

    def forward(self, x, h0=None):
        out, h_n = self.rnn(x, h0)
        return self.head(out), h_n


def test_torch_compile_captures_the_rnn_and_matches_eager():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = CharModel(num_layers=2, bidirectional=True)
    x = torch.randn(3, 7, 5)
    y = torch.randint(0, 5, (3, 7))

    def step(m):
        m.zero_grad()
        logits, h_n = m(x)
        loss = F.cross_entropy(logits.reshape(-1, 5), y.reshape(-1)) + h_n.pow(2).mean()
        loss.backward()
        return [loss.detach()] + [p.grad.clone() for p in m.parameters()]

    eager = step(model)
    compiled = torch.compile(model, fullgraph=True)   # fullgraph: a graph break would raise
    for a, b in zip(step(compiled), eager):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()


def test_custom_ops_pass_opcheck():
    g = torch.Generator().manual_seed(0)
    T, B, I, H = 4, 3, 2, 5
    x = torch.randn(T, B, I, generator=g, dtype=F64, requires_grad=True)
    h0 = torch.randn(B, H, generator=g, dtype=F64, requires_grad=True)
    w_ih = torch.randn(H, I, generator=g, dtype=F64, requires_grad=True)
    w_hh = (0.3 * torch.randn(H, H, generator=g, dtype=F64)).requires_grad_()
    b = [torch.randn(H, generator=g, dtype=F64, requires_grad=True) for _ in range(2)]
    for relu, reverse, lengths in ((False, False, None), (True, True, torch.tensor([4, 1, 2]))):
        args = (x, h0, w_ih, w_hh, *b, relu, reverse, lengths)
        torch.library.opcheck(torch.ops.elman.rnn_layer.default, args)
        out, h_T = _layer.compiled_layer(*args)
        ref_out, ref_h = _layer.torch_layer(*args)
        close(out, ref_out)
        close(h_T, ref_h)


def test_custom_ops_refuse_mismatched_shapes_and_dtypes():
    """torch.ops.elman.rnn_layer is callable by anyone: what does not fit raises before C."""
    x, h0 = torch.randn(4, 3, 2), torch.randn(3, 5)
    w_ih, w_hh, b = torch.randn(5, 2), torch.randn(5, 5), torch.randn(5)
    op = torch.ops.elman.rnn_layer
    bad = {"h0": (x, torch.randn(2, 5), w_ih, w_hh, b, b),
           "w_ih": (x, h0, torch.randn(5, 3), w_hh, b, b),
           "w_hh": (x, h0, w_ih, torch.randn(5, 4), b, b),
           "bias": (x, h0, w_ih, w_hh, torch.randn(4), b),
           "one_bias": (x, h0, w_ih, w_hh, b, None),
           "rank": (torch.randn(4, 2), h0, w_ih, w_hh, b, b)}
    for name, args in bad.items():
        with pytest.raises(RuntimeError, match="elman::rnn_layer"):
            op(*args, False, False, None)
    with pytest.raises(RuntimeError, match="lengths"):
        op(x, h0, w_ih, w_hh, b, b, False, False, torch.tensor([1, 2]))
    with pytest.raises((TypeError, ValueError)):   # the binding's dtype and value checks
        op(x.double(), h0, w_ih, w_hh, b, b, False, False, None)
    with pytest.raises(ValueError):
        op(x, h0, w_ih, w_hh, b, b, False, False, torch.tensor([1, 9, 2]))


def test_non_finite_values_propagate_as_in_torch():
    """A NaN in one sequence's hx stays in that sequence, forward and backward, and the
    other sequence's results are exact, as in torch.nn.RNN."""
    ref, mine = twins(num_layers=2)
    x, h0 = inputs(ref, B=2)
    h0 = h0.detach().clone()
    h0[0, 0, 1] = float("nan")   # sequence 0 only
    x = x.detach().clone().requires_grad_()
    (o1, n1), (o2, n2) = ref(x, h0), mine(x, h0)
    assert o2[:, 0].isnan().all() and not o2[:, 1].isnan().any()
    torch.testing.assert_close(o2, o1, equal_nan=True)
    torch.testing.assert_close(n2, n1, equal_nan=True)
    g = torch.linspace(-1, 1, o1.numel(), dtype=F64).reshape(o1.shape)
    g1, g2 = (torch.autograd.grad(o, x, g)[0] for o in (o1, o2))
    assert g2[:, 0].isnan().all() and not g2[:, 1].isnan().any()
    close(g2[:, 1], g1[:, 1])


@pytest.mark.parametrize("kw", CASES, ids=IDS)
def test_numpy_backend_runs_the_reference(kw):
    """ELMAN_BACKEND=numpy (elman.backend("numpy")) puts the module on elman's NumPy
    reference, forward and backward, with the same results."""
    import elman
    ref, mine = twins(**kw)
    x, h0 = inputs(ref)
    results = []
    for m, backend in ((ref, None), (mine, "numpy")):
        m.zero_grad()
        with elman.backend(backend or "c"):
            out, h_n = m(x, h0)
            grads = torch.autograd.grad(out.sin().sum() + h_n.sum(), [x, h0] +
                                        list(m.parameters()))
        results.append([out, h_n, *grads])
    for a, b in zip(*results):
        close(a, b)


@pytest.mark.parametrize("relu,reverse", [(False, False), (True, True)])
def test_custom_op_gradients_match_the_torch_ops_layer(relu, reverse):
    """Through torch.ops.elman.rnn_layer (the compiled path), every input's gradient, h0's
    included, equals torch_layer's, with lengths; upstream gradients are zero at padded
    steps, which are not outputs."""
    g = torch.Generator().manual_seed(7)
    T, B, I, H = 5, 3, 2, 4
    lengths = torch.tensor([5, 2, 3])
    ins = [torch.randn(T, B, I, generator=g, dtype=F64), torch.randn(B, H, generator=g,
                                                                     dtype=F64),
           torch.randn(H, I, generator=g, dtype=F64), 0.4 * torch.randn(H, H, generator=g,
                                                                        dtype=F64),
           torch.randn(H, generator=g, dtype=F64), torch.randn(H, generator=g, dtype=F64)]
    ins = [t.requires_grad_() for t in ins]
    valid = (torch.arange(T).unsqueeze(1) < lengths).unsqueeze(2).to(F64)
    d_out = torch.randn(T, B, H, generator=g, dtype=F64) * valid
    d_hT = torch.randn(B, H, generator=g, dtype=F64)
    grads = []
    for layer in (_layer.compiled_layer, _layer.torch_layer, _layer.CLayer.apply):
        out, h_T = layer(*ins, relu, reverse, lengths)
        grads.append(torch.autograd.grad((out, h_T), ins, (d_out, d_hT)))
    for got in grads[::2]:
        for a, b in zip(got, grads[1]):
            close(a, b)


def test_custom_backward_op_refuses_mismatched_shapes():
    T, B, I, H = 4, 2, 3, 5
    args = dict(d_hs=torch.zeros(T + 1, B, H), d_hT=torch.zeros(B, H),
                hs=torch.zeros(T + 1, B, H), x=torch.zeros(T, B, I), w_ih=torch.zeros(H, I),
                w_hh=torch.zeros(H, H))
    op = torch.ops.elman.rnn_layer_backward
    for name, bad in (("w_hh", torch.zeros(2, 8)), ("hs", torch.zeros(T, B, H)),
                      ("d_hs", torch.zeros(T, B, H)), ("d_hT", torch.zeros(B + 1, H)),
                      ("x", torch.zeros(T, B, I + 1))):
        kw = dict(args, **{name: bad})
        with pytest.raises(RuntimeError, match="elman::rnn_layer_backward"):
            op(*kw.values(), False, False, None, True)
    with pytest.raises(RuntimeError, match="lengths"):
        op(*args.values(), False, False, torch.zeros(0, dtype=torch.int64), True)


def test_meta_and_cpu_tensors_together_are_refused():
    """A meta module called on CPU input (to_empty forgotten) raises, in eager mode and
    through the custom op, instead of returning uninitialized memory."""
    m = et.ElmanRNN(4, 5, device="meta")
    with pytest.raises(RuntimeError, match="to_empty"):
        m(torch.randn(3, 2, 4))
    x, h0, w = torch.randn(3, 2, 4), torch.randn(2, 5), torch.randn(5, 4)
    with pytest.raises(RuntimeError, match="one device"):
        torch.ops.elman.rnn_layer(x, h0, w, torch.randn(5, 5), None, None, False, False,
                                  torch.tensor([3, 3], device="meta"))


def test_outputs_may_be_modified_in_place_as_in_torch():
    ref, mine = twins()
    x, h0 = inputs(ref)
    for m in (ref, mine):
        out, h_n = m(x, h0)
        out.add_(1)                      # allowed, as with torch.nn.RNN
        h_n.mul_(2)
    out, h_n = mine(x, h0)
    expected = ref(x, h0)[0].detach()
    with torch.no_grad():
        out[:, 0] = 0                    # and without autograd, the values are the user's
    assert torch.equal(out[:, 0], torch.zeros_like(out[:, 0]))
    close(out[:, 1:], expected[:, 1:])
    with pytest.raises(RuntimeError, match="inplace"):
        out.sum().backward()             # never silently from changed states


def test_forward_over_reverse_matches_torch():
    """A jvp of a backward (Hessian-vector products the forward-over-reverse way) after a
    plain forward: the backward runs in torch ops, so the tangent comes out as torch's."""
    import torch.autograd.forward_ad as fwAD
    ref, mine = twins(num_layers=2)
    x, h0 = inputs(ref)
    results = []
    for m in (ref, mine):
        out, _ = m(x, h0)
        v = torch.randn(out.shape, generator=torch.Generator().manual_seed(8), dtype=F64)
        with fwAD.dual_level():
            dual = fwAD.make_dual(torch.ones_like(out), v)
            g = torch.autograd.grad(out, x, dual, retain_graph=True)[0]
            tangent = fwAD.unpack_dual(g).tangent
        assert tangent is not None
        results.append(tangent)
    close(results[1], results[0])


# ---- 8. DistributedDataParallel -----------------------------------------------------------

def test_ddp_two_processes_equal_one_process_on_the_whole_batch(tmp_path):
    """examples/torch_ddp.py under torchrun (gloo, 2 processes, the README's recipe) ends
    with the parameters one process reaches on the whole batch, in float64."""
    pytest.importorskip("torch.distributed")
    if not torch.distributed.is_gloo_available():
        pytest.skip("this torch build has no gloo backend")
    script = str(ROOT / "examples" / "torch_ddp.py")
    small = ["--steps", "4", "--batch", "4", "--seq", "8", "--hidden", "16", "--layers", "2",
             "--dtype", "float64"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", script, *small, "--out",
                          str(tmp_path / "two.pt")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert two.returncode == 0, two.stdout + two.stderr
    assert "2 process(es)" in two.stdout
    one = subprocess.run([sys.executable, script, *small, "--out", str(tmp_path / "one.pt")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stdout + one.stderr
    a, b = torch.load(tmp_path / "two.pt"), torch.load(tmp_path / "one.pt")
    assert a.keys() == b.keys()
    start = initial_params(a)
    for k in a:
        close(a[k], b[k], rtol=1e-12, atol=1e-14)
        assert not torch.equal(a[k], start[k]), f"{k} did not train"


def initial_params(trained):
    """The example's initial parameters (seed 0), to see that training moved them."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import torch_ddp
    finally:
        sys.path.pop(0)
    V = trained["head.weight"].shape[0]
    H = trained["rnn.weight_hh_l0"].shape[0]
    torch.manual_seed(0)
    return torch_ddp.CharModel(V, H, 2, F64).state_dict()
