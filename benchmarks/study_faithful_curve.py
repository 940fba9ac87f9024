"""The figure of docs/matterport_differences.md ("Trained once"): loss, gradient norm and chamber Dice.

    python benchmarks/study_faithful_curve.py RUN_DIR OUT.png [EVAL_DIR ...]

RUN_DIR is a training output folder (metrics.json); each EVAL_DIR (default: RUN_DIR/eval/*) holds
the report.json that ``tools/evaluate.py`` wrote for one checkpoint of that run (its iteration is
read from the weights file name, model_0000249.pth -> 250). Prints the numbers it plots.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

CHAMBERS = ("LA", "RA", "LV", "RV")


def _dice_points(eval_dirs: list[Path], last_iter: int) -> list[tuple[int, dict, float]]:
    points = []
    for d in eval_dirs:
        report = json.loads((d / "report.json").read_text())
        stem = Path(report["run"]["weights"]).stem
        it = int(re.sub(r"\D", "", stem)) + 1 if stem != "model_final" else last_iter
        dice = {c: report["per_class"][c]["dice"]["mean"] for c in report["classes"]}
        points.append((it, dice, report["summary"]["dice_macro"]))
    return sorted(points, key=lambda p: p[0])


def main(argv: list[str]) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run, out = Path(argv[0]), Path(argv[1])
    evals = [Path(a) for a in argv[2:]] or sorted(p.parent for p in run.glob("eval/*/report.json"))
    rows = [json.loads(line) for line in (run / "metrics.json").read_text().splitlines() if line.strip()]
    train = [r for r in rows if "total_loss" in r]
    val = [r for r in rows if "val_total_loss" in r]
    dice = _dice_points(evals, train[-1]["iteration"] + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot([r["iteration"] + 1 for r in train], [r["total_loss"] for r in train], label="training loss (median of 20)")
    a.plot([r["iteration"] + 1 for r in val], [r["val_total_loss"] for r in val], "o-", label="validation loss")
    a2 = a.twinx()
    a2.plot([r["iteration"] + 1 for r in train if "grad_norm" in r], [r["grad_norm"] for r in train if "grad_norm" in r],
            color="grey", alpha=0.4, lw=0.8, label="gradient norm before the clip")
    a2.axhline(5.0, color="grey", ls="--", lw=0.8)
    a2.set_ylabel("global gradient norm (clip at 5, dashed)")
    a.set_xlabel("iteration (batch 1)")
    a.set_ylabel("loss")
    a.set_title("loss")
    h1, l1 = a.get_legend_handles_labels()
    h2, l2 = a2.get_legend_handles_labels()
    a.legend(h1 + h2, l1 + l2, fontsize=8)
    for c in CHAMBERS:
        b.plot([p[0] for p in dice], [p[1][c] for p in dice], "o-", label=c)
    b.plot([p[0] for p in dice], [p[2] for p in dice], "k--", label="mean of 10 structures")
    b.set_ylim(0, 1)
    b.set_xlabel("iteration")
    b.set_ylabel("Dice (scores >= 0.7)")
    b.set_title("chamber Dice, validation video")
    b.legend(fontsize=8)
    fig.suptitle("Study-faithful optimizer (SGD 0.01, m 0.9, batch 1, global clip 5, Matterport decay), "
                 "from scratch, phantom, 160 px", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"{train[-1]['iteration'] + 1} iterations -> {out}")
    for it, d, mean in dice:
        print(it, {c: round(d[c], 3) for c in CHAMBERS}, "mean of 10", round(mean, 3))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
