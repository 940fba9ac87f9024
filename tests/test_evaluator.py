"""The evaluators inside detectron2's inference_on_dataset on a phantom model, and the report files."""

import csv
import json

from fetalheart.config import get_cfg
from fetalheart.evaluation import build_evaluators
from fetalheart.evaluation.aggregate import summarize_records
from fetalheart.evaluation.evaluate import write_plots
from fetalheart.evaluation.evaluator import SegmentationMetricsEvaluator
from fetalheart.evaluation.per_image import records_from_report
from fetalheart.evaluation.report import write_report
from fetalheart.evaluation.settings import EvalSettings
from fetalheart.utils.errors import FetalHeartError

import numpy as np
import pytest
from _evaluation_helpers import PhantomModel, loader, make_dataset
from detectron2.evaluation import inference_on_dataset
from detectron2.evaluation.testing import flatten_results_dict


def _run(tmp_path, **perturb):
    name = make_dataset(tmp_path / "data")
    cfg = get_cfg()
    cfg.EVAL.BOOTSTRAP_SAMPLES = 200
    cfg.EVAL.BOUNDARY_METRICS = True
    ev = build_evaluators(cfg, name, str(tmp_path / "out"))
    results = inference_on_dataset(PhantomModel(name, **perturb), loader(name), ev)
    return results, ev


def test_perfect_predictions(tmp_path):
    results, ev = _run(tmp_path)
    assert set(results) == {"segm", "bbox", "fetalheart"}
    assert results["segm"]["AP"] == pytest.approx(100.0)
    assert results["segm"]["AP50-LA"] == pytest.approx(100.0)
    fh = results["fetalheart"]
    assert fh["dice_macro"] == pytest.approx(1.0) and fh["iou_micro"] == pytest.approx(1.0)
    assert fh["study_mAP"] == pytest.approx(1.0) and fh["f1"] == pytest.approx(1.0)
    assert fh["study_mAP_matterport"] == pytest.approx(1.0) and fh["study_mAP_corrected"] == pytest.approx(1.0)
    assert fh["hd95_macro"] == pytest.approx(0.0)
    # detectron2's EvalHook requires a nested dict of floats: "fetalheart/dice_macro" readable
    flat = flatten_results_dict(results)
    assert all(isinstance(float(v), float) for v in flat.values())
    assert "fetalheart/dice_macro" in flat and "segm/AP" in flat
    # the report: classes absent everywhere are not counted (NaN), present ones have n frames / groups
    rep = ev.report
    assert rep["per_class"]["LA"]["dice"]["n"] == 4 and rep["per_class"]["LA"]["dice"]["n_groups"] == 2
    assert rep["per_class"]["Spine"]["dice"]["n"] == 2
    assert np.isnan(rep["per_class"]["RA"]["dice"]["mean"])
    assert rep["overall"]["empty_cases"]["empty_both_not_counted"] == 4 * 10 - 10
    assert rep["n_groups"] == 2 and rep["summary"]["dice_macro"] == pytest.approx(1.0)
    out = tmp_path / "out"
    for f in ("report.json", "per_class.csv", "per_image.csv", "report.md", "coco_instances_results.json"):
        assert (out / f).is_file(), f
    md = (out / "report.md").read_text()
    assert "Semantic IoU / Dice" in md and "| LA | 4 / 2 | 1.000 |" in md
    assert "4 frames from 2 groups" in md and "Study mAP, Matterport (shown as study mAP)" in md
    j = json.loads((out / "report.json").read_text())  # strict JSON: NaN written as null
    assert j["per_class"]["RA"]["dice"]["mean"] is None
    assert j["coco"]["segm"]["AP"] == pytest.approx(100.0)
    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["group"] for r in rows} == {str(tmp_path / "data" / "vid0"), str(tmp_path / "data" / "vid1")}


def test_perturbed_predictions_hand_computed(tmp_path):
    # LV (class 2) dropped everywhere; LA (class 0, 20x20 box) shifted 5 px -> IoU 300/500, Dice 0.75;
    # one false-positive PV (class 5) per image.
    results, ev = _run(tmp_path, drop_classes=(2,), shift={0: 5}, extra_fp=True)
    rep = ev.report
    la = rep["per_class"]["LA"]
    assert la["iou"]["mean"] == pytest.approx(0.6) and la["dice"]["mean"] == pytest.approx(0.75)
    assert la["instance"]["tp"] == 4 and la["instance"]["iou"] == pytest.approx(0.6)
    lv = rep["per_class"]["LV"]
    assert lv["dice"]["mean"] == 0 and lv["n_missed"] == 4 and lv["instance"]["fn"] == 4
    pv = rep["per_class"]["PV"]
    assert pv["dice"]["mean"] == 0 and pv["n_false_alarm"] == 4 and pv["instance"]["fp"] == 4
    spine = rep["per_class"]["Spine"]
    assert spine["dice"]["mean"] == 1.0
    # macro over the 4 counted classes: (0.75 + 0 + 0 + 1) / 4
    assert results["fetalheart"]["dice_macro"] == pytest.approx(1.75 / 4)
    cm = np.array(rep["confusion_matrix"]["matrix"])
    assert cm[2, 10] == 4 and cm[10, 5] == 4 and cm[0, 0] == 4
    assert rep["per_class"]["LA"]["hd95"]["mean"] == pytest.approx(5.0)
    assert results["segm"]["AP"] < 100
    # corrected mAP by hand: LA (IoU 0.6) AP 1 at 0.50, 0.55, 0.60, 0 above -> 0.3; LV 0; Spine 1;
    # PV has no ground truth (not averaged) -> (0.3 + 0 + 1) / 3
    assert results["fetalheart"]["study_mAP_corrected"] == pytest.approx(1.3 / 3)
    with open(tmp_path / "out" / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    la_rows = [r for r in rows if r["class"] == "LA"]
    assert len(la_rows) == 4 and all(float(r["dice"]) == pytest.approx(0.75) for r in la_rows)


def test_report_round_trips_through_report_json(tmp_path):
    # pooling and compare_runs rebuild the records from report.json: they must give the same report
    _, ev = _run(tmp_path, drop_classes=(2,), shift={0: 5}, extra_fp=True)
    j = json.loads((tmp_path / "out" / "report.json").read_text())
    again = summarize_records(records_from_report(j), j["classes"], ev.segmentation.settings)
    for key in ("overall", "per_class", "study_map", "confusion_matrix", "per_image"):
        a, b = json.dumps(again[key], sort_keys=True, default=str), json.dumps(ev.report[key], sort_keys=True,
                                                                                default=str)
        assert a == b, key


def test_settings_from_config_and_validation(tmp_path):
    name = make_dataset(tmp_path / "data")
    cfg = get_cfg()
    cfg.EVAL.STUDY_MAP_MODE = "corrected"
    cfg.EVAL.STUDY_MAP_MIN_SCORE = 0.95
    ev = SegmentationMetricsEvaluator.from_config(cfg, name)
    assert ev.settings.study_map_mode == "corrected" and ev.settings.study_map_min_score == 0.95
    # predictions score 0.99..0.90: only those >= 0.95 reach the mAPs
    inference_on_dataset(PhantomModel(name), loader(name), ev)
    sm = ev.report["study_map"]
    assert sm["mode"] == "corrected" and sm["mAP"] == sm["corrected"]["mAP"] < 1
    assert ev.report["overall"]["dice_macro"]["mean"] == pytest.approx(1.0)  # IoU/Dice cut stays 0.5
    with pytest.raises(FetalHeartError, match="STUDY_MAP_MODE"):
        EvalSettings(study_map_mode="coco")


def test_write_report_refuses_overwrite_and_plots(tmp_path):
    _, ev = _run(tmp_path)
    with pytest.raises(FetalHeartError):
        write_report(ev.report, tmp_path / "out", overwrite=False)
    made = write_plots(ev.report, tmp_path / "out")
    assert made == ["plots/per_class.png", "plots/confusion_matrix.png"]
    assert all((tmp_path / "out" / p).stat().st_size > 1000 for p in made)
