#!/usr/bin/env python
"""Figure: one phantom frame and its ground-truth overlay, two phantom versions side by side.

    # the old phantom from a commit before issue 22, the new one from this checkout
    mkdir -p /tmp/old && git archive 0e654f7 fetalheart | tar -x -C /tmp/old
    (cd /tmp/old && PYTHONPATH=/tmp/old "$OLDPWD/.venv/bin/python" -m fetalheart.cli.make_phantom \
        -o /tmp/ph_old --frames-only -q)   # run from /tmp/old: -m imports the current folder first
    .venv/bin/python -m fetalheart.cli.make_phantom -o /tmp/ph_new --frames-only -q
    .venv/bin/python benchmarks/phantom_before_after.py /tmp/ph_old /tmp/ph_new --frame 45 \
        -o docs/images/phantom_before_after.png

Each row is one phantom folder (make_phantom's output): the frame cropped to the sector, and the
same frame with its LabelMe polygons in the class colours.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fetalheart.classes import CLASS_NAMES, COLORS
from fetalheart.video.naming import frame_stem

import cv2
import numpy as np


def panel(folder: Path, index: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    meta = json.loads((folder / "phantom.json").read_text())
    stem = frame_stem(meta["name"], index)
    img = cv2.imread(str(folder / "frames" / f"{stem}.png"), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"no frame {index} in {folder}")
    shapes = json.loads((folder / "labelme" / f"{stem}.json").read_text())["shapes"]
    over = img.copy()
    fill = img.copy()
    for s in shapes:
        pts = np.round(np.asarray(s["points"])).astype(np.int32)
        bgr = tuple(int(c) for c in COLORS[CLASS_NAMES.index(s["label"])][::-1])
        cv2.fillPoly(fill, [pts], bgr)
        cv2.polylines(over, [pts], True, bgr, max(1, round(2 * img.shape[0] / 720)), cv2.LINE_AA)
    over = cv2.addWeighted(over, 0.75, fill, 0.25, 0)
    x, y, w, h = meta["sector_bbox"]
    crop = lambda a: cv2.resize(a[y : y + h, x : x + w], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)  # noqa: E731
    return crop(img), crop(over)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="make_phantom output folders, one row each")
    ap.add_argument("--labels", nargs="*", help="row labels (default: before, after)")
    ap.add_argument("--frame", type=int, default=45)
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("-o", "--output", type=Path, required=True)
    a = ap.parse_args()
    labels = a.labels or ["before (issue 22)", "after"][: len(a.folders)]
    rows = []
    for folder, label in zip(a.folders, labels, strict=False):
        img, over = panel(folder, a.frame, a.scale)
        row = np.hstack([img, np.zeros((img.shape[0], 8, 3), np.uint8), over])
        cv2.putText(row, label, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
        rows.append(row)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0))) for r in rows]
    a.output.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(a.output), np.vstack(rows)[:-8]):
        raise SystemExit(f"could not write {a.output}")
    print(a.output)


if __name__ == "__main__":
    main()
