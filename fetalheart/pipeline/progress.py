"""Live progress of running trainings, read from each run's metrics.json (no extra dependency).

detectron2's JSONWriter appends one line per write period with the iteration, every loss term,
the smoothed seconds per iteration ("time") and, after a validation pass, ``val_*`` losses and
evaluation metrics. One line per running model is printed every ``period`` seconds.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

#: Validation numbers shown, first found wins (evaluation metrics, else the validation loss).
VAL_KEYS = (("fetalheart/dice_macro", "val Dice"), ("segm/AP", "val AP"), ("val_total_loss", "val loss"))


def latest_metrics(metrics_json: Path) -> dict:
    """The latest value of every key in a detectron2 metrics.json (later lines win)."""
    latest: dict = {}
    try:
        lines = metrics_json.read_text(encoding="utf-8").splitlines()
    except OSError:
        return latest
    for line in lines:
        try:
            latest.update(json.loads(line))
        except ValueError:  # a line being written right now
            continue
    return latest


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_line(label: str, metrics: dict, max_iter: int | None) -> str:
    """``model02  iter 120/450  loss 1.234  val loss 1.456  0.71 s/iter  ETA 0:03:54``."""
    if "iteration" not in metrics:
        return f"{label}  starting (building the model, first iterations)"
    it = int(metrics["iteration"]) + 1
    parts = [label, f"iter {it}/{max_iter}" if max_iter else f"iter {it}"]
    if "total_loss" in metrics:
        parts.append(f"loss {metrics['total_loss']:.3f}")
    for key, name in VAL_KEYS:
        if key in metrics:
            value = metrics[key] / 100 if key == "segm/AP" else metrics[key]
            parts.append(f"{name} {value:.3f}")
            break
    s_iter = metrics.get("time")
    if s_iter:
        parts.append(f"{s_iter:.2f} s/iter")
        if max_iter:
            parts.append(f"ETA {_clock((max_iter - it) * s_iter)}")
    return "  ".join(parts)


class GridMonitor:
    """A background thread printing one progress line per running run every ``period`` seconds."""

    def __init__(self, period: float, log: Callable[[str], None] = print):
        self.period, self.log = period, log
        self._runs: dict[str, tuple[Path, int | None]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, run) -> None:
        cfg = run.valid_config()  # None for a broken config: the run itself reports it
        max_iter = int(cfg.SOLVER.MAX_ITER) if cfg is not None else None
        if cfg is not None and cfg.SOLVER.EPOCHS > 0 and cfg.SOLVER.STEPS_PER_EPOCH <= 0:
            max_iter = None  # epochs of the training set: known only once the run has read its dataset
        with self._lock:
            self._runs[run.label] = (Path(run.output_dir) / "metrics.json", max_iter)

    def remove(self, run) -> None:
        with self._lock:
            self._runs.pop(run.label, None)

    def lines(self) -> list[str]:
        with self._lock:
            runs = dict(self._runs)
        return [f"[progress] {progress_line(label, latest_metrics(path), max_iter)}"
                for label, (path, max_iter) in sorted(runs.items())]

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            for line in self.lines():
                self.log(line)

    def __enter__(self) -> GridMonitor:
        if self.period > 0:
            self._thread = threading.Thread(target=self._loop, name="grid-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
