"""Cached pipeline stages keyed by what they depend on, that never delete what they did not write.

A stage's key is the part of the plan it reads (its options), the keys of the stages it reads from,
the content of the user's files it reads (``fetalheart.utils.keys``: content, never paths or
modification times) and the code version. ``stage.json`` records the key of the last finished run
and every file the stage wrote (size and SHA-256); the stage is reused only when the key is
unchanged, so a cached result is never reported once what it depends on has changed, and the log
says which option or upstream stage made a stage run again.

A rerun removes only the files its record lists, unchanged. Anything else in the stage's folder (a
LabelMe JSON saved beside the frames, a file edited since, anything a person put there) is left
alone and the rerun stops with a one-line error naming it. A stage that fails or is interrupted
records what it wrote so far; only a hard kill leaves files unrecorded (then they count as foreign:
the pipeline cannot tell them from a person's).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import fetalheart
from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import file_sha256, write_json_atomic
from fetalheart.utils.keys import content_key

MARKER = "stage.json"  # one of fetalheart.utils.keys.MARKER_NAMES: folder digests never read it
#: Temporary files of ``fetalheart.utils.io.atomic_path`` (``.<stem>.<random>.tmp<suffix>``): a
#: killed writer's leftovers, never a person's file.
_ATOMIC_TMP_RE = re.compile(r"^\..+\.tmp(\.[^.]+)?$")
#: Foreign files named in the error (the count says how many more).
LISTED = 5


def digest(obj) -> str:
    """Short stable content key of a JSON-able object."""
    return content_key(obj)[:16]


@dataclass
class StageKey:
    """What a stage depends on: its own options and the keys of upstream stages (by stage name).

    The code version (``fetalheart.__version__``) is part of every stage's key.
    """

    own: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)  # upstream stage name -> its key digest

    def as_dict(self) -> dict:
        """JSON-normalised (tuples become lists), so it compares equal to the copy read from stage.json."""
        own = {**self.own, "code": fetalheart.__version__}
        return json.loads(json.dumps({"own": own, "after": self.after}, sort_keys=True, default=str))

    @property
    def value(self) -> str:
        return digest(self.as_dict())


def _is_digest(v) -> bool:
    return isinstance(v, str) and len(v) in (16, 64) and all(c in "0123456789abcdef" for c in v)


def _change(k: str, a, b) -> str:
    """One changed part of a key in words: digests say "content changed", a table of digests (the runs
    of the train stage) which entries changed, options their old and new values."""
    if _is_digest(a) and _is_digest(b):
        return f"{k} content changed"
    if isinstance(a, dict) and isinstance(b, dict) and all(_is_digest(v) or v == "" for v in [*a.values(), *b.values()]):
        names = sorted(n for n in set(a) | set(b) if a.get(n) != b.get(n))
        return f"{k}: {', '.join(names[:6])}{' ...' if len(names) > 6 else ''} changed"
    return f"{k} {json.dumps(a)} -> {json.dumps(b)}"


def why_changed(old: dict | None, new: StageKey) -> str:
    """Human reason a stage runs: first run, changed options (old -> new), changed upstream stages."""
    if not old:
        return "first run"
    reasons = []
    old_own, old_after = old.get("own", {}), old.get("after", {})
    new_own, new_after = new.as_dict()["own"], new.as_dict()["after"]
    for k in sorted(set(old_own) | set(new_own)):
        a, b = old_own.get(k), new_own.get(k)
        if a != b:
            reasons.append(_change(k, a, b))
    reasons += [f"stage {k} changed" for k in sorted(set(old_after) | set(new_after)) if old_after.get(k) != new_after.get(k)]
    return "changed: " + "; ".join(reasons) if reasons else "changed"


# ------------------------------------------------------------------------------- what a stage wrote


def folder_record(folder: Path) -> dict[str, dict]:
    """``{relative path: {"size", "sha256"}}`` of every file under ``folder`` but the marker."""
    record = {}
    for p in sorted(Path(folder).rglob("*")) if Path(folder).is_dir() else []:
        if p.is_file() and not p.is_symlink() and p.name != MARKER:
            record[p.relative_to(folder).as_posix()] = {"size": p.stat().st_size, "sha256": file_sha256(p)}
    return record


def _ours(path: Path, entry: dict | None) -> bool:
    """Whether ``path`` is a file the stage wrote and nobody changed since."""
    if _ATOMIC_TMP_RE.match(path.name):
        return True
    return bool(entry) and path.stat().st_size == entry.get("size") and file_sha256(path) == entry.get("sha256")


def foreign_files(folder: Path, record: dict[str, dict]) -> list[str]:
    """Files under ``folder`` (marker aside) that ``record`` does not list unchanged: not ours to delete."""
    found = []
    for p in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if p.name != MARKER and (p.is_file() or p.is_symlink()):
            rel = p.relative_to(folder).as_posix()
            if p.is_symlink() or not _ours(p, record.get(rel)):
                found.append(rel)
    return found


def clear_own_files(folder: Path, record: dict[str, dict], hint: str = "") -> int:
    """Delete the files ``record`` lists (and folders left empty); refuse, deleting nothing, when the
    folder holds anything else. Returns how many files were removed."""
    foreign = foreign_files(folder, record)
    if foreign:
        shown = ", ".join(foreign[:LISTED]) + (f" and {len(foreign) - LISTED} more" if len(foreign) > LISTED else "")
        raise FetalHeartError(
            f"{folder} holds {len(foreign)} file(s) this pipeline did not write (or that changed since): {shown}; "
            f"nothing was deleted: move them out of {folder.name}/ and run again{hint}")
    removed = 0
    for p in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if p.is_file() and p.name != MARKER:
            p.unlink()
            removed += 1
    own_dirs = {folder / d for rel in record for d in Path(rel).parents if str(d) != "."}
    for d in sorted(own_dirs, key=lambda x: -len(x.parts)):  # deepest first; only folders we filled
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return removed


def _why(old: dict | None, key: StageKey, same: bool, overwrite: bool) -> str:
    if same:
        return "--overwrite" if overwrite else "its outputs are incomplete"
    if old and old.get("state") in ("running", "interrupted"):
        return f"an earlier run did not finish ({old['state']})"
    return why_changed(old and old.get("key"), key)


def _read(marker: Path) -> dict | None:
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ------------------------------------------------------------------------------------------- runner


class Stages:
    """Runs stages in order, reusing those whose key is unchanged (unless ``overwrite``)."""

    def __init__(self, overwrite: bool, log: Callable[[str], None]):
        self.overwrite, self.log = overwrite, log
        self.summaries: list[dict] = []
        self.keys: dict[str, str] = {}

    def run(self, name: str, folder: Path, key: StageKey, fn: Callable[[], dict], *, clear: bool = True,
            valid: Callable[[], bool] | None = None, hint: str = "") -> dict:
        """Run ``fn`` (into ``folder``) unless its finished result has this key (and ``valid()`` holds).

        ``clear``: the stage's own earlier files are removed first (never anything else: see the module
        docstring; ``hint`` ends that error). Without ``clear`` (the training stage, whose valid models
        are kept) nothing is removed and nothing recorded.
        """
        marker = folder / MARKER
        old = _read(marker)
        same = bool(old) and old.get("key") == key.as_dict()
        if same and not self.overwrite and (valid is None or valid()):
            summary = {**old, "reused": True}
            summary.pop("files", None)
            self.log(f"[{name}] reused {folder} ({summary.get('what', '')})")
        else:
            why = _why(old, key, same, self.overwrite)
            summary = self._execute(name, folder, key, fn, clear, old, why, hint)
        summary["stage"] = name
        self.summaries.append(summary)
        self.keys[name] = key.value
        return summary

    def _execute(self, name: str, folder: Path, key: StageKey, fn: Callable[[], dict], clear: bool,
                 old: dict | None, why: str, hint: str) -> dict:
        marker = folder / MARKER
        if clear:
            legacy = bool(old) and "files" not in old  # a stage.json of a fetalheart that recorded no files
            clear_own_files(folder, (old or {}).get("files") or {}, hint + (
                f"; its {MARKER} is from an earlier fetalheart that did not record the files it wrote: if none "
                f"of them is yours, delete {folder} yourself" if legacy else ""))
            write_json_atomic(marker, {"state": "running", "key": None, "files": {}})
        self.log(f"[{name}] running ({why}) ...")
        start = time.perf_counter()
        try:
            summary = fn()
        except BaseException:  # a failed or interrupted stage: what it wrote so far is still ours
            if clear:
                write_json_atomic(marker, {"state": "interrupted", "key": None, "files": folder_record(folder)})
            raise
        summary["seconds"] = round(time.perf_counter() - start, 1)
        summary["key"] = key.as_dict()
        write_json_atomic(marker, {**summary, **({"files": folder_record(folder)} if clear else {})})
        self.log(f"[{name}] {summary.get('what', '')} in {summary['seconds']:.0f} s")
        return {**summary, "reused": False, "why": why}
