"""The one dispatch point: which implementation of the kernels runs.

Two modules implement every kernel with the same signatures: :mod:`elman._c_backend` (the
compiled kernels, ``"c"``, the default) and :mod:`elman.reference` (NumPy, the
specification, ``"numpy"``). :func:`current` returns the active one; every caller (the
functional API in :mod:`elman.kernels`, the model, the optimizers, the torch layer)
validates its arguments and then makes one call on it. :func:`backend` switches, for the
current thread or context; ``ELMAN_BACKEND`` sets the default.
"""
from __future__ import annotations

import contextvars
import os
import warnings

from . import _c_backend, reference
from ._validate import Switch, choice

BACKENDS = {"c": _c_backend, "numpy": reference}


def _backend_from_env() -> str:
    name = os.environ.get("ELMAN_BACKEND", "c").strip().lower() or "c"
    if name not in BACKENDS:
        warnings.warn(f"ELMAN_BACKEND={name!r} is not one of {tuple(BACKENDS)}; using 'c'",
                      RuntimeWarning, stacklevel=2)
        name = "c"
    return name


_current = contextvars.ContextVar("elman_backend", default=_backend_from_env())


def backend(name=None):
    """Get or set the kernel backend.

    ``elman.backend()`` returns the active name ("c" or "numpy"). ``elman.backend("numpy")``
    switches (for the current thread/context); used as ``with elman.backend("numpy"): ...``
    the previous backend comes back at the end of the block.

    >>> import elman
    >>> with elman.backend("numpy"):
    ...     elman.backend()
    'numpy'
    """
    if name is None:
        return _current.get()
    choice(name, "name", tuple(BACKENDS), where="backend")
    token = _current.set(name)
    return Switch("elman.backend", name, lambda: _current.reset(token))


def current():
    """The active implementation module: elman._c_backend or elman.reference."""
    return BACKENDS[_current.get()]


def is_c() -> bool:
    """Whether the compiled kernels are active."""
    return _current.get() == "c"
