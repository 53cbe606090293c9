"""Build and runtime configuration: kernel paths, threads, and what ``elman.show_config()``
prints."""
from __future__ import annotations

import os
import platform
import sys
import warnings

from . import _core
from ._validate import Switch

# bit order of ELMAN_CPU_* in elman.h
_FEATURES = ("sse2", "avx", "avx2", "fma", "avx512f", "avx512bf16", "amxbf16")
_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE",
        "OPENBLAS_L2_SIZE", "ELMAN_BACKEND", "ELMAN_CPU", "ELMAN_BF16_KERNEL")


# ---- kernel paths ---------------------------------------------------------------------------

def cpu_paths() -> tuple:
    """The kernel paths this build holds that this CPU runs, slowest first: "generic"
    (portable C for the baseline instruction set), "avx2" (AVX2 + FMA), "avx512"."""
    return tuple(p for p in _core.kernel_paths() if _core.kernel_path_supported(p))


def cpu_path(name=None):
    """Get or set the kernel path (the instruction set the hot loops run with).

    ``elman.cpu_path()`` returns the path in use. ``elman.cpu_path("avx2")`` switches for
    the whole process ("auto": the best this CPU runs); used as ``with
    elman.cpu_path("generic"): ...`` the previous path comes back at the end of the block.
    The environment variable ``ELMAN_CPU`` sets the path at import. Raises ValueError for a
    name this build lacks or this CPU cannot run.
    """
    if name is None:
        return _core.kernel_path()
    if not isinstance(name, str):
        raise TypeError(f"cpu_path: name must be a string, got {type(name).__name__}")
    previous = _core.kernel_path()
    _core.set_kernel_path(name.strip().lower())
    return Switch("elman.cpu_path", _core.kernel_path(),
                  lambda: _core.set_kernel_path(previous))


def bf16_kernel(name=None):
    """Get or set the kernel of the bfloat16 products (``compute_dtype="bfloat16"``).

    ``elman.bf16_kernel()`` returns the kernel in use: "amx" (AMX tiles, ``tdpbf16ps``,
    on CPUs with AMX-BF16), "vdpbf16ps" (AVX512_BF16) or "emulated" (float arithmetic on
    the rounded operands, any CPU, several times slower). ``elman.bf16_kernel("vdpbf16ps")``
    uses at most that kernel, for the whole process ("auto": the best there is); used as
    ``with elman.bf16_kernel("emulated"): ...`` the previous choice comes back at the end
    of the block. All give the same sums up to their order. The environment variable
    ``ELMAN_BF16_KERNEL`` sets it at import. Raises ValueError for an unknown name or a
    kernel this CPU or build lacks.
    """
    if name is None:
        return _core.bf16_kernel()
    if not isinstance(name, str):
        raise TypeError(f"bf16_kernel: name must be a string, got {type(name).__name__}")
    previous = _bf16_choice[0]
    choice = name.strip().lower()
    _core.set_bf16_kernel(choice)
    _bf16_choice[0] = choice

    def restore():
        _core.set_bf16_kernel(previous)
        _bf16_choice[0] = previous
    return Switch("elman.bf16_kernel", _core.bf16_kernel(), restore)


_bf16_choice = ["auto"]  # the ceiling last set, restored by bf16_kernel's block


def _from_env() -> None:
    for var, setter, now in (("ELMAN_CPU", _core.set_kernel_path, _core.kernel_path),
                             ("ELMAN_BF16_KERNEL", bf16_kernel, _core.bf16_kernel)):
        name = os.environ.get(var, "").strip().lower()
        if not name:
            continue
        try:
            setter(name)
        except ValueError as e:
            warnings.warn(f"{var}={name!r} ignored: {e}; using {now()!r}",
                          RuntimeWarning, stacklevel=3)


_from_env()


# ---- threads --------------------------------------------------------------------------------

def get_num_threads() -> int:
    """OpenMP threads elman's elementwise kernels use above their size threshold."""
    return _core.max_threads()


def set_num_threads(n: int) -> None:
    """Set elman's OpenMP threads for kernels called from this Python thread (OpenMP's
    setting is per thread; OMP_NUM_THREADS at start-up sets it for all). elman shares its
    large GEMMs among these threads too, holding the BLAS to one thread while its kernels
    run; ``threadpoolctl.threadpool_limits(n)`` sets both."""
    import operator
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"set_num_threads: n must be an integer, got {type(n).__name__}") from None
    _core.set_num_threads(n)


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


_BF16_INFO = {
    "amx": "amx (AMX-BF16 tiles, tdpbf16ps)",
    "vdpbf16ps": "vdpbf16ps (AVX512_BF16)",
    "emulated": "emulated (no AVX512_BF16 on this CPU or path, or set so; several times "
                "slower)",
}


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
        "kernel_paths": list(cpu_paths()),
        "threads": get_num_threads(),
        "cpu_features": [name for i, name in enumerate(_FEATURES) if mask >> i & 1],
        "bfloat16": _BF16_INFO[_core.bf16_kernel()],
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
