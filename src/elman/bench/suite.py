"""The measurements: problem sizes, timing, the peers' step functions, and the worker that
runs every section at one thread count (elman.bench runs one worker process per count)."""
from __future__ import annotations

import dataclasses
import functools
import gc
import importlib
import itertools
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy

import elman
from elman import _core, kernels, reference
from elman.layout import param_layout

from . import probes

SECTIONS = ("limits", "adagrad", "rnn", "generate", "scaling", "torch", "overhead",
            "bf16", "curvature", "sweep", "long-range")
# what a run without --only measures: every section but the grid of shapes (an hour at
# the full sizes) and the long-range training (hours)
OPT_IN_SECTIONS = ("sweep", "long-range")
DEFAULT_SECTIONS = tuple(s for s in SECTIONS if s not in OPT_IN_SECTIONS)
PRESET_FLAGS = {"full": [], "quick": ["--quick"], "tiny": ["--tiny"]}
LR, EPS = 0.01, 1e-10            # torch.optim.Adagrad's defaults, given explicitly to every peer
ADAGRAD_BYTES = 20               # per float32 element: read p, g, S (12), write p, S (8)
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

ADAGRAD_IMPLS = {
    "elman": "elman kernels.adagrad_update",
    "numpy": "numpy (elman.reference)",
    "torch_for": "torch foreach=False",
    "torch_foreach": "torch foreach=True",
    "torch_fused": "torch fused=True",
}
RNN_IMPLS = {
    "elman": "elman",
    "numpy": "numpy (elman.reference)",
    "torch": "torch (nn.RNN, fused Adagrad)",
    "jax": "jax (jit, lax.scan, optax)",
}
GENERATE_IMPLS = {"elman": "elman ElmanRNN.sample", "numpy": "numpy per-step loop"}
TORCH_ADAGRAD_IMPLS = {
    "elman": "elman.torch.Adagrad",
    "torch_foreach": "torch foreach=True",
    "torch_fused": "torch fused=True",
}
TORCH_RNN_IMPLS = {"elman": "elman.torch.ElmanRNN", "torch": "torch.nn.RNN"}
SWEEP_IMPLS = {"elman": "elman (TrainStep)", "torch": "torch (nn.RNN, fused Adagrad)",
               "jax": "jax (jit, lax.scan, optax)"}


# ---- problem sizes ------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    """One RNN problem. I inputs (the vocabulary V when ``ids``), H hidden, O outputs,
    T steps, B batch."""
    name: str
    I: int
    H: int
    O: int
    T: int
    B: int
    ids: bool = True
    layers: int = 1

    @property
    def label(self) -> str:
        inputs = f"V={self.I}" if self.ids and self.I == self.O else f"I={self.I} O={self.O}"
        stack = f" L={self.layers}" if self.layers > 1 else ""
        return f"{self.name} {inputs} H={self.H} T={self.T} B={self.B}{stack}"

    @property
    def flops(self) -> int:
        """Matrix-product FLOPs of one training step: per layer H_{t-1} W_hh, dW_hh and
        dA W_hh^T (6 T B H H); H W_hy, dW_hy and dY W_hy^T (6 T B H O); X W_xh and dW_xh
        for dense input (4 T B I H; a token-id input is a gather and a scatter instead);
        each layer above the first reads the one below through W_xh (H, H): its product,
        weight gradient and input gradient (6 T B H H)."""
        T, B, I, H, O, L = self.T, self.B, self.I, self.H, self.O, self.layers
        return (6 * T * B * H * H * L + 6 * T * B * H * O + 6 * T * B * H * H * (L - 1)
                + (0 if self.ids else 4 * T * B * I * H))

    def gemms(self):
        """(role, m, k, n) of the step's GEMM shapes, (m, k) @ (k, n)."""
        T, B, H, O = self.T, self.B, self.H, self.O
        return [("recurrence (B,H)x(H,H)", B, H, H), ("output (TB,H)x(H,O)", T * B, H, O),
                ("weight grad (H,TB)x(TB,H)", H, T * B, H)]


@dataclass(frozen=True)
class Sizes:
    """What one preset measures, and how long each measurement lasts."""
    adagrad_n: tuple                 # single flat buffers
    adagrad_multi: Optional[tuple]   # (tensors, n each): a model of many tensors, or None
    peak_gemm: int                   # square sgemm size giving the reference peak
    rnn: tuple                       # Shapes of the training-step section
    generate_shape: Shape
    generate_steps: int
    scaling_base: Shape
    sweep: dict                      # axis ("T", "B", "H") -> values
    min_time: float                  # seconds of calls per sample, at least
    repeats: int                     # samples per measurement (the median is reported)
    settle: float = 0.3              # seconds of idling before each measurement
    sparse: tuple = ()               # (V, H, T, B) of the sparse-row Adagrad comparison
    torch_adagrad: tuple = ()        # (tensors, n) cases of elman.torch.Adagrad vs torch
    torch_rnn: tuple = ()            # Shapes of elman.torch.ElmanRNN vs torch.nn.RNN
    generate_batched: tuple = ()     # Shapes (B = streams) of sample(n, batch=B)
    overhead: tuple = ()             # Shapes of the Python layer's cost per training step
    fma_iters: int = 200_000         # rounds of the FMA peak probe per call (~0.6 ms)
    sweep_grid: tuple = ()           # (H values, B values, T values, layer counts)
    bf16: tuple = ()                 # Shapes of the float32 / bfloat16 compute comparison

    def stream_n(self):
        """Buffer lengths of the bandwidth probe: every Adagrad n, so ratios match."""
        ns = set(self.adagrad_n)
        if self.adagrad_multi:
            ns.add(self.adagrad_multi[0] * self.adagrad_multi[1])
        return sorted(ns)


S1 = Shape("S1", 65, 100, 65, 25, 1)
S2 = Shape("S2", 65, 256, 65, 64, 32)
S3 = Shape("S3", 65, 512, 65, 128, 64)
S4 = Shape("S4", 10, 5, 2, 10, 100, ids=False)
S2_QUICK = Shape("S2q", 65, 128, 65, 32, 16)
PRESETS = {
    "full": Sizes(
        adagrad_n=(10**5, 10**6, 10**7), adagrad_multi=(100, 10**5), peak_gemm=2048,
        rnn=(S1, S2, S3, S4), generate_shape=S1, generate_steps=10_000, scaling_base=S2,
        sweep={"T": (8, 16, 32, 64, 128, 256), "B": (1, 2, 4, 8, 16, 32, 64, 128),
               "H": (32, 64, 128, 256, 512)},
        min_time=0.2, repeats=5,
        sparse=((10_000, 256, 64, 32), (50_000, 256, 64, 32)),
        torch_adagrad=((100, 10**5), (1, 10**7)), torch_rnn=(S1, S2, S3),
        generate_batched=(Shape("G1", 65, 100, 65, 1, 16), Shape("G2", 65, 256, 65, 1, 64)),
        overhead=(Shape("O1", 4, 4, 4, 1, 1), S1),
        sweep_grid=((32, 64, 128, 256, 384, 512, 768, 1024), (1, 4, 16, 64), (16, 64),
                    (1, 2)),
        bf16=(S1, Shape("b1", 65, 512, 65, 64, 1), Shape("b4", 65, 256, 65, 64, 4), S2,
              Shape("F1", 65, 384, 65, 50, 16), Shape("F2", 65, 512, 65, 64, 64),
              Shape("F3", 65, 1024, 65, 64, 16))),
    "quick": Sizes(
        adagrad_n=(10**5, 10**6), adagrad_multi=None, peak_gemm=512,
        rnn=(S1, S2_QUICK, S4), generate_shape=S1, generate_steps=2_000,
        scaling_base=S2_QUICK,
        sweep={"T": (8, 16, 32, 64), "B": (4, 8, 16, 32), "H": (32, 64, 128, 256)},
        min_time=0.05, repeats=3, settle=0.1, sparse=((10_000, 128, 32, 16),),
        torch_adagrad=((10, 10**5), (1, 10**6)), torch_rnn=(S1, S2_QUICK),
        generate_batched=(Shape("G2", 65, 256, 65, 1, 64),),
        overhead=(Shape("O1", 4, 4, 4, 1, 1), S1),
        sweep_grid=((64, 256, 512), (1, 16), (16,), (1, 2)),
        bf16=(S1, S2_QUICK, Shape("F1", 65, 384, 65, 50, 16))),
    "tiny": Sizes(   # for the test suite: every code path in a few seconds
        adagrad_n=(1000,), adagrad_multi=(3, 1000), peak_gemm=64,
        rnn=(Shape("S1t", 11, 8, 11, 4, 1), Shape("S4t", 10, 5, 2, 3, 4, ids=False)),
        generate_shape=Shape("S1t", 11, 8, 11, 1, 1), generate_steps=20,
        scaling_base=Shape("S2t", 11, 8, 11, 4, 2),
        sweep={"T": (2, 4), "B": (1, 2), "H": (4, 8)},
        min_time=0.001, repeats=2, settle=0.0, sparse=((50, 8, 4, 2),),
        torch_adagrad=((3, 1000), (1, 1000)), torch_rnn=(Shape("S1t", 11, 8, 11, 4, 2),),
        generate_batched=(Shape("Gt", 11, 8, 11, 1, 5),),
        overhead=(Shape("O1", 4, 4, 4, 1, 1),), fma_iters=2000,
        sweep_grid=((8,), (1, 2), (4,), (1, 2)),
        bf16=(Shape("Bt", 11, 8, 11, 4, 2),)),
}


# ---- small helpers ------------------------------------------------------------------------

def optional_module(name):
    """The module ``name``, or None when it is not installed: every peer is optional."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _version(module) -> str:
    """A module's version, or "not installed" for None."""
    return getattr(module, "__version__", "?") if module is not None else "not installed"


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (what platform knows elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _clock(fn, number) -> float:
    """Seconds taken by ``number`` calls of fn(), with the garbage collector off (as
    timeit does), so that a collection triggered by one peer's garbage is not billed to it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return time.perf_counter() - start
    finally:
        if was_enabled:
            gc.enable()


def measure(fn, min_time, repeats):
    """Seconds per call of fn(): the median of ``repeats`` samples, each a batch of calls
    lasting at least ``min_time``, after two warm-up calls (JIT compilation, first touch of
    memory, workspaces sized on first use).

    Returns (median, samples, calls per sample, what the first call returned).
    """
    first = fn()
    fn()
    number, elapsed = 1, _clock(fn, 1)
    while elapsed < min_time / 4:
        number *= 4
        elapsed = _clock(fn, number)
    number = max(1, math.ceil(number * min_time / elapsed))
    samples = [_clock(fn, number) / number for _ in range(repeats)]
    return statistics.median(samples), samples, number, first


def _duration(seconds) -> str:
    """12.3 µs, 4.56 ms, 1.23 s."""
    if seconds < 1e-3:
        return f"{_num(seconds * 1e6)} µs"
    if seconds < 1:
        return f"{_num(seconds * 1e3)} ms"
    return f"{_num(seconds)} s"


def _num(x) -> str:
    """Three significant digits or so, with thousands separators."""
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if x >= 0.01 else f"{x:.2g}"


def _si(x) -> str:
    """12.3k, 4.56M: counts per second."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{_num(x / scale)}{unit}"
    return _num(x)


def _count(n) -> str:
    """'1e5' for 100000; the number itself otherwise."""
    e = round(math.log10(n))
    return f"1e{e}" if 10 ** e == n else f"{n:,}"


def doubling_ratios(points):
    """Time ratio per doubling of the swept size between consecutive points:
    (t2 / t1) ** (1 / log2(v2 / v1)). Linear scaling gives 2. ``points`` are dicts with
    "value", "status" and, when ok, "seconds"."""
    ok = [p for p in points if p["status"] == "ok"]
    return [(b["seconds"] / a["seconds"]) ** (1 / math.log2(b["value"] / a["value"]))
            for a, b in zip(ok, ok[1:])]


# ---- step functions of the peers ----------------------------------------------------------

def _adagrad_step(impl, tensors, n, torch):
    """One Adagrad step over ``tensors`` x ``n`` float32 parameters. elman and the NumPy
    reference update one flat buffer of tensors * n elements in one call (elman's design);
    torch updates a list of ``tensors`` parameters."""
    rng = np.random.default_rng(0)
    if impl in ("elman", "numpy"):
        total = tensors * n
        p = rng.standard_normal(total, dtype=np.float32)
        g = rng.standard_normal(total, dtype=np.float32)
        s = np.zeros(total, np.float32)
        update = kernels.adagrad_update if impl == "elman" else reference.adagrad_update
        steps = itertools.count(1)
        return lambda: update(p, g, s, lr=LR, step=next(steps))
    flags = {"torch_for": dict(foreach=False), "torch_foreach": dict(foreach=True),
             "torch_fused": dict(fused=True)}[impl]
    opt = torch.optim.Adagrad(_torch_params(tensors, n, torch), lr=LR, eps=EPS, **flags)
    return opt.step


def _torch_params(tensors, n, torch):
    """``tensors`` float32 torch parameters of n elements, each with its gradient set."""
    rng = np.random.default_rng(0)
    params = []
    for _ in range(tensors):
        param = torch.nn.Parameter(torch.from_numpy(rng.standard_normal(n, dtype=np.float32)))
        param.grad = torch.from_numpy(rng.standard_normal(n, dtype=np.float32))
        params.append(param)
    return params


def _torch_adagrad_step(impl, tensors, n, torch):
    """One step of elman.torch.Adagrad ("elman") or of torch.optim.Adagrad (the other
    impls, as in the adagrad section) on a list of torch parameters (a torch user's model)."""
    if impl != "elman":
        return _adagrad_step(impl, tensors, n, torch)
    import elman.torch as et
    return et.Adagrad(_torch_params(tensors, n, torch), lr=LR, eps=EPS).step


def _rnn_data(shape):
    """x (token ids (T, B) or floats (T, B, I)), class targets y (T, B), h0 zeros (B, H)."""
    rng = np.random.default_rng(0)
    T, B = shape.T, shape.B
    if shape.ids:
        x = rng.integers(0, shape.I, size=(T, B))
    else:
        x = rng.standard_normal((T, B, shape.I), dtype=np.float32)
    y = rng.integers(0, shape.O, size=(T, B))
    return x, y, np.zeros((B, shape.H), np.float32)


def _elman_rnn_step(shape, backend="c"):
    """elman.ElmanRNN + elman.Adagrad on ``backend`` ("c", or "numpy": elman.reference)."""
    x, y, h0 = _rnn_data(shape)
    m = elman.ElmanRNN(shape.I, shape.H, shape.O, seed=0)
    opt = elman.Adagrad(m, lr=LR, eps=EPS)

    def step():
        with elman.backend(backend):
            loss, _ = m.forward_backward(x, y, h0)
            opt.step()
        return loss
    return step


def _elman_train_step(shape, compute_dtype=None):
    """elman's steady-state training step: an elman.TrainStep of a num_layers = shape.layers
    model with Adagrad (forward, cross-entropy, BPTT, update: one C call), its products in
    compute_dtype (None: float32)."""
    x, y, _ = _rnn_data(shape)
    m = elman.ElmanRNN(shape.I, shape.H, shape.O, num_layers=shape.layers, seed=0,
                       compute_dtype=compute_dtype)
    step = elman.TrainStep(m, elman.Adagrad(m, lr=LR, eps=EPS), shape.T, shape.B)
    return lambda: step(x, y)[0]


def _torch_rnn_step(shape, torch, module="torch"):
    """nn.RNN + nn.Linear + F.cross_entropy + backward + Adagrad(fused=True). Token ids go
    in one-hot (nn.RNN has no id input); the one-hot tensor is built once, outside the step.
    module="elman": the same step with elman.torch.ElmanRNN (same weights) for nn.RNN."""
    F = torch.nn.functional
    x, y, h0 = (torch.from_numpy(a) for a in _rnn_data(shape))
    if shape.ids:
        x = F.one_hot(x, shape.I).float()
    y, h0 = y.reshape(-1), h0[None].repeat(shape.layers, 1, 1)
    torch.manual_seed(0)
    rnn = torch.nn.RNN(shape.I, shape.H, num_layers=shape.layers, nonlinearity="tanh")
    if module == "elman":
        import elman.torch as et
        mine = et.ElmanRNN(shape.I, shape.H, num_layers=shape.layers)
        mine.load_state_dict(rnn.state_dict())
        rnn = mine
    head = torch.nn.Linear(shape.H, shape.O)
    opt = torch.optim.Adagrad([*rnn.parameters(), *head.parameters()], lr=LR, eps=EPS,
                              fused=True)

    def step():
        opt.zero_grad()
        out, _ = rnn(x, h0)
        loss = F.cross_entropy(head(out).reshape(-1, shape.O), y)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def _jax_rnn_step(shape, jax, optax):
    """One jitted function: ids gather W_xh[x] (or x @ W_xh), lax.scan over the Elman
    recurrence, output projection, mean cross-entropy, value_and_grad, optax.adagrad; the
    parameter and state buffers are donated."""
    jnp = jax.numpy
    x, y, h0 = _rnn_data(shape)
    x = x.astype(np.int32) if shape.ids else x
    rng = np.random.default_rng(0)
    k = 1 / math.sqrt(shape.H)
    layout, _ = param_layout(shape.I, shape.H, shape.O, shape.layers)
    params = {name: jnp.asarray(rng.uniform(-k, k, size).astype(np.float32))
              for name, size, _ in layout}
    opt = optax.adagrad(LR, initial_accumulator_value=0.0, eps=EPS)

    def loss_fn(p, x, y, h0):
        hs = x
        for l in range(shape.layers):
            sfx = f"_l{l}" if l else ""
            W_xh, W_hh, b_h = p["W_xh" + sfx], p["W_hh" + sfx], p["b_h" + sfx]
            a = (W_xh[hs] if l == 0 and shape.ids else hs @ W_xh) + b_h

            def cell(h, a_t, W_hh=W_hh):
                h = jnp.tanh(a_t + h @ W_hh)
                return h, h
            _, hs = jax.lax.scan(cell, h0, a)
        logits = hs @ p["W_hy"] + p["b_y"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(p, s, x, y, h0):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y, h0)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    data = jax.device_put((x, y.astype(np.int32), h0))
    carry = [params, opt.init(params)]

    def step():
        carry[0], carry[1], loss = train_step(carry[0], carry[1], *data)
        jax.block_until_ready((carry[0], carry[1], loss))
        return float(loss)
    return step


def _elman_sampler(m, n, batch=None):
    """m.sample(n) (or n steps of ``batch`` streams) after checking once that it returns
    the ids asked for, in range."""
    want = (n,) if batch is None else (batch, n)
    ids = m.sample(n, start=0, batch=batch, temperature=1.0, seed=0)
    if np.shape(ids) != want or ids.min() < 0 or ids.max() >= m.output_size:
        raise ValueError(f"ElmanRNN.sample returned shape {np.shape(ids)}, values "
                         f"[{ids.min()}, {ids.max()}]; expected {want} in "
                         f"[0, {m.output_size})")
    return lambda: m.sample(n, start=0, batch=batch, temperature=1.0, seed=0)


def _numpy_sampler(m, n, start=0, seed=0, batch=None):
    """Temperature-1 sampling, one step at a time: h = tanh(W_xh[id] + h W_hh + b_h),
    z = h W_hy + b_y, next id drawn from softmax(z) by counting the entries of its
    cumulative sum below the uniform. Tuned as far as NumPy goes: preallocated buffers, no
    normalization, uniforms drawn up front, the bias folded into the gathered row. With
    ``batch`` = B, the B streams' rows go through each step's products together (every
    array gains a leading axis of B) and the draw is vectorized over them."""
    p = m.named_params()
    W_hh, W_hy, b_y = p["W_hh"], p["W_hy"], p["b_y"]
    xb = p["W_xh"] + p["b_h"]
    H, O = m.hidden_size, m.output_size
    rows = () if batch is None else (batch,)

    def sample():
        u = np.random.default_rng(seed).random((n, *rows, 1), dtype=np.float32)
        out = np.empty((*rows, n), np.int64)
        h, a = np.zeros((*rows, H), np.float32), np.empty((*rows, H), np.float32)
        z, c = np.empty((*rows, O), np.float32), np.empty((*rows, O), np.float32)
        idx = np.full(rows, start, np.int64)
        for t in range(n):
            np.matmul(h, W_hh, out=a)
            a += xb[idx]
            np.tanh(a, out=h)
            np.matmul(h, W_hy, out=z)
            z += b_y
            z -= z.max(axis=-1, keepdims=True)
            np.exp(z, out=z)
            np.cumsum(z, axis=-1, out=c)
            idx = np.minimum((c <= u[t] * c[..., -1:]).sum(axis=-1), O - 1)
            out[..., t] = idx
        return out
    return sample


# ---- the worker: one thread count, every section ------------------------------------------

class Worker:
    """Runs the selected sections in this process and collects their raw numbers."""

    def __init__(self, sizes, threads, openblas, peers):
        self.sizes, self.peers = sizes, peers
        self.tag = f"[{threads} thread{'s' if threads > 1 else ''}, OpenBLAS env {openblas}]"

    def log(self, message):
        print(f"{self.tag} {message}", file=sys.stderr, flush=True)

    def time(self, what, build, returns=None):
        """Build a step function and time it. A failure is recorded as the result (a peer's
        missing feature must not stop the suite); the test suite checks elman's own rows."""
        try:
            fn = build()
            # Thread pools that spin after their last call (OpenMP runtimes of torch and
            # elman, XLA's, OpenBLAS's) would otherwise take the cores from whatever runs
            # next: let them fall asleep first.
            time.sleep(self.sizes.settle)
            seconds, samples, number, first = measure(fn, self.sizes.min_time,
                                                      self.sizes.repeats)
        except Exception as err:  # noqa: BLE001 (any failure is reported, then the suite goes on)
            self.log(f"{what}: error {type(err).__name__}: {err}")
            return {"status": f"error: {type(err).__name__}: {err}"}
        self.log(f"{what}: {_duration(seconds)}")
        result = {"status": "ok", "seconds": seconds, "samples": samples,
                  "calls_per_sample": number}
        if returns:
            result[returns] = first
        return result

    def limits(self):
        from scipy.linalg.blas import sgemm
        method = "C loop (elman.bench.probes.stream_probe): s += g, p -= g"
        stream = []
        for n in self.sizes.stream_n():
            rng = np.random.default_rng(0)
            p, s = np.zeros(n, np.float32), np.zeros(n, np.float32)
            g = rng.standard_normal(n, dtype=np.float32) * np.float32(1e-3)
            step = functools.partial(probes.stream_probe, p, s, g)
            r = self.time(f"stream probe n={_count(n)}", lambda: step)
            if r["status"] == "ok":
                r["gbps"] = ADAGRAD_BYTES * n / r["seconds"] / 1e9
            stream.append(dict(n=n, method=method, **r))

        def gemm(what, role, m, k, n):
            rng = np.random.default_rng(0)
            a = np.asfortranarray(rng.standard_normal((m, k), dtype=np.float32))
            b = np.asfortranarray(rng.standard_normal((k, n), dtype=np.float32))
            c = np.zeros((m, n), np.float32, order="F")   # written in place: no allocation
            call = functools.partial(sgemm, 1.0, a, b, c=c, overwrite_c=True)
            r = self.time(f"sgemm {what} {role} {m}x{k}x{n}", lambda: call)
            if r["status"] == "ok":
                r["gflops"] = 2 * m * k * n / r["seconds"] / 1e9
            if role.startswith("recurrence"):
                # the same product on elman's own per-step kernel (C-ordered, as it runs)
                # straight to the binding, as scipy's sgemm goes straight to Fortran: a few
                # microseconds of argument checks would swamp the smallest products
                ac, bc = np.ascontiguousarray(a).ravel(), np.ascontiguousarray(b).ravel()
                own = functools.partial(_core.step_gemm, np.zeros(m * n, np.float32), ac, bc,
                                        m, k, n)
                e = self.time(f"elman step kernel {what} {m}x{k}x{n}", lambda: own)
                if e["status"] == "ok":
                    r["elman_gflops"] = 2 * m * k * n / e["seconds"] / 1e9
            return dict(problem=what, role=role, m=m, k=k, n=n, **r)

        # the FMA units' peak on these threads: the ceiling the GEMMs' rates are shares of
        fma = self.time("fma peak", lambda: functools.partial(probes.fma_probe,
                                                              self.sizes.fma_iters),
                        returns="flops")
        if fma["status"] == "ok":
            fma["gflops"] = fma["flops"] / fma["seconds"] / 1e9
        # and the bfloat16 units' (vdpbf16ps, AMX tiles), where the CPU has them
        def unit_peak(what, probe, iters, missing):
            if probe(0) is None:
                return {"status": missing}
            r = self.time(what, lambda: functools.partial(probe, iters), returns="flops")
            if r["status"] == "ok":
                r["gflops"] = r["flops"] / r["seconds"] / 1e9
            return r
        bf16 = unit_peak("bf16 peak", probes.bf16_probe, self.sizes.fma_iters,
                         "no AVX512_BF16")
        amx = unit_peak("amx peak", probes.amx_probe, max(1, self.sizes.fma_iters // 10),
                        "no AMX-BF16")
        N = self.sizes.peak_gemm
        peak = gemm("peak", "square", N, N, N)
        rows = [gemm(shape.name, *g) for shape in self.sizes.rnn for g in shape.gemms()]
        for r in rows:
            if r["status"] == peak["status"] == "ok":
                r["pct_peak"] = 100 * r["gflops"] / peak["gflops"]
        return {"stream": stream, "fma_peak": fma, "bf16_peak": bf16, "amx_peak": amx,
                "sgemm_peak": peak, "sgemm": rows}

    def adagrad(self, probe_gbps):
        torch = self.peers["torch"]
        cases = [(1, n) for n in self.sizes.adagrad_n]
        if self.sizes.adagrad_multi:
            cases.append(tuple(self.sizes.adagrad_multi))
        rows = []
        for tensors, n in cases:
            total = tensors * n
            case = f"n={_count(n)}" if tensors == 1 else f"{tensors} tensors of {_count(n)}"
            for impl in ADAGRAD_IMPLS:
                if impl.startswith("torch") and torch is None:
                    r = {"status": "not installed"}
                else:
                    r = self.time(f"adagrad {case} {impl}",
                                  functools.partial(_adagrad_step, impl, tensors, n, torch))
                if r["status"] == "ok":
                    r["us"] = r["seconds"] * 1e6
                    r["gbps"] = ADAGRAD_BYTES * total / r["seconds"] / 1e9
                    if total in probe_gbps:
                        r["pct_probe"] = 100 * r["gbps"] / probe_gbps[total]
                rows.append(dict(case=case, n=total, tensors=tensors, impl=impl, **r))
        return rows

    def _step_cell(self, what, shape, impl, make, missing, peak_gflops, fma_gflops):
        """One implementation's training step at one shape: its timing, tokens/s, GFLOP/s
        and shares of the sgemm and FMA peaks (those known)."""
        if missing.get(impl):
            return {"status": "not installed"}
        r = self.time(f"{what} {shape.label} {impl}", functools.partial(make, shape),
                      returns="loss")
        if r["status"] == "ok":
            r["ms"] = r["seconds"] * 1e3
            r["tokens_per_s"] = shape.T * shape.B / r["seconds"]
            r["gflops"] = shape.flops / r["seconds"] / 1e9
            if peak_gflops:
                r["pct_peak"] = 100 * r["gflops"] / peak_gflops
            if fma_gflops:
                r["pct_fma"] = 100 * r["gflops"] / fma_gflops
        return r

    def _peers(self):
        """The peers' training steps, and which of them are not installed."""
        torch, jax, optax = (self.peers[k] for k in ("torch", "jax", "optax"))
        makers = {"torch": lambda s: _torch_rnn_step(s, torch),
                  "jax": lambda s: _jax_rnn_step(s, jax, optax)}
        return makers, {"torch": torch is None, "jax": jax is None or optax is None}

    def rnn(self, peak_gflops, fma_gflops=None):
        peers, missing = self._peers()
        makers = {"elman": lambda s: _elman_rnn_step(s, "c"),
                  "numpy": lambda s: _elman_rnn_step(s, "numpy"), **peers}
        rows = []
        for shape in self.sizes.rnn:
            for impl, make in makers.items():
                r = self._step_cell("rnn", shape, impl, make, missing, peak_gflops,
                                    fma_gflops)
                rows.append(dict(shape=shape.label, **dataclasses.asdict(shape),
                                 flops=shape.flops, impl=impl, **r))
        return rows

    def torch_backend(self):
        """elman.torch against torch: the optimizer on a torch model's tensors, and the RNN
        module inside an otherwise identical torch training step."""
        torch = self.peers["torch"]
        out = {"adagrad": [], "rnn": []}
        for tensors, n in self.sizes.torch_adagrad:
            case = f"n={_count(n)}" if tensors == 1 else f"{tensors} tensors of {_count(n)}"
            for impl in TORCH_ADAGRAD_IMPLS:
                r = ({"status": "not installed"} if torch is None else
                     self.time(f"torch backend adagrad {case} {impl}",
                               functools.partial(_torch_adagrad_step, impl, tensors, n, torch)))
                if r["status"] == "ok":
                    r["us"] = r["seconds"] * 1e6
                    r["gbps"] = ADAGRAD_BYTES * tensors * n / r["seconds"] / 1e9
                out["adagrad"].append(dict(case=case, n=tensors * n, tensors=tensors,
                                           impl=impl, **r))
        for shape in self.sizes.torch_rnn:
            for impl in TORCH_RNN_IMPLS:
                r = ({"status": "not installed"} if torch is None else
                     self.time(f"torch backend rnn {shape.label} {impl}",
                               functools.partial(_torch_rnn_step, shape, torch, impl),
                               returns="loss"))
                if r["status"] == "ok":
                    r["ms"] = r["seconds"] * 1e3
                    r["tokens_per_s"] = shape.T * shape.B / r["seconds"]
                out["rnn"].append(dict(shape=shape.label, name=shape.name, impl=impl, **r))
        return out

    def adagrad_sparse(self):
        """Adagrad.step of a token-id model with a large vocabulary (V rows of W_xh, 16
        outputs), dense against sparse_rows=True, after a forward_backward on T*B ids."""
        rows = []
        for V, H, T, B in self.sizes.sparse:
            rng = np.random.default_rng(0)
            x = rng.integers(0, V, (T + 1, B))
            for impl, sparse in (("dense", False), ("sparse_rows", True)):
                def build(sparse=sparse):
                    m = elman.ElmanRNN(V, H, 16, seed=0)
                    opt = elman.Adagrad(m, lr=0.01, sparse_rows=sparse)
                    m.forward_backward(x[:-1], x[1:] % 16)
                    return opt.step
                r = self.time(f"adagrad step V={V} H={H} {impl}", build)
                if r["status"] == "ok":
                    r["us"] = r["seconds"] * 1e6
                rows.append(dict(V=V, H=H, T=T, B=B, impl=impl,
                                 distinct=int(len(np.unique(x[:-1]))), **r))
        return rows

    def generate(self, peak_gflops=None):
        shape, n = self.sizes.generate_shape, self.sizes.generate_steps
        m = elman.ElmanRNN(shape.I, shape.H, shape.O, seed=0)
        rows = []
        for impl in GENERATE_IMPLS:
            sampler = _elman_sampler if impl == "elman" else _numpy_sampler
            r = self.time(f"generate {n} steps {impl}", functools.partial(sampler, m, n))
            if r["status"] == "ok":
                r["chars_per_s"] = n / r["seconds"]
            rows.append(dict(shape=f"{shape.name} V={shape.I} H={shape.H}", steps=n,
                             streams=1, impl=impl, **r))
        # B streams in one call: a tenth of the steps each
        n = max(self.sizes.generate_steps // 10, 2)
        for shape in self.sizes.generate_batched:
            m = elman.ElmanRNN(shape.I, shape.H, shape.O, seed=0)
            B = shape.B
            flops = 2 * B * n * (shape.H * shape.H + shape.H * shape.O)
            for impl in GENERATE_IMPLS:
                sampler = _elman_sampler if impl == "elman" else _numpy_sampler
                r = self.time(f"generate {n} steps x {B} streams {impl}",
                              functools.partial(sampler, m, n, batch=B))
                if r["status"] == "ok":
                    r["chars_per_s"] = B * n / r["seconds"]
                    r["gflops"] = flops / r["seconds"] / 1e9
                    if peak_gflops:
                        r["pct_peak"] = 100 * r["gflops"] / peak_gflops
                rows.append(dict(shape=f"{shape.name} V={shape.I} H={shape.H} B={B}",
                                 steps=n, streams=B, impl=impl, **r))
        return rows

    def sweep(self, peak_gflops=None, fma_gflops=None):
        """The training step over a grid of shapes (V = 65, token ids): elman's TrainStep
        against torch and JAX, each cell's time, GFLOP/s and shares of the peaks."""
        peers, missing = self._peers()
        makers = {"elman": _elman_train_step, **peers}
        Hs, Bs, Ts, Ls = self.sizes.sweep_grid
        rows = []
        for L, T, B, H in itertools.product(Ls, Ts, Bs, Hs):
            shape = Shape("sweep", 65, H, 65, T, B, layers=L)
            for impl, make in makers.items():
                r = self._step_cell("sweep", shape, impl, make, missing, peak_gflops,
                                    fma_gflops)
                rows.append(dict(shape=shape.label, H=H, B=B, T=T, layers=L, V=65,
                                 flops=shape.flops, impl=impl, **r))
        return rows

    def bf16(self, fma_gflops=None, bf16_gflops=None):
        """elman's TrainStep with float32 and with bfloat16 products at the same shapes:
        each one's GFLOP/s and share of the FMA peak, the bfloat16 step's share of the peak
        of the bfloat16 kernel in use (bf16_gflops: {kernel: GFLOP/s}), and the speed-up."""
        rows = []
        kernel = _core.bf16_kernel()
        peak = (bf16_gflops or {}).get(kernel)
        for shape in self.sizes.bf16:
            row = dict(shape=shape.label, **dataclasses.asdict(shape), flops=shape.flops,
                       native=kernel != "emulated", kernel=kernel)
            for compute in ("float32", "bfloat16"):
                r = self._step_cell(f"bf16 section ({compute})", shape, "elman",
                                    lambda s, c=compute: _elman_train_step(s, c), {}, None,
                                    fma_gflops)
                if r["status"] == "ok" and compute == "bfloat16" and peak:
                    r["pct_bf16"] = 100 * r["gflops"] / peak
                row[compute] = r
            a, b = row["float32"], row["bfloat16"]
            if a["status"] == b["status"] == "ok":
                row["speedup"] = a["seconds"] / b["seconds"]
            rows.append(row)
        return rows

    def overhead(self):
        """Per training step: the C work alone (TrainStep.c_seconds: the step repeated in
        one binding call), one TrainStep call and one train_step call, stateful (h0 and
        h_out the same array), so that the difference is what the Python layer costs."""
        rows = []
        for shape in self.sizes.overhead:
            x, y, _ = _rnn_data(shape)
            m = elman.ElmanRNN(shape.I, shape.H, shape.O, seed=0)
            opt = elman.Adagrad(m, lr=LR, eps=EPS)
            step = elman.TrainStep(m, opt, shape.T, shape.B)
            h = np.zeros((1, shape.B, shape.H), np.float32)
            once = step.c_seconds(x, y, 10)
            n = max(10, int(self.sizes.min_time / max(once, 1e-9)))
            time.sleep(self.sizes.settle)
            c = statistics.median(step.c_seconds(x, y, n) for _ in range(self.sizes.repeats))
            row = dict(shape=shape.label, c_us=c * 1e6, c_steps=n)
            for impl, fn in (("TrainStep", lambda: step(x, y, h, h_out=h)),
                             ("train_step", lambda: elman.train_step(m, opt, x, y, h,
                                                                     h_out=h))):
                r = self.time(f"overhead {shape.label} {impl}", lambda fn=fn: fn)
                if r["status"] == "ok":
                    r["us"] = r["seconds"] * 1e6
                    r["overhead_us"] = r["us"] - row["c_us"]
                row[impl] = r
            rows.append(row)
        return rows

    def scaling(self):
        base = self.sizes.scaling_base
        result = {"base": base.label}
        for axis, values in self.sizes.sweep.items():
            points = []
            for v in values:
                shape = dataclasses.replace(base, **{axis: v})
                r = self.time(f"scaling {axis}={v}", functools.partial(_elman_rnn_step, shape))
                if r["status"] == "ok":
                    r["ms"] = r["seconds"] * 1e3
                points.append(dict(value=v, **r))
            result[axis] = {"points": points, "ratio_per_doubling": doubling_ratios(points)}
        return result


def _threadpools():
    """Every BLAS and OpenMP pool loaded in this process, as threadpoolctl sees it."""
    from threadpoolctl import threadpool_info
    keys = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads",
            "filepath")
    return [{k: d.get(k) for k in keys} for d in threadpool_info()]


def run_worker(preset, sections, threads, openblas, long_range=None):
    """Every selected section at one thread count, in this process. Returns the raw numbers
    and what they were measured with (threads, environment, elman's CPU path, BLAS).
    ``long_range``: overrides of the long-range grid (budget, lengths, tasks, methods)."""
    from threadpoolctl import threadpool_limits
    peers = {name: optional_module(name) for name in ("torch", "jax", "optax")}
    torch = peers["torch"]
    saved_torch_threads = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(threads)
    run = {
        "threads": threads, "openblas": openblas,
        "env": {k: os.environ.get(k, "unset") for k in (*OPENBLAS_VARS, *THREAD_VARS,
                                                         "XLA_FLAGS")},
        "cpu_model": _cpu_model(),
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "scipy": scipy.__version__,
                     **{name: _version(mod) for name, mod in peers.items()}},
        "torch_threads": torch.get_num_threads() if torch else None,
    }
    sizes = PRESETS[preset]
    worker = Worker(sizes, threads, openblas, peers)
    try:
        with threadpool_limits(limits=threads):
            run["elman_config"] = elman.config()
            if "limits" in sections:
                run["limits"] = worker.limits()
            limits = run.get("limits", {})
            probe = {r["n"]: r["gbps"] for r in limits.get("stream", []) if r["status"] == "ok"}
            peak = limits.get("sgemm_peak", {}).get("gflops")
            fma_peak = limits.get("fma_peak", {}).get("gflops")
            bf16_peak = {k: limits.get(f"{p}_peak", {}).get("gflops")
                         for k, p in (("vdpbf16ps", "bf16"), ("amx", "amx"))}
            if "adagrad" in sections:
                run["adagrad"] = worker.adagrad(probe)
                run["adagrad_sparse"] = worker.adagrad_sparse()
            if "rnn" in sections:
                run["rnn"] = worker.rnn(peak, fma_peak)
            if "generate" in sections:
                run["generate"] = worker.generate(peak)
            if "scaling" in sections:
                run["scaling"] = worker.scaling()
            if "torch" in sections:
                run["torch"] = worker.torch_backend()
            if "overhead" in sections:
                run["overhead"] = worker.overhead()
            if "bf16" in sections:
                run["bf16"] = worker.bf16(fma_peak, bf16_peak)
            if "sweep" in sections:
                run["sweep"] = worker.sweep(peak, fma_peak)
            if "curvature" in sections:
                from . import second_order
                run["curvature"] = second_order.curvature(worker, preset)
            if "long-range" in sections:
                from . import second_order
                run["long_range"] = second_order.long_range(worker, preset,
                                                            **(long_range or {}))
            run["threadpools"] = _threadpools()
    finally:
        if torch:
            torch.set_num_threads(saved_torch_threads)
    return run
