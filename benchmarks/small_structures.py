#!/usr/bin/env python
"""The small-structure table of docs/small_structures.md: one trained Mask R-CNN run, evaluated alone, with
Gaussian pasting, and with two-step refinement at each S (bilinear and Gaussian paste), per class.

Step 2 is trained once per S (``MODEL.REFINE.TRAIN.MAX_SECONDS`` each, the training time printed) into
OUT/refine_S<S>/, then every variant is evaluated through the normal evaluator into OUT/eval/<variant>/
(report.md, report.json, ...). The table (per class Dice, IoU, COCO segm AP, with n = images counted) is
printed and written to OUT/table.md. ``--skip-train`` reuses the refiners (so training and evaluation can
run as two shorter jobs).

    python benchmarks/small_structures.py --run outputs/demo/runs/model02 --dataset outputs/demo/coco \\
        --sizes 48 64 96 128 --seconds 90 -o outputs/small_structures
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fetalheart._compat  # noqa: E402,F401  (detectron2 shims before detectron2 is imported)
from fetalheart.config import REFINE_DEFAULT_CLASSES, class_names, load_cfg
from fetalheart.data.registration import register_datasets_from_cfg

CHAMBERS = ("LA", "RA", "LV", "RV")


def _cfg(args, *opts: str):
    cfg = load_cfg(Path(args.run) / "config.yaml", ["MODEL.WEIGHTS", str(Path(args.run) / "model_final.pth"),
                                                    "DATASETS.ROOT", str(Path(args.dataset).resolve()),
                                                    "MODEL.DEVICE", "cpu", "EVAL.BOOTSTRAP_SAMPLES", "200",
                                                    "MODEL.REFINE.ENCODER", args.encoder, *opts], cpu_fallback=True)
    register_datasets_from_cfg(cfg, training=False)
    return cfg


def _refiners(args) -> list[tuple[str, int, str, str]]:
    """(folder name, S, source, mode) of every step-2 network of the table."""
    return ([(f"refine_S{s}", s, "original", "detections") for s in args.sizes]
            + [(f"refine_input_S{s}", s, "input", "detections") for s in args.input_sizes]
            + [(f"refine_heart_S{s}", s, "original", "heart") for s in args.heart_sizes])


def train(args, out: Path) -> dict:
    from fetalheart.engine.refiner import prepare_small_structures

    seconds = {}
    for name, s, source, mode in _refiners(args):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        cfg = _cfg(args, "MODEL.REFINE.ENABLED", "True", "MODEL.REFINE.SIZE", str(s), "MODEL.REFINE.SOURCE", source,
                   "MODEL.REFINE.MODE", mode,
                   "MODEL.REFINE.TRAIN.ITERS", "100000", "MODEL.REFINE.TRAIN.MAX_SECONDS", str(args.seconds),
                   "MODEL.ROI_MASK_HEAD.PASTE.MODE", "gaussian", "MODEL.ROI_MASK_HEAD.PASTE.FIT_MAX_INSTANCES", str(args.fit_instances))
        start = time.time()
        prepare_small_structures(cfg, folder, class_names(cfg), log=print)
        seconds[name] = round(time.time() - start, 1)
    (out / "train_seconds.json").write_text(json.dumps(seconds))
    return seconds


def variants(args, out: Path) -> dict[str, list[str]]:
    fit = str(out / (args.paste_from or _refiners(args)[0][0]) / "mask_paste.json")  # 28-cell line: same for all
    v = {"Mask R-CNN alone": [], "+ Gaussian paste": ["MODEL.ROI_MASK_HEAD.PASTE.MODE", "gaussian",
                                                       "MODEL.ROI_MASK_HEAD.PASTE.FIT_FILE", fit]}
    for name, s, source, mode in _refiners(args):
        d = out / name
        ref = ["MODEL.REFINE.ENABLED", "True", "MODEL.REFINE.SIZE", str(s), "MODEL.REFINE.SOURCE", source,
               "MODEL.REFINE.MODE", mode, "MODEL.REFINE.WEIGHTS", str(d / "refiner.pth")]
        label = f"two-step{' heart' if mode == 'heart' else ''} S{s}" + (" (input crop)" if source == "input" else "")
        v[label] = ref
        v[f"{label} + Gaussian"] = [*ref, "MODEL.ROI_MASK_HEAD.PASTE.MODE", "gaussian",
                                    "MODEL.ROI_MASK_HEAD.PASTE.FIT_FILE", str(d / "mask_paste.json")]
    return v


def _folder(out: Path, name: str) -> Path:
    return out / "eval" / "".join(ch if ch.isalnum() else "_" for ch in name)


def evaluate(args, out: Path) -> None:
    from fetalheart.evaluation.evaluate import evaluate_model

    for name, opts in variants(args, out).items():
        if (_folder(out, name) / "report.json").is_file() and not args.reevaluate:
            continue  # evaluated by an earlier call (--reevaluate redoes it)
        cfg = _cfg(args, *opts)
        start = time.time()
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' tables; they are in report.md
            evaluate_model(cfg, cfg.DATASETS.TEST[0], _folder(out, name), overwrite=True, quiet=True)
        print(f"evaluated {name} in {time.time() - start:.0f} s -> {_folder(out, name)}")


def reports(args, out: Path) -> dict[str, dict]:
    """The variants' report.json files that exist, in table order."""
    found = {name: _folder(out, name) / "report.json" for name in variants(args, out)}
    return {name: json.loads(p.read_text()) for name, p in found.items() if p.is_file()}


def _f(x: float, d: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


def table(reports: dict[str, dict]) -> str:
    any_rep = next(iter(reports.values()))
    small = [c for c in REFINE_DEFAULT_CLASSES if c in any_rep["classes"]]
    classes = small + [c for c in CHAMBERS if c in any_rep["classes"]]
    lines = ["| variant | small mean Dice | " + " | ".join(classes) + " |",
             "|---|---|" + "---|" * len(classes)]
    for name, rep in reports.items():
        pc, segm = rep["per_class"], rep["coco"]["segm"]
        small_dice = [pc[c]["dice"]["mean"] for c in small]
        cells = []
        for c in classes:
            ap = segm.get(f"AP-{c}")
            cells.append(f"{_f(pc[c]['dice']['mean'])} / {_f(pc[c]['iou']['mean'])} / "
                         f"{_f(None if ap is None else ap / 100)}")
        mean = sum(small_dice) / len(small_dice) if small_dice and all(map(math.isfinite, small_dice)) else float("nan")
        lines.append(f"| {name} | {_f(mean, 3)} | " + " | ".join(cells) + " |")
    n = " ".join(f"{c} {any_rep['per_class'][c]['dice']['n']}" for c in classes)
    lines += ["", f"Cells: Dice / IoU / COCO segm AP. n (images counted for Dice and IoU, first row; a frame where a "
                  f"class is predicted but absent counts too): {n}; {any_rep['n_images']} validation images."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a trained Mask R-CNN run (config.yaml, model_final.pth)")
    ap.add_argument("--dataset", required=True, help="its labelme2coco folder")
    ap.add_argument("--sizes", type=int, nargs="*", default=[48, 64, 96, 128],
                    help="S values of refiners of each detection, original-resolution crops (default 48 64 96 128)")
    ap.add_argument("--input-sizes", type=int, nargs="*", default=[64],
                    help="S values of refiners cropping the model's input instead of the original frame (default 64)")
    ap.add_argument("--heart-sizes", type=int, nargs="*", default=[128],
                    help="S values of heart-mode refiners (one crop around the heart; default 128)")
    ap.add_argument("--paste-from", default=None, help="refiner folder whose mask_paste.json the Gaussian-only row uses")
    ap.add_argument("--seconds", type=int, default=90, help="step-2 training seconds per S (default 90)")
    ap.add_argument("--fit-instances", type=int, default=400, help="instances per paste fit (default 400)")
    ap.add_argument("--encoder", default="resnet34", help="step-2 encoder (default resnet34)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--skip-train", action="store_true", help="reuse OUT/refine_S*/ (evaluate only)")
    ap.add_argument("--skip-eval", action="store_true", help="train the refiners only")
    ap.add_argument("--reevaluate", action="store_true", help="evaluate variants that have a report already")
    ap.add_argument("--table-only", action="store_true", help="the table from OUT/eval/*/report.json only")
    ap.add_argument("-o", "--output", required=True, help="output folder")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()[0]:.2f}")
    if not args.skip_train:
        print("step-2 training seconds per S:", train(args, out))
    if args.skip_eval:
        return
    if not args.table_only:
        evaluate(args, out)
    text = table(reports(args, out))
    (out / "table.md").write_text(text + "\n")
    print(text)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
