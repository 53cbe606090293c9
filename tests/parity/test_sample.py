"""Generation: ElmanRNN.sample and kernels.model_sample (the whole loop in one C call)
against the reference, its distribution, reproducibility and its errors."""
import numpy as np
import pytest

import elman
from elman import kernels


def model(dtype="float64", V=11, H=7, seed=3):
    return elman.ElmanRNN(V, H, V, dtype=dtype, seed=seed)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0, 0.0])
def test_c_and_reference_draw_the_same_ids(temperature):
    m = model()
    a = m.sample(400, start=2, temperature=temperature, seed=11)
    with elman.backend("numpy"):
        b = m.sample(400, start=2, temperature=temperature, seed=11)
    np.testing.assert_array_equal(a, b)


def test_float32_matches_the_reference_on_a_short_run():
    m = model("float32")
    a = m.sample(100, seed=1)
    with elman.backend("numpy"):
        b = m.sample(100, seed=1)
    np.testing.assert_array_equal(a, b)


def test_every_path_draws_the_same_float64_ids():
    m = model(V=40, H=33)
    draws = []
    for path in elman.cpu_paths():
        with elman.cpu_path(path):
            draws.append(m.sample(300, seed=5))
    for d in draws[1:]:
        np.testing.assert_array_equal(d, draws[0])


def test_greedy_is_the_argmax_chain():
    m = model()
    ids, h = m.sample(20, start=4, temperature=0, return_hidden=True)
    x = np.concatenate([[4], ids[:-1]])[:, None]          # the inputs the sampler fed
    Y, h_T = m.forward(x)
    np.testing.assert_array_equal(ids, Y[:, 0].argmax(-1))
    np.testing.assert_allclose(h, h_T, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(m.sample(20, start=4, temperature=1e-300), ids)


def test_state_argument_continues_a_prompt():
    m = model()
    prompt = np.array([1, 5, 2, 7])
    _, h = m.forward(prompt[:-1, None])
    a = m.sample(30, start=prompt[-1], h0=h, seed=2)
    b = m.sample(30, start=prompt[-1], h0=h[0, 0], seed=2)
    np.testing.assert_array_equal(a, b)
    # greedy from the prompt's state is the argmax chain of one forward pass over all of it
    ids = m.sample(20, start=prompt[-1], h0=h, temperature=0)
    Y, _ = m.forward(np.concatenate([prompt, ids[:-1]])[:, None])
    np.testing.assert_array_equal(ids, Y[len(prompt) - 1:, 0].argmax(-1))


def test_seeds():
    m = model()
    np.testing.assert_array_equal(m.sample(50, seed=9), m.sample(50, seed=9))
    np.testing.assert_array_equal(m.sample(50, seed=np.random.SeedSequence(9)),
                                  m.sample(50, seed=9))
    assert not np.array_equal(m.sample(50, seed=9), m.sample(50, seed=10))
    assert m.sample(0).shape == (0,) and m.sample(0).dtype == np.int64


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_frequencies_follow_the_softmax(dtype, temperature):
    """With zero weights every step draws from softmax(b_y / temperature)."""
    V = 5
    m = elman.ElmanRNN(V, 3, V, dtype=dtype)
    m.params[:] = 0
    p = np.array([0.5, 0.25, 0.15, 0.07, 0.03])
    m.named_params()["b_y"][:] = np.log(p)
    n = 200_000
    counts = np.bincount(m.sample(n, seed=0, temperature=temperature), minlength=V)
    q = p ** (1 / temperature)
    q /= q.sum()
    chi2 = float((((counts - n * q) ** 2) / (n * q)).sum())
    assert chi2 < 20.5, (counts / n, q)  # 4 degrees of freedom: P(chi2 > 20.5) < 0.0004


def test_kernel_function_validates_and_returns_the_state():
    m = model()
    ids, h = kernels.model_sample(m.params, 10, 3, input_size=11, hidden_size=7, output_size=11,
                                  seed=4)
    assert ids.shape == (10,) and h.shape == (7,)
    np.testing.assert_array_equal(ids, m.sample(10, start=3, seed=4))
    with pytest.raises(ValueError, match="output_size"):
        kernels.model_sample(np.zeros(5 * 3 + 9 + 3 + 3 * 6 + 6), 1, input_size=5,
                             hidden_size=3, output_size=6)


@pytest.mark.parametrize("kw, err, match", [
    (dict(n=-1), ValueError, "n must be"),
    (dict(n=2.0), TypeError, "n must be an int"),
    (dict(n=3, start=11), ValueError, "start=11"),
    (dict(n=3, start=-1), ValueError, "start"),
    (dict(n=3, temperature=-1.0), ValueError, "temperature"),
    (dict(n=3, temperature=float("nan")), ValueError, "temperature"),
    (dict(n=3, h0=np.zeros(6)), ValueError, "h0 has shape"),
    (dict(n=3, h0=np.zeros(7, int)), TypeError, "floats"),
    (dict(n=3, h0=np.full(7, np.nan)), elman.NonFiniteError, "NaN"),
    (dict(n=3, seed=-2), ValueError, "seed"),
])
def test_bad_arguments(kw, err, match):
    with pytest.raises(err, match=match):
        model().sample(**kw)


def test_output_larger_than_input_is_refused():
    with pytest.raises(ValueError, match="output_size"):
        elman.ElmanRNN(4, 3, 5).sample(3)


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_nan_parameters_raise(backend):
    m = model()
    m.named_params()["b_y"][0] = np.nan
    with elman.backend(backend), pytest.raises(elman.NonFiniteError):
        m.sample(5, seed=0)


@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize("position", [0, 5])
def test_nan_logit_raises_even_when_greedy(backend, position):
    m = model()
    m.named_params()["b_y"][position] = np.nan
    with elman.backend(backend), pytest.raises(elman.NonFiniteError):
        m.sample(5, temperature=0)


def test_a_huge_temperature_samples_near_uniformly():
    m = elman.ElmanRNN(4, 3, 4, dtype="float32", seed=0)
    m.params[:] = 0
    m.named_params()["b_y"][:] = [5.0, 0.0, 0.0, 0.0]
    ids = m.sample(4000, seed=1, temperature=1e50)   # 1/t underflows in float32
    counts = np.bincount(ids, minlength=4)
    assert counts.min() > 800, counts
    with elman.backend("numpy"):
        np.testing.assert_array_equal(m.sample(50, seed=1, temperature=1e50), ids[:50])


# ---- B streams in one call (sample(n, batch=B)) -------------------------------------------

def stacked(L=2, V=13, H=9, dtype="float64", seed=4):
    return elman.ElmanRNN(V, H, V, num_layers=L, dtype=dtype, seed=seed)


@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_batched_c_and_reference_draw_the_same_ids(L, temperature):
    m = stacked(L)
    starts = np.array([0, 3, 12, 5, 5, 1, 7])
    h0 = np.random.default_rng(0).standard_normal((L, 7, 9)) * 0.5
    a, ha = m.sample(60, start=starts, batch=7, h0=h0, temperature=temperature, seed=8,
                     return_hidden=True)
    with elman.backend("numpy"):
        b, hb = m.sample(60, start=starts, batch=7, h0=h0, temperature=temperature, seed=8,
                         return_hidden=True)
    assert a.shape == (7, 60) and a.dtype == np.int64 and ha.shape == (L, 7, 9)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(ha, hb, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("L", [1, 2])
def test_each_stream_is_the_one_stream_call_with_its_child_seed(L):
    """Stream b of a batched call draws what a one-stream call from the same start and
    state, seeded with SeedSequence(seed, spawn_key=(b,)), draws: the streams do not mix.
    The products' rounding differs between the two (rows four at a time or one), so the
    ids are compared on a model of the default initialization over 40 steps, where those
    last-bit differences stay far from the draw's branch points; the states to 1e-13."""
    m = stacked(L)
    B = 6        # a block of four rows and two more: both row kernels of the small GEMM
    starts = np.array([2, 0, 11, 4, 4, 9])
    h0 = np.random.default_rng(1).standard_normal((L, B, 9)) * 0.5
    ids, h = m.sample(40, start=starts, batch=B, h0=h0, seed=21, return_hidden=True)
    for b in range(B):
        one, h1 = m.sample(40, start=starts[b], h0=h0[:, b], return_hidden=True,
                           seed=np.random.SeedSequence(21, spawn_key=(b,)))
        np.testing.assert_array_equal(ids[b], one)
        np.testing.assert_allclose(h[:, b], h1[:, 0], rtol=1e-13, atol=1e-14)
    # a SeedSequence seed: its spawn key extended by b, and the caller's sequence untouched
    ss = np.random.SeedSequence(5, spawn_key=(3,))
    ids = m.sample(10, batch=2, seed=ss)
    assert ss.n_children_spawned == 0
    np.testing.assert_array_equal(
        ids[1], m.sample(10, seed=np.random.SeedSequence(5, spawn_key=(3, 1))))


def test_batched_greedy_is_each_streams_argmax_chain():
    m = stacked(2)
    starts = np.array([1, 6, 10])
    ids, h = m.sample(15, start=starts, batch=3, temperature=0, return_hidden=True)
    x = np.concatenate([starts[None], ids[:, :-1].T])     # (T, B) the ids the sampler fed
    Y, h_T = m.forward(x)
    np.testing.assert_array_equal(ids, Y.argmax(-1).T)
    np.testing.assert_allclose(h, h_T, rtol=1e-12, atol=1e-12)


def test_batched_draw_is_the_same_on_every_path_and_thread_count():
    m = stacked(1, V=40, H=128)
    B = 64   # B * H * H = 2**20 multiply-adds: the small GEMM shares the rows among threads
    draws = []
    for path in elman.cpu_paths():
        for threads in (1, 2):
            with elman.cpu_path(path):
                old = elman.get_num_threads()
                elman.set_num_threads(threads)
                try:
                    draws.append(m.sample(50, batch=B, seed=3))
                finally:
                    elman.set_num_threads(old)
    for d in draws[1:]:
        np.testing.assert_array_equal(d, draws[0])


def test_batched_start_and_state_forms():
    m = model()
    one = m.sample(12, start=4, batch=3, seed=1)
    np.testing.assert_array_equal(one, m.sample(12, start=[4, 4, 4], batch=3, seed=1))
    h0 = np.random.default_rng(2).standard_normal((3, 7))
    np.testing.assert_array_equal(m.sample(12, batch=3, h0=h0, seed=1),
                                  m.sample(12, batch=3, h0=h0[None], seed=1))
    assert m.sample(0, batch=3).shape == (3, 0)
    ids, h = kernels.model_sample(m.params, 12, [4, 4, 4], h0, input_size=11, hidden_size=7,
                                  output_size=11, seed=1, batch=3)
    assert h.shape == (3, 7)
    np.testing.assert_array_equal(ids, m.sample(12, start=4, batch=3, h0=h0, seed=1))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batched_frequencies_follow_the_softmax(dtype):
    """Zero weights: every stream draws every step from softmax(b_y), and the streams'
    generators are distinct (no stream repeats another)."""
    V = 5
    m = elman.ElmanRNN(V, 3, V, dtype=dtype)
    m.params[:] = 0
    p = np.array([0.5, 0.25, 0.15, 0.07, 0.03])
    m.named_params()["b_y"][:] = np.log(p)
    ids = m.sample(4000, batch=50, seed=0)
    counts = np.bincount(ids.reshape(-1), minlength=V)
    n = ids.size
    chi2 = float((((counts - n * p) ** 2) / (n * p)).sum())
    assert chi2 < 20.5, (counts / n, p)  # 4 degrees of freedom: P(chi2 > 20.5) < 0.0004
    assert len({row.tobytes() for row in ids}) == 50


@pytest.mark.parametrize("kw, err, match", [
    (dict(batch=0), ValueError, "batch must be"),
    (dict(batch=2.0), TypeError, "batch must be an int"),
    (dict(batch=2, start=[1, 2, 3]), ValueError, "start"),
    (dict(batch=2, start=[1, 11]), ValueError, "start holds 11"),
    (dict(batch=2, start=[1.0, 2.0]), TypeError, "start must hold integers"),
    (dict(batch=2, start=12), ValueError, "start=12"),
    (dict(batch=2, start=np.array(1)), ValueError, "start"),   # an array: B ids, by shape
    (dict(batch=2, h0=np.zeros((3, 7))), ValueError, "h0 has shape"),
    (dict(batch=2, h0=np.zeros(7)), ValueError, "h0 has shape"),
    (dict(batch=2, h0=np.full((2, 7), np.inf)), elman.NonFiniteError, "h0"),
    (dict(batch=2, seed=-1), ValueError, "seed"),
])
def test_batched_bad_arguments(kw, err, match):
    with pytest.raises(err, match=match):
        model().sample(3, **kw)


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_batched_nan_parameters_raise(backend):
    m = model()
    m.named_params()["b_y"][0] = np.nan
    with elman.backend(backend), pytest.raises(elman.NonFiniteError):
        m.sample(5, batch=3, seed=0)
