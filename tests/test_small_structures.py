"""Gaussian-smoothed mask pasting and two-step refinement (fetalheart.modeling.paste / refine, issue 24)."""

from __future__ import annotations

import json

from fetalheart.modeling.paste import (
    SigmaFit,
    best_sigma,
    dice,
    downsample,
    fit_line,
    fit_sigma,
    load_fits,
    mask_box,
    paste_mask,
    save_fits,
)
from fetalheart.modeling.refine import crop, square_crop_boxes, target_class_ids

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.layers.mask_ops import paste_masks_in_image


def _ellipse(h: int, w: int, cx: float, cy: float, rx: float, ry: float, thickness: float = 0.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    d = torch.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    if thickness <= 0:
        return d < 1
    return (d < 1) & (d > 1 - thickness / min(rx, ry))  # a ring about ``thickness`` pixels thick


def test_sigma_zero_is_detectrons_paste():
    g = torch.Generator().manual_seed(1)
    masks = torch.rand((6, 28, 28), generator=g)
    boxes = torch.tensor([[3.2, 4.7, 60.1, 33.9], [0.0, 0.0, 99.0, 79.0], [40.5, 10.2, 47.9, 15.1],
                          [-5.0, 20.0, 30.0, 90.0], [70.3, 60.6, 140.0, 120.0], [10.0, 10.0, 10.5, 11.0]])
    ref = paste_masks_in_image(masks, boxes, (80, 100))
    for m, b, r in zip(masks, boxes, ref, strict=True):
        assert torch.equal(paste_mask(m, b, (80, 100), 0.0), r)


def test_blur_of_a_constant_mask_is_its_bilinear_paste_inside():
    """A blur only moves the boundary: deep inside a box-filling mask every pixel stays on."""
    m = torch.ones((28, 28))
    out = paste_mask(m, torch.tensor([20.0, 20.0, 80.0, 80.0]), (100, 100), 2.0)
    assert out[25:75, 25:75].all() and not out[:10].any() and not out[:, :10].any()


def test_fit_line_recovers_a_known_linear_sigma_of_width():
    """Per-instance best sigmas on the grid (quantised, noisy) around sigma = 0.012 w + 0.3 -> the line back."""
    rng = np.random.default_rng(0)
    grid = np.round(np.arange(0, 3.01, 0.1), 2)
    widths = rng.uniform(20, 200, 300)
    true = 0.012 * widths + 0.3
    noisy = true + rng.normal(0, 0.1, len(widths))
    picked = grid[np.abs(grid[None, :] - noisy[:, None]).argmin(1)]
    a, b = fit_line(widths, picked)
    assert a == pytest.approx(0.012, abs=0.001) and b == pytest.approx(0.3, abs=0.06)
    assert fit_line([50.0, 50.0], [1.0, 2.0]) == (0.0, 1.5)


def test_fit_sigma_on_synthetic_masks_follows_the_best_sigma_of_each_width():
    """Smooth ellipses upsampled from 28 x 28: the blur that best restores them grows with the box width
    (the upsampling factor), and the fitted line stays within a grid step or two of each instance's best."""
    grid = [round(0.25 * i, 2) for i in range(17)]
    inst, best = [], []
    for k, w in enumerate(np.linspace(30, 240, 12)):
        m = _ellipse(260, 260, 130, 130, w / 2, w / 2.8 + 3 * (k % 3))
        box = mask_box(m)
        inst.append((m, box))
        best.append((float(box[2] - box[0]), best_sigma(m, box, 28, grid)[0]))
    fit = fit_sigma(inst, 28, grid)
    assert fit.n == 12 and fit.a > 0 and fit.mean_gain >= 0
    widths, sigmas = zip(*best, strict=True)
    a, b = fit_line(widths, sigmas)
    assert (fit.a, fit.b) == pytest.approx((a, b))
    assert fit.sigma(10) >= 0.0 and fit.sigma(1e6) == grid[-1]  # clipped to the grid
    assert fit.sigma(240) > fit.sigma(30)


def test_blurred_upsampling_beats_nearest_and_bilinear_on_thin_shapes():
    """Rings a few mask cells thick, upsampled 5-8x: the fitted Gaussian beats bilinear, which beats nearest."""
    grid = [round(0.25 * i, 2) for i in range(17)]
    train = [_ellipse(300, 300, 150, 150, r, r * 0.7, thickness=r / 7) for r in (70, 90, 110, 130)]
    fit = fit_sigma([(m, mask_box(m)) for m in train], 28, grid)
    scores = {"nearest": [], "bilinear": [], "gaussian": []}
    for r in (80, 100, 120):
        m = _ellipse(300, 300, 150, 150, r, r * 0.6, thickness=r / 8)
        box = mask_box(m)
        low = downsample(m, box, 28)
        x0, y0, x1, y1 = (int(v) for v in box)
        near = torch.zeros_like(m)
        near[y0:y1, x0:x1] = F.interpolate(low[None, None], size=(y1 - y0, x1 - x0), mode="nearest")[0, 0] >= 0.5
        scores["nearest"].append(dice(near, m))
        scores["bilinear"].append(dice(paste_mask(low, box, m.shape, 0.0), m))
        scores["gaussian"].append(dice(paste_mask(low, box, m.shape, fit.sigma(float(box[2] - box[0]))), m))
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    assert mean["gaussian"] > mean["bilinear"] > mean["nearest"], mean


def test_crop_resize_paste_round_trip_is_identity_at_crop_size():
    """A ground-truth mask cropped square with a margin at S = the crop's side in pixels, then pasted back
    through the crop box (refinement's path with a perfect step 2), is the mask again."""
    m = _ellipse(120, 160, 70.0, 55.0, 18.0, 11.0)
    box = mask_box(m)
    sq = square_crop_boxes(box[None], 0.15)[0]
    side = float(sq[2] - sq[0])
    sq = torch.cat([sq[:2].round(), sq[:2].round() + round(side)])  # integer pixel edges: S = crop size exactly
    s = int(sq[2] - sq[0])
    c = crop(m[None].float(), sq[None], s)[0, 0]
    assert torch.equal(paste_mask(c, sq, m.shape, 0.0), m)
    # the crop may leave the frame: zeros there, and the round trip still holds
    edge = _ellipse(120, 160, 8.0, 60.0, 12.0, 9.0)
    b = square_crop_boxes(mask_box(edge)[None], 0.15)[0].round()
    b[3] = b[1] + (b[2] - b[0])
    c = crop(edge[None].float(), b[None], int(b[2] - b[0]))[0, 0]
    assert b[0] < 0 and torch.equal(paste_mask(c, b, edge.shape, 0.0), edge)


def test_square_crop_margin_is_per_side():
    sq = square_crop_boxes(torch.tensor([[10.0, 20.0, 30.0, 30.0]]), 0.15)[0]
    assert float(sq[2] - sq[0]) == pytest.approx(20 * 1.3) and float(sq[3] - sq[1]) == pytest.approx(26.0)
    assert torch.allclose((sq[:2] + sq[2:]) / 2, torch.tensor([20.0, 25.0]))


def test_target_classes_by_name_and_alias_missing_ones_reported():
    ids, missing = target_class_ids(["tricuspid valve", "ao", "Myocardium"], ("LA", "RA", "TV", "Ao"))
    assert ids == [2, 3] and missing == ["Myocardium"]


def test_fits_file_round_trip(tmp_path):
    fits = {28: SigmaFit(0.01, 0.2, 0.0, 3.0, 28, 5, 0.001), 64: SigmaFit(0.0, 0.5, 0.0, 3.0, 64)}
    save_fits(tmp_path / "mask_paste.json", fits, [0.0, 3.0], "test")
    assert load_fits(tmp_path / "mask_paste.json") == fits
    assert json.loads((tmp_path / "mask_paste.json").read_text())["units"].startswith("sigma and width")


def _toy_run(tmp_path, extra=()):
    """An untrained R50-FPN at 128 px on toy ellipses (tests/_train_helpers), saved as a run."""
    from fetalheart.config import load_cfg

    from tests._train_helpers import make_toy_coco, save_untrained_run

    root = make_toy_coco(tmp_path / "coco", n_train=3, n_val=2, size=128)
    opts = ["INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128", "MODEL.DEVICE", "cpu",
            "MODEL.RPN.POST_NMS_TOPK_TEST", "50", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
            "TEST.DETECTIONS_PER_IMAGE", "6", "DATASETS.ROOT", str(root), "DATASETS.TRAIN", "('toyss_train',)",
            "DATASETS.TEST", "('toyss_val',)", "EVAL.SCORE_THRESH", "0.0", "EVAL.BOOTSTRAP_SAMPLES", "20", *extra]
    cfg_file = "configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml"
    cfg = load_cfg(cfg_file, opts)
    run = save_untrained_run(tmp_path / "run", cfg)
    return cfg_file, opts, run


def test_refinement_end_to_end_replaces_masks_and_keeps_detections(tmp_path, capsys):
    """tools/train_refiner.py (a few iterations of a ResNet-18 U-Net at S = 32) then evaluation with
    refinement and the Gaussian paste through the normal evaluator; the refined detections keep class,
    score and box and get step 2's masks."""
    from fetalheart.classes import CLASS_NAMES
    from fetalheart.cli.evaluate import main as evaluate_main
    from fetalheart.cli.train_refiner import main as train_refiner_main
    from fetalheart.config import load_cfg
    from fetalheart.data.registration import register_datasets_from_cfg
    from fetalheart.modeling.load import load_model_for_inference

    from detectron2.data import DatasetCatalog
    from detectron2.data import detection_utils as utils

    refine = ["MODEL.REFINE.CLASSES", str((*CLASS_NAMES, "Myocardium")), "MODEL.REFINE.SIZE", "32",
              "MODEL.REFINE.ENCODER", "resnet18", "MODEL.REFINE.TRAIN.ITERS", "3", "MODEL.REFINE.TRAIN.BATCH_SIZE", "2"]
    cfg_file, opts, run = _toy_run(tmp_path)
    weights = ["MODEL.WEIGHTS", str(run / "model_final.pth")]
    assert train_refiner_main(["--config-file", cfg_file, "--overlay", "overlays/refine.yaml", *opts, *refine,
                               *weights]) == 0
    out = capsys.readouterr().out
    assert "Myocardium" in out and "ignored" in out
    assert (run / "refiner.pth").is_file()
    fits = load_fits(run / "mask_paste.json")
    assert set(fits) == {28, 32} and fits[28].n == 12  # 3 images x 4 ellipses

    plain = load_cfg(cfg_file, [*opts, *weights])
    both = load_cfg(cfg_file, [*opts, *refine, *weights], overlays=["overlays/refine.yaml"])
    register_datasets_from_cfg(plain, training=False)
    d = DatasetCatalog.get("toyss_val")[0]
    img = utils.read_image(d["file_name"], format="BGR")
    image = torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)))
    x = {"image": image, "image_full": image, "height": 128, "width": 128}  # toy frames are 128 px already
    with torch.no_grad():
        a = load_model_for_inference(plain)([x])[0]["instances"]
        b = load_model_for_inference(both)([x])[0]["instances"]
    assert len(a) == len(b) > 0
    assert torch.equal(a.pred_classes, b.pred_classes) and torch.equal(a.scores, b.scores)
    assert torch.allclose(a.pred_boxes.tensor, b.pred_boxes.tensor)
    assert b.pred_masks.shape == a.pred_masks.shape and b.pred_masks.dtype == torch.bool
    assert any(not torch.equal(p, q) for p, q in zip(a.pred_masks, b.pred_masks, strict=True))

    assert evaluate_main(["--config-file", cfg_file, "--quiet", *opts, *refine, "MODEL.REFINE.ENABLED", "True",
                          "MODEL.ROI_MASK_HEAD.PASTE.MODE", "gaussian", *weights, "-o", str(tmp_path / "ev")]) == 0
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert rep["n_images"] == 2


def test_missing_refiner_is_a_one_line_error(tmp_path, capsys):
    from fetalheart.cli.evaluate import main as evaluate_main

    cfg_file, opts, run = _toy_run(tmp_path)
    assert evaluate_main(["--config-file", cfg_file, "--quiet", *opts, "MODEL.REFINE.ENABLED", "True",
                          "MODEL.WEIGHTS", str(run / "model_final.pth"), "-o", str(tmp_path / "ev")]) == 2
    assert "tools/train_refiner.py" in capsys.readouterr().err


def test_refine_demo_grid_runs_have_distinct_labels(tmp_path):
    """A refined model is one more grid run, labelled apart from the plain one (compare_runs rows)."""
    from fetalheart.config import model_label
    from fetalheart.evaluation.evaluate import run_summary
    from fetalheart.pipeline.grid import GridSpec, load_grid

    runs = load_grid("configs/refine_demo_grid.yaml", tmp_path, GridSpec(overlays=["overlays/cpu.yaml"]))
    cfgs = [r.config_node() for r in runs]
    assert [r.name for r in runs] == ["model02", "model02-gauss", "model02-refine64", "model02-heart64"]
    assert [c.MODEL.REFINE.ENABLED for c in cfgs] == [False, False, True, True]
    assert [c.MODEL.ROI_MASK_HEAD.PASTE.MODE for c in cfgs] == ["bilinear", "gaussian", "gaussian", "gaussian"]
    assert cfgs[3].MODEL.REFINE.MODE == "heart" and cfgs[3].MODEL.REFINE.SIZE == 64
    labels = [model_label(c) for c in cfgs]
    assert labels[0] == "Mask R-CNN R50-FPN" and len(set(labels)) == 4
    assert len({run_summary(c)["study_name"] for c in cfgs}) == 4
    assert not cfgs[2].TEST.EVAL_DURING_TRAINING  # step 2 trains after step 1


def test_bad_small_structure_keys_are_one_line_errors():
    from fetalheart.config import load_cfg
    from fetalheart.utils.errors import FetalHeartError

    base = "configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml"
    for opts, words in ((["MODEL.ROI_MASK_HEAD.PASTE.MODE", "blur"], "PASTE.MODE"),
                        (["MODEL.REFINE.SIZE", "4"], "SIZE"), (["MODEL.REFINE.TRAIN.JITTER_SCALE", "1.5"], "JITTER")):
        with pytest.raises(FetalHeartError, match=words):
            load_cfg(base, opts)
    with pytest.raises(FetalHeartError, match="U-Net family"):
        load_cfg("configs/FetalHeart-SMP.yaml", ["MODEL.REFINE.ENABLED", "True"])


@pytest.mark.slow
def test_train_net_with_the_refine_overlay_writes_step_2_and_the_fit(tmp_path):
    """A grid run with overlays/refine.yaml: train_net trains step 1, fits the paste, then trains step 2."""
    from fetalheart.cli.train_net import main as train_main

    from tests._train_helpers import make_toy_coco, tiny_opts

    root = make_toy_coco(tmp_path / "coco", n_train=2, n_val=1)
    out = tmp_path / "run"
    opts = tiny_opts(root, out, iters=2, **{"MODEL.REFINE.CLASSES": "('LA', 'RV')", "MODEL.REFINE.SIZE": 32,
                                            "MODEL.REFINE.ENCODER": "resnet18", "MODEL.REFINE.TRAIN.ITERS": 2,
                                            "MODEL.REFINE.TRAIN.BATCH_SIZE": 2, "TEST.VAL_LOSS": "False"})
    assert train_main(["--config-file", "configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml", "--overlay",
                       "overlays/refine.yaml", "--quiet", *opts]) == 0
    assert {p.name for p in out.iterdir()} >= {"model_final.pth", "refiner.pth", "mask_paste.json", "config.yaml"}
    assert set(load_fits(out / "mask_paste.json")) == {28, 32}


class _ZeroNet(torch.nn.Module):
    """A stand-in step-2 network: logits 0 everywhere (probability 0.5), one channel per class."""

    def __init__(self, classes: int):
        super().__init__()
        self.classes = classes

    def forward(self, x):
        return x.new_zeros((x.shape[0], self.classes, *x.shape[-2:]))


def test_refiner_crops_the_original_frame_on_the_same_squares():
    """SOURCE original cuts the square from the full-resolution frame; its box, in input coordinates, is the
    square SOURCE input would cut, only the pixels come from the larger frame. Untargeted detections stay."""
    from fetalheart.modeling.refine import Refiner, RefinerSpec

    from detectron2.structures import Boxes, Instances

    inst = Instances((60, 80))
    inst.pred_boxes = Boxes(torch.tensor([[10.0, 12.0, 30.0, 24.0], [40.0, 30.0, 70.0, 55.0]]))
    inst.pred_classes = torch.tensor([4, 0])  # TV (refined), LA (not a target)
    inst.scores = torch.tensor([0.9, 0.8])
    inst.pred_masks = torch.ones((2, 1, 28, 28))
    image = torch.randint(0, 255, (3, 60, 80), dtype=torch.uint8)
    full = F.interpolate(image[None].float(), scale_factor=2.5, mode="nearest")[0]
    names = ("LA", "RA", "LV", "RV", "TV")
    out = {}
    for source in ("input", "original"):
        spec = RefinerSpec(["TV", "Ao"], 16, 0.15, "Unet", "resnet18", 128.0, 64.0, source)
        r = Refiner(_ZeroNet(2), spec, names)
        out[source] = r.refine(image, Instances((60, 80), **inst.get_fields()), full if source == "original" else None)
        assert out[source].refined.tolist() == [True, False]
        assert torch.allclose(out[source].refined_masks[0], torch.full((1, 16, 16), 0.5))
        assert not out[source].refined_masks[1].any()
    a, b = out["input"].refined_boxes.tensor[0], out["original"].refined_boxes.tensor[0]
    assert torch.allclose(a, b, atol=1e-4) and float(a[2] - a[0]) == pytest.approx(1.3 * 20, abs=0.5)
    with pytest.raises(Exception, match="image_full"):
        Refiner(_ZeroNet(2), spec, names).refine(image, inst)


class _BlobNet(torch.nn.Module):
    """A stand-in step-2 network: channel 0 a confident square blob in the crop's centre, channel 1 nothing."""

    def forward(self, x):
        out = torch.full((x.shape[0], 2, *x.shape[-2:]), -10.0)
        s = x.shape[-1]
        out[:, 0, s // 4: s // 2, s // 4: s // 2] = 10.0
        return out


def test_heart_mode_replaces_target_detections_by_step_2_components():
    from fetalheart.modeling.refine import Refiner, RefinerSpec

    from detectron2.structures import Boxes, Instances

    inst = Instances((60, 80))
    inst.pred_boxes = Boxes(torch.tensor([[10.0, 10.0, 40.0, 40.0], [30.0, 20.0, 60.0, 50.0], [5.0, 5.0, 9.0, 9.0]]))
    inst.pred_classes = torch.tensor([0, 2, 4])  # LA, LV (the heart), TV (a target: replaced)
    inst.scores = torch.tensor([0.9, 0.8, 0.6])
    inst.pred_masks = torch.ones((3, 1, 28, 28))
    image = torch.randint(0, 255, (3, 60, 80), dtype=torch.uint8)
    spec = RefinerSpec(["TV", "Ao"], 32, 0.1, "Unet", "resnet18", 128.0, 64.0, "input", "heart", ["LA", "LV"])
    out = Refiner(_BlobNet(), spec, ("LA", "RA", "LV", "RV", "TV")).refine(image, inst)
    assert out.pred_classes.tolist() == [0, 2, 4] and out.refined.tolist() == [False, False, True]
    assert out.scores[2] > 0.99  # the component's mean probability, not step 1's 0.6
    heart = out.refined_boxes.tensor[2]  # the union of LA and LV (10..60 x 10..50), squared, 10% per side
    side = 50 * 1.2
    assert torch.allclose(heart, torch.tensor([35 - side / 2, 30 - side / 2, 35 + side / 2, 30 + side / 2]), atol=1e-4)
    cell = side / 32  # the blob covers cells 8..15 of the crop
    assert torch.allclose(out.pred_boxes.tensor[2], torch.tensor([heart[0] + 8 * cell, heart[1] + 8 * cell,
                                                                  heart[0] + 16 * cell, heart[1] + 16 * cell]), atol=1e-4)
    from fetalheart.modeling.postprocess import postprocess

    final = postprocess(out, 60, 80)
    blob = final.pred_masks[2]
    ys, xs = torch.nonzero(blob, as_tuple=True)
    assert abs(float(xs.min()) - float(heart[0] + 8 * cell)) <= 1 and abs(float(xs.max() + 1) - float(heart[0] + 16 * cell)) <= 1
    # no confident heart detection: step 1 as it is
    inst.scores = torch.tensor([0.3, 0.3, 0.6])
    again = Refiner(_BlobNet(), spec, ("LA", "RA", "LV", "RV", "TV")).refine(image, inst)
    assert again.pred_classes.tolist() == [0, 2, 4] and not again.refined.any() and again.scores[2] == pytest.approx(0.6)


def test_heart_mode_trains_and_evaluates(tmp_path, capsys):
    """MODEL.REFINE.MODE heart: step 2 trains on heart crops (all target classes at once) and evaluates."""
    from fetalheart.cli.evaluate import main as evaluate_main
    from fetalheart.cli.train_refiner import main as train_refiner_main

    cfg_file, opts, run = _toy_run(tmp_path)
    heart = ["MODEL.REFINE.MODE", "heart", "MODEL.REFINE.CLASSES", "('RV',)", "MODEL.REFINE.HEART_CLASSES",
             "('LA', 'RA', 'LV')", "MODEL.REFINE.SIZE", "64", "MODEL.REFINE.ENCODER", "resnet18",
             "MODEL.REFINE.TRAIN.ITERS", "2", "MODEL.REFINE.TRAIN.BATCH_SIZE", "2", "MODEL.WEIGHTS",
             str(run / "model_final.pth")]
    assert train_refiner_main(["--config-file", cfg_file, "--overlay", "overlays/refine.yaml", *opts, *heart]) == 0
    assert "3 images" in capsys.readouterr().out  # one heart crop per training frame
    fits = load_fits(run / "mask_paste.json")
    assert fits[64].n == 3  # one RV per frame, pasted through its frame's heart square
    assert evaluate_main(["--config-file", cfg_file, "--quiet", *opts, *heart, "MODEL.REFINE.ENABLED", "True",
                          "MODEL.ROI_MASK_HEAD.PASTE.MODE", "gaussian", "-o", str(tmp_path / "ev")]) == 0
