"""Forecasts of a series model trained by ``elman train --task series``: the model reads a
history of raw values, then feeds each prediction back as its next input.

    from elman.forecast import load, forecast
    model, series = load("elman-run")                 # the run's model and its transform
    values = forecast(model, series, series.tail, 24)  # the 24 values after the tail
"""
from __future__ import annotations

import numpy as np

from . import checkpoint
from .data import Series
from .model import ElmanRNN


def load(location: str) -> "tuple[ElmanRNN, Series]":
    """The model of a series run's checkpoint, and a Series carrying its standardization,
    transform and the last raw values it trained on (``tail``, at most data.TAIL).
    Raises CheckpointError for a checkpoint that is not of a series run."""
    arrays, meta = checkpoint.load(location)
    cfg = meta.get("config")
    if not isinstance(cfg, dict) or "params" not in arrays:
        raise checkpoint.CheckpointError(f"{location}: not a checkpoint of elman train")
    if cfg.get("task") != "series":
        raise checkpoint.CheckpointError(
            f"{location} holds a text model; elman forecast continues series (elman sample "
            f"generates text)")
    if "series_tail" not in arrays or not meta.get("series"):
        raise checkpoint.CheckpointError(
            f"{location}: written by an older elman, it lacks the series' last values; "
            f"give the history with --data")
    mean, std = meta["series"]
    series = Series(meta.get("data_name", "series"), np.empty(0), np.empty(0), mean, std,
                    meta.get("series_transform") or "none", tail=arrays["series_tail"])
    model = ElmanRNN(1, cfg["hidden"], 1, num_layers=cfg.get("layers", 1),
                     dtype=cfg["dtype"])
    model.params[...] = arrays["params"]
    return model, series


def forecast(model: ElmanRNN, series: Series, history, horizon: int) -> np.ndarray:
    """The ``horizon`` raw values that follow ``history`` (1-D, raw values in the data's
    units, oldest first; at least 2 with a "diff" transform), as a (horizon,) float64 array.

    The model reads the history from a zero state, so its state is the one it would have
    after those values; each prediction is then its next input. Under ``transform="diff"``
    the predictions are differences, summed from ``history[-1]``."""
    history = np.asarray(history, np.float64).ravel()
    need = 2 if series.transform == "diff" else 1
    if len(history) < need:
        raise ValueError(f"forecast: history needs at least {need} values, got {len(history)}")
    if not np.all(np.isfinite(history)):
        raise ValueError("forecast: history holds NaN or infinity")
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"forecast: horizon must be a positive integer, got {horizon!r}")
    z = series.to_model(history).astype(model.dtype)
    Y, h = model.forward(z[:, None, None])
    out = np.empty(int(horizon), np.float64)
    out[0] = Y[-1, 0, 0]
    step = np.empty((1, 1, 1), model.dtype)
    for k in range(1, int(horizon)):
        step[0, 0, 0] = out[k - 1]
        Y, h = model.forward(step, h)
        out[k] = Y[0, 0, 0]
    return series.from_model(out, last=float(history[-1]))
