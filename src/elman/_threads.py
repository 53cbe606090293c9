"""Who owns the cores while elman's kernels run: elman does.

The model kernels make BLAS calls (SciPy's OpenBLAS) between and inside their own
OpenMP-threaded loops. Left alone, OpenBLAS wakes its own threads for each call and leaves
them spinning afterwards, and on a machine with as many cores as threads they and elman's
threads take turns on the same cores: measured here, a training step at H=256, T=64, B=32
took 16.1 ms with both libraries at 2 threads, 9.8 ms with elman at 2 and the BLAS at 1, and
6.6 ms once elman also shared the large GEMMs among its own threads. So while
a model kernel runs, the BLAS is held to one thread, and elman's C code shares large GEMMs
among its own threads, giving each thread its own BLAS call on a slice of the rows.

elman.set_num_threads (or OMP_NUM_THREADS, or threadpoolctl) sets elman's threads; the
BLAS's own setting is restored after each call, so NumPy and SciPy code around elman keeps
its threads. The setting is one per process, and kernels may run in several Python threads
at once (each model in its own): the first kernel to start saves it and holds the BLAS to
one thread, the last to finish restores it. Were each call to save and restore on its own,
a call that ends would give the BLAS its threads back under a call still running. The count
and the saved settings live in the binding (elman._core.blas_hold / blas_release), which
calls the BLAS's functions through C pointers under the GIL: a prepared training step holds
and releases there at the cost of two C calls.
"""
from __future__ import annotations

import ctypes

from . import _core

_controls = None    # [(get, set)] ctypes functions of the BLAS's thread count


def _functions(controller):
    """(get, set) of an OpenBLAS's thread count as ctypes functions, or None. Looked up
    once: calling them costs well under a microsecond, and allocates nothing."""
    if getattr(controller, "internal_api", None) != "openblas":
        return None
    try:
        lib = ctypes.CDLL(controller.filepath)
    except OSError:
        return None
    for prefix in ("scipy_openblas_", "openblas_"):
        for suffix in ("", "64_"):
            get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                put.restype, put.argtypes = None, [ctypes.c_int]
                return get, put
    return None


def _blas_controls():
    """The thread controls of the BLAS SciPy uses, looked up once and handed to the
    binding (elman._core.set_blas_thread_controls), which holds and restores them. Two
    threads may both look them up (the imports release the GIL); the binding takes them
    from whichever comes first while no hold is open, and until it has, this stays unset,
    so that a later call tries again."""
    global _controls
    if _controls is None:
        try:
            import scipy.linalg  # noqa: F401  (loads the BLAS elman calls)
            from threadpoolctl import ThreadpoolController
            blas = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:  # no threadpoolctl, or a BLAS it cannot drive: leave it be
            blas = []
        scipy_own = [c for c in blas if "scipy" in c.filepath and "numpy" not in c.filepath]
        found = [f for f in (_functions(c) for c in (scipy_own or blas)) if f is not None]
        found = found[:8]   # the binding's limit (one or two libraries in practice)
        if _core.set_blas_thread_controls([(ctypes.cast(get, ctypes.c_void_p).value,
                                            ctypes.cast(put, ctypes.c_void_p).value)
                                           for get, put in found]):
            _controls = found
        else:
            return found
    return _controls


def ensure_controls():
    """Find the BLAS's thread controls now (before a kernel call that holds them in C)."""
    _blas_controls()


def hold():
    """Hold the BLAS to one thread until the matching release() (counted across threads,
    in the binding: under the GIL, with no ctypes call to release it)."""
    if _controls is None:
        _blas_controls()
    _core.blas_hold()


def release():
    """End one hold(); the last one gives the BLAS back its setting."""
    _core.blas_release()


class one_blas_thread:
    """``with one_blas_thread():`` the BLAS runs on one thread inside the block (elman's
    OpenMP threads share the cores out, one BLAS call per thread), its own setting restored
    at the end. A class rather than a generator: it is entered on every kernel call."""

    __slots__ = ()

    def __enter__(self):
        hold()
        return self

    def __exit__(self, *exc):
        release()
        return False
