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
a call that ends would give the BLAS its threads back under a call still running.
"""
from __future__ import annotations

import ctypes
import threading

_controls = None
_lock = threading.Lock()
_holders = 0        # kernel calls running in this process (any thread)
_saved = []         # [(set_num_threads, n)] to restore when the last of them ends


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
    """The thread controls of the BLAS SciPy uses (looked up once)."""
    global _controls
    if _controls is None:
        try:
            import scipy.linalg  # noqa: F401  (loads the BLAS elman calls)
            from threadpoolctl import ThreadpoolController
            blas = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:  # no threadpoolctl, or a BLAS it cannot drive: leave it be
            blas = []
        scipy_own = [c for c in blas if "scipy" in c.filepath and "numpy" not in c.filepath]
        found = [_functions(c) for c in (scipy_own or blas)]
        _controls = [f for f in found if f is not None]
    return _controls


def hold():
    """Hold the BLAS to one thread until the matching release() (counted across threads)."""
    global _holders, _saved
    controls = _blas_controls()
    with _lock:
        if _holders == 0:
            _saved = []
            for get, put in controls:
                n = get()
                if n > 1:
                    put(1)
                    _saved.append((put, n))
        _holders += 1


def release():
    """End one hold(); the last one gives the BLAS back its setting."""
    global _holders, _saved
    with _lock:
        _holders -= 1
        if _holders == 0:
            for put, n in _saved:
                put(n)
            _saved = []


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
