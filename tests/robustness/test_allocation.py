"""A training step allocates nothing once its shapes are known.

Python side: 100 steps of forward_backward (with h_out) + Adagrad.step under tracemalloc,
which sees NumPy's array buffers as well as Python objects: the peak over the 100 steps may
exceed the starting point by a few small Python objects (the loss float), never by an
array of the step. The model's workspace counter stays put. C side: the kernels have no
heap allocation at all (checked in the sources)."""
import pathlib
import re
import tracemalloc

import numpy as np
import pytest

import elman

CSRC = pathlib.Path(__file__).resolve().parents[2] / "csrc"
# Every array a step could allocate below is at least 16 KiB (ids, targets, h_T, hs, ...);
# one step's own Python temporaries (views, the loss float, ...) come to about 3 KiB.
SMALL_OBJECTS = 8192


def run_steps(m, opt, x, y, h, n, **kw):
    for _ in range(n):
        _, h = m.forward_backward(x, y, h, h_out=h, **kw)
        opt.step()
    return h


@pytest.fixture(scope="module")
def warm_free_lists():
    """CPython keeps up to 2000 freed tuples of each small size for reuse, and tracemalloc
    counts them while those lists fill: fill them first with a tiny model's steps."""
    m = elman.ElmanRNN(3, 2, 3)
    opt = elman.Adagrad(m)
    x = np.zeros((2, 1), np.int64)
    h = np.zeros((1, 1, 2), np.float32)
    for kw in ({}, dict(last_step_only=True)):
        y = x[-1] if kw else x
        run_steps(m, opt, x, y, h, 2100, **kw)
    m = elman.ElmanRNN(3, 2, 3, num_layers=2, bidirectional=True, dropout=0.5)
    opt = elman.Adagrad(m)
    run_steps(m, opt, x, x, m.init_hidden(1), 2100, lengths=np.array([1]))


def test_hundred_prepared_train_steps_allocate_no_array(warm_free_lists):
    rng = np.random.default_rng(1)
    T, B, H = 64, 32, 128
    m = elman.ElmanRNN(40, H, 40)
    opt = elman.Adagrad(m, lr=0.01, max_grad_norm=1.0)
    step = elman.TrainStep(m, opt, T, B)
    x, y = rng.integers(0, 40, (T, B)), rng.integers(0, 40, (T, B))
    h = np.zeros((1, B, H), np.float32)
    tiny = elman.TrainStep(m, opt, 1, 1)   # the same path at a tiny shape, for speed
    x1, y1, h1 = x[:1, :1].copy(), y[:1, :1].copy(), h[:, :1].copy()
    for _ in range(2100):  # as above: this call's tuple sizes into CPython's free lists
        tiny(x1, y1, h1, h_out=h1)
    for _ in range(2):
        step(x, y, h, h_out=h)
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(100):
            _, h = step(x, y, h, h_out=h)
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert m.workspace_allocations == 0    # the step's workspace is its own
    assert peak - start < SMALL_OBJECTS and end - start < SMALL_OBJECTS, (peak - start)


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("case", ["ids", "dense-last-step", "mse", "stack-lengths"])
def test_hundred_steps_allocate_no_array(case, dtype, warm_free_lists):
    rng = np.random.default_rng(0)
    # "bfloat16": a float32 model whose products run in bfloat16 (their packed operands
    # live in the same workspace)
    dtype, compute = ("float32", "bfloat16") if dtype == "bfloat16" else (dtype, None)
    if case == "ids":
        T, B, H = 64, 32, 128
        m = elman.ElmanRNN(40, H, 40, dtype=dtype)
        x, y, kw = rng.integers(0, 40, (T, B)), rng.integers(0, 40, (T, B)), {}
    elif case == "dense-last-step":
        T, B, H = 4, 2048, 8
        m = elman.ElmanRNN(10, H, 3, dtype=dtype)
        x = rng.standard_normal((T, B, 10)).astype(dtype)
        y, kw = rng.integers(0, 3, B), dict(last_step_only=True)
    elif case == "mse":
        T, B, H = 8, 512, 16
        m = elman.ElmanRNN(10, H, 4, dtype=dtype)
        x = rng.standard_normal((T, B, 10)).astype(dtype)
        y, kw = rng.standard_normal((T, B, 4)).astype(dtype), dict(loss="mse")
    else:  # two bidirectional layers with dropout, on a padded batch
        T, B, H = 64, 32, 32
        m = elman.ElmanRNN(40, H, 40, num_layers=2, bidirectional=True, dropout=0.2,
                           dtype=dtype)
        x, y = rng.integers(0, 40, (T, B)), rng.integers(0, 40, (T, B))
        kw = dict(lengths=rng.integers(1, T + 1, B))
    m.compute_dtype = compute
    opt = elman.Adagrad(m, lr=0.01, max_grad_norm=1.0)
    h = m.init_hidden(B)
    h = run_steps(m, opt, x, y, h, 2, **kw)  # shapes become known
    made = m.workspace_allocations
    tracemalloc.start()  # no gc.collect() here: a full collection empties the free lists
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        run_steps(m, opt, x, y, h, 100, **kw)
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert m.workspace_allocations == made
    assert peak - start < SMALL_OBJECTS, (peak - start)
    assert end - start < SMALL_OBJECTS, (end - start)


def test_a_new_shape_makes_a_new_workspace_and_only_then():
    m = elman.ElmanRNN(5, 4, 5)
    x = np.zeros((3, 2), np.int64)
    m.forward_backward(x, x)
    made = m.workspace_allocations
    m.forward_backward(x, x)
    assert m.workspace_allocations == made
    m.forward_backward(np.zeros((4, 2), np.int64), np.zeros((4, 2), np.int64))
    assert m.workspace_allocations > made


def test_without_h_out_the_state_is_a_new_array():
    m = elman.ElmanRNN(5, 4, 5)
    x = np.zeros((3, 2), np.int64)
    _, h1 = m.forward_backward(x, x)
    _, h2 = m.forward_backward(x, x, h1)
    assert h1 is not h2 and not np.shares_memory(h1, h2)


@pytest.mark.parametrize("shape", [(1, 2, 4), (2, 4)])
def test_h_out_receives_the_state_and_may_be_h0(shape):
    m = elman.ElmanRNN(5, 4, 5, seed=1)
    x = np.array([[1, 2], [3, 4], [0, 1]])
    h0 = np.full(shape, 0.1, np.float32)
    loss_ref, h_ref = m.forward_backward(x, x, h0.copy())
    buf = h0.copy()
    loss, h = m.forward_backward(x, x, buf, h_out=buf)
    assert h is buf and loss == loss_ref
    np.testing.assert_array_equal(buf.reshape(1, 2, 4), h_ref)


@pytest.mark.parametrize("bad, err", [
    (np.zeros((2, 4), np.float64), TypeError),       # dtype
    (np.zeros((3, 4), np.float32), ValueError),      # shape
    (np.zeros((2, 4), np.float32)[:, ::2], ValueError),
])
def test_h_out_is_checked(bad, err):
    m = elman.ElmanRNN(5, 4, 5)
    x = np.zeros((3, 2), np.int64)
    with pytest.raises(err):
        m.forward_backward(x, x, h_out=bad)
    ro = np.zeros((2, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        m.forward_backward(x, x, h_out=ro)
    with pytest.raises(ValueError, match="share memory"):
        m.forward_backward(x, x, h_out=m.grads[:8].reshape(2, 4))


def test_c_kernels_never_touch_the_heap():
    calls = re.compile(r"\b(malloc|calloc|realloc|free|aligned_alloc|posix_memalign)\s*\(")
    sources = sorted(CSRC.glob("*.[chi]*"))
    assert sources
    for path in sources:
        text = re.sub(r"/\*.*?\*/", "", path.read_text(encoding="utf-8"), flags=re.S)
        assert not calls.search(text), f"{path.name} allocates: {calls.search(text).group()}"


def test_hundred_fused_train_steps_allocate_no_array(warm_free_lists):
    rng = np.random.default_rng(1)
    T, B, H = 64, 32, 128
    m = elman.ElmanRNN(40, H, 40)
    opt = elman.Adagrad(m, lr=0.01, max_grad_norm=1.0)
    x, y = rng.integers(0, 40, (T, B)), rng.integers(0, 40, (T, B))
    h = np.zeros((1, B, H), np.float32)
    for _ in range(2100):  # this call's tuple sizes into CPython's free lists (see above)
        elman.train_step(m, opt, x[:1, :1], y[:1, :1])
    for _ in range(2):
        _, h = elman.train_step(m, opt, x, y, h, h_out=h)
    made = m.workspace_allocations
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(100):
            _, h = elman.train_step(m, opt, x, y, h, h_out=h)
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert m.workspace_allocations == made
    assert peak - start < SMALL_OBJECTS and end - start < SMALL_OBJECTS, (peak - start)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gauss_newton_products_allocate_no_array(dtype, warm_free_lists):
    """Conjugate gradient's inner loop: once the operator has run its forward, a product
    into ``out`` allocates nothing (its workspace is made once)."""
    rng = np.random.default_rng(1)
    T, B = 32, 64
    m = elman.ElmanRNN(2, 64, 1, num_layers=2, dtype=dtype)
    x = rng.standard_normal((T, B, 2)).astype(dtype)
    G = m.gauss_newton(x, loss="mse", last_step_only=True, lengths=rng.integers(1, T + 1, B))
    v = rng.standard_normal(m.num_params).astype(dtype)
    out = np.empty_like(v)
    for _ in range(2):
        G.matvec(v, damping=0.5, structural_damping=0.1, out=out)
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(50):
            G.matvec(v, damping=0.5, structural_damping=0.1, out=out)
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert G.forwards == 1
    assert peak - start < SMALL_OBJECTS, (peak - start)
    assert end - start < SMALL_OBJECTS, (end - start)
