"""A training run's key is the content of what decides the model (issue 19 item 3).

The whole config chain (model file, every _BASE_, the grid's base, overlays, protocol overlay,
overrides), the dataset's content and the code version key the run; EVAL settings, workers, the
output folder and absolute paths do not. These tests key real grid runs without training them; the
end-to-end check (models really retrained or not) is in test_study_cache.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fetalheart.pipeline.keys as keys
from fetalheart.pipeline.grid import (
    RUN_KEY_FILE,
    GridOptions,
    GridSpec,
    _prepare,
    fingerprint_runs,
    load_grid,
)
from fetalheart.pipeline.keys import RUN_ONLY_KEYS, training_key, training_parts, why_changed

import pytest
import yaml

from tests._train_helpers import make_toy_coco

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def setup(tmp_path):
    configs = tmp_path / "configs"
    shutil.copytree(REPO / "configs", configs)
    grid = configs / "demo_grid.yaml"  # base: the scratch config; model02 and model14
    data = make_toy_coco(tmp_path / "data", n_train=2, n_val=1, size=64)
    return tmp_path, configs, grid, data


def _keys(grid, out, data, *opts, **spec) -> dict[str, str]:
    runs = load_grid(grid, out, GridSpec(opts=["DATASETS.ROOT", str(data), *opts], **spec))
    fingerprint_runs(runs)
    return {r.name: r.key for r in runs}


def _edit(path: Path, section: str, key: str, value) -> None:
    data = yaml.safe_load(path.read_text())
    data.setdefault(section, {})[key] = value
    path.write_text(yaml.safe_dump(data))


def test_run_only_keys_and_paths_never_key_training(setup):
    tmp, configs, grid, data = setup
    ref = _keys(grid, tmp / "out", data)
    assert len(set(ref.values())) == 2 and all(len(k) == 16 for k in ref.values())
    # evaluation settings, workers: how a model is scored or fed, not what it is
    assert _keys(grid, tmp / "out", data, "EVAL.SCORE_THRESH", "0.3", "EVAL.BOOTSTRAP_SAMPLES", "50",
                 "DATALOADER.NUM_WORKERS", "3") == ref
    # another output folder (OUTPUT_DIR and the enhancement cache move with it), the dataset moved
    moved = tmp / "moved" / "data"
    shutil.copytree(data, moved)
    assert _keys(grid, tmp / "elsewhere" / "runs", moved) == ref
    # the dataset's content does key the run
    (moved / "images" / sorted(p.name for p in (moved / "images").iterdir())[0]).write_bytes(b"changed")
    assert set(_keys(grid, tmp / "out", moved).values()).isdisjoint(ref.values())


def test_every_file_of_the_config_chain_keys_its_runs(setup):
    tmp, configs, grid, data = setup
    ref = _keys(grid, tmp / "out", data)
    _edit(configs / "study" / "model14.yaml", "SOLVER", "MOMENTUM", 0.7)  # one model file
    after = _keys(grid, tmp / "out", data)
    assert after["model02"] == ref["model02"] and after["model14"] != ref["model14"]
    _edit(configs / "Base-FetalHeart-MaskRCNN-R50-FPN.yaml", "SOLVER", "BASE_LR", 0.02)  # the base's _BASE_
    after_base = _keys(grid, tmp / "out", data)
    assert set(after_base.values()).isdisjoint(after.values())
    overlay = _keys(grid, tmp / "out", data, overlays=[str(configs / "overlays" / "recommended.yaml")])
    assert set(overlay.values()).isdisjoint(after_base.values())  # the protocol overlay
    _edit(configs / "overlays" / "recommended.yaml", "SOLVER", "WEIGHT_DECAY", 0.0003)
    edited = _keys(grid, tmp / "out", data, overlays=[str(configs / "overlays" / "recommended.yaml")])
    assert set(edited.values()).isdisjoint(overlay.values())
    # a comment is not content that decides a model
    base = configs / "Base-FetalHeart-MaskRCNN-R50-FPN.yaml"
    base.write_text("# a comment\n" + base.read_text())
    assert _keys(grid, tmp / "out", data, overlays=[str(configs / "overlays" / "recommended.yaml")]) == edited


def test_new_config_keys_are_keyed_without_being_listed(setup, monkeypatch):
    tmp, configs, grid, data = setup
    (run,) = load_grid(grid, tmp / "out", GridSpec(only=[1], opts=["DATASETS.ROOT", str(data)]))
    cfg = run.config_node().clone()
    cfg.defrost()
    from detectron2.config import CfgNode

    cfg.UNET = CfgNode({"ENCODER": "resnet34", "DEPTH": 5})  # e.g. a second model family's keys
    a = training_key(training_parts(cfg))
    cfg.UNET.DEPTH = 4
    assert training_key(training_parts(cfg)) != a
    assert all(not k.startswith("EVAL") for k in training_parts(cfg)["config"])
    assert "OUTPUT_DIR" in RUN_ONLY_KEYS and "EVAL" in RUN_ONLY_KEYS
    assert training_parts(cfg)["config"]["DATASETS.ROOT"] == {"dataset": keys.dataset_fingerprint(data)}
    # the code version keys every run
    monkeypatch.setattr(keys, "TRAINING_CODE_VERSION", keys.TRAINING_CODE_VERSION + 1)
    assert training_key(training_parts(cfg)) != training_key({**training_parts(cfg), "code": {}})
    old = training_parts(cfg)
    monkeypatch.setattr(keys, "TRAINING_CODE_VERSION", keys.TRAINING_CODE_VERSION + 1)
    assert why_changed(old, training_parts(cfg)).startswith("code version training ")


def test_local_weights_are_keyed_by_content(setup):
    tmp, configs, grid, data = setup
    for name in ("a", "b"):
        (tmp / name).mkdir()
        (tmp / name / "init.pth").write_bytes(b"same weights")
    a = _keys(grid, tmp / "out", data, "MODEL.WEIGHTS", str(tmp / "a" / "init.pth"))
    assert _keys(grid, tmp / "out", data, "MODEL.WEIGHTS", str(tmp / "b" / "init.pth")) == a
    (tmp / "b" / "init.pth").write_bytes(b"other weights")
    assert set(_keys(grid, tmp / "out", data, "MODEL.WEIGHTS", str(tmp / "b" / "init.pth")).values()).isdisjoint(
        a.values())


def test_an_edited_model_file_sets_that_run_aside_and_says_why(setup):
    """run_grid's check on finished runs (their model files stand in for trained ones)."""
    tmp, configs, grid, data = setup
    out = tmp / "out"
    runs = load_grid(grid, out, GridSpec(opts=["DATASETS.ROOT", str(data)]))
    fingerprint_runs(runs)
    for r in runs:  # what train_one records, and a finished model
        r.output_dir.mkdir(parents=True)
        (r.output_dir / RUN_KEY_FILE).write_text(json.dumps({"key": r.key, "run": r.label, "parts": r.parts}))
        (r.output_dir / "model_final.pth").write_bytes(b"weights of " + r.name.encode())
    _edit(configs / "study" / "model14.yaml", "SOLVER", "MOMENTUM", 0.7)
    log: list[str] = []
    runs = load_grid(grid, out, GridSpec(opts=["DATASETS.ROOT", str(data), "EVAL.SCORE_THRESH", "0.2"]))
    todo = _prepare(runs, out, GridOptions(), log.append)
    assert [r.name for r in todo] == ["model14"]
    assert "[run_grid] skip model02: finished" in log[0]
    assert "model14: its config or dataset changed since it was trained (SOLVER.MOMENTUM 0.9 -> 0.7)" in log[1]
    (stale,) = (out / ".stale").iterdir()
    assert (stale / "model_final.pth").read_bytes() == b"weights of model14"  # set aside, never deleted
    assert (out / "model02" / "model_final.pth").is_file()


def test_evaluation_key_holds_the_report_version(tmp_path, monkeypatch):
    """A report written by code that recorded less (no ground-truth hashes) is not reused as if current."""
    model = tmp_path / "model_final.pth"
    model.write_bytes(b"weights")
    cfg = {"EVAL": {"SCORE_THRESH": 0.5}}
    now = keys.evaluation_key("run", model, cfg)
    assert keys.evaluation_key("run", model, cfg) == now
    monkeypatch.setattr(keys, "REPORT_VERSION", keys.REPORT_VERSION - 1)
    assert keys.evaluation_key("run", model, cfg) != now
