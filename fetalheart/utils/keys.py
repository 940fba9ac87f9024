"""The one content-key scheme of every cache: pipeline stages, training runs, evaluations, the
enhancement manifest and the bd kernel and image caches.

A key is the SHA-256 of a canonical JSON document (sorted keys, no whitespace) holding what decides
a result: the *content* of files, folders and arrays (their SHA-256), option values and the code or
cache versions that produced it. Never an absolute path, a modification time or a host name: moving
an output folder, copying a dataset or touching a file leaves every key unchanged, while any change
of content or of a version changes it. docs/data_and_caching.md lists what each cache keys on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fetalheart.utils.io import file_sha256

import numpy as np

#: Names of files a folder digest never reads: pipeline stage markers (fetalheart.pipeline.stages).
MARKER_NAMES = frozenset({"stage.json"})


def canonical_json(obj: Any) -> str:
    """The JSON text a key hashes: sorted keys, tuples as lists, no whitespace."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_key(obj: Any) -> str:
    """SHA-256 (hex) of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def array_digest(array: np.ndarray) -> str:
    """SHA-256 of an array's shape, dtype and bytes (what an image *is*, however it was stored)."""
    h = hashlib.sha256()
    h.update(f"{array.shape}|{array.dtype.str}|".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def files_digest(paths: Iterable[str | os.PathLike], root: str | os.PathLike) -> str:
    """Content key of files named relative to ``root``: ``{relative path: SHA-256}``; moving ``root``
    (or touching a file) leaves it unchanged, renaming or editing a file changes it."""
    root = Path(root)
    return content_key({Path(p).resolve().relative_to(root.resolve()).as_posix(): file_sha256(p) for p in paths})


def folder_files(folder: str | os.PathLike) -> list[Path]:
    """Every file under ``folder`` that a folder digest reads: hidden files and folders (``.stale``,
    temporary files of atomic writes) and stage markers aside, sorted."""
    folder = Path(folder)
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).parts
        if p.is_file() and p.name not in MARKER_NAMES and not any(part.startswith(".") for part in rel):
            out.append(p)
    return out


def folder_digest(folder: str | os.PathLike) -> str:
    """:func:`files_digest` of :func:`folder_files`."""
    return files_digest(folder_files(folder), folder)
