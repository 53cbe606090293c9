"""Kernel paths, threads and the float32 math of the vectorized loops.

The hypothesis parity tests (test_parity.py) run every path on small shapes; these tests
reach what small shapes do not: the OpenMP-threaded loops (n >= the threading threshold),
the per-step BLAS products of large batches, the accuracy of the float32 tanh and exp over
their whole range, and the selection of a path (elman.cpu_path, ELMAN_CPU)."""
import subprocess
import sys

import numpy as np
import pytest

import elman
from elman import kernels
from elman.bench import probes
from tolerances import assert_close

PATHS = elman.cpu_paths()
OMP_N = 131_075  # above ELMAN_PAR_MIN_ELEMENTS (csrc/tuning.h), and not a multiple of any vector width


@pytest.fixture(params=PATHS)
def path(request):
    with elman.cpu_path(request.param):
        yield request.param


def test_paths_listed_and_switchable():
    assert PATHS[0] == "generic"
    assert elman.cpu_path() in PATHS
    before = elman.cpu_path()
    with elman.cpu_path("generic") as name:
        assert name == "generic" == elman.cpu_path()
    assert elman.cpu_path() == before
    assert "generic" in elman.config()["kernel_paths"]


@pytest.mark.parametrize("bad", ["sse9", "", "avx512 "])
def test_unknown_path_raises(bad):
    before = elman.cpu_path()
    if bad.strip() == "avx512" and "avx512" in PATHS:
        elman.cpu_path(bad).__exit__()  # whitespace and case are forgiven
        return
    with pytest.raises(ValueError, match="kernel path"):
        elman.cpu_path(bad)
    assert elman.cpu_path() == before


def test_cpu_path_rejects_non_strings():
    with pytest.raises(TypeError):
        elman.cpu_path(3)


@pytest.mark.parametrize("value, expect", [("generic", "generic"), ("auto", None)])
def test_ELMAN_CPU_sets_the_path_at_import(value, expect):
    out = subprocess.run([sys.executable, "-c", "import elman; print(elman.cpu_path())"],
                         env={**_env(), "ELMAN_CPU": value}, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == (expect or PATHS[-1])


def test_ELMAN_CPU_unknown_warns_and_uses_the_best():
    out = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c",
                          "import elman"], env={**_env(), "ELMAN_CPU": "bogus"},
                         capture_output=True, text=True)
    assert out.returncode != 0 and "ELMAN_CPU='bogus' ignored" in out.stderr
    out = subprocess.run([sys.executable, "-c", "import elman; print(elman.cpu_path())"],
                         env={**_env(), "ELMAN_CPU": "bogus"}, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == PATHS[-1]


def _env():
    import os
    return {k: v for k, v in os.environ.items() if k != "ELMAN_CPU"}


# ---- float32 tanh and exp against float64 NumPy ------------------------------------------

def _grid():
    """Every float32 exponent, both signs, dense near 0 and in the switch-over regions."""
    rng = np.random.default_rng(0)
    mags = np.exp(rng.uniform(np.log(1e-30), np.log(100.0), 200_000))
    x = np.concatenate([mags, -mags, np.linspace(-10, 10, 100_001),
                        np.linspace(0.49, 0.51, 10_001), [0.0, -0.0, 9.0, 10.0, 50.0, 1e30]])
    return x.astype(np.float32)


def test_tanh_float32_max_error(path):
    x = _grid()
    y = kernels.activation(x, "tanh")
    exact = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    err = np.abs(y.astype(np.float64) - exact) / ulp
    assert err.max() <= 8, (path, float(err.max()), x[err.argmax()])
    assert np.abs(y).max() <= 1
    assert np.array_equal(np.signbit(y[x == 0]), np.signbit(x[x == 0]))


def test_tanh_float32_special_values(path):
    x = np.array([np.nan, np.inf, -np.inf, 1e38, -1e38, 0.0, -0.0], np.float32)
    y = kernels.activation(x, "tanh")
    assert np.isnan(y[0])
    assert list(y[1:5]) == [1, -1, 1, -1]
    assert y[5] == 0 and y[6] == 0 and np.signbit(y[6])


def test_softmax_float32_exp_accuracy(path):
    """The exp inside softmax cross-entropy, over logits spanning float32's exp range."""
    rng = np.random.default_rng(1)
    z = rng.uniform(-100, 100, (400, 50)).astype(np.float32)
    t = rng.integers(0, 50, 400)
    loss, d = kernels.softmax_cross_entropy(z, t, reduction="sum")
    z64 = z.astype(np.float64)
    # the exp's argument as float32 computes it: z - max(z), rounded to float32
    shifted = (z - z.max(1, keepdims=True)).astype(np.float64)
    p = np.exp(shifted)
    p /= p.sum(1, keepdims=True)
    exact = p.copy()
    rows = np.arange(400)
    exact[rows, t] -= 1
    # probabilities: relative error, down to float32's smallest normal number
    other = np.ones(d.shape, bool)
    other[rows, t] = False
    normal = other & (exact > np.finfo(np.float32).tiny)
    np.testing.assert_allclose(d[normal], exact[normal], rtol=2e-6)
    assert np.all(np.abs(d[other & ~normal]) <= 2 * np.finfo(np.float32).tiny)
    # p - 1 at the targets: float32's rounding of a number near 1
    np.testing.assert_allclose(d[rows, t], exact[rows, t], rtol=2e-6, atol=1.2e-7)
    lse = np.log(np.exp(z64 - z64.max(1, keepdims=True)).sum(1)) + z64.max(1)
    assert loss == pytest.approx(float((lse - z64[np.arange(400), t]).sum()), rel=1e-6)


# ---- the threaded loops and the BLAS path of the recurrence --------------------------------

@pytest.mark.parametrize("threads", [1, 2])
def test_threaded_optimizer_loops_match_the_reference(path, dtype, threads):
    rng = np.random.default_rng(2)
    p0, g = rng.standard_normal((2, OMP_N)).astype(dtype)
    g[OMP_N - 1] = 0.5
    before = elman.get_num_threads()
    elman.set_num_threads(threads)
    try:
        for wd in (0.0, 0.01):
            # (the update, its state's start: Adagrad's accumulator, SGD's momentum buffer)
            for update, start, kw in [(kernels.adagrad_update, 0.1, dict(step=2)),
                                      (kernels.sgd_update, 0.0, dict(momentum=0.9))]:
                pc, sc = p0.copy(), np.full(OMP_N, start, dtype)
                pn, sn = p0.copy(), sc.copy()
                update(pc, g, sc, lr=0.1, weight_decay=wd, **kw)
                with elman.backend("numpy"):
                    update(pn, g, sn, lr=0.1, weight_decay=wd, **kw)
                assert_close(pc, pn, dtype)
                assert_close(sc, sn, dtype)
        assert kernels.sum_squares(g) == pytest.approx(float(np.sum(g.astype(np.float64) ** 2)),
                                                       rel=1e-12)
        a = (3 * rng.standard_normal(OMP_N)).astype(dtype)
        assert_close(kernels.activation(a), np.tanh(a), dtype)
    finally:
        elman.set_num_threads(before)


def test_threaded_adagrad_reports_nan_in_any_thread(dtype):
    p = np.ones(OMP_N, dtype)
    g = np.ones(OMP_N, dtype)
    g[OMP_N - 3] = np.nan  # in the last thread's range
    with pytest.raises(elman.NonFiniteError):
        kernels.adagrad_update(p, g, np.zeros(OMP_N, dtype), lr=0.1, step=1)


def test_set_num_threads_checks_its_argument():
    with pytest.raises(ValueError):
        elman.set_num_threads(0)
    with pytest.raises(TypeError):
        elman.set_num_threads(1.5)
    assert elman.get_num_threads() >= 1


@pytest.mark.parametrize("B, H", [(1, 37), (2, 70), (64, 70), (40, 100)])
def test_recurrence_small_kernel_and_blas_paths(path, dtype, B, H):
    """(1, 37), (2, 70): the hand-written per-step product; (64, 70), (40, 100): B*H*H
    above the small-product threshold, so the per-step products go to the BLAS."""
    rng = np.random.default_rng(3)
    T, I = 5, 9
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    W_xh, W_hh = ((0.3 * rng.standard_normal(s)).astype(dtype) for s in ((I, H), (H, H)))
    b_h = rng.standard_normal(H).astype(dtype)
    hs = kernels.rnn_forward(x, h0, W_xh, W_hh, b_h)
    with elman.backend("numpy"):
        hn = kernels.rnn_forward(x, h0, W_xh, W_hh, b_h)
    assert_close(hs, hn, dtype)
    dH = rng.standard_normal((T, B, H)).astype(dtype)
    gc = kernels.rnn_backward(dH, hn, x, W_xh, W_hh, need_dx=True)
    with elman.backend("numpy"):
        gn = kernels.rnn_backward(dH, hn, x, W_xh, W_hh, need_dx=True)
    for name in ("W_xh", "W_hh", "b_h", "h0", "x", "A"):
        assert_close(getattr(gc, name), getattr(gn, name), dtype, err_msg=name)


def test_stream_probe_does_the_traffic_it_claims(dtype):
    rng = np.random.default_rng(4)
    p, s, g = rng.standard_normal((3, OMP_N)).astype(dtype)
    pc, sc = p.copy(), s.copy()
    probes.stream_probe(pc, sc, g)
    np.testing.assert_array_equal(pc, p - g)
    np.testing.assert_array_equal(sc, s + g)
    with pytest.raises(ValueError, match="share memory"):
        probes.stream_probe(pc, pc, g)


@pytest.mark.parametrize("threads", [1, 2])
def test_threaded_gemm_slices_match_the_reference(dtype, threads):
    """Products above the GEMM threading threshold are cut into row slices, one BLAS call
    per thread: every transpose case (forward, dW = X^T dY, dX = dY W^T)."""
    rng = np.random.default_rng(5)
    N, K, O = 300, 130, 120  # 4.7M multiply-adds, rows not a multiple of the thread count
    X, W, dY = (rng.standard_normal(s).astype(dtype) for s in ((N, K), (K, O), (N, O)))
    b = rng.standard_normal(O).astype(dtype)
    before = elman.get_num_threads()
    elman.set_num_threads(threads)
    try:
        Y = kernels.linear_forward(X, W, b)
        dW, db, dX = kernels.linear_backward(dY, X, W)
    finally:
        elman.set_num_threads(before)
    assert_close(Y, X @ W + b, dtype)
    assert_close(dW, X.T @ dY, dtype)
    assert_close(db, dY.sum(0), dtype)
    assert_close(dX, dY @ W.T, dtype)


@pytest.mark.parametrize("threads", [1, 2])
def test_threaded_recurrence_matches_the_reference(path, threads):
    """B * H * H above the threshold at which the per-step product shares its rows among
    threads (B = 18: row blocks of 4 do not divide it)."""
    m = elman.ElmanRNN(20, 250, 20, seed=1, dtype="float64")
    x = np.random.default_rng(6).integers(0, 20, (4, 18))
    before = elman.get_num_threads()
    elman.set_num_threads(threads)
    try:
        loss_c, h_c = m.forward_backward(x[:-1], x[1:])
        g_c = m.grads.copy()
    finally:
        elman.set_num_threads(before)
    with elman.backend("numpy"):
        loss_n, h_n = m.forward_backward(x[:-1], x[1:])
    assert loss_c == pytest.approx(loss_n, rel=1e-12)
    assert_close(h_c, h_n, np.float64)
    assert_close(g_c, m.grads, np.float64)


def test_blas_threads_are_restored_after_a_model_call():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from elman import _threads
    ctrls = [c for c in threadpoolctl.ThreadpoolController().select(user_api="blas")
             .lib_controllers if "scipy" in c.filepath and "numpy" not in c.filepath]
    if not ctrls or not _threads._blas_controls():
        pytest.skip("no OpenBLAS of SciPy's that elman can hold to one thread")
    m = elman.ElmanRNN(7, 9, 7)
    x = np.zeros((3, 2), np.int64)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        want = [c.get_num_threads() for c in ctrls]
        seen = []
        real = elman._core.model_forward_backward

        def spy(*a):
            seen.append([c.get_num_threads() for c in ctrls])
            return real(*a)
        try:
            elman._core.model_forward_backward = spy
            m.forward_backward(x, x)
        finally:
            elman._core.model_forward_backward = real
        assert seen == [[1] * len(ctrls)] or want == [1] * len(ctrls)
        assert [c.get_num_threads() for c in ctrls] == want


@pytest.mark.parametrize("n", [1, 15, 16, 17, 1000])
def test_all_finite_finds_every_position(path, dtype, n):
    from elman import _core
    x = np.ones(n, dtype)
    assert _core.all_finite(x) and _core.all_finite(x[:0])
    x[n // 2] = np.finfo(dtype).max
    assert _core.all_finite(x)
    for bad in (np.nan, np.inf, -np.inf):
        for i in {0, n // 2, n - 1}:
            y = x.copy()
            y[i] = bad
            assert not _core.all_finite(y), (bad, i)


def test_index_range():
    from elman import _core
    rng = np.random.default_rng(7)
    x = rng.integers(-2**62, 2**62, 1001)
    assert _core.index_range(x) == (x.min(), x.max())
    assert _core.index_range(np.array([5])) == (5, 5)
    with pytest.raises(ValueError):
        _core.index_range(np.empty(0, np.int64))


@pytest.mark.parametrize("M, K, N", [
    (1, 100, 100), (4, 16, 16), (7, 33, 65), (18, 250, 250), (5, 1, 3),
    # blocks of eight rows (AVX-512), then four, then one; panels of three vectors with a
    # one-vector panel, an overlapping last panel, or columns narrower than a vector
    (8, 64, 100), (13, 70, 49), (21, 20, 200), (9, 5, 7),
    # W larger than the streaming size (half the L2 on every machine elman has met): slabs
    (12, 520, 520)])
def test_step_gemm_matches_numpy(path, dtype, M, K, N):
    rng = np.random.default_rng(8)
    A, W = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    C = rng.standard_normal((M, N)).astype(dtype)
    want = C + A @ W
    probes.step_gemm(C, A, W)
    assert_close(C, want, dtype)


def test_step_gemm_checks_its_arguments():
    A = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError):
        probes.step_gemm(np.zeros((2, 5), np.float32), A, np.ones((4, 5), np.float32))
    with pytest.raises(TypeError):
        probes.step_gemm(np.zeros((2, 5), np.float64), A, np.ones((3, 5), np.float32))
    W = np.ones((3, 5), np.float32)
    with pytest.raises(ValueError, match="share memory"):
        probes.step_gemm(W[:2], A, W)  # C is rows of W


def _threaded_work(queue):
    """In a forked child: kernels that share work among threads in the parent."""
    p, g = np.ones(OMP_N), np.full(OMP_N, 0.5)
    kernels.adagrad_update(p, g, np.zeros(OMP_N), lr=0.1, step=1)
    m = elman.ElmanRNN(20, 250, 20, seed=1)
    x = np.zeros((3, 18), np.int64)
    loss, _ = m.forward_backward(x, x)
    queue.put((float(p[0]), loss))


def test_a_forked_child_runs_the_threaded_kernels():
    """GNU OpenMP's thread pool does not survive fork: a parallel region in the child would
    wait forever. elman notices the fork and runs the child's kernels on one thread."""
    import multiprocessing as mp
    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    before = elman.get_num_threads()
    elman.set_num_threads(2)
    try:
        p = np.ones(OMP_N)
        kernels.adagrad_update(p, np.full(OMP_N, 0.5), np.zeros(OMP_N), lr=0.1, step=1)
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_threaded_work, args=(queue,))
        child.start()
        child.join(60)
        hung = child.is_alive()
        if hung:
            child.kill()
        assert not hung, "the forked child hung in a threaded kernel"
        assert child.exitcode == 0
        first, loss = queue.get(timeout=5)
        assert first == pytest.approx(p[0]) and np.isfinite(loss)
    finally:
        elman.set_num_threads(before)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fma_probe_counts_the_flops_it_does_on_every_path_and_thread_count(dtype):
    """FLOPs = 2 x rounds x 12 chains x lanes x threads: linear in the rounds, doubled by a
    second thread, the lanes the path's vector width (at least one, at most 16 floats)."""
    old = elman.get_num_threads()
    try:
        for path in elman.cpu_paths():
            with elman.cpu_path(path):
                elman.set_num_threads(1)
                one = probes.fma_probe(10, dtype)
                lanes = one / (2 * 10 * 12)
                assert lanes == int(lanes) and 1 <= lanes <= (16 if dtype == "float32" else 8)
                assert probes.fma_probe(30, dtype) == 3 * one
                assert probes.fma_probe(0, dtype) == 0
                elman.set_num_threads(2)
                assert probes.fma_probe(10, dtype) in (one, 2 * one)   # 2 where OpenMP is
    finally:
        elman.set_num_threads(old)
    with pytest.raises(ValueError, match="iters"):
        probes.fma_probe(-1)
    with pytest.raises(ValueError, match="dtype"):
        probes.fma_probe(10, "float16")
    with pytest.raises(TypeError, match="iters"):
        probes.fma_probe(1.5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("threads", [1, 2])
def test_weight_gradients_over_many_rows_match_reference(path, dtype, threads):
    """The weight gradients X^T @ dA and H_prev^T @ dA over T*B rows (gemm_tn on the vector
    paths): several chunks of rows with a partial last one (T*B = 360), W's columns in more
    than one slab with a narrow last one (H = 301), and rows of C past the four-row blocks
    (I = 7, H = 301), on one thread and two."""
    rng = np.random.default_rng(41)
    T, B, I, H = 40, 9, 7, 301
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    W_xh = (rng.standard_normal((I, H)) * 0.3).astype(dtype)
    W_hh = (rng.standard_normal((H, H)) / np.sqrt(H)).astype(dtype)
    b = np.zeros(H, dtype)
    dH = rng.standard_normal((T, B, H)).astype(dtype)
    before = elman.get_num_threads()
    elman.set_num_threads(threads)
    try:
        hs = kernels.rnn_forward(x, h0, W_xh, W_hh, b)
        g = kernels.rnn_backward(dH, hs, x, W_xh, W_hh, need_dx=True)
    finally:
        elman.set_num_threads(before)
    with elman.backend("numpy"):
        want = kernels.rnn_backward(dH, hs, x, W_xh, W_hh, need_dx=True)
        want_hs = kernels.rnn_forward(x, h0, W_xh, W_hh, b)
    assert_close(hs, want_hs, dtype)
    for name in ("W_xh", "W_hh", "b_h", "h0", "x"):
        assert_close(getattr(g, name), getattr(want, name), dtype, err_msg=name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("N, K, O", [(700, 7, 97), (300, 130, 5), (1, 3, 2), (0, 4, 3)])
def test_projection_weight_gradient_over_many_rows_matches_reference(path, dtype, threads,
                                                                     N, K, O):
    """The head's dW = X^T @ dY (gemm_tn on the vector paths): rows in chunks, columns
    narrower than a panel and than a vector, rows of dW past the four-row blocks, and no
    rows at all (dW = 0)."""
    rng = np.random.default_rng(N + K + O)
    X = rng.standard_normal((N, K)).astype(dtype)
    W = rng.standard_normal((K, O)).astype(dtype)
    dY = rng.standard_normal((N, O)).astype(dtype)
    before = elman.get_num_threads()
    elman.set_num_threads(threads)
    try:
        got = kernels.linear_backward(dY, X, W)
    finally:
        elman.set_num_threads(before)
    with elman.backend("numpy"):
        want = kernels.linear_backward(dY, X, W)
    for a, b, name in zip(got, want, ("dW", "db", "dX")):
        assert_close(a, b, dtype, err_msg=name)
