"""Training on CPU: a few iterations of the real R50-FPN Mask R-CNN on a tiny generated dataset."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests._train_helpers import make_toy_coco, tiny_opts

SCRATCH = "configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml"
REPO = Path(__file__).resolve().parent.parent
LOSSES = ["total_loss", "loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return make_toy_coco(tmp_path_factory.mktemp("toy"))


def _train_cli(*args: str, timeout=600, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/train_net.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, **popen)


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.json").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory) -> Path:
    """One 4-iteration run with validation loss at iteration 2 and 4, enhancement ahe+clahe."""
    out = tmp_path_factory.mktemp("run")
    proc = _train_cli("--config-file", SCRATCH,
                      *tiny_opts(toy, out, iters=4, **{"TEST.EVAL_PERIOD": 2, "INPUT.ENHANCE": "ahe+clahe",
                                                        "SOLVER.BEST_CHECKPOINT_METRIC": "segm/AP"}))
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    return out


def test_training_writes_all_twelve_loss_series(trained):
    rows = _metrics(trained)
    train_keys = {k for r in rows for k in r}
    for k in LOSSES:
        assert k in train_keys and f"val_{k}" in train_keys, k
    val_rows = [r for r in rows if "val_total_loss" in r]
    assert [r["iteration"] for r in val_rows] == [1, 3]  # after iterations 2 and 4 (0-based 1, 3)
    for r in rows:
        for k in LOSSES:
            if k in r:
                assert np.isfinite(r[k]) and np.isfinite(r.get(f"val_{k}", 0.0))


def test_run_folder_is_self_describing(trained):
    from fetalheart.config import load_cfg

    cfg = load_cfg(trained / "config.yaml")
    assert cfg.INPUT.ENHANCE == "ahe+clahe" and cfg.SEED == 0  # the model carries its preprocessing
    env = json.loads((trained / "env.json").read_text())
    assert env["seed"] == 0 and "torch" in env["environment"] and "fetalheart git revision" in env["environment"]
    assert (trained / "model_final.pth").is_file()
    assert (trained / "model_best.pth").is_file()  # detectron2's BestCheckpointer, registered by our Trainer


def test_checkpoint_roundtrip_gives_identical_predictions(trained, toy):
    """Saved weights loaded back through MODEL.WEIGHTS predict exactly what the trained model did."""
    from fetalheart.config import load_cfg
    from fetalheart.data.registration import register_datasets_from_cfg
    from fetalheart.engine import Trainer
    from fetalheart.modeling.load import load_model_for_inference

    from detectron2.checkpoint import DetectionCheckpointer

    cfg = load_cfg(trained / "config.yaml", ["MODEL.WEIGHTS", str(trained / "model_final.pth")])
    # Save the trained weights again under a new name and load them through MODEL.WEIGHTS.
    DetectionCheckpointer(load_model_for_inference(cfg), save_dir=str(toy)).save("copy")
    cfg_b = load_cfg(trained / "config.yaml", ["MODEL.WEIGHTS", str(toy / "copy.pth"),
                                               "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"])
    cfg_a = load_cfg(trained / "config.yaml", ["MODEL.WEIGHTS", str(trained / "model_final.pth"),
                                               "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"])
    model_a, model_b = load_model_for_inference(cfg_a), load_model_for_inference(cfg_b)
    register_datasets_from_cfg(cfg_a)
    loader = Trainer.build_test_loader(cfg_a, "toy_val")
    batch = next(iter(loader))
    with torch.no_grad():
        a, b = model_a(batch)[0]["instances"], model_b(batch)[0]["instances"]
    assert len(a) > 0
    assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor) and torch.equal(a.scores, b.scores)
    assert torch.equal(a.pred_masks, b.pred_masks)


def test_eval_applies_the_models_enhancement_without_being_told(trained):
    from fetalheart.config import load_cfg
    from fetalheart.data.mapper import build_test_mapper
    from fetalheart.enhance.augmentation import EnhanceAugmentation

    cfg = load_cfg(trained / "config.yaml")  # nothing said about enhancement here
    mapper = build_test_mapper(cfg)
    assert any(isinstance(a, EnhanceAugmentation) for a in mapper.augmentations.augs)


def test_validation_loss_changes_no_parameter_or_statistic(toy, tmp_path):
    """The hook runs the model in training mode without gradients and restores BatchNorm buffers."""
    from fetalheart.config import load_cfg
    from fetalheart.data.registration import register_datasets_from_cfg
    from fetalheart.engine import Trainer
    from fetalheart.engine.hooks import ValidationLoss

    # BatchNorm in the box head: the case where a training-mode forward would move running stats.
    cfg = load_cfg(SCRATCH, tiny_opts(toy, tmp_path, iters=1, **{"MODEL.ROI_BOX_HEAD.NORM": "BN",
                                                                   "MODEL.ROI_MASK_HEAD.NORM": "BN"}))
    register_datasets_from_cfg(cfg)
    trainer = Trainer(cfg)
    hook = next(h for h in trainer._hooks if isinstance(h, ValidationLoss))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.model.eval()
    from detectron2.utils.events import EventStorage

    with EventStorage(0):
        losses = hook._compute()
    assert set(LOSSES) <= set(losses) and all(np.isfinite(v) for v in losses.values())
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not trainer.model.training  # mode restored
    assert all(p.grad is None for p in trainer.model.parameters())


def test_resume_after_sigkill_reaches_the_final_iteration(toy, tmp_path):
    out = tmp_path / "run"
    opts = tiny_opts(toy, out, iters=6, **{"SOLVER.CHECKPOINT_PERIOD": 2, "TEST.VAL_LOSS": False,
                                           "SOLVER.BEST_CHECKPOINT_METRIC": "", "TEST.EVAL_PERIOD": 0})
    proc = subprocess.Popen([sys.executable, "tools/train_net.py", "--config-file", SCRATCH, *opts], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (out / "last_checkpoint").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "model_0000001.pth").exists() and not (out / "model_final.pth").exists()
    refused = _train_cli("--config-file", SCRATCH, *opts)  # without --resume: refuses to clobber the run
    assert refused.returncode != 0 and "--resume" in refused.stderr and "Traceback" not in refused.stderr
    resumed = _train_cli("--config-file", SCRATCH, "--resume", *opts)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (out / "model_final.pth").exists()
    log = (out / "log.txt").read_text()
    assert "Starting training from iteration 2" in log  # continued after checkpoint of iteration 2 (0-based 1)
    iters = [r["iteration"] for r in _metrics(out) if "total_loss" in r]  # training rows
    assert max(iters) == 5  # the last of iterations 0..5


@pytest.mark.parametrize("extra, words", [
    ({"DATASETS.ROOT": "/nonexistent"}, "does not exist"),
    ({"MODEL.CLASS_NAMES": "('LA', 'RA', 'LV')", "MODEL.ROI_HEADS.NUM_CLASSES": 3}, "differ from dataset"),
    ({"MODEL.INIT": "", "MODEL.WEIGHTS": "/nonexistent/model.pth"}, "not found"),
    ({"MODEL.INIT": "imagenet"}, "downloads nothing: download https://dl.fbaipublicfiles.com/detectron2/"),
    ({"MODEL.WEIGHTS": "/nonexistent/model.pth"}, "MODEL.INIT scratch starts from random weights"),
    ({"SOLVER.BASE_LR": 1e12, "SOLVER.WARMUP_ITERS": 0, "SOLVER.CLIP_GRADIENTS.ENABLED": False,
      "SOLVER.MAX_ITER": 6}, "diverged"),
])
def test_bad_training_input_is_one_clear_line(toy, tmp_path, extra, words):
    env = dict(os.environ, HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9",
               FVCORE_CACHE=str(tmp_path / "cache"))
    proc = _train_cli("--config-file", SCRATCH, *tiny_opts(toy, tmp_path / "o", iters=2, **{
        "TEST.VAL_LOSS": False, "TEST.EVAL_PERIOD": 0, "SOLVER.BEST_CHECKPOINT_METRIC": "", **extra}), env=env)
    assert proc.returncode != 0
    err_lines = [ln for ln in proc.stderr.strip().splitlines() if "error" in ln]
    assert err_lines and words in err_lines[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
