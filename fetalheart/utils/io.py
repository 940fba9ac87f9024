"""Atomic output: write to a temporary file beside the target, then rename.

A crash or Ctrl-C never leaves a half-written file under the final name, and readers never
see a partial file (``os.replace`` is atomic on one filesystem).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fetalheart.utils.errors import FetalHeartError

import numpy as np


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    The temporary name keeps the suffix, so writers that choose a format by extension
    (cv2.imwrite, matplotlib) work.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FetalHeartError(f"{target} exists; pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the final file the permissions a plain open() would (0666 & ~umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text_atomic(target: str | os.PathLike, text: str, overwrite: bool = True) -> Path:
    """Write text atomically (UTF-8)."""
    with atomic_path(target, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_bytes_atomic(target: str | os.PathLike, data: bytes, overwrite: bool = True) -> Path:
    """Write bytes atomically."""
    with atomic_path(target, overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_json_atomic(target: str | os.PathLike, obj: Any, overwrite: bool = True, indent: int | None = 2) -> Path:
    """Write JSON atomically with sorted-free, stable formatting (same input, same bytes)."""
    return write_text_atomic(target, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", overwrite)


def copy_atomic(src: str | os.PathLike, target: str | os.PathLike, overwrite: bool = True) -> Path:
    """Copy a file byte for byte, atomically."""
    with atomic_path(target, overwrite) as tmp:
        shutil.copyfile(src, tmp)
    return Path(target)


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check we can write there; one clear error otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe.", delete=True)
        probe.close()
    except OSError as exc:
        raise FetalHeartError(f"cannot write to output directory {path}: {exc.strerror or exc}") from None
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks (content keys of caches and datasets)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; one-line FetalHeartError when it cannot be read or parsed."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FetalHeartError(f"cannot read {path}: {exc}") from None


def json_ready(obj):
    """Recursively replace NaN/inf with None and numpy scalars with Python ones, for report.json."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj

