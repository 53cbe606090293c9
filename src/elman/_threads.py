"""Who owns the cores while elman's kernels run: elman does.

The model kernels make BLAS calls (SciPy's OpenBLAS) between and inside their own
OpenMP-threaded loops. Left alone, OpenBLAS wakes its own threads for each call and leaves
them spinning afterwards, and on a machine with as many cores as threads they and elman's
threads take turns on the same cores: measured here, a training step at H=256 took 16 ms
with both libraries at 2 threads against 10 ms with elman at 2 and the BLAS at 1. So while
a model kernel runs, the BLAS is held to one thread, and elman's C code shares large GEMMs
among its own threads, giving each thread its own BLAS call on a slice of the rows.

elman.set_num_threads (or OMP_NUM_THREADS, or threadpoolctl) sets elman's threads; the
BLAS's own setting is restored after each call, so NumPy and SciPy code around elman keeps
its threads.
"""
from __future__ import annotations

_controllers = None


def _blas_controllers():
    """threadpoolctl's controllers of the BLAS SciPy uses (looked up once)."""
    global _controllers
    if _controllers is None:
        try:
            import scipy.linalg  # noqa: F401  (loads the BLAS elman calls)
            from threadpoolctl import ThreadpoolController
            blas = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:  # no threadpoolctl, or a BLAS it cannot drive: leave it be
            blas = []
        scipy_own = [c for c in blas if "scipy" in c.filepath and "numpy" not in c.filepath]
        _controllers = scipy_own or blas
    return _controllers


def hold():
    """Set the BLAS to one thread; returns what release() needs to undo it."""
    saved = []
    for c in _blas_controllers():
        n = c.get_num_threads()
        if n is not None and n > 1:
            c.set_num_threads(1)
            saved.append((c, n))
    return saved


def release(saved):
    for c, n in saved:
        c.set_num_threads(n)
