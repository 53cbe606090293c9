"""Build and runtime configuration: what ``elman.show_config()`` prints."""
from __future__ import annotations

import os
import platform
import sys

from . import _core

_FEATURES = ("sse2", "avx", "avx2", "fma", "avx512f")  # bit order of ELMAN_CPU_* in elman.h
_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE",
        "OPENBLAS_L2_SIZE", "ELMAN_BACKEND")


def _blas_info():
    """The BLAS SciPy hands to elman: from threadpoolctl when installed."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "install threadpoolctl to see the BLAS library, version, "
                         "core type and threads"}]
    import scipy.linalg  # noqa: F401  (loads SciPy's BLAS so that it is listed)
    return [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                                    "filepath")}
            for d in threadpool_info() if d.get("user_api") == "blas"]


def config() -> dict:
    """Build and runtime configuration as a dict."""
    from . import __version__, kernels
    mask = _core.cpu_features()
    return {
        "elman": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "compiler": _core.build_info(),
        "kernel_path": _core.kernel_path(),
        "cpu_features": [name for i, name in enumerate(_FEATURES) if mask >> i & 1],
        "backend": kernels.backend(),
        "gemm": "scipy.linalg.cython_blas (sgemm, dgemm)" if _core.has_blas() else "missing",
        "blas": _blas_info(),
        "cpu_count": os.cpu_count(),
        "environment": {k: os.environ[k] for k in _ENV if k in os.environ},
    }


def show_config(file=None) -> None:
    """Print elman's version, compiler, CPU features, kernel path, BLAS and thread settings."""
    c = config()
    out = file if file is not None else sys.stdout
    for key, value in c.items():
        if key == "blas":
            for i, lib in enumerate(value):
                print(f"{'blas' if i == 0 else '':<14}{', '.join(f'{k}={v}' for k, v in lib.items())}",
                      file=out)
        elif isinstance(value, dict):
            print(f"{key:<14}{' '.join(f'{k}={v}' for k, v in value.items()) or '(none set)'}",
                  file=out)
        elif isinstance(value, list):
            print(f"{key:<14}{' '.join(value)}", file=out)
        else:
            print(f"{key:<14}{value}", file=out)
