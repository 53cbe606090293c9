"""Checkpoints: one file holding arrays and a JSON header, written atomically.

A checkpoint is a NumPy .npz archive (no pickles) with the arrays of a training run and a
``meta`` entry holding JSON (UTF-8 bytes; a NumPy string array in older files): the format version, the configuration, the vocabulary, the
step and data position, and a SHA-256 of every array. It is written to a temporary file in
the same directory, fsynced, then renamed over the previous one, so a process killed while
writing leaves the previous checkpoint whole. Loading checks the version and the checksum.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile

import numpy as np

FORMAT = "elman-checkpoint"
VERSION = 1
FILENAME = "checkpoint.npz"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: missing, truncated, corrupted, or another format."""


def _digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def path_of(location: str) -> str:
    """A checkpoint directory (holding checkpoint.npz) or the file itself."""
    return os.path.join(location, FILENAME) if os.path.isdir(location) else location


def save(location: str, arrays: dict, meta: dict) -> str:
    """Write ``arrays`` (name -> ndarray) and ``meta`` (JSON-able) atomically; returns the
    file's path. ``location`` is a directory (created if needed)."""
    os.makedirs(location, exist_ok=True)
    path = os.path.join(location, FILENAME)
    header = dict(meta, format=FORMAT, version=VERSION, sha256=_digest(arrays))
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            raw = np.frombuffer(json.dumps(header).encode("utf-8"), np.uint8)
            np.savez(f, meta=raw, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        fd = os.open(location, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def load(location: str) -> "tuple[dict, dict]":
    """(arrays, meta) of a checkpoint; raises CheckpointError naming what is wrong."""
    path = path_of(location)
    if not os.path.exists(path):
        raise CheckpointError(f"{location}: no checkpoint there (expected {FILENAME})")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    if magic != b"PK\x03\x04":   # every .npz is a zip archive; anything else is not ours
        raise CheckpointError(f"{path}: not a .npz archive, so corrupted or not an elman "
                              f"checkpoint (elman train writes {FILENAME} into its run "
                              f"directory)")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: truncated or corrupted ({type(e).__name__}: {e})") \
            from None
    if "meta" not in data:
        raise CheckpointError(f"{path}: not an elman checkpoint (no header)")
    try:
        raw = data.pop("meta")
        meta = json.loads(raw.tobytes().decode("utf-8") if raw.dtype == np.uint8 else str(raw))
    except ValueError:
        raise CheckpointError(f"{path}: the header is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an elman checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {meta.get('version')}, "
                              f"this elman reads version {VERSION}")
    if _digest(data) != meta.get("sha256"):
        raise CheckpointError(f"{path}: checksum mismatch; the file is corrupted")
    return data, meta
