"""run_grid: the study's 22 runs resolve correctly; a small real grid runs through submitit."""

import subprocess
import sys
from pathlib import Path

from fetalheart.pipeline.grid import GridSpec, describe, load_grid

import pytest

from tests._train_helpers import make_toy_coco, tiny_opts

REPO = Path(__file__).resolve().parent.parent


def test_dry_run_lists_22_study_models(tmp_path):
    proc = subprocess.run([sys.executable, "tools/run_grid.py", "configs/study_grid.yaml", "-o", str(tmp_path),
                           "--dry-run"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "22 runs" in proc.stdout
    runs = load_grid("configs/study_grid.yaml", tmp_path)
    rows = [describe(r) for r in runs]
    assert [r["model_id"] for r in rows] == list(range(1, 23))
    assert rows[13]["enhance"] == "ahe+clahe" and rows[13]["momentum"] == 0.9  # model 14
    assert rows[0]["enhance"] == "original" and rows[0]["momentum"] == 0.7  # model 1
    assert rows[21]["enhance"] == "ahe+clahe+bd" and rows[21]["momentum"] == 0.9  # model 22
    assert all(r["max_iter"] == 10_000 and r["protocol"] == "study-faithful" for r in rows)
    recommended = describe(load_grid("configs/study_grid.yaml", tmp_path, GridSpec(
        only=[14], overlays=["overlays/recommended.yaml"]))[0])
    assert recommended["protocol"] == "recommended" and recommended["enhance"] == "ahe+clahe"


def test_only_and_seeds_expand_into_folders(tmp_path):
    runs = load_grid("configs/study_grid.yaml", tmp_path, GridSpec(only=[13, 14], seeds=[0, 1]))
    assert [r.label for r in runs] == ["model13/seed0", "model13/seed1", "model14/seed0", "model14/seed1"]
    assert runs[3].output_dir == tmp_path / "model14" / "seed1"
    assert describe(runs[3])["seed"] == 1


@pytest.mark.slow
def test_real_grid_runs_skips_finished_and_reports_failures(tmp_path):
    data = make_toy_coco(tmp_path / "data", n_train=2, n_val=1)
    grid = tmp_path / "grid.yaml"
    bad = '{name: broken, config: study/model01.yaml, opts: [SOLVER.NO_SUCH_KEY, 1]}'
    grid.write_text("base: FetalHeart-MaskRCNN-R50-FPN-scratch.yaml\nruns:\n"
                    "  - {name: model01, config: study/model01.yaml}\n"
                    "  - {name: model14, config: study/model14.yaml}\n"
                    f"  - {bad}\n")
    opts = tiny_opts(data, tmp_path / "unused", iters=2, **{"TEST.VAL_LOSS": False,
                                                          "SOLVER.BEST_CHECKPOINT_METRIC": ""})
    opts = opts[:opts.index("OUTPUT_DIR")] + opts[opts.index("OUTPUT_DIR") + 2:]  # run_grid sets OUTPUT_DIR
    cmd = [sys.executable, "tools/run_grid.py", str(grid), "-o", str(tmp_path / "out"), "--max-parallel", "2",
           "--progress-every", "2"]
    proc = subprocess.run(cmd + opts, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode != 0 and "1 of 3 runs failed" in proc.stderr and "Traceback" not in proc.stderr
    assert "FAILED broken" in proc.stderr
    for name in ("model01", "model14"):
        assert (tmp_path / "out" / name / "model_final.pth").is_file()
    assert "ahe+clahe" in (tmp_path / "out" / "model14" / "config.yaml").read_text()
    # every run of the grid shares one enhancement cache
    assert f"ENHANCE_CACHE_DIR: {tmp_path / 'out' / 'enhance_cache'}" in (tmp_path / "out" / "model14" / "config.yaml").read_text()
    # Second run: finished runs are skipped (only the broken one is tried again).
    again = subprocess.run(cmd + ["--only", "1,2", *opts], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "skip model01: finished" in again.stdout and "skip model14: finished" in again.stdout
    assert "[run_grid] start" not in again.stdout
    # A changed override makes the finished runs stale: trained again, the old folders kept aside.
    changed = subprocess.run(cmd + ["--only", "1", *opts, "SOLVER.BASE_LR", "0.005"], cwd=REPO, capture_output=True,
                             text=True, timeout=300)
    assert changed.returncode == 0, changed.stderr
    assert "its config or dataset changed" in changed.stdout and "[run_grid] start model01" in changed.stdout
    assert len(list((tmp_path / "out" / ".stale").iterdir())) == 1
    assert "BASE_LR: 0.005" in (tmp_path / "out" / "model01" / "config.yaml").read_text()


def test_training_job_sees_the_callers_gpus(tmp_path, monkeypatch):
    """submitit's local executor hides GPUs from its jobs; train_one hands the caller's back."""
    import fetalheart.pipeline.grid as grid

    seen = {}

    def fake_run(cmd, stdout, stderr, env):
        seen["env"] = env
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(grid.subprocess, "run", fake_run)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    run = load_grid("configs/study_grid.yaml", tmp_path, GridSpec(only=[1]))[0]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # as inside a submitit local job
    assert grid.train_one(run)["returncode"] == 0 and seen["env"]["CUDA_VISIBLE_DEVICES"] == "3"
    run.gpu = "1"  # --gpus wins
    grid.train_one(run)
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == "1"


def test_option_after_overrides_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "tools/run_grid.py", "configs/study_grid.yaml", "-o", str(tmp_path),
                           "DATASETS.ROOT", "x", "--dry-run", "1"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "put options first" in proc.stderr and "Traceback" not in proc.stderr


def test_progress_line_reads_metrics_json(tmp_path):
    import json

    from fetalheart.pipeline.progress import latest_metrics, progress_line

    m = tmp_path / "metrics.json"
    rows = [{"iteration": 19, "total_loss": 2.5, "time": 0.5},
            {"iteration": 39, "total_loss": 1.25, "time": 0.75, "val_total_loss": 1.5}]
    m.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"iteration": 59, "tot')  # a line being written
    line = progress_line("model02", latest_metrics(m), 100)
    assert line == "model02  iter 40/100  loss 1.250  val loss 1.500  0.75 s/iter  ETA 0:00:45"
    assert "starting" in progress_line("model14", latest_metrics(tmp_path / "none.json"), 100)
