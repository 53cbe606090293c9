"""Training data for the command line: text corpora for character language models and
univariate series for next-value regression.

The built-in corpus needs no download: the Python standard library's own source files,
chosen deterministically (sorted paths, a fixed byte budget), so every machine with the same
Python version trains on the same text.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import sysconfig

import numpy as np

BUILTIN_BUDGET = 3_000_000   # characters of the built-in corpus
VALID_FRACTION = 0.05        # the last 5% of a corpus is held out


class DataError(ValueError):
    """A data file that cannot be used: missing, empty, binary, too small."""


def fingerprint(content) -> dict:
    """What identifies a run's data: its size and SHA-256, of the text (UTF-8) or bytes read
    (a resumed run refuses data whose fingerprint changed)."""
    raw = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    return {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


@dataclasses.dataclass
class Corpus:
    """A tokenized text: ``vocab[i]`` is the character (or byte) of id i.

    train, valid: int64 ids, the first 95% and the last 5% of the text.
    """
    name: str
    vocab: list
    train: np.ndarray
    valid: np.ndarray
    byte_level: bool = False
    fingerprint: "dict | None" = None   # of the text it was made from (see fingerprint())

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text) -> np.ndarray:
        """ids of a str (or bytes, for a byte-level corpus); unknown symbols raise."""
        index = {s: i for i, s in enumerate(self.vocab)}
        if self.byte_level:
            symbols = list(text.encode("utf-8") if isinstance(text, str) else bytes(text))
        else:
            symbols = list(text)
        missing = sorted({s for s in symbols if s not in index}, key=str)
        if missing:
            raise DataError(f"not in the vocabulary: {', '.join(map(repr, missing[:10]))}")
        return np.array([index[s] for s in symbols], np.int64)

    def decode(self, ids) -> str:
        if self.byte_level:
            return bytes(self.vocab[i] for i in ids).decode("utf-8", errors="replace")
        return "".join(self.vocab[i] for i in ids)


def builtin_text(budget: int = BUILTIN_BUDGET) -> str:
    """The standard library's .py files, sorted by path, concatenated up to ``budget``
    characters (test suites skipped; files that are not UTF-8 skipped)."""
    root = sysconfig.get_paths()["stdlib"]
    parts, size = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames
                             if d not in ("test", "tests", "idlelib", "site-packages",
                                          "__pycache__") and not d.startswith("."))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError):
                continue
            parts.append(text)
            size += len(text)
            if size >= budget:
                return "".join(parts)[:budget]
    if size == 0:
        raise DataError(f"no Python sources found under {root} for the built-in corpus; "
                        f"pass --data FILE")
    return "".join(parts)


def read_text(path: str, *, byte_level: bool = False) -> "str | bytes":
    """A UTF-8 text file (or any file, as bytes). Raises DataError with what is wrong."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, expected a text file")
    with open(path, "rb") as f:
        raw = f.read()
    if not raw:
        raise DataError(f"{path}: the file is empty")
    if byte_level:
        return raw
    if b"\x00" in raw[:1 << 16]:
        raise DataError(f"{path}: looks binary (NUL bytes); train on its bytes with --bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); "
                        f"train on its bytes with --bytes") from None


def make_corpus(text, name: str, *, min_chars: int, byte_level: bool = False) -> Corpus:
    """Tokenize and split: vocabulary sorted (bytes: all 256), last 5% held out."""
    if len(text) < min_chars:
        raise DataError(f"{name}: {len(text)} {'bytes' if byte_level else 'characters'} "
                        f"is too small; need at least {min_chars} (about 20 windows of "
                        f"seq_len * batch)")
    if byte_level:
        vocab = list(range(256))
        ids = np.frombuffer(bytes(text), np.uint8).astype(np.int64)
    else:
        vocab = sorted(set(text))
        lookup = {c: i for i, c in enumerate(vocab)}
        ids = np.fromiter((lookup[c] for c in text), np.int64, count=len(text))
    cut = len(ids) - max(1, int(len(ids) * VALID_FRACTION))
    return Corpus(name, vocab, ids[:cut], ids[cut:], byte_level, fingerprint(text))


# ---- series -------------------------------------------------------------------------------

TRANSFORMS = ("auto", "none", "diff")
ADF_CRITICAL_5PCT = -2.86   # Dickey-Fuller, constant and no trend, large samples (MacKinnon)
TAIL = 10_000               # raw values a series model keeps for forecasts


@dataclasses.dataclass
class Series:
    """A univariate series as the model sees it: the values, or their first differences
    (``transform="diff"``), standardized with the training part's mean and std.

    train, valid: float64 model inputs and targets, standardized. Either way the held-out
    targets are the same raw values (``valid[1:]`` scores the levels ``raw[cut + 1:]``),
    so an RMSE in the data's units compares across transforms.
    naive_errors: the held-out errors of "next = last" on those targets, in the data's units.
    tail: the last raw values (at most TAIL), from which ``elman forecast`` continues.
    """
    name: str
    train: np.ndarray
    valid: np.ndarray
    mean: float
    std: float
    transform: str = "none"
    reason: str = ""
    naive_errors: "np.ndarray | None" = None
    tail: "np.ndarray | None" = None
    fingerprint: "dict | None" = None

    def to_model(self, raw: np.ndarray) -> np.ndarray:
        """Raw values -> the standardized model inputs (one fewer with "diff")."""
        v = np.diff(raw) if self.transform == "diff" else np.asarray(raw, np.float64)
        return (v - self.mean) / self.std

    def from_model(self, z: np.ndarray, last: float) -> np.ndarray:
        """Standardized model outputs of consecutive steps -> raw values that follow
        ``last`` (a cumulative sum of the predicted differences with "diff")."""
        v = np.asarray(z, np.float64) * self.std + self.mean
        return last + np.cumsum(v) if self.transform == "diff" else v


def adf_statistic(x: np.ndarray, lags: "int | None" = None) -> float:
    """The augmented Dickey-Fuller t statistic of ``x``: the t ratio of b in
    ``dx_t = a + b x_{t-1} + sum_i c_i dx_{t-i} + e_t``. Below ADF_CRITICAL_5PCT the series
    is mean-reverting (no unit root at 5%); above it, it wanders like a random walk and is
    better modelled by its differences. ``lags`` default: Schwert's 12 (n/100)^(1/4), at
    most 32."""
    x = np.asarray(x, np.float64)
    n = len(x)
    if lags is None:
        lags = min(32, int(12 * (n / 100) ** 0.25))
    dx = np.diff(x)
    rows = len(dx) - lags
    if rows < lags + 10:
        return float("nan")
    cols = [np.ones(rows), x[lags:-1]] + [dx[lags - i:len(dx) - i] for i in range(1, lags + 1)]
    X = np.column_stack(cols)
    y = dx[lags:]
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    dof = rows - X.shape[1]
    if dof <= 0:
        return float("nan")
    sigma2 = float(resid @ resid) / dof
    try:
        cov = sigma2 * np.linalg.inv(X.T @ X)
    except np.linalg.LinAlgError:
        return float("nan")
    se = float(np.sqrt(max(cov[1, 1], 0.0)))
    return float(coef[1] / se) if se > 0 else float("-inf")


def choose_transform(train: np.ndarray, transform: str = "auto") -> "tuple[str, str]":
    """("none" | "diff", why): with "auto", first differences when the augmented
    Dickey-Fuller test does not reject a unit root at 5% (a trending or random-walk
    series, whose held-out values leave the training range)."""
    if transform not in TRANSFORMS:
        raise DataError(f"transform must be one of {', '.join(TRANSFORMS)}, got {transform!r}")
    if transform != "auto":
        return transform, "as asked (--transform)"
    t = adf_statistic(train)
    if not t == t:  # too short to test
        return "none", "auto: too short for a unit-root test"
    if t > ADF_CRITICAL_5PCT:
        return "diff", (f"auto: the series wanders (augmented Dickey-Fuller t = {t:.2f} > "
                        f"{ADF_CRITICAL_5PCT}: a unit root is not rejected at 5%)")
    return "none", (f"auto: the series reverts to its mean (augmented Dickey-Fuller t = "
                    f"{t:.2f} < {ADF_CRITICAL_5PCT})")


def synthetic_series(n: int = 60_000, seed: int = 0) -> np.ndarray:
    """A noisy sum of three sines with incommensurate periods."""
    t = np.arange(n, dtype=np.float64)
    rng = np.random.default_rng(seed)
    return (np.sin(2 * np.pi * t / 50) + 0.5 * np.sin(2 * np.pi * t / 17.3)
            + 0.3 * np.sin(2 * np.pi * t / 211) + 0.1 * rng.standard_normal(n))


def read_series(path: str, column: "str | None") -> np.ndarray:
    """One numeric column of a CSV file with a header row."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, expected a CSV file")
    with open(path, newline="", encoding="utf-8") as f:
        try:
            rows = list(csv.reader(f))
        except (UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"{path}: not a readable CSV file ({e})") from None
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and at least one row of values")
    header = [h.strip() for h in rows[0]]
    if column is None:
        if len(header) != 1:
            raise DataError(f"{path}: has columns {header}; choose one with --column")
        column = header[0]
    if column not in header:
        raise DataError(f"{path}: no column {column!r}; the columns are {header}")
    k = header.index(column)
    try:
        values = np.array([float(r[k]) for r in rows[1:] if len(r) > k and r[k].strip()])
    except ValueError as e:
        raise DataError(f"{path}: column {column!r} is not numeric ({e})") from None
    if not np.all(np.isfinite(values)):
        raise DataError(f"{path}: column {column!r} holds NaN or infinity")
    return values


def make_series(values: np.ndarray, name: str, *, min_len: int, transform: str = "auto",
                fingerprint_of=None) -> Series:
    """Split (the last 10% held out), choose the transform, standardize with the training
    part's statistics."""
    values = np.asarray(values, np.float64)
    if len(values) < min_len:
        raise DataError(f"{name}: {len(values)} values is too few; need at least {min_len}")
    cut = len(values) - max(2, int(len(values) * VALID_FRACTION * 2))
    kind, reason = choose_transform(values[:cut], transform)
    if kind == "diff":
        d = np.diff(values)
        train, valid = d[:cut - 1], d[cut - 1:]   # valid[0] = values[cut] - values[cut-1]
    else:
        train, valid = values[:cut], values[cut:]
    mean, std = float(train.mean()), float(train.std()) or 1.0
    return Series(name, (train - mean) / std, (valid - mean) / std, mean, std, kind, reason,
                  np.diff(values[cut:]), values[-TAIL:].copy(),
                  fingerprint(values.tobytes() if fingerprint_of is None else fingerprint_of))
