"""How much each enhancement step changed the frames: frames changed and mean absolute change.

A spec whose step leaves the pixels alone trains the same model as its twin without that step
(before the bd floor, ``bd`` was the identity on every in-focus frame and nothing said so). For
a spec such as "ahe+clahe+bd" the steps are its cumulative prefixes "ahe", "ahe+clahe",
"ahe+clahe+bd", and each step's output is compared with that step's input (the previous
prefix; the original image for the first step).

Per step: ``frames_changed`` (frames with at least one pixel different) of ``frames_total``;
``mean_abs_change``: per frame, the mean of |output - input| over all its pixels and channels,
in grey levels of the image's dtype (0-255 for 8-bit), then averaged over **all** frames
(unchanged frames count 0); ``mean_abs_change_changed``: the same averaged over the changed
frames only. A step that changes fewer than ``CHANGE_THRESHOLD`` (95%) of the frames puts a
``warning`` in the result. For the bd step, the estimated kernel spreads are summarised too, and
per frame what set the kernel (``bd_kernel``: the estimate, the ``bd_min_sigma`` floor, or none),
with the floor's share: on a floor frame bd is a fixed ~1 px deconvolution, not a blur it found.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from fetalheart.enhance.deblur import KERNEL_SOURCES, kernel_sigma, kernel_source
from fetalheart.enhance.enhancer import Enhancer
from fetalheart.enhance.kernels import map_paths, read_image
from fetalheart.enhance.spec import used_params
from fetalheart.utils.errors import FetalHeartError

import cv2
import numpy as np

#: A step that changes fewer than this fraction of the frames gets a warning.
CHANGE_THRESHOLD = 0.95

DEFINITION = ("per step (cumulative prefix of the spec) vs that step's input: frames with any pixel changed; "
              "mean |change| = per-frame mean over all pixels and channels (grey levels of the image dtype), "
              "averaged over all frames (mean_abs_change) or over changed frames only (mean_abs_change_changed)")


def step_changes(original: np.ndarray, steps: Sequence[np.ndarray]) -> list[tuple[bool, float]]:
    """(changed?, mean |output - input|) for each step, each compared with its own input."""
    out = []
    prev = original
    for img in steps:
        diff = cv2.absdiff(np.ascontiguousarray(img), np.ascontiguousarray(prev))
        out.append((bool(diff.any()), float(diff.mean(dtype=np.float64))))
        prev = img
    return out


def image_changes(enhancer: Enhancer, image: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The enhanced image and its per-step record ``{"changed", "mad", "bd_sigma", "bd_kernel"}`` (JSON-ready)."""
    if enhancer.identity:
        return image, {"changed": [], "mad": [], "bd_sigma": None, "bd_kernel": None}
    steps = enhancer.steps(image)
    k = enhancer.kernel(image)
    changes = step_changes(image, steps)
    sigma = kernel_sigma(k) if k is not None else None
    record = {"changed": [c for c, _ in changes], "mad": [round(m, 6) for _, m in changes],
              "bd_sigma": round(sigma, 4) if sigma is not None else None,
              "bd_kernel": _source(sigma, enhancer.params) if sigma is not None else None}
    return steps[-1], record


def _source(sigma: float, params: Mapping[str, Any]) -> str:
    return kernel_source(sigma, float(params["bd_min_sigma"]), bool(params["bd_skip_sharp"]))


def summarise_changes(
    enhancer: Enhancer, records: Sequence[Mapping[str, Any]], *, threshold: float = CHANGE_THRESHOLD
) -> dict[str, Any]:
    """Aggregate per-image records (``image_changes``) into the per-step statistics and warning."""
    n = len(records)
    steps = []
    for i, op in enumerate(enhancer.ops):
        changed = np.array([bool(r["changed"][i]) for r in records], dtype=bool)
        mad = np.array([float(r["mad"][i]) for r in records], dtype=np.float64)
        row = {"step": "+".join(enhancer.ops[: i + 1]), "op": op, "frames_changed": int(changed.sum()),
               "frames_total": n, "fraction_changed": round(float(changed.mean()), 4) if n else None,
               "mean_abs_change": round(float(mad.mean()), 3) if n else None,
               "mean_abs_change_changed": round(float(mad[changed].mean()), 3) if changed.any() else None}
        if op == "bd":
            row["bd"] = _bd_summary(records, enhancer.params)
        steps.append(row)
    return {"spec": enhancer.spec, "mask": enhancer.mask if isinstance(enhancer.mask, str) else "array",
            "params": used_params(enhancer.ops, enhancer.params), "frames": n, "threshold": threshold,
            "definition": DEFINITION, "steps": steps, "warning": _warning(enhancer.spec, steps, n, threshold)}


def _bd_summary(records: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
    measured = [r for r in records if r.get("bd_sigma") is not None]
    sig = np.array([r["bd_sigma"] for r in measured], dtype=np.float64)
    floor = float(params["bd_min_sigma"])
    # Records written before bd_kernel existed (an older enhancement manifest) get it from their sigma.
    sources = [r.get("bd_kernel") or _source(r["bd_sigma"], params) for r in measured]
    counts = {s: sources.count(s) for s in KERNEL_SOURCES}
    return {"kernel_sigma_median": round(float(np.median(sig)), 3) if sig.size else None,
            "below_floor": int((sig < floor).sum()), "bd_min_sigma": floor,
            "bd_skip_sharp": bool(params["bd_skip_sharp"]), "kernel_source": counts,
            "floor_share": round(counts["floor"] / len(sources), 4) if sources else None}


def bd_sentence(stats: Mapping[str, Any]) -> str | None:
    """One line for reports: on how many frames the blind estimate, and on how many the floor, set bd's kernel."""
    bd = next((s["bd"] for s in stats.get("steps") or [] if s.get("bd")), None)
    if not bd or bd.get("floor_share") is None:
        return None
    c, n = bd["kernel_source"], sum(bd["kernel_source"].values())
    line = (f"bd kernel: the blind estimate set it on {c['estimate']} of {n} frames, the {bd['bd_min_sigma']:g} px "
            f"floor on {c['floor']} ({100 * bd['floor_share']:.1f}%: there bd deconvolves with a fixed "
            f"{bd['bd_min_sigma']:g} px Gaussian, a fixed sharpening, because the estimate was narrower)")
    return line + (f", none on {c['none']} (left unchanged)" if c["none"] else "") + "."


def _warning(spec: str, steps: Sequence[Mapping[str, Any]], n: int, threshold: float) -> str | None:
    if not steps:
        return None
    if n == 0:
        return f"enhancement {spec!r}: no frames were measured"
    low = [s for s in steps if s["fraction_changed"] < threshold]
    if not low:
        return None
    parts = [f"step {s['step']!r} changed {s['frames_changed']} of {n} frames "
             f"({100 * s['fraction_changed']:.1f}% < {100 * threshold:.0f}%)" for s in low]
    return (f"enhancement {spec!r}: " + "; ".join(parts)
            + ": on those frames it trains on the same pixels as the spec without that step")


_WORKER: dict[str, Any] = {}


def _init_worker(spec: str, params: dict, mask: str, cache_dir: str | None, image_format: str) -> None:
    cv2.setNumThreads(1)
    _WORKER.update(enhancer=Enhancer(spec, params=params, mask=mask, cache_dir=cache_dir, memory_items=0),
                   fmt=image_format)


def _measure_one(path: str) -> dict[str, Any]:
    return image_changes(_WORKER["enhancer"], read_image(path, _WORKER["fmt"]))[1]


def measure_changes(
    image_paths: Sequence[str | os.PathLike],
    spec: str,
    params: Mapping[str, Any] | None = None,
    mask: str = "none",
    cache_dir: str | os.PathLike | None = None,
    quiet: bool = False,
    *,
    jobs: int = 1,
    image_format: str = "BGR",
) -> dict[str, Any]:
    """Per-step change statistics of ``spec`` over image files, read as the training mapper reads them.

    ``cache_dir``: the bd cache folder the runs use (kernels are reused from and added to it).
    Returns the ``summarise_changes`` dict (``steps``, ``warning``, ``definition``, ...).
    """
    if jobs < 1:
        raise FetalHeartError(f"jobs must be >= 1, got {jobs}")
    enhancer = Enhancer(spec, params=params, mask=mask, cache_dir=cache_dir, memory_items=0)
    paths = [str(p) for p in image_paths]
    init = (enhancer.spec, enhancer.params, mask, str(cache_dir) if cache_dir else None, image_format)
    from tqdm import tqdm

    records: list[dict[str, Any]] = []
    bar = tqdm(total=len(paths), desc=f"changes {enhancer.spec}", unit="img", disable=quiet or enhancer.identity)
    try:
        if enhancer.identity:
            records = [{"changed": [], "mad": [], "bd_sigma": None, "bd_kernel": None} for _ in paths]
        else:
            records = map_paths(_measure_one, paths, jobs, _init_worker, init, bar)
    finally:
        bar.close()
    return summarise_changes(enhancer, records)


def format_changes(stats: Mapping[str, Any]) -> str:
    """One line for logs: each step's changed/total frames and mean |change| over all frames."""
    n = stats["frames"]
    if not stats["steps"]:
        return f"{stats['spec']}: no enhancement ({n} frames unchanged by definition)"
    parts = [f"{s['step']} {s['frames_changed']}/{n} changed, mean |change| {_fmt(s['mean_abs_change'])}"
             for s in stats["steps"]]
    line = f"{stats['spec']} ({n} frames, grey levels, mean over all frames): " + " | ".join(parts)
    bd = next((s["bd"] for s in stats["steps"] if s.get("bd")), None)
    if bd and bd.get("floor_share") is not None:
        line += f" | bd kernel from the {bd['bd_min_sigma']:g} px floor on {100 * bd['floor_share']:.1f}% of frames"
    return line + (f"  WARNING: {stats['warning']}" if stats.get("warning") else "")


def changes_table(stats: Mapping[str, Any] | Sequence[Mapping[str, Any]], tablefmt: str = "github") -> str:
    """A table (tabulate) of one or several ``measure_changes`` results, one row per step."""
    from tabulate import tabulate

    items = [stats] if isinstance(stats, Mapping) else list(stats)
    rows = []
    for st in items:
        for s in st["steps"] or [{"step": "(original)", "frames_changed": 0, "frames_total": st["frames"]}]:
            bd = s.get("bd") or {}
            frac = s.get("fraction_changed")
            rows.append([st["spec"], s["step"], f"{s['frames_changed']}/{s['frames_total']}",
                         "" if frac is None else f"{100 * frac:.1f}", _fmt(s.get("mean_abs_change")),
                         _fmt(s.get("mean_abs_change_changed")),
                         "" if not bd else f"{_fmt(bd['kernel_sigma_median'])} ({bd['below_floor']} < {bd['bd_min_sigma']:g})",
                         _kernel_cell(bd), "LOW" if frac is not None and frac < st["threshold"] else ""])
    headers = ["spec", "step", "changed", "% changed", "mean |change| all", "mean |change| changed",
               "bd sigma median (n < floor)", "bd kernel set by: estimate / floor (floor %)", "warn"]
    return tabulate(rows, headers=headers, tablefmt=tablefmt)


def _kernel_cell(bd: Mapping[str, Any]) -> str:
    if not bd or bd.get("floor_share") is None:
        return ""
    c = bd["kernel_source"]
    return f"{c['estimate']} / {c['floor']} ({100 * bd['floor_share']:.1f}%)" + (f", none {c['none']}" if c["none"] else "")


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"
