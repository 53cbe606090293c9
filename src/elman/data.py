"""Training data for the command line: text corpora for character language models and
univariate series for next-value regression.

The built-in corpus needs no download: the Python standard library's own source files,
chosen deterministically (sorted paths, a fixed byte budget), so every machine with the same
Python version trains on the same text.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import sysconfig

import numpy as np

BUILTIN_BUDGET = 3_000_000   # characters of the built-in corpus
VALID_FRACTION = 0.05        # the last 5% of a corpus is held out


class DataError(ValueError):
    """A data file that cannot be used: missing, empty, binary, too small."""


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
    return Corpus(name, vocab, ids[:cut], ids[cut:], byte_level)


# ---- series -------------------------------------------------------------------------------

@dataclasses.dataclass
class Series:
    """A univariate series, standardized with the training part's mean and std."""
    name: str
    train: np.ndarray   # float64, standardized
    valid: np.ndarray
    mean: float
    std: float


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


def make_series(values: np.ndarray, name: str, *, min_len: int) -> Series:
    if len(values) < min_len:
        raise DataError(f"{name}: {len(values)} values is too few; need at least {min_len}")
    cut = len(values) - max(2, int(len(values) * VALID_FRACTION * 2))
    train = values[:cut]
    mean, std = float(train.mean()), float(train.std()) or 1.0
    return Series(name, (train - mean) / std, (values[cut:] - mean) / std, mean, std)
