"""Evaluation from files, the seam: a model's report == the report of its results file == detectron2's evaluators."""

import json
from pathlib import Path

from fetalheart.cli.evaluate import main as evaluate_main
from fetalheart.config import get_cfg
from fetalheart.evaluation import build_evaluators
from fetalheart.evaluation.from_files import (
    GroundTruth,
    evaluate_predictions,
    load_predictions,
    register_ground_truth,
)
from fetalheart.evaluation.settings import EvalSettings
from fetalheart.utils.errors import FetalHeartError

import pytest
from _evaluation_helpers import PhantomModel, loader, make_coco_dataset
from detectron2.data import MetadataCatalog
from detectron2.evaluation import inference_on_dataset

from tests._train_helpers import make_toy_coco, tiny_opts

#: Everything a report's numbers are in (run, notes and enhancement statistics say where they came from).
NUMBERS = ("coco", "per_class", "overall", "study_map", "per_image", "images", "confusion_matrix", "summary",
           "ranking", "n_images", "n_groups", "classes", "settings", "definitions")


def assert_same_numbers(a: dict, b: dict) -> None:
    for key in NUMBERS:
        assert json.dumps(a.get(key), sort_keys=True) == json.dumps(b.get(key), sort_keys=True), key


def _model_report(tmp_path, name, **perturb) -> tuple[dict, Path]:
    """detectron2's COCOEvaluator + our SegmentationMetricsEvaluator on a phantom model (the reference)."""
    cfg = get_cfg()
    cfg.EVAL.BOOTSTRAP_SAMPLES = 100
    out = tmp_path / "model"
    ev = build_evaluators(cfg, name, str(out))
    inference_on_dataset(PhantomModel(name, **perturb), loader(name), ev)
    return json.loads((out / "report.json").read_text()), out / "coco_instances_results.json"


@pytest.mark.parametrize("perturb", [{}, {"drop_classes": (2,), "shift": {0: 5}, "extra_fp": True}])
def test_results_file_reproduces_detectron2_evaluators(tmp_path, perturb):
    name = make_coco_dataset(tmp_path / "data", ignore={1: (40, 40, 60, 60)}, empty=(3,))
    reference, results_file = _model_report(tmp_path, name, **perturb)
    gt = GroundTruth.of(name)
    loaded = load_predictions(results_file, gt)
    assert loaded.results and not loaded.notes
    ours = evaluate_predictions(gt, loaded.results, tmp_path / "files", EvalSettings(bootstrap_samples=100))
    assert_same_numbers(reference, json.loads((tmp_path / "files" / "report.json").read_text()))
    assert ours["coco"]["segm"]["AP"] == reference["coco"]["segm"]["AP"]
    for f in ("report.md", "per_class.csv", "per_image.csv", "coco_instances_results.json", "env.json",
              "plots/per_class.png"):
        assert (tmp_path / "files" / f).is_file(), f


def test_second_reader_dataset_and_cli_without_config(tmp_path, capsys):
    name = make_coco_dataset(tmp_path / "data")
    gt_file = MetadataCatalog.get(name).json_file
    # the ground truth read back as "a second reader": a COCO dataset matched by file name, no scores
    out = tmp_path / "reader2"
    assert evaluate_main(["--predictions", gt_file, "--ground-truth", gt_file, "--images", str(tmp_path / "data"),
                          "--bootstrap", "50", "--name", "reader 2", "-o", str(out), "-q"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["overall"]["dice_macro"]["mean"] == pytest.approx(1.0)
    assert rep["coco"]["segm"]["AP"] == pytest.approx(100.0) and rep["run"]["study_name"] == "reader 2"
    assert any("matched by file name" in n for n in rep["notes"]) and any("no score" in n for n in rep["notes"])
    assert "Dice 1.000" in capsys.readouterr().out
    assert evaluate_main(["--predictions", gt_file, "--ground-truth", gt_file, "-o", str(out), "-q"]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("bad, words", [
    ([{"image_id": 999, "category_id": 1, "segmentation": [[0, 0, 5, 0, 5, 5]], "score": 0.9}], "not in the ground truth"),
    ([{"image_id": 1, "category_id": 77, "segmentation": [[0, 0, 5, 0, 5, 5]], "score": 0.9}], "not a ground-truth category"),
    ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9}], "box-only"),
    ([{"image_id": 1, "category_id": 1, "segmentation": {"size": [9, 9], "counts": "0"}, "score": 0.9}], "mask size"),
    ({"not": "a list"}, "JSON list"),
])
def test_bad_predictions_are_one_line(tmp_path, capsys, bad, words):
    name = make_coco_dataset(tmp_path / "data")
    gt_file = MetadataCatalog.get(name).json_file
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert evaluate_main(["--predictions", str(tmp_path / "bad.json"), "--ground-truth", gt_file,
                          "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1


def test_ground_truth_names_and_missing_arguments(tmp_path, capsys):
    root = make_toy_coco(tmp_path / "mydata", n_train=1, n_val=1, size=32)
    assert register_ground_truth(root / "annotations" / "val.json") == "mydata_val"
    assert register_ground_truth(root / "annotations" / "val.json") == "mydata_val"  # idempotent
    with pytest.raises(FetalHeartError, match="not found"):
        register_ground_truth(tmp_path / "nope.json")
    assert evaluate_main(["--predictions", "x.json"]) == 2
    assert "--ground-truth" in capsys.readouterr().err


@pytest.mark.slow
def test_trained_model_report_equals_its_results_file_and_the_training_evaluator(tmp_path):
    """A trained Mask R-CNN: detectron2's evaluators as training runs them (Trainer.test), tools/evaluate.py
    (predict, then evaluate the file) and tools/evaluate.py --predictions on either results file: the same numbers."""
    from fetalheart.collect_env import write_run_info
    from fetalheart.config import load_cfg
    from fetalheart.data.registration import register_datasets_from_cfg
    from fetalheart.engine import Trainer
    from fetalheart.modeling.load import load_model_for_inference

    toy = make_toy_coco(tmp_path / "toy")
    run = tmp_path / "run"
    names = {"DATASETS.TRAIN": "('fromfiles_train',)", "DATASETS.TEST": "('fromfiles_val',)"}
    cfg = load_cfg("configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml", tiny_opts(toy, run, iters=2, **names), freeze=False)
    register_datasets_from_cfg(cfg)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    write_run_info(run, cfg)
    # every detection counts (a briefly trained model scores low): the per-image path is exercised in full
    every = ["MODEL.WEIGHTS", str(run / "model_final.pth"), "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
             "EVAL.SCORE_THRESH", "0.0", "EVAL.STUDY_MAP_MIN_SCORE", "0.0", "EVAL.BOUNDARY_METRICS", "True"]
    eval_cfg = load_cfg(run / "config.yaml", every)
    Trainer.test(eval_cfg, load_model_for_inference(eval_cfg))  # -> run/inference/fromfiles_val (train_net --eval-only)
    trainer_dir = run / "inference" / "fromfiles_val"
    assert evaluate_main(["--config-file", str(run / "config.yaml"), "-q", *every]) == 0
    model_dir = run / "eval" / "fromfiles_val"
    results = json.loads((model_dir / "coco_instances_results.json").read_text())
    assert len(results) > 10 and results == json.loads((trainer_dir / "coco_instances_results.json").read_text())
    reports = {"trainer": trainer_dir, "model": model_dir}
    for label, src in (("file", model_dir), ("trainer file", trainer_dir)):
        out = tmp_path / label.replace(" ", "_")
        assert evaluate_main(["--config-file", str(run / "config.yaml"), "-q", *every, "--predictions",
                              str(src / "coco_instances_results.json"), "-o", str(out)]) == 0
        reports[label] = out
    assert evaluate_main(["--predictions", str(model_dir / "coco_instances_results.json"), "--ground-truth",
                          str(toy / "annotations" / "val.json"), "--score-thresh", "0", "--study-map-min-score", "0",
                          "--bootstrap", "50", "--boundary", "-o", str(tmp_path / "no_config"), "-q"]) == 0
    reports["no config"] = tmp_path / "no_config"
    loaded = {k: json.loads((v / "report.json").read_text()) for k, v in reports.items()}
    assert loaded["model"]["overall"]["instance_micro"]["fp"] > 0
    for rep in loaded.values():
        assert_same_numbers(loaded["trainer"], rep)


def test_reports_hash_the_ground_truth_by_content_and_name_frames_as_the_coco_file(tmp_path, capsys):
    """The same labels anywhere (another folder, other image ids) hash alike; an edited polygon does not,
    and compare_runs then refuses the two evaluations in one line."""
    import shutil

    from fetalheart.cli.compare_runs import main as compare_main

    name = make_coco_dataset(tmp_path / "data")
    src = Path(MetadataCatalog.get(name).json_file)
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "data", moved)
    coco = json.loads(src.read_text())
    for im in coco["images"]:
        im["id"] += 100
    for ann in coco["annotations"]:
        ann["image_id"] += 100
    (moved / src.name).write_text(json.dumps(coco))
    ann = next(a for a in coco["annotations"] if a["image_id"] == 102)
    ann["segmentation"] = [[x + 3 for x in ann["segmentation"][0]]]  # one structure relabelled 3 px over
    (moved / "edited.json").write_text(json.dumps(coco))

    def evaluate(gt_file: Path, out: str) -> dict:
        assert evaluate_main(["--predictions", str(src), "--ground-truth", str(gt_file), "--images", str(gt_file.parent),
                              "--bootstrap", "0", "--name", out, "-o", str(tmp_path / out), "-q"]) == 0
        return json.loads((tmp_path / out / "report.json").read_text())

    a, b, c = evaluate(src, "a"), evaluate(moved / src.name, "b"), evaluate(moved / "edited.json", "c")
    assert [im["name"] for im in a["images"]] == [f"frame_{i:04d}.png" for i in range(4)]
    assert all(len(im["gt"]) == 32 for im in a["images"])
    assert a["ground_truth"]["sha256"] == b["ground_truth"]["sha256"] != c["ground_truth"]["sha256"]
    assert [im["gt"] for im in a["images"]] == [im["gt"] for im in b["images"]]
    assert sum(x["gt"] != y["gt"] for x, y in zip(a["images"], c["images"], strict=True)) == 1
    capsys.readouterr()
    assert compare_main([str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "ab"), "-q"]) == 0
    assert compare_main([str(tmp_path / "a"), str(tmp_path / "c"), "-o", str(tmp_path / "ac"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different ground truth on 1 frame, e.g. frame_0001.png" in err[0]
