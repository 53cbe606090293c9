"""compute_dtype="bfloat16": every product of a model step with its operands rounded to
bfloat16 and the products summed in float32 (csrc/bf16.c), against the reference's rounding
model (elman.reference.bf16_round, then a float64 matmul). Each comparison also checks that
the C result is far closer to the bfloat16 model than to float32 compute: a kernel that
ignored the compute dtype would fail."""
import pickle

import numpy as np
import pytest

import elman
from elman import _c_backend, _core
from elman import reference as R

F32 = np.float32


def _bits(a):
    return np.asarray(a, F32).view(np.uint32)


@pytest.mark.parametrize("value, expect", [
    (1.0, 1.0),
    (1.0 + 2.0**-8, 1.0),                  # a tie: to the even significand (down)
    (1.0 + 3 * 2.0**-8, 1.0 + 2.0**-6),    # a tie: to the even significand (up)
    (1.0 + 2.0**-8 + 2.0**-20, 1.0 + 2.0**-7),  # past the tie: up
    (-2.5, -2.5),
    (1.0 + 2.0**-7 + 2.0**-8, 1.0 + 2.0**-6),  # a tie above an odd significand: up
    (np.inf, np.inf),
    (0.0, 0.0),
    (2.0**-130 * (1 + 2.0**-3 + 2.0**-12), 2.0**-130 * (1 + 2.0**-3)),  # a denormal
])
def test_bf16_round_to_nearest_even(value, expect):
    got = R.bf16_round(np.array([value], F32))[0]
    assert got == F32(expect)
    assert _bits(got) & 0xFFFF == 0


def test_bf16_round_overflow_and_nan():
    x = np.array([np.finfo(F32).max, -np.finfo(F32).max, np.nan, -np.nan], F32)
    r = R.bf16_round(x)
    assert r[0] == np.inf and r[1] == -np.inf
    assert np.isnan(r[2]) and np.isnan(r[3]) and (_bits(r[2:]) & 0xFFFF == 0).all()


def test_bf16_round_agrees_with_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal(100_000).astype(F32) * np.float32(1e3)
    x[:1000] = (1.0 + np.arange(1000, dtype=F32) * F32(2.0**-9))  # many exact ties
    want = torch.from_numpy(x).to(torch.bfloat16).to(torch.float32).numpy()
    np.testing.assert_array_equal(R.bf16_round(x), want)


def _problem(T, B, I, H, O, *, ids=True, xent=True, last=False, seed=0, **arch):
    rng = np.random.default_rng(seed)
    m = elman.ElmanRNN(I, H, O, seed=seed + 1, **arch)
    x = rng.integers(0, I, (T, B)) if ids else rng.standard_normal((T, B, I)).astype(F32)
    if xent:
        y = rng.integers(0, O, (B,) if last else (T, B))
    else:
        y = rng.standard_normal((B, O) if last else (T, B, O)).astype(F32)
    kw = dict(input_size=I, hidden_size=H, output_size=O, nonlinearity=m.nonlinearity,
              num_layers=m.num_layers, bidirectional=m.bidirectional,
              loss="cross_entropy" if xent else "mse", last_step_only=last)
    return m, x, y, kw


def _fb(mod, m, x, y, kw, compute, **extra):
    g = np.zeros_like(m.params)
    value, hs = mod.model_forward_backward(m.params, g, x, y, None, compute_dtype=compute,
                                           **kw, **extra)
    return value, g, np.asarray(hs)


def _close_to_model(c, r, f, what, rtol=2e-3):
    """c (C, bfloat16) is within rtol of r (the bfloat16 model), and at least ten times
    nearer to it than the float32 result f is (where no product touched the values, as the
    states of one step from h0 = 0 and token ids, all three agree to float32 rounding)."""
    scale = np.abs(r).max() or 1.0
    err, sep = np.abs(c - r).max() / scale, np.abs(f - r).max() / scale
    assert err <= rtol, f"{what}: {err:.3g} from the bfloat16 model"
    assert err <= max(0.1 * sep, 1e-6), f"{what}: {err:.3g} from the bfloat16 model, " \
                                        f"float32 {sep:.3g}"


CASES = [
    dict(T=5, B=3, I=7, H=33, O=11),
    dict(T=8, B=13, I=20, H=64, O=17, ids=False),
    dict(T=1, B=1, I=5, H=40, O=9),
    dict(T=6, B=25, I=10, H=100, O=65, nonlinearity="relu"),
    dict(T=23, B=13, I=12, H=45, O=530),            # K = T*B > one K block; N > one N block
    dict(T=3, B=2, I=6, H=520, O=7, ids=False),     # many column panels, an odd tail
    dict(T=4, B=5, I=9, H=31, O=9, num_layers=2, bidirectional=True),
    dict(T=6, B=4, I=5, H=24, O=3, num_layers=3, ids=False, xent=False),
    dict(T=7, B=6, I=9, H=19, O=9, last=True),
    dict(T=7, B=6, I=4, H=18, O=2, last=True, ids=False, xent=False, bidirectional=True),
]


def _available_kernels():
    """The bfloat16 kernels this CPU and build run, slowest first."""
    out = []
    for name in _core.BF16_KERNELS:
        try:
            with elman.bf16_kernel(name) as got:
                if got == name:
                    out.append(name)
        except ValueError:
            pass
    return out


KERNELS = _available_kernels()


@pytest.fixture(params=KERNELS)
def kernel(request):
    with elman.bf16_kernel(request.param) as name:
        assert name == request.param
        yield name


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_forward_backward_follows_the_rounding_model(case, kernel):
    m, x, y, kw = _problem(**case)
    vc, gc, hc = _fb(_c_backend, m, x, y, kw, "bfloat16")
    vr, gr, hr = _fb(R, m, x, y, kw, "bfloat16")
    vf, gf, hf = _fb(R, m, x, y, kw, "float32")
    assert abs(vc - vr) <= 1e-4 * max(1.0, abs(vr)) and abs(vc - vr) < 0.1 * abs(vf - vr)
    _close_to_model(gc, gr, gf, "gradient")
    _close_to_model(hc, hr, hf, "states")


def test_lengths_and_dropout(kernel):
    m, x, y, kw = _problem(9, 5, 8, 37, 8, num_layers=2, dropout=0.25, bidirectional=True)
    extra = dict(lengths=np.array([9, 3, 1, 7, 5]), dropout=0.25, dropout_seed=123)
    vc, gc, _ = _fb(_c_backend, m, x, y, kw, "bfloat16", **extra)
    vr, gr, _ = _fb(R, m, x, y, kw, "bfloat16", **extra)
    vf, gf, _ = _fb(R, m, x, y, kw, "float32", **extra)
    assert abs(vc - vr) <= 1e-4 * abs(vr)
    _close_to_model(gc, gr, gf, "gradient")


def test_forward_follows_the_rounding_model(kernel):
    m, x, _, kw = _problem(12, 7, 30, 70, 30, num_layers=2)
    kw = {k: kw[k] for k in ("input_size", "hidden_size", "output_size", "num_layers")}
    Yc, hc = _c_backend.model_forward(m.params, x, None, compute_dtype="bfloat16", **kw)
    Yr, hr = R.model_forward(m.params, x, None, compute_dtype="bfloat16", **kw)
    Yf, _ = R.model_forward(m.params, x, None, **kw)
    _close_to_model(Yc, Yr, Yf, "logits")


@pytest.mark.parametrize("path", [p for p in ("generic", "avx2") if p in elman.cpu_paths()])
def test_emulated_kernel_matches_the_native_one(path):
    """The emulation (any path without vdpbf16ps) and the path in use agree to the float32
    sums' rounding: the same rounded operands, the sums in another order."""
    m, x, y, kw = _problem(10, 14, 9, 50, 9, ids=False)
    vn, gn, _ = _fb(_c_backend, m, x, y, kw, "bfloat16")
    with elman.cpu_path(path):
        assert not _core.bf16_native()
        ve, ge, _ = _fb(_c_backend, m, x, y, kw, "bfloat16")
    assert abs(vn - ve) <= 1e-5 * abs(vn)
    np.testing.assert_allclose(ge, gn, rtol=0, atol=2e-4 * np.abs(gn).max())


def test_train_step_and_model_calls_use_the_compute_dtype():
    m = elman.ElmanRNN(20, 48, 20, seed=3, compute_dtype="bfloat16")
    assert m.compute_dtype == "bfloat16" and "compute_dtype='bfloat16'" in repr(m)
    m32 = pickle.loads(pickle.dumps(m))
    assert m32.compute_dtype == "bfloat16"
    m32.compute_dtype = "float32"
    x = np.random.default_rng(0).integers(0, 20, (9, 4))
    la, _ = m.forward_backward(x[:-1], x[1:])
    lb, _ = m32.forward_backward(x[:-1], x[1:])
    with elman.backend("numpy"):
        lr, _ = m.forward_backward(x[:-1], x[1:])
    assert abs(la - lr) < 1e-5 and abs(la - lb) > 10 * abs(la - lr)
    opt = elman.Adagrad(m, lr=0.1)
    l1, _ = elman.train_step(m, opt, x[:-1], x[1:])
    assert abs(l1 - la) < 1e-6  # the same parameters, the same bfloat16 loss
    y_c, _ = m.forward(x)
    m.compute_dtype = None
    assert m.compute_dtype == "float32"
    y_f, _ = m.forward(x)
    assert 0 < np.abs(y_c - y_f).max() < 0.05
    m.compute_dtype = "bfloat16"
    ids = m.sample(50, seed=1)  # sampling runs in float32 whatever the compute dtype
    m.compute_dtype = "float32"
    np.testing.assert_array_equal(m.sample(50, seed=1), ids)


def test_train_step_prepared_matches_train_step():
    (m, opt), (m2, opt2) = [(mm, elman.Adagrad(mm, lr=0.1, max_grad_norm=1.0)) for mm in (
        elman.ElmanRNN(15, 40, 15, seed=4, compute_dtype="bfloat16") for _ in range(2))]
    step = elman.TrainStep(m, opt, 8, 3)
    step._general = lambda *a: pytest.fail("took train_step's way")
    rng = np.random.default_rng(1)
    h = h2 = None
    for _ in range(5):
        x = rng.integers(0, 15, (9, 3))
        a, h = step(x[:-1], x[1:], h)
        b, h2 = elman.train_step(m2, opt2, x[:-1], x[1:], h2)
        assert a == b
        np.testing.assert_array_equal(m.params, m2.params)
    m.compute_dtype = "float32"  # changed after preparing: the long way, in float32
    del step._general
    x = rng.integers(0, 15, (9, 3))
    m2.compute_dtype = "float32"
    assert step(x[:-1], x[1:], h)[0] == elman.train_step(m2, opt2, x[:-1], x[1:], h2)[0]


@pytest.mark.parametrize("kw, err", [
    (dict(compute_dtype="float16"), ValueError),
    (dict(compute_dtype="bfloat16", dtype="float64"), ValueError),
    (dict(compute_dtype=3), (TypeError, ValueError)),
])
def test_bad_compute_dtype(kw, err):
    with pytest.raises(err, match="compute_dtype"):
        elman.ElmanRNN(4, 4, 4, **kw)


def test_float64_and_unsupported_calls_refuse_bfloat16_in_c():
    arch = (1, False, 0.0, 0, 0, 0, 1)
    with pytest.raises(ValueError):
        _core.model_sizes(2, 2, 3, 4, 3, 0, False, arch, False, 8)  # float64
    # the Gauss-Newton products are float32 only: the C entry point refuses the flag
    m, x, _, kw = _problem(3, 2, 4, 5, 4)
    cache = {}
    with pytest.raises(ValueError):
        _core_gn_prepare_bf16(m, x, cache)


def _core_gn_prepare_bf16(m, x, cache):
    """model_gauss_newton_prepare through the binding with the bfloat16 flag set."""
    import elman._c_backend as C
    arch = C._arch(1, False, 0.0, 0, (0, 0), "bfloat16")
    T, B = x.shape
    sizes = _core.model_sizes(T, B, m.input_size, m.hidden_size, m.output_size, 0, False,
                              arch, False, 4)
    P = np.empty(sizes["Y"], F32)
    hs = np.zeros(sizes["hs"], F32)
    work = np.zeros(sizes["work_bytes"], np.uint8)
    return _core.model_gauss_newton_prepare(
        P, hs, work, np.empty(0, F32), x.reshape(-1).astype(np.int64), m.params, T, B,
        m.input_size, m.hidden_size, m.output_size, 0, True, 0, False, arch, None)


@pytest.mark.parametrize("code", [2, -1, 7])
def test_an_unknown_compute_code_is_refused_by_c(code):
    arch = (1, False, 0.0, 0, 0, 0, code)
    with pytest.raises(ValueError):
        _core.model_sizes(2, 2, 3, 4, 3, 0, False, arch, False, 4)


def test_threads_share_rows_and_panels_so_results_are_the_same_bits(kernel):
    """The bfloat16 GEMM splits C's rows among threads and the step its column panels:
    every element is summed in one order whatever the thread count, so the gradient is the
    same bit for bit at one and two threads (large enough that both split)."""
    m, x, y, kw = _problem(16, 64, 20, 256, 20)
    before = elman.get_num_threads()
    try:
        out = []
        for threads in (1, 2):
            elman.set_num_threads(threads)
            out.append(_fb(_c_backend, m, x, y, kw, "bfloat16")[1:])
    finally:
        elman.set_num_threads(before)
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


# ---- the kernels: AMX tiles, vdpbf16ps, the emulation ---------------------------------------

# Shapes that reach every part of the AMX kernel (csrc/bf16.c): batches of one row (the step
# falls back to vdpbf16ps), of 16 and fewer (one row tile), of 17 to 32 (two) and past 32;
# full 16 x 16 tiles of C (H a multiple of 32: loaded and stored in place) and clipped ones;
# k-pairs that fill the 16-pair tiles and ones that leave them part empty (H odd); several
# K blocks (T*B > 256 in the weight gradients) and N blocks (O > 512), and the head's narrow
# last panel.
KERNEL_CASES = [
    dict(T=3, B=1, I=5, H=64, O=9),
    dict(T=4, B=16, I=8, H=64, O=16),
    dict(T=5, B=17, I=6, H=96, O=33, ids=False),
    dict(T=3, B=90, I=7, H=128, O=530),
    dict(T=3, B=33, I=5, H=31, O=3, nonlinearity="relu"),
    dict(T=2, B=64, I=9, H=257, O=65, ids=False, xent=False),
    dict(T=6, B=5, I=4, H=32, O=7, num_layers=2, bidirectional=True),
]


@pytest.mark.parametrize("case", KERNEL_CASES,
                         ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_every_kernel_gives_the_same_sums_up_to_their_order(case):
    """Each kernel against the bfloat16 model, and against each other: the same rounded
    operands, float32 sums in another order, so they agree to float32 rounding of sums
    over K terms, far below the bfloat16 rounding's effect."""
    m, x, y, kw = _problem(**case)
    vr, gr, hr = _fb(R, m, x, y, kw, "bfloat16")
    vf, gf, hf = _fb(R, m, x, y, kw, "float32")
    got = {}
    for name in KERNELS:
        with elman.bf16_kernel(name):
            got[name] = _fb(_c_backend, m, x, y, kw, "bfloat16")
    for name, (vc, gc, hc) in got.items():
        assert abs(vc - vr) <= 1e-4 * max(1.0, abs(vr)), name
        _close_to_model(gc, gr, gf, f"{name} gradient")
        _close_to_model(hc, hr, hf, f"{name} states")
    first = got[KERNELS[0]]
    for name, (vc, gc, hc) in got.items():
        np.testing.assert_allclose(hc, first[2], rtol=0, atol=1e-4 * np.abs(first[2]).max(),
                                   err_msg=name)
        np.testing.assert_allclose(gc, first[1], rtol=0, atol=5e-4 * np.abs(first[1]).max(),
                                   err_msg=name)


def test_bf16_kernel_get_set_and_restore():
    best = elman.bf16_kernel()
    assert best == KERNELS[-1]
    assert "bfloat16" in elman.config() and best in elman.config()["bfloat16"]
    with elman.bf16_kernel("emulated") as name:
        assert name == "emulated" == elman.bf16_kernel()
        assert not _core.bf16_native()
        with elman.bf16_kernel(" AUTO ") as inner:
            assert inner == best
        assert elman.bf16_kernel() == "emulated"
    assert elman.bf16_kernel() == best
    assert _core.bf16_native() == (best != "emulated")


def test_bf16_kernel_is_a_ceiling_under_a_slower_path():
    """A kernel path without the native kernels (avx2, generic) runs the emulation,
    whatever kernel is set; the setting comes back with the path."""
    best = elman.bf16_kernel()
    with elman.bf16_kernel(best):
        with elman.cpu_path("generic"):
            assert elman.bf16_kernel() == "emulated"
        assert elman.bf16_kernel() == best
    assert elman.bf16_kernel() == best


def _cpuinfo_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def test_the_best_kernel_the_cpu_reports_is_in_use():
    """Where Linux lists AMX-BF16 (or AVX512_BF16) and the AVX-512 path is built with a
    compiler that knows the instructions, that kernel is the one in use: a refused tile
    permission or a failed detection would drop to a slower kernel and pass every parity
    test."""
    import re
    flags = _cpuinfo_flags()
    compiler = elman.config()["compiler"]
    m = re.match(r"(gcc|clang) (\d+)", compiler)
    if "avx512" not in elman.cpu_paths() or not m:
        pytest.skip(f"no AVX-512 path or an unknown compiler ({compiler})")
    gcc = m.group(1) == "gcc"
    major = int(m.group(2))
    if "amx_bf16" in flags and "amx_tile" in flags and major >= (11 if gcc else 12):
        assert elman.bf16_kernel() == "amx"
    elif "avx512_bf16" in flags and (major >= 10 or not gcc):
        assert elman.bf16_kernel() == "vdpbf16ps"
    else:
        assert elman.bf16_kernel() == "emulated"


@pytest.mark.parametrize("bad, err", [("amx2", ValueError), ("", ValueError),
                                      (3, TypeError), (None, None)])
def test_bf16_kernel_refuses_unknown_names(bad, err):
    before = elman.bf16_kernel()
    if err is None:
        assert elman.bf16_kernel(bad) == before  # None reads the setting
        return
    with pytest.raises(err, match="kernel"):
        elman.bf16_kernel(bad)
    assert elman.bf16_kernel() == before


def test_a_kernel_the_cpu_lacks_is_refused():
    for name in ("vdpbf16ps", "amx"):
        if name in KERNELS:
            with elman.bf16_kernel(name) as got:
                assert got == name
        else:
            with pytest.raises(ValueError, match="lacks"):
                elman.bf16_kernel(name)


def test_ELMAN_BF16_KERNEL_sets_the_kernel_at_import():
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "ELMAN_BF16_KERNEL"}
    code = "import elman; print(elman.bf16_kernel())"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "ELMAN_BF16_KERNEL":
                         "emulated"}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "emulated"
    out = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code],
                         env={**env, "ELMAN_BF16_KERNEL": "bogus"}, capture_output=True,
                         text=True)
    assert out.returncode != 0 and "ELMAN_BF16_KERNEL='bogus' ignored" in out.stderr


@pytest.mark.skipif("amx" not in KERNELS, reason="the CPU has no AMX-BF16")
def test_amx_probe_counts_its_flops():
    flops, _ = _core.bf16_amx_probe(1000)
    assert flops == 1000 * 4 * 16384 * elman.get_num_threads()
    with pytest.raises(ValueError):
        _core.bf16_amx_probe(-1)
    with elman.cpu_path("avx2"), pytest.raises(ValueError):
        _core.bf16_amx_probe(10)


@pytest.mark.skipif("amx" not in KERNELS, reason="the CPU has no AMX-BF16")
def test_amx_shares_the_tiles_with_torch_in_one_thread():
    """elman loads its tile configuration before its products and releases the tiles after
    them; PyTorch's oneDNN keeps its own on the same thread (bfloat16 matmul runs on AMX
    where the CPU has it). Interleaved, each gets the results it gets alone."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(128, 96, generator=g).to(torch.bfloat16)
        b = torch.randn(96, 160, generator=g).to(torch.bfloat16)
        want_t = (a @ b).float()
        x = np.random.default_rng(4).integers(0, 20, (9, 40))

        def steps(interleave):
            m = elman.ElmanRNN(20, 64, 20, seed=5, compute_dtype="bfloat16")
            opt = elman.Adagrad(m, lr=0.05)
            losses = []
            for _ in range(3):
                losses.append(elman.train_step(m, opt, x[:-1], x[1:])[0])
                if interleave:
                    assert torch.equal((a @ b).float(), want_t)
            return losses, m.params.copy()
        (la, pa), (lb, pb) = steps(False), steps(True)
        assert la == lb
        np.testing.assert_array_equal(pa, pb)
    finally:
        torch.set_num_threads(before)
