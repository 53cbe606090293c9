"""Models and threads: the kernels release the GIL, two models train in two threads at once
exactly as one after the other, and one model shared by two threads is refused."""
import threading
import time

import numpy as np
import pytest

import elman


def train(m, x, steps=5):
    opt = elman.Adagrad(m, lr=0.05)
    h = None
    for _ in range(steps):
        _, h = m.forward_backward(x[:-1], x[1:], h)
        opt.step()
    return m.params.copy()


@pytest.mark.parametrize("stack", [{}, dict(num_layers=2, bidirectional=True, dropout=0.2)],
                         ids=["one-layer", "stack"])
def test_two_models_in_two_threads_match_one_after_the_other(stack):
    rng = np.random.default_rng(0)
    xs = [rng.integers(0, 50, (33, 16)) for _ in range(2)]
    sequential = [train(elman.ElmanRNN(50, 64, 50, seed=i, **stack), xs[i]) for i in range(2)]
    models = [elman.ElmanRNN(50, 64, 50, seed=i, **stack) for i in range(2)]
    out = [None, None]

    def work(i):
        out[i] = train(models[i], xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(sequential, out):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("second", ["forward_backward", "forward", "sample", "train_step"])
def test_one_model_in_two_threads_is_refused(second):
    m = elman.ElmanRNN(200, 512, 200, seed=0)
    x = np.random.default_rng(1).integers(0, 200, (257, 64))
    done = threading.Event()

    def long_step():
        try:
            m.forward_backward(x[:-1], x[1:])   # long enough to overlap (GIL released)
        finally:
            done.set()

    worker = threading.Thread(target=long_step)
    worker.start()
    deadline = time.monotonic() + 10
    while not m._busy.locked() and not done.is_set() and time.monotonic() < deadline:
        time.sleep(0.001)
    try:
        if done.is_set():
            pytest.skip("the first call finished before the second could start")
        with pytest.raises(RuntimeError, match="in use by another thread"):
            if second == "forward_backward":
                m.forward_backward(x[:2, :1], x[1:3, :1])
            elif second == "forward":
                m.forward(x[:2, :1])
            elif second == "sample":
                m.sample(3)
            else:
                elman.train_step(m, elman.Adagrad(m), x[:2, :1], x[1:3, :1])
    finally:
        worker.join()
    m.forward(x[:2, :1])  # free again afterwards


def test_models_still_pickle_and_copy():
    import copy
    import pickle
    m = elman.ElmanRNN(5, 4, 5, seed=2)
    m.forward_backward(np.zeros((2, 1), np.int64), np.zeros((2, 1), np.int64))
    for c in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        np.testing.assert_array_equal(c.params, m.params)
        c.forward(np.zeros((2, 1), np.int64))


def test_one_gauss_newton_operator_in_two_threads_is_refused():
    """Its products share one workspace: a second thread is refused while one computes
    (held here by taking the operator's lock as a running product does), then served."""
    m = elman.ElmanRNN(5, 4, 5, seed=0)
    x = np.zeros((3, 2), np.int64)
    G = m.gauss_newton(x)
    v = np.ones(m.num_params, np.float32)
    first = G.matvec(v)
    seen = []
    with G._busy:
        t = threading.Thread(target=lambda: seen.append(_raised(lambda: G.matvec(v))))
        t.start()
        t.join()
    assert seen == ["RuntimeError"]
    np.testing.assert_array_equal(G.matvec(v), first)
    other = m.gauss_newton(x)          # an operator per thread is the way
    np.testing.assert_array_equal(other.matvec(v), first)


def _raised(fn):
    try:
        fn()
    except RuntimeError as err:
        assert "another thread" in str(err)
        return "RuntimeError"
    return "ran"


def test_overlapping_kernel_calls_keep_the_blas_on_one_thread_until_the_last_ends():
    """Two kernel calls in two threads overlap: the first to end must not give the BLAS its
    threads back while the other still runs (the cause of the two-thread mismatch above on
    an AVX2 machine); the last to end restores the BLAS's own setting."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from elman import _threads
    controls = _threads._blas_controls()
    if not controls:
        pytest.skip("no OpenBLAS whose threads elman can set (threadpoolctl sees none)")
    (get, _), *_ = controls
    with threadpool_limits(limits=2, user_api="blas"):
        if get() != 2:
            pytest.skip(f"the BLAS cannot run 2 threads here: {threadpool_info()}")
        a, b = _threads.one_blas_thread(), _threads.one_blas_thread()
        a.__enter__()
        b.__enter__()
        assert get() == 1
        a.__exit__(None, None, None)       # the first call ends, the second still runs
        assert get() == 1
        b.__exit__(None, None, None)
        assert get() == 2


def test_a_prepared_step_shares_the_blas_hold_count_with_other_calls():
    """TrainStep holds the BLAS in the binding (elman._core.blas_hold), on the count that
    every other kernel call holds it on: a step that ends inside another call's hold leaves
    the BLAS on one thread, and the last release gives it back its setting."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from elman import _core, _threads
    controls = _threads._blas_controls()
    if not controls:
        pytest.skip("no OpenBLAS whose threads elman can set (threadpoolctl sees none)")
    (get, _), *_ = controls
    m = elman.ElmanRNN(5, 6, 5, seed=0)
    step = elman.TrainStep(m, elman.Adagrad(m, lr=0.1), 3, 2)
    x = np.zeros((3, 2), np.int64)
    with threadpool_limits(limits=2, user_api="blas"):
        if get() != 2:
            pytest.skip(f"the BLAS cannot run 2 threads here: {threadpool_info()}")
        step(x, x)
        assert get() == 2 and _core.blas_holders() == 0
        outer = _threads.one_blas_thread()
        outer.__enter__()
        step(x, x)
        assert get() == 1 and _core.blas_holders() == 1   # the outer call still runs
        outer.__exit__(None, None, None)
        assert get() == 2 and _core.blas_holders() == 0


def test_blas_controls_are_not_replaced_while_a_hold_is_open():
    """Installing the BLAS controls under an open hold would restore settings that were
    never saved: the binding refuses (False) and keeps the ones it has."""
    from elman import _core, _threads
    _threads.ensure_controls()
    _core.blas_hold()
    try:
        assert _core.set_blas_thread_controls([]) is False
    finally:
        _core.blas_release()
    assert _core.blas_holders() == 0
