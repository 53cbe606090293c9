"""The random numbers of the kernels, in Python: the sampler's generator and dropout's masks.

Both are built on splitmix64's output function (csrc/rng.h): the sampler runs a 64-bit
counter through it; dropout hashes each element's number, so that the same seed gives the
same masks on either backend and on any number of data-parallel ranks (elman.h states the
rule).
"""
from __future__ import annotations

import numpy as np

__all__ = ["splitmix64", "dropout_keep", "seed_state", "GOLDEN_GAMMA"]

GOLDEN_GAMMA = 0x9E3779B97F4A7C15  # the increment splitmix64 adds to its counter
_MASK64 = (1 << 64) - 1
_GOLDEN = np.uint64(GOLDEN_GAMMA)


def splitmix64(state: int):
    """One step of the generator the C sampler uses. Returns (output, new state), both
    unsigned 64-bit integers."""
    state = (state + GOLDEN_GAMMA) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31), state


def dropout_keep(n, layer, seed, p, index=None):
    """(n,) bool: which elements of layer ``layer``'s output dropout keeps (elman.h): the
    splitmix64 output function of seed + ((layer << 48) | e) * golden, top 53 bits as
    u in [0, 1), kept when u >= p; e = 0..n-1, or the element numbers ``index``."""
    e = np.arange(n, dtype=np.uint64) if index is None else index.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + ((np.uint64(layer) << np.uint64(48)) | e) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53 >= p


def seed_state(seed) -> int:
    """A 64-bit generator state from an int seed (>= 0, checked by the caller), a numpy
    SeedSequence, or None for fresh entropy."""
    if isinstance(seed, np.random.SeedSequence):
        ss = seed
    elif seed is None:
        ss = np.random.SeedSequence()
    else:
        ss = np.random.SeedSequence(seed)
    return int(ss.generate_state(1, np.uint64)[0])
