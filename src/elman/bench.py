"""Benchmark suite: elman against NumPy, PyTorch and JAX, and against the machine's own
limits, measured side by side in one run.

Sections (``--only``, in this order):

- ``limits``: bandwidth of Adagrad's access pattern, by a plain C loop that reads p, g, S and
  writes p, S (20 bytes per float32 element), and sgemm GFLOP/s through the BLAS elman calls
  (SciPy's) at the RNN's GEMM shapes and at a square reference size (the peak).
- ``adagrad``: one float32 Adagrad step (torch semantics, lr 0.01, eps 1e-10) over n
  parameters: elman's kernel, the NumPy reference, torch.optim.Adagrad (for-loop, foreach,
  fused).
- ``rnn``: one training step (forward, softmax cross-entropy on every step, full BPTT,
  Adagrad): elman, elman's model on the NumPy backend, PyTorch, JAX.
- ``generate``: characters per second sampled from a character model.
- ``scaling``: elman's training step against T, B and H.

Each thread count runs in its own worker process (``python -m elman.bench --worker ...``)
whose thread variables are set before anything loads a BLAS. The driver writes
``bench.md``, ``bench.json`` and PNG plots into ``--out`` and prints the markdown; progress
goes to stderr. PyTorch, JAX (with optax) and matplotlib are optional.

    python bench/run.py --quick                  # about a minute on two cores
    python bench/run.py --threads 1 --only limits,adagrad
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import gc
import importlib
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy

import elman
from elman import kernels, reference

SECTIONS = ("limits", "adagrad", "rnn", "generate", "scaling")
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

    @property
    def label(self) -> str:
        inputs = f"V={self.I}" if self.ids and self.I == self.O else f"I={self.I} O={self.O}"
        return f"{self.name} {inputs} H={self.H} T={self.T} B={self.B}"

    @property
    def flops(self) -> int:
        """Matrix-product FLOPs of one training step: H_{t-1} W_hh, dW_hh and dA W_hh^T
        (6 T B H H); H W_hy, dW_hy and dY W_hy^T (6 T B H O); X W_xh and dW_xh for dense
        input (4 T B I H; a token-id input is a gather and a scatter instead)."""
        T, B, I, H, O = self.T, self.B, self.I, self.H, self.O
        return 6 * T * B * H * H + 6 * T * B * H * O + (0 if self.ids else 4 * T * B * I * H)

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
        min_time=0.2, repeats=5),
    "quick": Sizes(
        adagrad_n=(10**5, 10**6), adagrad_multi=None, peak_gemm=512,
        rnn=(S1, S2_QUICK, S4), generate_shape=S1, generate_steps=2_000,
        scaling_base=S2_QUICK,
        sweep={"T": (8, 16, 32, 64), "B": (4, 8, 16, 32), "H": (32, 64, 128, 256)},
        min_time=0.05, repeats=3),
    "tiny": Sizes(   # for the test suite: every code path in a few seconds
        adagrad_n=(1000,), adagrad_multi=(3, 1000), peak_gemm=64,
        rnn=(Shape("S1t", 11, 8, 11, 4, 1), Shape("S4t", 10, 5, 2, 3, 4, ids=False)),
        generate_shape=Shape("S1t", 11, 8, 11, 1, 1), generate_steps=20,
        scaling_base=Shape("S2t", 11, 8, 11, 4, 2),
        sweep={"T": (2, 4), "B": (1, 2), "H": (4, 8)},
        min_time=0.001, repeats=2),
}


# ---- small helpers ------------------------------------------------------------------------

def _optional(name):
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
    params = []
    for _ in range(tensors):
        param = torch.from_numpy(rng.standard_normal(n, dtype=np.float32)).requires_grad_()
        param.grad = torch.from_numpy(rng.standard_normal(n, dtype=np.float32))
        params.append(param)
    flags = {"torch_for": dict(foreach=False), "torch_foreach": dict(foreach=True),
             "torch_fused": dict(fused=True)}[impl]
    opt = torch.optim.Adagrad(params, lr=LR, eps=EPS, **flags)
    return opt.step


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


def _torch_rnn_step(shape, torch):
    """nn.RNN + nn.Linear + F.cross_entropy + backward + Adagrad(fused=True). Token ids go
    in one-hot (nn.RNN has no id input); the one-hot tensor is built once, outside the step."""
    F = torch.nn.functional
    x, y, h0 = (torch.from_numpy(a) for a in _rnn_data(shape))
    if shape.ids:
        x = F.one_hot(x, shape.I).float()
    y, h0 = y.reshape(-1), h0[None]
    torch.manual_seed(0)
    rnn = torch.nn.RNN(shape.I, shape.H, nonlinearity="tanh")
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
    layout, _ = reference.param_layout(shape.I, shape.H, shape.O)
    params = {name: jnp.asarray(rng.uniform(-k, k, size).astype(np.float32))
              for name, size, _ in layout}
    opt = optax.adagrad(LR, initial_accumulator_value=0.0, eps=EPS)

    def loss_fn(p, x, y, h0):
        a = (p["W_xh"][x] if shape.ids else x @ p["W_xh"]) + p["b_h"]

        def cell(h, a_t):
            h = jnp.tanh(a_t + h @ p["W_hh"])
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


def _elman_sampler(m, n):
    """m.sample(n) after checking once that it returns n ids in range."""
    ids = m.sample(n, start=0, temperature=1.0, seed=0)
    if np.shape(ids) != (n,) or ids.min() < 0 or ids.max() >= m.output_size:
        raise ValueError(f"ElmanRNN.sample returned shape {np.shape(ids)}, values "
                         f"[{ids.min()}, {ids.max()}]; expected ({n},) in [0, {m.output_size})")
    return lambda: m.sample(n, start=0, temperature=1.0, seed=0)


def _numpy_sampler(m, n, start=0, seed=0):
    """Temperature-1 sampling, one step at a time: h = tanh(W_xh[id] + h W_hh + b_h),
    z = h W_hy + b_y, next id drawn from softmax(z) by a search of its cumulative sum.
    Tuned as far as NumPy goes: preallocated buffers, no normalization, uniforms drawn
    up front, the bias folded into the gathered row."""
    p = m.named_params()
    W_hh, W_hy, b_y = p["W_hh"], p["W_hy"], p["b_y"]
    xb = p["W_xh"] + p["b_h"]
    H, O = m.hidden_size, m.output_size

    def sample():
        u = np.random.default_rng(seed).random(n, dtype=np.float32)
        out = np.empty(n, np.int64)
        h, a = np.zeros(H, np.float32), np.empty(H, np.float32)
        z, c = np.empty(O, np.float32), np.empty(O, np.float32)
        idx = start
        for t in range(n):
            np.dot(h, W_hh, out=a)
            a += xb[idx]
            np.tanh(a, out=h)
            np.dot(h, W_hy, out=z)
            z += b_y
            z -= z.max()
            np.exp(z, out=z)
            np.cumsum(z, out=c)
            idx = min(int(c.searchsorted(u[t] * c[-1], side="right")), O - 1)
            out[t] = idx
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
            seconds, samples, number, first = measure(build(), self.sizes.min_time,
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
        method = "C loop (elman.kernels._stream_probe): s += g, p -= g"
        stream = []
        for n in self.sizes.stream_n():
            rng = np.random.default_rng(0)
            p, s = np.zeros(n, np.float32), np.zeros(n, np.float32)
            g = rng.standard_normal(n, dtype=np.float32) * np.float32(1e-3)
            step = functools.partial(kernels._stream_probe, p, s, g)
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
                ac, bc, cc = np.ascontiguousarray(a), np.ascontiguousarray(b), np.zeros((m, n),
                                                                                       np.float32)
                own = functools.partial(kernels._step_gemm, cc, ac, bc)
                e = self.time(f"elman step kernel {what} {m}x{k}x{n}", lambda: own)
                if e["status"] == "ok":
                    r["elman_gflops"] = 2 * m * k * n / e["seconds"] / 1e9
            return dict(problem=what, role=role, m=m, k=k, n=n, **r)

        N = self.sizes.peak_gemm
        peak = gemm("peak", "square", N, N, N)
        rows = [gemm(shape.name, *g) for shape in self.sizes.rnn for g in shape.gemms()]
        for r in rows:
            if r["status"] == peak["status"] == "ok":
                r["pct_peak"] = 100 * r["gflops"] / peak["gflops"]
        return {"stream": stream, "sgemm_peak": peak, "sgemm": rows}

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

    def rnn(self, peak_gflops):
        torch, jax, optax = (self.peers[k] for k in ("torch", "jax", "optax"))
        makers = {"elman": lambda s: _elman_rnn_step(s, "c"),
                  "numpy": lambda s: _elman_rnn_step(s, "numpy"),
                  "torch": lambda s: _torch_rnn_step(s, torch),
                  "jax": lambda s: _jax_rnn_step(s, jax, optax)}
        missing = {"torch": torch is None, "jax": jax is None or optax is None}
        rows = []
        for shape in self.sizes.rnn:
            for impl, make in makers.items():
                if missing.get(impl):
                    r = {"status": "not installed"}
                else:
                    r = self.time(f"rnn {shape.label} {impl}", functools.partial(make, shape),
                                  returns="loss")
                if r["status"] == "ok":
                    r["ms"] = r["seconds"] * 1e3
                    r["tokens_per_s"] = shape.T * shape.B / r["seconds"]
                    r["gflops"] = shape.flops / r["seconds"] / 1e9
                    if peak_gflops:
                        r["pct_peak"] = 100 * r["gflops"] / peak_gflops
                rows.append(dict(shape=shape.label, **dataclasses.asdict(shape),
                                 flops=shape.flops, impl=impl, **r))
        return rows

    def generate(self):
        shape, n = self.sizes.generate_shape, self.sizes.generate_steps
        m = elman.ElmanRNN(shape.I, shape.H, shape.O, seed=0)
        rows = []
        for impl in GENERATE_IMPLS:
            sampler = _elman_sampler if impl == "elman" else _numpy_sampler
            r = self.time(f"generate {n} steps {impl}", functools.partial(sampler, m, n))
            if r["status"] == "ok":
                r["chars_per_s"] = n / r["seconds"]
            rows.append(dict(shape=f"{shape.name} V={shape.I} H={shape.H}", steps=n,
                             impl=impl, **r))
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


def run_worker(preset, sections, threads, openblas):
    """Every selected section at one thread count, in this process. Returns the raw numbers
    and what they were measured with (threads, environment, elman's CPU path, BLAS)."""
    from threadpoolctl import threadpool_limits
    peers = {name: _optional(name) for name in ("torch", "jax", "optax")}
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
            if "adagrad" in sections:
                run["adagrad"] = worker.adagrad(probe)
            if "rnn" in sections:
                run["rnn"] = worker.rnn(peak)
            if "generate" in sections:
                run["generate"] = worker.generate()
            if "scaling" in sections:
                run["scaling"] = worker.scaling()
            run["threadpools"] = _threadpools()
    finally:
        if torch:
            torch.set_num_threads(saved_torch_threads)
    return run


# ---- the driver: one worker process per thread count and OpenBLAS environment -------------

def _worker_env(threads, openblas):
    """The environment of a worker: thread counts set, OpenBLAS's variables kept or removed."""
    env = dict(os.environ)
    env.update({var: str(threads) for var in THREAD_VARS})
    env.setdefault("JAX_PLATFORMS", "cpu")
    if threads == 1:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {XLA_ONE_THREAD}".strip()
    if openblas == "unset":
        for var in OPENBLAS_VARS:
            env.pop(var, None)
    return env


def worker_args(path, preset, sections, threads, openblas):
    """Command-line arguments of a worker that writes its results to ``path``."""
    return ["--worker", path, "--threads", str(threads), "--only", ",".join(sections),
            "--openblas", openblas, *PRESET_FLAGS[preset]]


def _run_all(args, preset):
    """Every (OpenBLAS environment, thread count) pair, each in a fresh worker process
    (or in this one with --in-process). A worker that dies is reported, not fatal."""
    modes = ("as-is", "unset") if args.openblas == "both" else (args.openblas,)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for openblas, threads in itertools.product(modes, args.threads):
            if args.in_process:
                runs.append(run_worker(preset, args.only, threads, openblas))
                continue
            path = os.path.join(tmp, f"{openblas}-{threads}.json")
            cmd = [sys.executable, "-m", "elman.bench",
                   *worker_args(path, preset, args.only, threads, openblas)]
            status = subprocess.run(cmd, env=_worker_env(threads, openblas)).returncode
            if status == 0:
                with open(path, encoding="utf-8") as f:
                    runs.append(json.load(f))
            else:
                runs.append({"threads": threads, "openblas": openblas,
                             "error": f"worker exited with status {status}"})
    return runs


# ---- report: markdown ---------------------------------------------------------------------

def _table(headers, rows):
    """A markdown table and the blank line after it."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _status(r) -> str:
    """The cell of a row that did not run: not installed, not available, error."""
    return "error (see JSON)" if r["status"].startswith("error") else r["status"]


def _grouped(rows, key):
    """{rows[i][key]: {impl: row}}, in first-seen order."""
    out = {}
    for r in rows:
        out.setdefault(r[key], {})[r["impl"]] = r
    return out


def _best_peer(by_impl, labels):
    """(best peer's label, elman speed / best peer's speed) over the rows that ran."""
    peers = [r for impl, r in by_impl.items() if impl != "elman" and r["status"] == "ok"]
    if not peers:
        return "—", "—"
    best, mine = min(peers, key=lambda r: r["seconds"]), by_impl["elman"]
    ratio = f"{best['seconds'] / mine['seconds']:.2f}x" if mine["status"] == "ok" else "—"
    return labels[best["impl"]], ratio


def _cells(by_impl, impls, fmt):
    """One cell per implementation, in column order: fmt(row) where it ran, else its status."""
    return [fmt(by_impl[i]) if by_impl[i]["status"] == "ok" else _status(by_impl[i])
            for i in impls]


def _pct(r, key) -> str:
    return f" ({_num(r[key])}%)" if key in r else ""


def _run_label(run, show_openblas):
    return (f"{run['threads']} (OpenBLAS env {run['openblas']})" if show_openblas
            else str(run["threads"]))


def _header(result, pngs):
    s = result["settings"]
    runs = [r for r in result["runs"] if "error" not in r]
    lines = ["# elman benchmarks", "",
             f"- date: {result['date']}",
             f"- machine: {result['machine']['cpu_model']}, {result['machine']['cpu_count']} "
             f"logical CPUs, {result['machine']['platform']}",
             f"- settings: preset {s['preset']}, threads {', '.join(map(str, s['threads']))}, "
             f"OpenBLAS environment {s['openblas']}, sections {', '.join(s['sections'])}",
             f"- timing: median of {s['sizes']['repeats']} samples, each at least "
             f"{s['sizes']['min_time']} s of back-to-back calls, after two warm-up calls",
             "- plots: " + ("none (matplotlib is not installed)" if pngs is None
                            else ", ".join(pngs) or "none for these sections")]
    if runs:
        c = runs[0]["elman_config"]
        lines.append(f"- elman {c['elman']}: kernel path {c['kernel_path']}, CPU features "
                     f"{' '.join(c['cpu_features'])}, {c['compiler']}")
        v = runs[0]["versions"]
        lines.append("- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    for run in result["runs"]:
        head = f"- run: {run['threads']} thread(s), OpenBLAS environment {run['openblas']}"
        if "error" in run:
            lines.append(f"{head}: {run['error']}")
            continue
        env = ", ".join(f"{k}={run['env'][k]}" for k in (*OPENBLAS_VARS, "XLA_FLAGS"))
        blas = "; ".join(f"{os.path.basename(os.path.dirname(p['filepath']))}: "
                         f"{p['internal_api']} {p['version']} {p['architecture']}, "
                         f"{p['num_threads']} threads" for p in run["threadpools"]
                         if p["user_api"] == "blas")
        lines.append(f"{head}: {env}; BLAS {blas}")
    return lines + [""]


def _limits_md(runs, label):
    lines = ["## 1. Machine limits", "",
             f"Stream probe: GB/s of the Adagrad access pattern ({ADAGRAD_BYTES} bytes per "
             f"float32 element: read p, g, S; write p, S), by "
             f"{runs[0]['limits']['stream'][0]['method']}.", ""]
    ns = [r["n"] for r in runs[0]["limits"]["stream"]]
    rows = []
    for run in runs:
        rows.append([label(run)] + [f"{_num(r['gbps'])} GB/s" if r["status"] == "ok"
                                    else _status(r) for r in run["limits"]["stream"]])
    lines += _table(["threads"] + [f"n={_count(n)}" for n in ns], rows)
    lines += ["sgemm through SciPy's BLAS (the library elman's GEMMs call), float32, "
              "Fortran-ordered operands, C written in place; % of the square reference. "
              "For the per-step recurrence product, also elman's own kernel "
              "(`kernels._step_gemm`), which the training step uses instead of a BLAS call.",
              ""]
    rows = []
    for run in runs:
        lim = run["limits"]
        for r in [lim["sgemm_peak"], *lim["sgemm"]]:
            rows.append([label(run), r["problem"], r["role"], f"{r['m']}x{r['k']}x{r['n']}",
                         _num(r["gflops"]) if r["status"] == "ok" else _status(r),
                         f"{_num(r['pct_peak'])}%" if "pct_peak" in r else "—",
                         _num(r["elman_gflops"]) if "elman_gflops" in r else "—"])
    return lines + _table(["threads", "problem", "product", "m x k x n", "sgemm GFLOP/s",
                           "% of peak", "elman step kernel GFLOP/s"], rows)


def _adagrad_md(runs, label):
    lines = ["## 2. Adagrad step", "",
             f"float32, torch semantics (lr {LR}, eps {EPS}). Cell: time per step, GB/s at "
             f"{ADAGRAD_BYTES} bytes per element, (% of the stream probe at the same n). "
             "elman and NumPy update one flat buffer in one call (also for the many-tensor "
             "case: elman's design); torch updates a list of tensors. Last column: elman's "
             "speed over the best peer's (above 1: elman is faster).", ""]
    rows = []
    for run in runs:
        for case, by_impl in _grouped(run["adagrad"], "case").items():
            cells = _cells(by_impl, ADAGRAD_IMPLS, lambda r: f"{_duration(r['seconds'])} · "
                           f"{_num(r['gbps'])} GB/s{_pct(r, 'pct_probe')}")
            rows.append([label(run), case, *cells, *_best_peer(by_impl, ADAGRAD_IMPLS)])
    return lines + _table(["threads", "case", *ADAGRAD_IMPLS.values(), "best peer",
                           "elman / best peer"], rows)


def _rnn_md(runs, label):
    lines = ["## 3. RNN training step", "",
             "Forward, softmax cross-entropy on every step (mean), full BPTT, Adagrad; h0 = 0. "
             "Cell: time per step · tokens/s (T*B per step) · GFLOP/s of the step's matrix "
             "products (6TBH² + 6TBHO, + 4TBIH for dense input; the same count for every "
             "peer) (% of the sgemm peak at this thread count). torch consumes token ids "
             "one-hot (nn.RNN has no id input; the one-hot tensor is built once, outside the "
             "step), so it does a (TB,V)x(V,H) GEMM that the others replace by a gather. "
             "optax.adagrad puts eps inside the square root; with eps 1e-10 this changes "
             "nothing measurable.", ""]
    rows = []
    for run in runs:
        for shape, by_impl in _grouped(run["rnn"], "shape").items():
            cells = _cells(by_impl, RNN_IMPLS, lambda r: f"{_duration(r['seconds'])} · "
                           f"{_si(r['tokens_per_s'])} tok/s · {_num(r['gflops'])} GF/s"
                           f"{_pct(r, 'pct_peak')}")
            rows.append([label(run), shape, *cells, *_best_peer(by_impl, RNN_IMPLS)])
    return lines + _table(["threads", "shape", *RNN_IMPLS.values(), "best peer",
                           "elman / best peer"], rows)


def _generate_md(runs, label):
    lines = ["## 4. Generation", "",
             "Characters per second, sampling at temperature 1 from a character model "
             "(one id in, one id out per step).", ""]
    rows = []
    for run in runs:
        for shape, by_impl in _grouped(run["generate"], "shape").items():
            cells = _cells(by_impl, GENERATE_IMPLS, lambda r: f"{_si(r['chars_per_s'])} chars/s")
            rows.append([label(run), shape, f"{by_impl['elman']['steps']:,}", *cells,
                         *_best_peer(by_impl, GENERATE_IMPLS)])
    return lines + _table(["threads", "shape", "steps", *GENERATE_IMPLS.values(), "best peer",
                           "elman / best peer"], rows)


def _scaling_md(runs, label):
    base = runs[0]["scaling"]["base"]
    lines = ["## 5. Scaling of elman's training step", "",
             f"Time per step (ms) with one size swept and the others as in {base}. Ratio per "
             "doubling: time(2x) / time(x); 2 is linear (expected for T, and for B once the "
             "GEMMs are large enough to be efficient), up to 4 for H.", ""]
    for axis in ("T", "B", "H"):
        if axis not in runs[0]["scaling"]:
            continue
        values = [p["value"] for p in runs[0]["scaling"][axis]["points"]]
        rows = []
        for run in runs:
            sweep = run["scaling"][axis]
            ratios = sweep["ratio_per_doubling"]
            mean = f" (geometric mean {statistics.geometric_mean(ratios):.2f})" if ratios else ""
            rows.append([label(run)] + [_num(p["ms"]) if p["status"] == "ok" else _status(p)
                                        for p in sweep["points"]]
                        + [", ".join(f"{x:.2f}" for x in ratios) + mean])
        lines += _table(["threads", *[f"{axis}={v}" for v in values], "ratio per doubling"],
                        rows)
    return lines


def markdown(result, pngs=None):
    """The report: a header block (machine, settings, each run's environment and BLAS, the
    plot files ``pngs``, None when matplotlib is missing) and one table per section."""
    runs = [r for r in result["runs"] if "error" not in r]
    show_openblas = result["settings"]["openblas"] == "both"
    label = functools.partial(_run_label, show_openblas=show_openblas)
    lines = _header(result, pngs)
    for key, section in (("limits", _limits_md), ("adagrad", _adagrad_md), ("rnn", _rnn_md),
                         ("generate", _generate_md), ("scaling", _scaling_md)):
        if runs and key in runs[0]:
            lines += section(runs, label)
    return "\n".join(lines)


# ---- report: plots ------------------------------------------------------------------------

def plots(result, out):
    """PNG plots of the adagrad, rnn and scaling sections into ``out``; returns the file
    names written, or None when matplotlib is not installed."""
    mpl = _optional("matplotlib")
    if mpl is None:
        print("matplotlib is not installed: no plots (pip install matplotlib)", file=sys.stderr)
        return None
    mpl.use("Agg")
    import matplotlib.pyplot as plt
    runs = [r for r in result["runs"] if "error" not in r]
    show_openblas = result["settings"]["openblas"] == "both"
    title = [f"{r['threads']} thread(s)" + (f", OpenBLAS env {r['openblas']}" if show_openblas
                                            else "") for r in runs]
    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(os.path.join(out, name), dpi=110)
        plt.close(fig)
        written.append(name)

    if runs and "adagrad" in runs[0]:
        fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4), squeeze=False,
                                 sharey=True)
        for ax, run, name in zip(axes[0], runs, title):
            for impl, impl_label in ADAGRAD_IMPLS.items():
                pts = [(r["n"], r["gbps"]) for r in run["adagrad"] if r["impl"] == impl
                       and r["tensors"] == 1 and r["status"] == "ok"]
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=impl_label)
            probe = [(r["n"], r["gbps"]) for r in run.get("limits", {}).get("stream", [])
                     if r["status"] == "ok"]
            if probe:
                ax.plot(*zip(*probe), "k--", marker="s", label="stream probe")
            ax.set(xscale="log", yscale="log", title=name, xlabel="n (float32 parameters)",
                   ylabel=f"GB/s ({ADAGRAD_BYTES} bytes per element)")
            ax.legend(fontsize=7)
        save(fig, "adagrad.png")

    if runs and "rnn" in runs[0]:
        fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False,
                                 sharey=True)
        for ax, run, name in zip(axes[0], runs, title):
            shapes = list(_grouped(run["rnn"], "shape"))
            width = 0.8 / len(RNN_IMPLS)
            for i, (impl, impl_label) in enumerate(RNN_IMPLS.items()):
                rows = {r["shape"]: r for r in run["rnn"] if r["impl"] == impl}
                ys = [rows[s].get("gflops", math.nan) for s in shapes]
                ax.bar([j + i * width for j in range(len(shapes))], ys, width, label=impl_label)
            ax.set_xticks([j + 0.4 - width / 2 for j in range(len(shapes))],
                          [s.split()[0] for s in shapes])
            ax.set(yscale="log", title=name, ylabel="GFLOP/s (matrix products of the step)")
            ax.legend(fontsize=7)
        save(fig, "rnn.png")

    if runs and "scaling" in runs[0]:
        axes_names = [a for a in ("T", "B", "H") if a in runs[0]["scaling"]]
        fig, axes = plt.subplots(1, len(axes_names), figsize=(4.5 * len(axes_names), 4),
                                 squeeze=False)
        for ax, axis in zip(axes[0], axes_names):
            for run, name in zip(runs, title):
                pts = [(p["value"], p["ms"]) for p in run["scaling"][axis]["points"]
                       if p["status"] == "ok"]
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=name)
            values = [p["value"] for p in runs[0]["scaling"][axis]["points"]]
            ax.set_xscale("log", base=2)
            ax.set_xticks(values, [str(v) for v in values], minor=False)
            ax.minorticks_off()
            ax.set(yscale="log", xlabel=axis, ylabel="ms per training step",
                   title=f"elman: time vs {axis}")
            ax.legend(fontsize=7)
        fig.suptitle(f"others as in {runs[0]['scaling']['base']}", fontsize=9)
        save(fig, "scaling.png")
    return written


# ---- command line -------------------------------------------------------------------------

def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected thread counts >= 1, got {text!r}")
    return values


def _sections(text):
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"sections are {', '.join(SECTIONS)}; got {text!r}")
    return [s for s in SECTIONS if s in names]


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m elman.bench",
        description="elman's benchmark suite: Adagrad, RNN training step, generation and "
                    "scaling against NumPy, PyTorch, JAX and the machine's limits.")
    p.add_argument("--quick", action="store_true",
                   help="small sizes and short timings (a minute or two)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the tests' sizes
    p.add_argument("--threads", type=_int_list, default=[1, 2], metavar="N,N",
                   help="thread counts, each in its own worker process (default 1,2)")
    p.add_argument("--only", type=_sections, default=list(SECTIONS), metavar="SECTIONS",
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default all)")
    p.add_argument("--out", default=os.path.join("bench", "results"),
                   help="directory for bench.md, bench.json and the plots "
                        "(default bench/results)")
    p.add_argument("--openblas", choices=("as-is", "unset", "both"), default="as-is",
                   help="workers' OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: as in this "
                        "environment, removed, or one run of each (default as-is)")
    p.add_argument("--in-process", action="store_true",
                   help="run every thread count in this process (for profilers and "
                        "debuggers); thread variables cannot then be set before BLAS loads")
    p.add_argument("--worker", metavar="RESULT_JSON", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    """Run the suite; ``argv`` as on the command line (``python -m elman.bench --help``).
    Returns 0, or 1 when a worker process failed."""
    parser = _parser()
    args = parser.parse_args(argv)
    preset = "tiny" if args.tiny else "quick" if args.quick else "full"
    if args.worker:
        run = run_worker(preset, args.only, args.threads[0], args.openblas)
        with open(args.worker, "w", encoding="utf-8") as f:
            json.dump(run, f)
        return 0
    if args.in_process and args.openblas != "as-is":
        parser.error("--in-process cannot change OpenBLAS's environment: use --openblas as-is")
    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
                    "platform": platform.platform()},
        "settings": {"preset": preset, "threads": args.threads, "sections": args.only,
                     "openblas": args.openblas, "in_process": args.in_process,
                     "sizes": dataclasses.asdict(PRESETS[preset])},
        "runs": _run_all(args, preset),
    }
    os.makedirs(args.out, exist_ok=True)
    written = plots(result, args.out)
    report = markdown(result, written)
    with open(os.path.join(args.out, "bench.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(args.out, "bench.md"), "w", encoding="utf-8") as f:
        f.write(report + "\n")
    print(report)
    return 1 if any("error" in run for run in result["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
