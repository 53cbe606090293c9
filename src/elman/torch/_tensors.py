"""Checks and NumPy views shared by elman.torch's optimizer and module."""
from __future__ import annotations

import torch

_DTYPES = (torch.float32, torch.float64)


def _check_tensor(t, what, where):
    """A CPU tensor of float32 or float64, or a clear error naming torch's alternative."""
    if t.device.type != "cpu":
        raise ValueError(f"{where}: {what} is on {t.device}; elman runs on the CPU (use "
                         f"torch.optim / torch.nn for other devices)")
    if t.dtype not in _DTYPES:
        raise TypeError(f"{where}: {what} has dtype {t.dtype}; elman handles float32 and "
                        f"float64 (use torch's own class for {t.dtype})")


def _np(t):
    """The tensor's memory as a NumPy array (no copy; the tensor must be contiguous)."""
    return t.detach().numpy()
