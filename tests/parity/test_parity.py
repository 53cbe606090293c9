"""The C backend against the NumPy reference, kernel by kernel, on hypothesis-drawn shapes
(T, B, H of 1 included, sizes that are not multiples of any SIMD width) in float32 and
float64, within the tolerance table of tests/tolerances.py. Every test runs on every kernel
path this CPU has (generic, avx2, avx512)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import elman
from elman import kernels
from conftest import count_core_calls
from tolerances import assert_close

@pytest.fixture(scope="module", autouse=True, params=elman.cpu_paths())
def cpu_path(request):
    with elman.cpu_path(request.param):
        assert elman.cpu_path() == request.param
        yield request.param


dtypes = st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)])
small = st.integers(1, 13)
seeds = st.integers(0, 2**32 - 1)


def both(fn, *args, **kw):
    """Run fn on the C backend and on the reference, on copies of the arguments (the
    in-place kernels write into them). Returns ((c_result, c_args), (np_result, np_args))."""
    out = []
    for name in ("c", "numpy"):
        a = [x.copy() if isinstance(x, np.ndarray) else x for x in args]
        with elman.backend(name), count_core_calls() as calls:
            r = fn(*a, **kw)
        assert bool(calls) == (name == "c"), (name, calls)  # each backend ran its own code
        out.append((r, a))
    return out


def rand(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


@given(n=st.integers(1, 300), dt=dtypes, seed=seeds, wd=st.sampled_from([0.0, 0.1]),
       decay=st.sampled_from([0.0, 0.05]), eps_placement=st.sampled_from(["outside", "inside"]),
       maximize=st.booleans(), clip=st.sampled_from([None, 0.3]),
       scale=st.sampled_from([1.0, 0.5]), s0=st.sampled_from([0.0, 0.1]),
       step=st.integers(1, 5))
def test_adagrad_update(n, dt, seed, wd, decay, eps_placement, maximize, clip, scale, s0, step):
    rng = np.random.default_rng(seed)
    p, g = rand(rng, n, dt), rand(rng, n, dt)
    s = np.full(n, s0, dt)
    (_, (pc, gc, sc)), (_, (pn, gn, sn)) = both(
        kernels.adagrad_update, p, g, s, lr=0.05, step=step, lr_decay=decay, weight_decay=wd,
        eps=1e-8, eps_placement=eps_placement, maximize=maximize, clip_value=clip,
        grad_scale=scale)
    assert_close(pc, pn, dt)
    assert_close(sc, sn, dt)
    assert not np.array_equal(pc, p)  # something happened


@given(n=st.integers(1, 300), dt=dtypes, seed=seeds, momentum=st.sampled_from([0.0, 0.9]),
       wd=st.sampled_from([0.0, 0.01]), maximize=st.booleans(), clip=st.sampled_from([None, 0.2]))
def test_sgd_update(n, dt, seed, momentum, wd, maximize, clip):
    rng = np.random.default_rng(seed)
    p, g, buf = rand(rng, n, dt), rand(rng, n, dt), rand(rng, n, dt)
    (_, (pc, _, bc)), (_, (pn, _, bn)) = both(
        kernels.sgd_update, p, g, buf, lr=0.1, momentum=momentum, weight_decay=wd,
        maximize=maximize, clip_value=clip)
    assert_close(pc, pn, dt)
    assert_close(bc, bn, dt)


@given(n=st.integers(0, 1000), dt=dtypes, seed=seeds)
def test_sum_squares(n, dt, seed):
    x = rand(np.random.default_rng(seed), n, dt)
    (c, _), (r, _) = both(kernels.sum_squares, x)
    assert c == pytest.approx(r, rel=1e-12, abs=1e-300)


@given(n=st.integers(1, 200), dt=dtypes, seed=seeds, nl=st.sampled_from(["tanh", "relu"]))
def test_activation(n, dt, seed, nl):
    rng = np.random.default_rng(seed)
    a, dH = rand(rng, n, dt, 3.0), rand(rng, n, dt)
    (yc, _), (yn, _) = both(kernels.activation, a, nl)
    assert_close(yc, yn, dt)
    (dc, _), (dn, _) = both(kernels.activation_backward, dH, yn, nl)
    assert_close(dc, dn, dt)


def layer(rng, dt, T, B, I, H, ids):
    x = rng.integers(0, I, size=(T, B)) if ids else rand(rng, (T, B, I), dt)
    W_xh, W_hh = rand(rng, (I, H), dt, 0.5), rand(rng, (H, H), dt, 0.5)
    return x, rand(rng, (B, H), dt), W_xh, W_hh, rand(rng, H, dt, 0.1)


@given(T=small, B=small, I=small, H=small, dt=dtypes, seed=seeds, ids=st.booleans(),
       nl=st.sampled_from(["tanh", "relu"]))
def test_rnn_forward_backward(T, B, I, H, dt, seed, ids, nl):
    rng = np.random.default_rng(seed)
    x, h0, W_xh, W_hh, b_h = layer(rng, dt, T, B, I, H, ids)
    (hc, _), (hn, _) = both(kernels.rnn_forward, x, h0, W_xh, W_hh, b_h, nonlinearity=nl)
    assert hc.shape == (T + 1, B, H)
    assert_close(hc, hn, dt)
    dH, dh_T = rand(rng, (T, B, H), dt), rand(rng, (B, H), dt)
    (gc, _), (gn, _) = both(kernels.rnn_backward, dH, hn, x, W_xh, W_hh, nonlinearity=nl,
                            dh_T=dh_T, need_dx=True)
    for name in ("W_xh", "W_hh", "b_h", "h0", "A"):
        assert_close(getattr(gc, name), getattr(gn, name), dt, err_msg=name)
    if ids:
        assert gc.x is None and gn.x is None
    else:
        assert_close(gc.x, gn.x, dt, err_msg="x")


@given(N=small, K=small, O=small, dt=dtypes, seed=seeds, bias=st.booleans())
def test_linear(N, K, O, dt, seed, bias):
    rng = np.random.default_rng(seed)
    X, W, b = rand(rng, (N, K), dt), rand(rng, (K, O), dt), rand(rng, O, dt) if bias else None
    (yc, _), (yn, _) = both(kernels.linear_forward, X, W, b)
    assert_close(yc, yn, dt)
    dY = rand(rng, (N, O), dt)
    (gc, _), (gn, _) = both(kernels.linear_backward, dY, X, W)
    for a, b_, name in zip(gc, gn, ("dW", "db", "dX")):
        assert_close(a, b_, dt, err_msg=name)


@given(N=small, O=st.integers(1, 70), dt=dtypes, seed=seeds,
       reduction=st.sampled_from(["mean", "sum"]), scale=st.sampled_from([1.0, 30.0]))
def test_softmax_cross_entropy(N, O, dt, seed, reduction, scale):
    rng = np.random.default_rng(seed)
    z, y = rand(rng, (N, O), dt, scale), rng.integers(0, O, size=N)
    ((lc, dc), _), ((ln, dn), _) = both(kernels.softmax_cross_entropy, z, y, reduction=reduction)
    assert lc == pytest.approx(ln, rel=1e-5 if dt == np.float32 else 1e-12)
    assert_close(dc, dn, dt)
    assert np.all(np.isfinite(dc))


@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=3), dt=dtypes, seed=seeds,
       reduction=st.sampled_from(["mean", "sum"]))
def test_mse(shape, dt, seed, reduction):
    rng = np.random.default_rng(seed)
    p, q = rand(rng, shape, dt), rand(rng, shape, dt)
    ((lc, dc), _), ((ln, dn), _) = both(kernels.mse_loss, p, q, reduction=reduction)
    assert lc == pytest.approx(ln, rel=1e-6 if dt == np.float32 else 1e-12)
    assert_close(dc, dn, dt)


@given(T=small, B=small, I=small, H=small, O=small, dt=dtypes, seed=seeds, ids=st.booleans(),
       nl=st.sampled_from(["tanh", "relu"]), loss=st.sampled_from(["cross_entropy", "mse"]),
       reduction=st.sampled_from(["mean", "sum"]), last=st.booleans())
def test_model_forward_backward(T, B, I, H, O, dt, seed, ids, nl, loss, reduction, last):
    rng = np.random.default_rng(seed)
    sizes = dict(input_size=I, hidden_size=H, output_size=O)
    _, n = kernels.param_layout(I, H, O)
    params = rand(rng, n, dt, 0.5)
    x = rng.integers(0, I, size=(T, B)) if ids else rand(rng, (T, B, I), dt)
    if loss == "cross_entropy":
        y = rng.integers(0, O, size=(B,) if last else (T, B))
    else:
        y = rand(rng, (B, O) if last else (T, B, O), dt)
    h0 = rand(rng, (B, H), dt)
    (Yc, _), (Yn, _) = both(kernels.model_forward, params, x, h0, nonlinearity=nl, **sizes)
    assert_close(Yc[0], Yn[0], dt)
    assert_close(Yc[1], Yn[1], dt)
    res = []
    for name in ("c", "numpy"):
        grads, dh0 = np.full(n, np.nan, dt), np.full((B, H), np.nan, dt)  # must be overwritten
        with elman.backend(name):
            value, hs = kernels.model_forward_backward(
                params, grads, x, y, h0, nonlinearity=nl, loss=loss, reduction=reduction,
                last_step_only=last, dh0=dh0, **sizes)
        res.append((value, grads, dh0, hs.copy()))
    (lc, gc, dc, hc), (ln, gn, dn, hn) = res
    assert lc == pytest.approx(ln, rel=1e-5 if dt == np.float32 else 1e-11)
    assert_close(gc, gn, dt)
    assert_close(dc, dn, dt)
    assert_close(hc, hn, dt)
    # the model's hidden states agree with the layer kernel's
    assert_close(hc, Yc[1], dt)
