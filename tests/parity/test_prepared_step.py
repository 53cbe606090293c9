"""elman.TrainStep: train_step prepared for one shape. Every call, on the prepared path or
handed to train_step, gives what train_step gives, bit for bit, and raises what it raises."""
import pickle
import threading

import numpy as np
import pytest

import elman


def pair(opt="adagrad", dtype="float32", **kw):
    """Two identical (model, optimizer) pairs."""
    m = elman.ElmanRNN(kw.pop("I", 11), kw.pop("H", 9), kw.pop("O", 11), dtype=dtype, seed=2,
                       **kw)
    twin = pickle.loads(pickle.dumps(m))

    def make(model):
        if opt == "sgd":
            return elman.SGD(model, lr=0.05, momentum=0.9, max_grad_norm=1.0)
        return elman.Adagrad(model, lr=0.05, max_grad_norm=1.0, lr_decay=0.01)
    return (m, make(m)), (twin, make(twin))


def batches(n, T, B, I, O, *, ids=True, xent=True, last=False, dtype="float32", seed=0):
    r = np.random.default_rng(seed)
    for _ in range(n):
        x = r.integers(0, I, (T, B)) if ids else r.standard_normal((T, B, I)).astype(dtype)
        if xent:
            y = r.integers(0, O, (B,) if last else (T, B))
        else:
            y = r.standard_normal((B, O) if last else (T, B, O)).astype(dtype)
        yield x, y


@pytest.mark.parametrize("case", [
    dict(),
    dict(opt="sgd"),
    dict(dtype="float64"),
    dict(ids=False, xent=False, I=4, O=3),
    dict(last=True),
    dict(ids=False, xent=False, last=True, reduction="sum", I=4, O=3),
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=3, dropout=0.3),
    dict(nonlinearity="relu", opt="sgd"),
])
def test_matches_train_step_bit_for_bit_over_a_stateful_run(case):
    case = dict(case)
    opt_kind, dtype = case.pop("opt", "adagrad"), case.pop("dtype", "float32")
    ids, xent, last = case.pop("ids", True), case.pop("xent", True), case.pop("last", False)
    reduction = case.pop("reduction", "mean")
    I, O = case.get("I", 11), case.get("O", 11)
    (m, opt), (m2, opt2) = pair(opt_kind, dtype, **case)
    loss = "cross_entropy" if xent else "mse"
    T, B = 6, 5
    step = elman.TrainStep(m, opt, T, B, loss=loss, reduction=reduction, last_step_only=last)
    step._general = lambda *a: pytest.fail("took train_step's way, not the prepared one")
    h = h2 = None
    for k, (x, y) in enumerate(batches(12, T, B, I, O, ids=ids, xent=xent, last=last,
                                       dtype=dtype)):
        if k == 6:
            opt.lr = opt2.lr = 0.02        # a schedule's change is seen at the next call
        a, h = step(x, y, h)
        b, h2 = elman.train_step(m2, opt2, x, y, h2, loss=loss, reduction=reduction,
                                 last_step_only=last)
        assert a == b
        np.testing.assert_array_equal(h, h2)
    np.testing.assert_array_equal(m.params, m2.params)
    assert opt.steps == opt2.steps == 12
    assert opt.last_grad_norm == opt2.last_grad_norm


def test_h_out_is_written_and_may_be_h0():
    (m, opt), (m2, opt2) = pair()
    step = elman.TrainStep(m, opt, 4, 3)
    h = np.zeros((1, 3, 9), np.float32)
    h2 = None
    for x, y in batches(5, 4, 3, 11, 11):
        _, out = step(x, y, h, h_out=h)
        assert out is h
        _, h2 = elman.train_step(m2, opt2, x, y, h2)
        np.testing.assert_array_equal(h, h2)


@pytest.mark.parametrize("form", ["int32 ids", "list", "strided", "(B, H) state",
                                  "other T", "numpy backend", "read-only h_out"])
def test_other_inputs_go_through_train_step_with_the_same_result(form):
    (m, opt), (m2, opt2) = pair()
    step = elman.TrainStep(m, opt, 4, 3)
    handed = []
    general = step._general
    step._general = lambda *a: handed.append(1) or general(*a)
    (x, y), = batches(1, 4, 3, 11, 11)
    h0 = np.random.default_rng(1).standard_normal((1, 3, 9)).astype(np.float32)
    kw = {}
    args = (x, y, h0)
    if form == "int32 ids":
        args = (x.astype(np.int32), y.astype(np.int32), h0)
    elif form == "list":
        args = (x.tolist(), y.tolist(), h0)
    elif form == "strided":
        args = (np.asfortranarray(x), y, h0)
    elif form == "(B, H) state":
        args = (x, y, h0[0])
    elif form == "other T":
        args = (x[:3], y[:3], h0)
    elif form == "read-only h_out":
        ro = np.zeros((1, 3, 9), np.float32)
        ro.flags.writeable = False
        kw = dict(h_out=ro)
    if form == "numpy backend":
        with elman.backend("numpy"):
            a = step(*args)
            b = elman.train_step(m2, opt2, *args)
    elif form == "read-only h_out":
        with pytest.raises(ValueError, match="h_out"):
            step(*args, **kw)
        with pytest.raises(ValueError, match="h_out"):
            elman.train_step(m2, opt2, *args, **kw)
        return
    else:
        a = step(*args)
        b = elman.train_step(m2, opt2, *args)
    assert handed == [1]
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(m.params, m2.params)


@pytest.mark.parametrize("bad", ["id", "target"])
def test_an_id_out_of_range_raises_train_steps_error_and_updates_nothing(bad):
    (m, opt), _ = pair()
    step = elman.TrainStep(m, opt, 4, 3)
    (x, y), = batches(1, 4, 3, 11, 11)
    (x if bad == "id" else y)[2, 1] = 11
    before = m.params.copy()
    with pytest.raises(ValueError, match="^TrainStep: .*holds 11 at index \\(2, 1\\)"):
        step(x, y)
    np.testing.assert_array_equal(m.params, before)
    assert opt.steps == 0


def test_a_non_finite_loss_raises_and_updates_nothing():
    (m, opt), _ = pair()
    step = elman.TrainStep(m, opt, 4, 3)
    (x, y), = batches(1, 4, 3, 11, 11)
    m.named_params()["b_y"][0] = np.nan
    before = m.params.copy()
    with pytest.raises(elman.NonFiniteError, match="TrainStep: the loss is not finite"):
        step(x, y)
    np.testing.assert_array_equal(m.params, before)
    assert opt.steps == 0


def test_construction_errors():
    (m, opt), (m2, _) = pair()
    with pytest.raises(TypeError, match="TrainStep: model must be an elman.ElmanRNN"):
        elman.TrainStep("model", opt, 4, 3)
    with pytest.raises(TypeError, match="TrainStep: opt must be"):
        elman.TrainStep(m, object(), 4, 3)
    with pytest.raises(ValueError, match="does not update this model"):
        elman.TrainStep(m2, opt, 4, 3)
    with pytest.raises(ValueError, match="sparse_rows"):
        elman.TrainStep(m, elman.Adagrad(m, sparse_rows=True), 4, 3)
    with pytest.raises(ValueError, match="lr_scales"):
        elman.TrainStep(m, elman.Adagrad(m, lr_scales={"W_hh": 0.5}), 4, 3)
    for T, B, err in ((0, 3, ValueError), (4, 2.5, TypeError)):
        with pytest.raises(err, match="TrainStep: (T|B)"):
            elman.TrainStep(m, opt, T, B)
    with pytest.raises(ValueError, match="TrainStep: loss"):
        elman.TrainStep(m, opt, 4, 3, loss="hinge")


def test_a_second_thread_is_refused():
    (m, opt), _ = pair(H=64)
    step = elman.TrainStep(m, opt, 200, 8)
    (x, y), = batches(1, 200, 8, 11, 11)
    errors, started = [], threading.Event()

    def train(signal=None):
        if signal is not None:
            signal.set()
        try:
            for _ in range(50):
                step(x, y)
        except RuntimeError as e:
            errors.append(str(e))

    t = threading.Thread(target=train, args=(started,))
    t.start()
    started.wait()
    train()
    t.join()
    assert errors and all("in use by another thread" in e for e in errors)


@pytest.mark.parametrize("args, err, arg", [
    (dict(x=np.zeros((4, 3, 11), np.complex64)), TypeError, "x"),
    (dict(x=np.zeros((4, 3, 5), np.float32)), ValueError, "x"),
    (dict(y=np.zeros((4, 3), np.float32)), TypeError, "y"),
    (dict(y=np.zeros((4, 2), np.int64)), ValueError, "y"),
    (dict(h0=np.zeros((2, 3, 9), np.float32)), ValueError, "h0"),
    (dict(h0=np.full((1, 3, 9), np.nan, np.float32)), elman.NonFiniteError, "h0"),
    (dict(h0=np.zeros((1, 3, 9), np.int64)), TypeError, "h0"),
    (dict(h_out=np.zeros((1, 3, 8), np.float32)), ValueError, "h_out"),
    (dict(x="abc"), TypeError, "x"),
])
def test_bad_input_is_refused_naming_the_argument_and_trainstep(args, err, arg):
    (m, opt), _ = pair()
    step = elman.TrainStep(m, opt, 4, 3)
    (x, y), = batches(1, 4, 3, 11, 11)
    call = {**dict(x=x, y=y, h0=None, h_out=None), **args}
    kw = dict(h_out=call.pop("h_out"))
    before = m.params.copy()
    with pytest.raises(err, match=f"^TrainStep: .*\\b{arg}\\b"):
        step(call["x"], call["y"], call["h0"], **kw)
    np.testing.assert_array_equal(m.params, before)


@pytest.mark.parametrize("opt_kind", ["adagrad", "sgd"])
def test_c_seconds_runs_n_steps_in_one_call(opt_kind):
    """The benchmark hook: n steps of the C work on one batch, as n train_steps from zero
    states would run them (bit for bit), the step count advanced."""
    (m, opt), (m2, opt2) = pair(opt_kind)
    step = elman.TrainStep(m, opt, 4, 3)
    (x, y), = batches(1, 4, 3, 11, 11)
    seconds = step.c_seconds(x, y, n=5)
    assert 0 < seconds < 1
    for _ in range(5):
        elman.train_step(m2, opt2, x, y)
    np.testing.assert_array_equal(m.params, m2.params)
    assert opt.steps == opt2.steps == 5
    with pytest.raises(ValueError, match="c_seconds: x and y"):
        step.c_seconds(x.astype(np.int32), y)
    with pytest.raises(ValueError, match="n must be"):
        step.c_seconds(x, y, n=0)
