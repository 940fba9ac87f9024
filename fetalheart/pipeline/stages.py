"""Cached pipeline stages keyed by what they depend on.

A stage's key is the part of the plan it reads (its options) plus the keys of the stages it reads
from, and for user data a fingerprint of the input files (names, sizes, modification times).
``stage.json`` records the key of the last finished run; the stage is reused only when the key is
unchanged, so a cached result is never reported once what it depends on has changed, and the log
says which option or upstream stage made a stage run again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fetalheart.utils.io import write_json_atomic

MARKER = "stage.json"


def digest(obj) -> str:
    """Short stable hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def files_fingerprint(paths: Iterable[Path]) -> str:
    """Hash of (path, size, mtime) of files: cheap, and changes whenever a file is edited or replaced."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        st = p.stat()
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def folder_fingerprint(folder: Path) -> str:
    """``files_fingerprint`` of every file under ``folder``, stage markers aside."""
    return files_fingerprint(p for p in Path(folder).rglob("*") if p.is_file() and p.name != MARKER)


@dataclass
class StageKey:
    """What a stage depends on: its own options and the keys of upstream stages (by stage name)."""

    own: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)  # upstream stage name -> its key digest

    def as_dict(self) -> dict:
        """JSON-normalised (tuples become lists), so it compares equal to the copy read from stage.json."""
        return json.loads(json.dumps({"own": self.own, "after": self.after}, sort_keys=True, default=str))

    @property
    def value(self) -> str:
        return digest(self.as_dict())


def why_changed(old: dict | None, new: StageKey) -> str:
    """Human reason a stage runs: first run, changed options (old -> new), changed upstream stages."""
    if not old:
        return "first run"
    reasons = []
    old_own, old_after = old.get("own", {}), old.get("after", {})
    new_own, new_after = new.as_dict()["own"], new.as_dict()["after"]
    for k in sorted(set(old_own) | set(new_own)):
        if old_own.get(k) != new_own.get(k):
            reasons.append(f"{k} {json.dumps(old_own.get(k))} -> {json.dumps(new_own.get(k))}")
    reasons += [f"stage {k} changed" for k in sorted(set(old_after) | set(new_after)) if old_after.get(k) != new_after.get(k)]
    return "changed: " + "; ".join(reasons) if reasons else "changed"


class Stages:
    """Runs stages in order, reusing those whose key is unchanged (unless ``overwrite``)."""

    def __init__(self, overwrite: bool, log: Callable[[str], None]):
        self.overwrite, self.log = overwrite, log
        self.summaries: list[dict] = []
        self.keys: dict[str, str] = {}

    def run(self, name: str, folder: Path, key: StageKey, fn: Callable[[], dict], *, clear: bool = True) -> dict:
        """Run ``fn`` (into ``folder``) unless its finished result has this key; ``clear`` empties the
        folder first (cheap stages; never the training stage, whose valid models are kept)."""
        marker = folder / MARKER
        old = _read(marker)
        if old and old.get("key") == key.as_dict() and not self.overwrite:
            summary = {**old, "reused": True}
            self.log(f"[{name}] reused {folder} ({summary.get('what', '')})")
        else:
            why = "--overwrite" if old and old.get("key") == key.as_dict() else why_changed(old and old.get("key"), key)
            if clear and folder.exists():
                shutil.rmtree(folder)
            self.log(f"[{name}] running ({why}) ...")
            start = time.perf_counter()
            summary = fn()
            summary["seconds"] = round(time.perf_counter() - start, 1)
            summary["key"] = key.as_dict()
            write_json_atomic(marker, summary)
            summary = {**summary, "reused": False, "why": why}
            self.log(f"[{name}] {summary.get('what', '')} in {summary['seconds']:.0f} s")
        summary["stage"] = name
        self.summaries.append(summary)
        self.keys[name] = key.value
        return summary


def _read(marker: Path) -> dict | None:
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
