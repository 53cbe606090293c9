"""Kernels that exist for the benchmarks (not for training): the bandwidth probe, the FMA
peak probe and the per-step GEMM on its own, validated as elman.kernels' functions are."""
from __future__ import annotations

import numpy as np

from .._dispatch import current, is_c
from .._validate import choice, float_array, no_overlap, positive_int
from .. import _core


def stream_probe(p, s, g):
    """The bandwidth probe: Adagrad's memory traffic, read p, s, g and write p, s, with no
    arithmetic to speak of (s += g, p -= g), on the same kernel path and threads as
    adagrad_update (csrc/probe.c). Arrays (n,) of one float dtype."""
    where = "stream_probe"
    p = float_array(p, "p", where=where, ndim=1, writable=True)
    s = float_array(s, "s", where=where, dtype=p.dtype, shape=p.shape, writable=True)
    g = float_array(g, "g", where=where, dtype=p.dtype, shape=p.shape)
    no_overlap(where, {"p": p, "s": s}, {"g": g})
    no_overlap(where, {"p": p}, {"s": s})
    current().stream_probe(p, s, g)


def step_gemm(C, A, W):
    """C (M, N) += A (M, K) @ W (K, N) on elman's register-blocked kernel, the per-step
    product of the recurrence (csrc/gemm_small.c). C-contiguous 2-D arrays of one float
    dtype; C may not overlap A or W."""
    where = "step_gemm"
    A = float_array(A, "A", where=where, ndim=2)
    M, K = A.shape
    W = float_array(W, "W", where=where, dtype=A.dtype, shape=(K, None))
    C = float_array(C, "C", where=where, dtype=A.dtype, shape=(M, W.shape[1]), writable=True)
    no_overlap(where, {"C": C}, {"A": A, "W": W})
    if is_c():
        _core.step_gemm(C.reshape(-1), A.reshape(-1), W.reshape(-1), M, K, W.shape[1])
    else:
        C += A @ W


def bf16_probe(iters):
    """The vdpbf16ps peak probe (csrc/bf16.c): on every thread, ``iters`` rounds of twelve
    independent vdpbf16ps (64 FLOPs each), no memory traffic. Returns the FLOPs done, or
    None where the CPU or the path in use lacks AVX512_BF16."""
    iters = positive_int(iters, "iters", where="bf16_probe", minimum=0)
    try:
        flops, _ = _core.bf16_probe(iters)
    except ValueError:
        return None
    return flops


def amx_probe(iters):
    """The AMX peak probe (csrc/bf16.c): on every thread, ``iters`` rounds of four
    independent tdpbf16ps (a 16 x 16 tile of C += a 16 x 32 by 32 x 16 product: 16384
    FLOPs each), no memory traffic. Returns the FLOPs done, or None where the CPU or the
    path in use lacks AMX-BF16."""
    iters = positive_int(iters, "iters", where="amx_probe", minimum=0)
    try:
        flops, _ = _core.bf16_amx_probe(iters)
    except ValueError:
        return None
    return flops


def fma_probe(iters, dtype="float32"):
    """The FMA peak probe (csrc/probe.c): on every thread elman's kernels use, ``iters``
    rounds of twelve independent vector multiply-adds on this path's registers, no memory
    traffic. Returns the FLOPs done (2 per lane per multiply-add); time the call for the
    machine's peak in GFLOP/s, the ceiling of every GEMM (a 512-bit FMA per cycle per core
    on Zen 5, half that on Zen 4's 256-bit units)."""
    where = "fma_probe"
    iters = positive_int(iters, "iters", where=where, minimum=0)
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = dtype
    dtype = choice(name, "dtype", ("float32", "float64"), where=where)
    flops, _ = _core.fma_probe(iters, dtype == "float64")
    return flops
