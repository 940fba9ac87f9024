"""Run a grid of trainings (the study's 22 models, optionally x seeds), each in its own folder.

Finished runs are skipped, interrupted ones resumed, a failed run does not stop the others.
Jobs go through submitit (FAIR's launcher) with its local executor here, or Slurm on a cluster,
rather than a scheduler of our own. Each job runs ``train_net`` in a child process with its
own CUDA_VISIBLE_DEVICES, so several small runs can share one GPU or spread over several.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fetalheart.config import CONFIGS_DIR, load_cfg, resolve_config_path
from fetalheart.utils.errors import FetalHeartError

import yaml


@dataclass
class GridRun:
    """One training of the grid: a config, a seed, an output folder."""

    name: str
    config: str
    output_dir: Path
    seed: int | None = None
    opts: list[str] = field(default_factory=list)
    base: str | None = None
    gpu: str | None = None
    caller_gpus: str | None = field(default_factory=lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))

    @property
    def label(self) -> str:
        return self.name if self.seed is None else f"{self.name}/seed{self.seed}"

    def status(self) -> str:
        """'done' (model_final.pth), 'resume' (a checkpoint exists) or 'new'."""
        if (self.output_dir / "model_final.pth").is_file():
            return "done"
        if (self.output_dir / "last_checkpoint").is_file():
            return "resume"
        return "new"

    def all_opts(self) -> list[str]:
        opts = [*self.opts, "OUTPUT_DIR", str(self.output_dir)]
        if self.seed is not None:
            opts += ["SEED", str(self.seed)]
        return opts

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "fetalheart.cli.train_net", "--config-file", self.config]
        if self.base:
            cmd += ["--base", self.base]
        if self.status() == "resume":
            cmd.append("--resume")
        return cmd + self.all_opts()


def load_grid(grid_file: str | os.PathLike, out_dir: str | os.PathLike, *, only: list[int] | None = None,
              seeds: list[int] | None = None, opts: list[str] = (), base: str | None = None) -> list[GridRun]:
    """Expand a grid YAML (``base``, ``runs: [{name, config, opts}]``) into runs.

    ``only`` selects runs by their number in the file (1-based, so "--only 14" is model 14).
    Config paths are resolved relative to the grid file, then to the shipped configs/.
    """
    grid_path = resolve_config_path(grid_file)
    try:
        grid = yaml.safe_load(grid_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise FetalHeartError(f"{grid_path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    entries = grid.get("runs")
    if not isinstance(entries, list) or not entries:
        raise FetalHeartError(f"{grid_path}: no 'runs:' list")
    base = base or grid.get("base")
    if base:
        base = str(resolve_config_path(base))
    if only:
        bad = [i for i in only if not 1 <= i <= len(entries)]
        if bad:
            raise FetalHeartError(f"--only {bad}: the grid has runs 1..{len(entries)}")
    runs = []
    for number, entry in enumerate(entries, start=1):
        if only and number not in only:
            continue
        cfg_path = Path(entry["config"])
        for candidate in (grid_path.parent / cfg_path, CONFIGS_DIR / cfg_path, cfg_path):
            if candidate.is_file():
                cfg_path = candidate
                break
        else:
            raise FetalHeartError(f"{grid_path}: config of run {entry['name']!r} not found: {entry['config']}")
        for seed in seeds or [None]:
            folder = Path(out_dir) / entry["name"] / (f"seed{seed}" if seed is not None else "")
            runs.append(GridRun(entry["name"], str(cfg_path), folder, seed,
                                [*map(str, entry.get("opts", [])), *opts], base))
    return runs


def describe(run: GridRun) -> dict:
    """What a run will train, read from its resolved config (for --dry-run)."""
    cfg = load_cfg(run.config, run.all_opts(), base=run.base)
    return {"run": run.label, "model_id": cfg.STUDY.MODEL_ID, "enhance": cfg.INPUT.ENHANCE,
            "momentum": cfg.SOLVER.MOMENTUM, "max_iter": cfg.SOLVER.MAX_ITER, "seed": cfg.SEED,
            "status": run.status(), "output_dir": str(run.output_dir)}


def train_one(run: GridRun) -> dict:
    """Train one run in a child process (log in OUTPUT_DIR/log.txt); never raises."""
    run.output_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # submitit's local executor hides every GPU from its job (CUDA_VISIBLE_DEVICES=""); give the
    # training the GPU chosen by --gpus, else what the caller itself could see.
    visible = run.gpu if run.gpu is not None else run.caller_gpus
    if visible is None:
        env.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        env["CUDA_VISIBLE_DEVICES"] = visible
    start = time.time()
    with open(run.output_dir / "grid_stdout.txt", "ab") as log:
        proc = subprocess.run(run.command(), stdout=log, stderr=subprocess.STDOUT, env=env)
    tail = (run.output_dir / "grid_stdout.txt").read_text(errors="replace").strip().splitlines()[-1:] or [""]
    return {"run": run.label, "returncode": proc.returncode, "seconds": round(time.time() - start, 1),
            "last_line": tail[0][-300:]}


def _submitit_executor(launcher: str, folder: Path, slurm: dict):
    import submitit

    if launcher == "local":
        ex = submitit.LocalExecutor(folder=str(folder))
        # submitit's local default time limit (minutes) would kill a real training run.
        ex.update_parameters(timeout_min=60 * 24 * 14)
        return ex
    if launcher == "slurm":
        ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        ex.update_parameters(**slurm)
        return ex
    raise FetalHeartError(f"--launcher must be local or slurm, got {launcher!r}")


def run_grid(runs: list[GridRun], *, out_dir: Path, max_parallel: int = 1, gpus: list[str] | None = None,
             launcher: str = "local", slurm: dict | None = None, progress=print) -> list[dict]:
    """Run every unfinished run; return one result dict per run (skipped ones included)."""
    todo = [r for r in runs if r.status() != "done"]
    results = [{"run": r.label, "returncode": 0, "seconds": 0.0, "last_line": "already finished: skipped"}
               for r in runs if r.status() == "done"]
    for r in runs:
        if r.status() == "done":
            progress(f"[run_grid] skip {r.label}: finished (model_final.pth exists)")
    for i, run in enumerate(todo):
        if gpus:
            run.gpu = gpus[i % len(gpus)]
    executor = _submitit_executor(launcher, Path(out_dir) / ".submitit", slurm or {})

    def submit_and_wait(run: GridRun) -> dict:
        progress(f"[run_grid] start {run.label} ({run.status()}) -> {run.output_dir}")
        start = time.time()
        try:
            result = executor.submit(train_one, run).result()
        except Exception as exc:  # the job itself died (killed, time limit, node failure): report, go on
            last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            result = {"run": run.label, "returncode": -1, "seconds": round(time.time() - start, 1),
                      "last_line": f"job failed: {last}"[:300]}
        progress(f"[run_grid] {'done' if result['returncode'] == 0 else 'FAILED'} {run.label} "
                 f"in {result['seconds']:.0f} s")
        return result

    with ThreadPoolExecutor(max_workers=max(1, max_parallel)) as pool:
        results += list(pool.map(submit_and_wait, todo))
    return results
