"""Change statistics per enhancement step (measure_changes), and their place in enhance_dataset's report."""

import json

from fetalheart.cli.enhance_dataset import main as enhance_main
from fetalheart.enhance import changes_table, enhance, format_changes, measure_changes

import cv2
import numpy as np
import pytest

from tests._enhance_helpers import fake_echo


@pytest.fixture
def frames(tmp_path):
    paths = []
    for i in range(4):
        path = tmp_path / "frames" / f"f{i}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), np.repeat(fake_echo(60, 80, seed=i)[..., None], 3, axis=2))
        paths.append(path)
    return paths


def _reference(paths, spec):
    """Per step: (frames changed, mean over frames of the per-frame mean |difference|), in plain numpy."""
    ops = spec.split("+")
    out = []
    for i in range(len(ops)):
        before = "+".join(ops[:i]) or "original"
        after = "+".join(ops[: i + 1])
        diffs = []
        for p in paths:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            a = enhance(img, before).astype(np.int64)
            b = enhance(img, after).astype(np.int64)
            diffs.append(np.abs(b - a).mean())
        out.append((sum(d > 0 for d in diffs), float(np.mean(diffs))))
    return out


@pytest.mark.parametrize("spec", ["he+clahe", "ahe+clahe+bd"])
def test_steps_match_a_direct_computation(frames, spec, tmp_path):
    stats = measure_changes(frames, spec, cache_dir=tmp_path / "cache", quiet=True)
    assert [s["step"] for s in stats["steps"]] == ["+".join(spec.split("+")[: i + 1]) for i in range(len(spec.split("+")))]
    for got, (n_changed, mad) in zip(stats["steps"], _reference(frames, spec), strict=True):
        assert got["frames_changed"] == n_changed and got["frames_total"] == 4
        assert got["mean_abs_change"] == pytest.approx(mad, abs=1e-3)
    assert stats["frames"] == 4 and stats["warning"] is None and "averaged over all frames" in stats["definition"]
    line = format_changes(stats)
    assert "\n" not in line and "4/4 changed" in line
    if "bd" in spec:
        bd = stats["steps"][-1]["bd"]
        assert bd["bd_min_sigma"] == 1.0 and bd["bd_skip_sharp"] is False and 0 <= bd["below_floor"] <= 4


def test_a_step_that_changes_too_few_frames_is_warned_about(frames, tmp_path):
    # fake_echo frames are sharp: with bd_skip_sharp, bd leaves them alone (the pre-floor behaviour).
    stats = measure_changes(frames, "he+bd", params={"bd_skip_sharp": True}, quiet=True)
    he, bd = stats["steps"]
    assert he["frames_changed"] == 4 and bd["frames_changed"] == 0 and bd["mean_abs_change"] == 0.0
    assert bd["mean_abs_change_changed"] is None and bd["bd"]["below_floor"] == 4
    assert "step 'he+bd' changed 0 of 4 frames (0.0% < 95%)" in stats["warning"]
    assert "WARNING" in format_changes(stats)
    table = changes_table([stats, measure_changes(frames, "original", quiet=True)])
    assert "LOW" in table and "(original)" in table


def test_parallel_equals_serial(frames, tmp_path):
    serial = measure_changes(frames, "he+bd", cache_dir=tmp_path / "c", quiet=True)
    parallel = measure_changes(frames, "he+bd", cache_dir=tmp_path / "c2", quiet=True, jobs=2)
    assert serial == parallel


def test_enhance_dataset_reports_changes_and_warns(frames, tmp_path, capsys):
    images = [{"id": i + 1, "file_name": p.name, "height": 60, "width": 80} for i, p in enumerate(frames)]
    coco = tmp_path / "train.json"
    coco.write_text(json.dumps({"images": images, "annotations": [], "categories": []}))
    base = ["--coco", str(coco), "--images", str(frames[0].parent), "--spec", "he+bd"]
    assert enhance_main(base + ["-o", str(tmp_path / "a"), "--cache-dir", str(tmp_path / "k")]) == 0
    err = capsys.readouterr().err
    report = json.loads((tmp_path / "a" / "enhance_report.json").read_text())
    changes = report["splits"]["train.json"]["changes"]
    assert changes["steps"][1]["frames_changed"] == 4 and changes["warning"] is None
    assert "| he+bd" in err and "WARNING" not in err
    assert list((tmp_path / "k" / "bd_kernels").rglob("*.npy"))  # the kernel cache asked for
    # The pre-floor behaviour: a loud warning on stderr, even with --quiet; the report says so too.
    args = base + ["-o", str(tmp_path / "b"), "-q", "--param", "bd_skip_sharp=true"]
    assert enhance_main(args) == 0
    err = capsys.readouterr().err
    assert err.startswith("WARNING: enhancement 'he+bd': step 'he+bd' changed 0 of 4 frames")
    # A rerun comes from the manifest, statistics included.
    assert enhance_main(args + ["--overwrite"]) == 0
    report = json.loads((tmp_path / "b" / "enhance_report.json").read_text())["splits"]["train.json"]
    assert report["cached"] == 4 and report["changes"]["steps"][1]["frames_changed"] == 0
