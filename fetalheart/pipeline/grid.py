"""Run a grid of trainings (the study's 22 models, optionally x folds x seeds), each in its own folder.

Finished runs are skipped, interrupted ones resumed, a failed run does not stop the others, and a
run whose inputs changed (any key of its resolved config but the run-only ones, the dataset's
content, the code version: ``fetalheart.pipeline.keys``) is never reused: it is moved aside to
``<out>/.stale/`` and trained again, and the log says which input changed. Every run's key is
checked each time (it is cheap: configs are resolved, the dataset hashed once). Jobs go through
submitit (FAIR's launcher) with its local executor here, or Slurm on a cluster, rather than a
scheduler of our own.
Each job runs ``train_net`` in a child process with its own CUDA_VISIBLE_DEVICES and thread count,
so several small runs can share one GPU or the cores of a laptop. While they train, a monitor
prints one line per running model every ``progress_every`` seconds (iteration, loss, s/iter, ETA).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fetalheart.config import CONFIGS_DIR, check_weights, load_cfg, resolve_config_path
from fetalheart.pipeline.keys import training_key, training_parts, why_changed
from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import write_json_atomic

import yaml

#: The file in each run folder that records what the run was trained from.
RUN_KEY_FILE = "run_key.json"
#: Dataset names of fold k in a labelme2coco --folds output (see fetalheart.data.datasets).
FOLD_DATASETS = ("fetalheart_fold{k}_train", "fetalheart_fold{k}_val")


@dataclass
class GridRun:
    """One training of the grid: a config, a fold, a seed, an output folder."""

    name: str
    config: str
    output_dir: Path
    seed: int | None = None
    opts: list[str] = field(default_factory=list)
    base: str | None = None
    overlays: list[str] = field(default_factory=list)
    fold: int | None = None
    gpu: str | None = None
    threads: int | None = None  # CPU threads of the child (OMP_NUM_THREADS); None = its default
    caller_gpus: str | None = field(default_factory=lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
    key: str = ""  # what the run depends on (set by fingerprint_runs)
    parts: dict = field(default_factory=dict, repr=False, compare=False)  # what the key is made of
    _cfg: object = field(default=None, init=False, repr=False, compare=False)

    @property
    def label(self) -> str:
        parts = [self.name] + ([f"fold{self.fold}"] if self.fold is not None else []) + (
            [f"seed{self.seed}"] if self.seed is not None else [])
        return "/".join(parts)

    def recorded(self) -> dict:
        """run_key.json of the run's folder ({} when missing or unreadable)."""
        try:
            data = json.loads((self.output_dir / RUN_KEY_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def recorded_key(self) -> str | None:
        key = self.recorded().get("key")
        return key if isinstance(key, str) else None

    def status(self) -> str:
        """'done' (model_final.pth), 'resume' (a checkpoint), 'stale' (inputs changed) or 'new'."""
        started = (self.output_dir / "model_final.pth").is_file() or (self.output_dir / "last_checkpoint").is_file()
        if started and self.key and self.recorded_key() not in (None, self.key):
            return "stale"
        if (self.output_dir / "model_final.pth").is_file():
            return "done"
        return "resume" if started else "new"

    def all_opts(self) -> list[str]:
        opts = [*self.opts, "OUTPUT_DIR", str(self.output_dir)]
        if self.seed is not None:
            opts += ["SEED", str(self.seed)]
        return opts

    def config_node(self):
        """The resolved config this run trains with (resolved once; raises for a broken config)."""
        if self._cfg is None:
            self._cfg = load_cfg(self.config, self.all_opts(), base=self.base, overlays=self.overlays)
        return self._cfg

    def valid_config(self):
        """``config_node()``, or None for a broken config: that run fails and reports it, the others go on."""
        try:
            return self.config_node()
        except FetalHeartError:
            return None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "fetalheart.cli.train_net", "--config-file", self.config]
        if self.base:
            cmd += ["--base", self.base]
        for overlay in self.overlays:
            cmd += ["--overlay", overlay]
        if self.status() == "resume":
            cmd.append("--resume")
        return cmd + self.all_opts()


def _fold_opts(fold: int) -> list[str]:
    train, val = (n.format(k=fold) for n in FOLD_DATASETS)
    return ["DATASETS.TRAIN", f"('{train}',)", "DATASETS.TEST", f"('{val}',)", "DATASETS.FOLD", str(fold)]


def _read_grid(grid_path: Path) -> dict:
    try:
        grid = yaml.safe_load(grid_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise FetalHeartError(f"{grid_path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(grid.get("runs"), list) or not grid["runs"]:
        raise FetalHeartError(f"{grid_path}: no 'runs:' list")
    return grid


def _entry_config(grid_path: Path, entry: dict) -> str:
    rel = Path(entry["config"])
    for candidate in (grid_path.parent / rel, CONFIGS_DIR / rel, rel):
        if candidate.is_file():
            return str(candidate)
    raise FetalHeartError(f"{grid_path}: config of run {entry['name']!r} not found: {entry['config']}")


def _grid_file(grid_path: Path, name: str | None) -> str | None:
    """A file the grid names (its base, an overlay): beside the grid file first, as the run configs."""
    if not name:
        return None
    beside = grid_path.parent / name
    return str(beside) if beside.is_file() else str(resolve_config_path(name))


@dataclass
class GridSpec:
    """How to expand a grid file: which runs, folds and seeds, on which base, with which overrides."""

    only: list[int] | None = None  # run numbers in the file, 1-based ("--only 14" is model 14)
    seeds: list[int] | None = None
    folds: int = 0  # K > 1: every run once per fold of a labelme2coco --folds dataset
    opts: list[str] = field(default_factory=list)
    base: str | None = None
    overlays: list[str] = field(default_factory=list)


def load_grid(grid_file: str | os.PathLike, out_dir: str | os.PathLike, spec: GridSpec | None = None) -> list[GridRun]:
    """Expand a grid YAML (``base``, ``overlays``, ``runs: [{name, config, opts, base, overlays}]``) into runs.

    Config paths (runs, base, overlays) are resolved relative to the grid file, then to the shipped
    configs/; ``spec.base`` and ``spec.overlays`` (command-line options) as given, then configs/. A
    run's own ``base`` (null: its config's own chain) and ``overlays`` replace the grid file's: Mask
    R-CNN and U-Net-family runs share one grid (``--base``, ``--protocol`` and ``--overlay`` still
    apply to every run). Every run of the grid shares one enhancement cache (``<out>/enhance_cache``):
    a bd result is computed once per image and parameter set for the whole grid.
    """
    spec = spec or GridSpec()
    grid_path = resolve_config_path(grid_file)
    grid = _read_grid(grid_path)
    entries = grid["runs"]
    base = str(resolve_config_path(spec.base)) if spec.base else _grid_file(grid_path, grid.get("base"))
    grid_overlays = [_grid_file(grid_path, o) for o in grid.get("overlays") or []]
    cli_overlays = [str(resolve_config_path(o)) for o in spec.overlays]
    bad = [i for i in spec.only or [] if not 1 <= i <= len(entries)]
    if bad:
        raise FetalHeartError(f"--only {bad}: the grid has runs 1..{len(entries)}")
    shared = ["INPUT.ENHANCE_CACHE_DIR", str(Path(out_dir).resolve() / "enhance_cache")]
    runs = []
    for number, entry in enumerate(entries, start=1):
        if spec.only and number not in spec.only:
            continue
        config = _entry_config(grid_path, entry)
        run_base, overlays = base, [*grid_overlays, *cli_overlays]
        if "base" in entry and not spec.base:
            run_base = _grid_file(grid_path, entry["base"])
        if "overlays" in entry:  # replaces the grid file's overlays (--protocol / --overlay still apply)
            overlays = [*(_grid_file(grid_path, o) for o in entry["overlays"] or []), *cli_overlays]
        for fold in range(spec.folds) if spec.folds > 1 else [None]:
            for seed in spec.seeds or [None]:
                folder = Path(out_dir) / entry["name"]
                folder = folder / f"fold{fold}" if fold is not None else folder
                folder = folder / f"seed{seed}" if seed is not None else folder
                opts = [*shared, *map(str, entry.get("opts", [])), *(_fold_opts(fold) if fold is not None else []),
                        *spec.opts]
                runs.append(GridRun(entry["name"], config, folder, seed, opts, run_base, list(overlays), fold))
    return runs


def check_grid_weights(runs: Sequence[GridRun]) -> None:
    """Before any stage or run starts: each run that will start training finds its pretrained weights
    (``fetalheart.config.check_weights``: a one-line error says where to get the file and where to put it).
    Runs with a checkpoint of their own resume or are finished; a broken config fails later, on its own."""
    for run in runs:
        cfg = run.valid_config()
        if cfg is not None and not (Path(run.output_dir) / "last_checkpoint").is_file():
            check_weights(cfg)


def describe(run: GridRun) -> dict:
    """What a run will train, read from its resolved config (for --dry-run)."""
    from fetalheart.config import model_label

    cfg = run.config_node()
    s = cfg.SOLVER
    length = f"{s.EPOCHS:g} epochs" if s.EPOCHS > 0 and s.STEPS_PER_EPOCH <= 0 else s.MAX_ITER  # epoch set by the data
    return {"run": run.label, "model": model_label(cfg), "model_id": cfg.STUDY.MODEL_ID, "enhance": cfg.INPUT.ENHANCE,
            "optimizer": s.OPTIMIZER, "momentum": s.MOMENTUM if s.OPTIMIZER == "SGD" else None,  # Adam has none
            "protocol": cfg.STUDY.PROTOCOL, "max_iter": length,
            "fold": cfg.DATASETS.FOLD, "seed": cfg.SEED, "status": run.status(), "output_dir": str(run.output_dir)}


# ------------------------------------------------------------------------------ what a run depends on


def fingerprint_runs(runs: Sequence[GridRun]) -> None:
    """Set each run's content key (``fetalheart.pipeline.keys``): its resolved config without the
    run-only keys, its dataset's content, the code versions. Runs that already have a key keep it;
    datasets and weights files shared by several runs are hashed once."""
    cache: dict = {}
    for run in runs:
        if run.key:
            continue
        if run.valid_config() is None:
            run.key = ""
            continue
        run.parts = training_parts(run.config_node(), cache)
        run.key = training_key(run.parts)


def set_aside(run: GridRun, out_dir: Path, why: str, log: Callable[[str], None]) -> None:
    """Move a run folder to ``<out>/.stale/`` before training it again (nothing is deleted)."""
    target = out_dir / ".stale" / f"{run.label.replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(run.output_dir), str(target))
    log(f"[run_grid] {run.label}: {why}; the old run is kept in {target}")


# ------------------------------------------------------------------------------------------ running


def train_one(run: GridRun) -> dict:
    """Train one run in a child process (log in OUTPUT_DIR/grid_stdout.txt); never raises."""
    run.output_dir.mkdir(parents=True, exist_ok=True)
    if run.key:
        write_json_atomic(run.output_dir / RUN_KEY_FILE, {"key": run.key, "run": run.label, "parts": run.parts})
    env = dict(os.environ)
    # submitit's local executor hides every GPU from its job (CUDA_VISIBLE_DEVICES=""); give the
    # training the GPU chosen by --gpus, else what the caller itself could see.
    visible = run.gpu if run.gpu is not None else run.caller_gpus
    if visible is None:
        env.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        env["CUDA_VISIBLE_DEVICES"] = visible
    if run.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(run.threads)
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


#: GPU memory one study-sized run (512 px, batch 1, R50-FPN) is given when --max-parallel is auto.
#: An estimate (not measured here: no GPU was lent to this session); override with a number.
GPU_MEMORY_PER_RUN_GIB = 4.0


def auto_parallel(n_runs: int) -> tuple[int, int | None]:
    """(runs side by side, CPU threads each) for ``--max-parallel auto``.

    GPU: as many runs as free memory holds (GPU_MEMORY_PER_RUN_GIB each), at most 8 per GPU.
    CPU: Mask R-CNN at batch 1 uses many threads poorly (measured here: 2 models x 1 thread each
    finish sooner than one after the other with 2 threads), so one run per core, up to 4.
    """
    import torch

    if torch.cuda.is_available():
        free = sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())) / 2**30
        per_gpu = min(8, max(1, int(free / torch.cuda.device_count() // GPU_MEMORY_PER_RUN_GIB)))
        return max(1, min(n_runs, per_gpu * torch.cuda.device_count())), None
    cores = os.cpu_count() or 1
    n = max(1, min(n_runs, cores, 4))
    return n, max(1, cores // n)


@dataclass
class GridOptions:
    """How to run a grid: side by side, on which GPUs, with which launcher, how talkative."""

    max_parallel: int | str = 1  # or "auto"
    gpus: list[str] | None = None
    launcher: str = "local"
    slurm: dict = field(default_factory=dict)
    threads: int | None = None  # CPU threads per run (None: auto decides, else the child's default)
    force: bool = False  # retrain finished runs too
    progress_every: float = 30.0  # seconds between progress lines; 0 = silent


def warm_bd_caches(runs: Sequence[GridRun], log: Callable[[str], None], quiet: bool = False) -> None:
    """Estimate every bd kernel the runs need once, before they start (they share the cache folder):
    no run, DataLoader worker or spec estimates a kernel a second time."""
    from fetalheart.data.datasets import json_image_paths
    from fetalheart.enhance import params_from_cfg, parse_spec, warm_bd_cache

    jobs: dict[str, tuple] = {}
    for run in runs:
        cfg = run.valid_config()
        if cfg is None or "bd" not in parse_spec(cfg.INPUT.ENHANCE) or not cfg.DATASETS.ROOT:
            continue
        paths = json_image_paths(cfg.DATASETS.ROOT, [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST])
        args = (paths, params_from_cfg(cfg), cfg.INPUT.ENHANCE_CACHE_DIR, cfg.INPUT.ENHANCE_MASK, cfg.INPUT.FORMAT)
        jobs.setdefault(json.dumps(args, sort_keys=True, default=str), args)
    for paths, params, cache_dir, mask, fmt in jobs.values():
        s = warm_bd_cache(paths, params, cache_dir, jobs=os.cpu_count() or 1, quiet=quiet, mask=mask,
                          image_format=fmt)
        log(f"[run_grid] bd kernels for {s['images']} frames: {s['estimated']} estimated, {s['cached']} cached, "
            f"in {s['seconds']:.0f} s ({cache_dir})")


def _prepare(runs: list[GridRun], out_dir: Path, options: GridOptions, log) -> list[GridRun]:
    """Key the runs, set stale ones aside, skip finished ones; return what must train."""
    fingerprint_runs(runs)
    todo = []
    for r in runs:
        status = r.status()
        if status == "stale":
            why = why_changed(r.recorded().get("parts"), r.parts)
            set_aside(r, out_dir, f"its config or dataset changed since it was trained ({why}): training it again",
                      log)
            status = "new"
        elif status == "done" and options.force:
            set_aside(r, out_dir, "--force: training it again", log)
            status = "new"
        if status == "done":
            log(f"[run_grid] skip {r.label}: finished (model_final.pth exists, same config and data)")
        else:
            todo.append(r)
    return todo


def run_grid(runs: list[GridRun], *, out_dir: Path, options: GridOptions | None = None,
             log: Callable[[str], None] = print) -> list[dict]:
    """Run every unfinished run; return one result dict per run (skipped ones included)."""
    from fetalheart.pipeline.progress import GridMonitor

    options = options or GridOptions()
    check_grid_weights(runs)  # before the dataset is hashed or a stale run set aside
    todo = _prepare(runs, Path(out_dir), options, log)
    check_grid_weights(todo)  # stale runs, set aside now, start again
    warm_bd_caches(todo, log, quiet=options.progress_every <= 0)
    results = [{"run": r.label, "returncode": 0, "seconds": 0.0, "last_line": "already finished: skipped"}
               for r in runs if r not in todo]
    parallel, threads = (auto_parallel(len(todo)) if options.max_parallel == "auto"
                         else (int(options.max_parallel), None))
    for i, run in enumerate(todo):
        run.gpu = options.gpus[i % len(options.gpus)] if options.gpus else run.gpu
        run.threads = options.threads or threads
    executor = _submitit_executor(options.launcher, Path(out_dir) / ".submitit", options.slurm)
    monitor = GridMonitor(options.progress_every, log)

    def submit_and_wait(run: GridRun) -> dict:
        log(f"[run_grid] start {run.label} ({run.status()}) -> {run.output_dir}")
        monitor.add(run)
        start = time.time()
        try:
            result = executor.submit(train_one, run).result()
        except Exception as exc:  # the job itself died (killed, time limit, node failure): report, go on
            last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            result = {"run": run.label, "returncode": -1, "seconds": round(time.time() - start, 1),
                      "last_line": f"job failed: {last}"[:300]}
        monitor.remove(run)
        log(f"[run_grid] {'done' if result['returncode'] == 0 else 'FAILED'} {run.label} in {result['seconds']:.0f} s")
        return result

    with monitor, ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        results += list(pool.map(submit_and_wait, todo))
    return results
