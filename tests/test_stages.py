"""Pipeline stages never delete what they did not write (issue 19 item 2), and key by content.

Each stage records the files it wrote (size and SHA-256); a rerun removes only those, unchanged.
A LabelMe JSON saved beside the frames, a file edited since, anything else: left alone, and the
rerun stops with a one-line error naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from fetalheart.pipeline.stages import MARKER, StageKey, Stages, why_changed
from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.keys import array_digest, content_key, files_digest, folder_digest

import numpy as np
import pytest


def _writer(folder: Path, names=("a.png", "sub/b.png"), text="x"):
    def fn():
        for n in names:
            (folder / n).parent.mkdir(parents=True, exist_ok=True)
            (folder / n).write_text(text + n)
        return {"what": f"{len(names)} files"}
    return fn


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_rerun_removes_only_recorded_files_and_stops_on_foreign_ones(tmp_path):
    log: list[str] = []
    folder = tmp_path / "frames"
    Stages(False, log.append).run("extract", folder, StageKey({"every": 3}), _writer(folder))
    record = json.loads((folder / MARKER).read_text())["files"]
    assert sorted(record) == ["a.png", "sub/b.png"] and record["a.png"]["sha256"] == _sha(folder / "a.png")

    # a label saved beside the frames (LabelMe's default), then the options change
    label = folder / "sub" / "b.json"
    label.write_text('{"shapes": []}')
    before = _sha(label)
    with pytest.raises(FetalHeartError) as exc:
        Stages(False, log.append).run("extract", folder, StageKey({"every": 2}), _writer(folder, ("c.png",)),
                                      hint=" (labels belong in OUT/labelme/)")
    msg = str(exc.value)
    assert "\n" not in msg and "holds 1 file(s) this pipeline did not write" in msg and "sub/b.json" in msg
    assert "nothing was deleted" in msg and msg.endswith("(labels belong in OUT/labelme/)")
    assert _sha(label) == before and (folder / "a.png").is_file() and not (folder / "c.png").exists()
    # --overwrite with the same key: the same refusal
    with pytest.raises(FetalHeartError, match="sub/b.json"):
        Stages(True, log.append).run("extract", folder, StageKey({"every": 3}), _writer(folder))

    # moved away: the rerun removes its own files only and writes the new ones
    label.rename(tmp_path / "b.json")
    Stages(False, log.append).run("extract", folder, StageKey({"every": 2}), _writer(folder, ("c.png",)))
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == ["c.png", MARKER]


def test_a_file_edited_since_is_not_ours_and_a_first_run_never_clears(tmp_path):
    folder = tmp_path / "coco"
    Stages(False, print).run("convert", folder, StageKey({"v": 1}), _writer(folder))
    (folder / "a.png").write_text("edited by hand")
    with pytest.raises(FetalHeartError, match=r"holds 1 file\(s\) .*: a.png;"):
        Stages(False, print).run("convert", folder, StageKey({"v": 2}), _writer(folder))
    assert (folder / "a.png").read_text() == "edited by hand"
    # no stage.json at all (a folder the pipeline never wrote): nothing in it is the pipeline's
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    with pytest.raises(FetalHeartError, match="mine.txt"):
        Stages(False, print).run("compare", other, StageKey(), _writer(other))
    assert (other / "mine.txt").read_text() == "keep"


def test_an_interrupted_stage_records_what_it_wrote(tmp_path):
    folder = tmp_path / "frames"

    def dies():
        _writer(folder)()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Stages(False, print).run("extract", folder, StageKey({"every": 3}), dies)
    marker = json.loads((folder / MARKER).read_text())
    assert marker["state"] == "interrupted" and sorted(marker["files"]) == ["a.png", "sub/b.png"]
    log: list[str] = []
    Stages(False, log.append).run("extract", folder, StageKey({"every": 3}), _writer(folder, ("c.png",)))
    assert "an earlier run did not finish (interrupted)" in log[0]
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == ["c.png", MARKER]
    # a hard kill leaves unrecorded files: they count as foreign, never deleted
    (folder / MARKER).write_text(json.dumps({"state": "running", "key": None, "files": {}}))
    with pytest.raises(FetalHeartError, match="c.png"):
        Stages(False, print).run("extract", folder, StageKey({"every": 2}), _writer(folder))
    # temporary files of an atomic write are ours (a killed writer's leftovers)
    (folder / MARKER).write_text(json.dumps({"state": "running", "key": None, "files": {}}))
    (folder / "c.png").unlink()
    (folder / ".c.x1y2.tmp.png").write_text("half")
    Stages(False, print).run("extract", folder, StageKey({"every": 2}), _writer(folder, ("d.png",)))
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == ["d.png", MARKER]


def test_reuse_needs_the_same_key_and_valid_outputs(tmp_path):
    folder, log = tmp_path / "runs", []
    calls = []
    fn = lambda: calls.append(1) or {"what": "trained"}  # noqa: E731
    for _ in range(2):
        Stages(False, log.append).run("train", folder, StageKey({"runs": {"m": "ab" * 8}}), fn, clear=False)
    assert len(calls) == 1 and "[train] reused" in log[-1]
    Stages(False, log.append).run("train", folder, StageKey({"runs": {"m": "ab" * 8}}), fn, clear=False,
                                  valid=lambda: False)
    assert len(calls) == 2 and "its outputs are incomplete" in log[-2]
    Stages(False, log.append).run("train", folder, StageKey({"runs": {"m": "cd" * 8, "n": "ef" * 8}}), fn,
                                  clear=False)
    assert "changed: runs: m, n changed" in log[-2]


def test_why_changed_names_options_and_content():
    old = StageKey({"extract": {"every": 3}, "videos": "a" * 16}).as_dict()
    assert why_changed(old, StageKey({"extract": {"every": 2}, "videos": "b" * 16})) == (
        'changed: extract {"every": 3} -> {"every": 2}; videos content changed')
    assert why_changed(None, StageKey()) == "first run"


def test_content_keys_hold_content_not_paths(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        (d / "images").mkdir(parents=True)
        (d / "images" / "x.png").write_bytes(b"pixels")
        (d / "stage.json").write_text(json.dumps({"written": str(d)}))  # markers are never read
    assert folder_digest(a) == folder_digest(b)  # a copied (or moved) folder: the same key
    os.utime(b / "images" / "x.png", (1, 1))  # touched
    assert folder_digest(a) == folder_digest(b)
    (b / "images" / "x.png").write_bytes(b"other")
    assert folder_digest(a) != folder_digest(b)
    assert files_digest([a / "images" / "x.png"], a) != files_digest([a / "images" / "x.png"], a / "images")
    assert content_key({"a": 1, "b": (1, 2)}) == content_key({"b": [1, 2], "a": 1})
    img = np.zeros((4, 5), np.uint8)
    assert array_digest(img) != array_digest(img.astype(np.uint16)) != array_digest(img.reshape(5, 4))


def test_a_stage_json_of_an_earlier_version_records_nothing_so_nothing_is_deleted(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "clip_000001.png").write_bytes(b"frame")
    (folder / MARKER).write_text(json.dumps({"what": "1 frame", "key": {"own": {}, "after": {}}}))  # no "files"
    with pytest.raises(FetalHeartError, match="from an earlier fetalheart that did not record the files"):
        Stages(False, print).run("extract", folder, StageKey({"every": 2}), _writer(folder))
    assert (folder / "clip_000001.png").read_bytes() == b"frame"
