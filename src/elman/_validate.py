"""Argument checks shared by the public entry points.

Every check raises before any pointer reaches C, with a message that names the argument,
says what it got (dtype, shape, layout) and what was expected.
"""
from __future__ import annotations

import numpy as np

from . import _core

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class NonFiniteError(FloatingPointError, ValueError):
    """A NaN or infinity where a finite value is required (an input, a loss, a gradient).

    Subclasses both FloatingPointError and ValueError, so either ``except`` clause catches it.
    """

    def renamed(self, where: str) -> "NonFiniteError":
        """The same error reported by ``where`` (the caller's name in place of the kernel's
        before the first colon): an optimizer's step reports as ``Adagrad.step``."""
        text = str(self)
        head, sep, rest = text.partition(": ")
        return NonFiniteError(f"{where}: {rest}" if sep else f"{where}: {text}")


def all_finite(x) -> bool:
    """Whether a C-contiguous float array holds no NaN or infinity (one vectorized C pass)."""
    return bool(_core.all_finite(x.reshape(-1)))


def _describe(a) -> str:
    if isinstance(a, np.ndarray):
        return f"array of dtype {a.dtype} and shape {a.shape}"
    return f"object of type {type(a).__name__}"


def float_array(a, name: str, *, where: str, dtype=None, ndim=None, shape=None,
                writable: bool = False, finite: bool = False) -> np.ndarray:
    """A C-contiguous float32/float64 ndarray, checked, never copied.

    dtype: the required dtype (None: either float dtype). shape: a tuple in which None means
    "any size here". writable: the kernel writes into it. finite: reject NaN and infinity.
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{where}: {name} must be a NumPy array, got {_describe(a)}")
    if isinstance(a, np.matrix):
        raise TypeError(f"{where}: {name} is an np.matrix, whose operators are matrix "
                        f"products; pass np.asarray({name})")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{where}: {name} must have dtype float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{where}: {name} has dtype {a.dtype}, expected {np.dtype(dtype)} "
                        f"(all float arguments of one call share a dtype)")
    _check_shape(a, name, where, ndim, shape)
    if not a.flags.c_contiguous:
        raise ValueError(f"{where}: {name} must be C-contiguous (got strides {a.strides} for "
                         f"shape {a.shape}); pass np.ascontiguousarray({name})")
    if not a.flags.aligned:
        raise ValueError(f"{where}: {name} is not aligned to its dtype; pass {name}.copy()")
    if writable and not a.flags.writeable:
        raise ValueError(f"{where}: {name} is read-only, but the kernel writes into it")
    if finite and a.size and not _core.all_finite(a.reshape(-1)):
        raise NonFiniteError(f"{where}: {name} holds NaN or infinity")
    return a


def index_array(a, name: str, *, where: str, upper: int, shape=None, ndim=None,
                out=None) -> np.ndarray:
    """Integer class targets or token ids as a C-contiguous int64 array in [0, upper).

    Any integer dtype is accepted (copied to int64 when needed); bool and floats are not.
    out: an int64 buffer of the array's shape to copy int64 ids into instead of allocating
    (a training loop's workspace); other integer dtypes are copied as usual.
    """
    arr = as_array(a, name, where=where)
    if not is_integer_array(arr):
        raise TypeError(f"{where}: {name} must hold integers (class or token ids), "
                        f"got dtype {arr.dtype}")
    _check_shape(arr, name, where, ndim, shape)
    # A private copy first, checked afterwards: C reads the ids with the GIL released, and the
    # caller's array could change in between (the C kernels also check where they read).
    # The range is checked before the cast to int64, so that uint64 values are not wrapped.
    if out is not None and arr.dtype == np.int64 and out.shape == arr.shape:
        np.copyto(out, arr)
        arr = out
    else:
        arr = np.array(arr, order="C", copy=True)
    if arr.size:
        if arr.dtype == np.int64:  # one pass in C
            lo, hi = _core.index_range(arr.reshape(-1))
        else:
            lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= upper:
            bad = lo if lo < 0 else hi
            pos = tuple(int(i) for i in np.argwhere(arr == bad)[0])
            raise ValueError(f"{where}: {name} holds {bad} at index {pos}; "
                             f"expected 0 <= {name} < {upper}")
    return arr.astype(np.int64, copy=False)


def is_integer_array(arr) -> bool:
    """Signed or unsigned integers; not bool, not timedelta64 (which NumPy files under
    np.integer too)."""
    return arr.dtype.kind in "iu"


def as_array(a, name: str, *, where: str) -> np.ndarray:
    """np.asarray, with the failures of ragged or odd inputs naming the argument."""
    try:
        return np.asarray(a)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: {name} cannot be made into an array ({err})") from None


def _check_shape(a, name, where, ndim, shape):
    if ndim is not None and a.ndim not in np.atleast_1d(ndim):
        raise ValueError(f"{where}: {name} must have {ndim} dimensions, got shape {a.shape}")
    if shape is not None:
        ok = a.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, a.shape))
        if not ok:
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + \
                   ("," if len(shape) == 1 else "") + ")"
            raise ValueError(f"{where}: {name} has shape {a.shape}, expected {want}")


def same_shape(where: str, ref_name: str, ref: np.ndarray, **others) -> None:
    for name, a in others.items():
        if a.shape != ref.shape:
            raise ValueError(f"{where}: {name} has shape {a.shape}, but {ref_name} has "
                             f"{ref.shape}; they must match")


def no_overlap(where: str, outputs: dict, inputs: dict) -> None:
    """Outputs may share memory with nothing else passed to the same call."""
    items = list(outputs.items())
    rest = list(inputs.items())
    for i, (oname, o) in enumerate(items):
        if o is None:
            continue
        for name, a in items[i + 1:] + rest:
            if a is not None and np.may_share_memory(o, a):
                raise ValueError(f"{where}: {oname} and {name} share memory; "
                                 f"pass separate arrays")


def positive_int(v, name: str, *, where: str, minimum: int = 1, maximum: int = 2**62) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{where}: {name} must be an int, got {type(v).__name__}")
    if v < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {v}")
    if v > maximum:
        raise ValueError(f"{where}: {name} must be <= {maximum}, got {v}")
    return int(v)


_INF = float("inf")


def real(v, name: str, *, where: str, minimum=None, strict=False, allow_none=False):
    """A finite real number (float or int), optionally bounded below."""
    if v is None and allow_none:
        return None
    if type(v) is not float:  # the common case skips these checks: it is called per step
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                                  np.floating)):
            raise TypeError(f"{where}: {name} must be a real number, got {type(v).__name__}")
        try:
            v = float(v)
        except OverflowError:
            raise ValueError(f"{where}: {name} is too large for a float, got {v}") from None
    if not -_INF < v < _INF:  # NaN fails both comparisons
        raise ValueError(f"{where}: {name} must be finite, got {v}")
    if minimum is not None and (v <= minimum if strict else v < minimum):
        raise ValueError(f"{where}: {name} must be {'>' if strict else '>='} {minimum}, got {v}")
    return v


def choice(v, name: str, options, *, where: str):
    if v not in options:
        raise ValueError(f"{where}: {name} must be one of {', '.join(map(repr, options))}, "
                         f"got {v!r}")
    return v


class Switch:
    """What a setter returns when it has already switched something (a backend, a kernel
    path): ``with`` it, and the previous setting comes back at the end of the block."""

    def __init__(self, label, name, restore):
        self.name, self._label, self._restore = name, label, restore

    def __enter__(self):
        return self.name

    def __exit__(self, *exc):
        self._restore()
        return False

    def __repr__(self):
        return f"{self._label}({self.name!r})"
