"""What a trained model and an evaluation depend on: their content keys (``fetalheart.utils.keys``).

A run's **training key** is its *resolved* config (every key of every file of the chain: the model
YAML, each ``_BASE_``, the grid's base, its overlays, the protocol overlay, the overrides; a key
added to ``fetalheart.config`` later is included automatically) with the few keys that only decide
how, where or how fast the work runs or how it is evaluated left out (``RUN_ONLY_KEYS``), paths
replaced by the content they name (the dataset folder, a local weights file), plus the code
versions. Moving the output folder, changing ``EVAL.*``, workers or threads retrains nothing; an
edited momentum in one model file retrains that model alone.

An **evaluation key** is the run's training key, the content of the model it evaluates and the
evaluation settings (``EVALUATION_KEYS``) the plan asks for now.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fetalheart
from fetalheart.enhance.cache import CACHE_VERSION
from fetalheart.evaluation.aggregate import REPORT_VERSION
from fetalheart.utils.io import file_sha256
from fetalheart.utils.keys import content_key, files_digest, folder_files

#: Bump when a change to the training code (engine/, modeling/, data/ mappers and augmentations,
#: schedule derivation in config.py) changes what a model trained from the same config and data is,
#: and ``fetalheart.__version__`` did not change with it: every run trained before is trained again.
#: Changes to enhancement output bump ``fetalheart.enhance.cache.CACHE_VERSION`` instead (also keyed).
TRAINING_CODE_VERSION = 2  # 2: Matterport target assignment, optimizer modes (issue 21)

#: Config keys (a name ending in a node, like ``EVAL``, covers every key below it) that only decide
#: how, where or how fast a run trains, or how it is evaluated: left out of the training key, and
#: taken from the current plan, not the run's config.yaml, when the run is evaluated. Every other key,
#: including keys added later, decides the model. Add a key here only if changing it cannot change
#: model_final.pth (apart from run-to-run noise).
RUN_ONLY_KEYS = (
    "OUTPUT_DIR",  # where the run is written
    "MODEL.DEVICE",  # the same run on a GPU box or a laptop
    "DATALOADER.NUM_WORKERS",  # workers
    "INPUT.ENHANCE_CACHE_DIR",  # where the (content-keyed) enhancement cache lives
    "STUDY.CONFIG_FILES",  # the paths of the config chain: their content is in the resolved values
    "EVAL",  # how predictions are scored: keys the evaluation (EVALUATION_KEYS)
)
#: The run-only keys that change an evaluation's numbers: they key the evaluation.
EVALUATION_KEYS = ("EVAL",)
#: Keys naming a folder or file whose content decides the model: keyed by that content, not the path.
DATASET_KEY, WEIGHTS_KEY = "DATASETS.ROOT", "MODEL.WEIGHTS"


def flatten(node: Mapping, prefix: str = "") -> dict[str, Any]:
    """``{"SOLVER": {"MOMENTUM": 0.9}}`` -> ``{"SOLVER.MOMENTUM": 0.9}`` (tuples as lists, JSON-like)."""
    out: dict[str, Any] = {}
    for k, v in node.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, name + "."))
        else:
            out[name] = json.loads(json.dumps(v, default=str))
    return out


def covered(name: str, keys: tuple[str, ...]) -> bool:
    """Whether config key ``name`` is one of ``keys`` or lies below one of them."""
    return any(name == k or name.startswith(k + ".") for k in keys)


def _path_content(value: Any, cache: dict) -> Any:
    """A string naming an existing file (absolute, or relative with a folder) -> that file's content key;
    an absolute folder -> its files' content key; anything else as it is (e.g. ``detectron2://`` URLs).
    ``cache`` holds the digests already taken (one weights file shared by 22 runs is read once)."""
    if isinstance(value, list):
        return [_path_content(v, cache) for v in value]
    if not isinstance(value, str) or not value or "://" in value:
        return value
    if value not in cache:
        p = Path(value)
        if (p.is_absolute() or "/" in value or os.sep in value) and p.is_file():
            cache[value] = {"file_sha256": file_sha256(p)}
        elif p.is_absolute() and p.is_dir():
            cache[value] = {"folder": files_digest(folder_files(p), p)}
        else:
            cache[value] = value
    return cache[value]


def dataset_fingerprint(root: str | os.PathLike) -> str:
    """Content key of a labelme2coco output folder: its annotation files and every image's bytes.

    Content, not modification times or paths: a conversion rerun that writes the same files again,
    or the folder moved or copied, leaves every trained model valid (hashing is seconds for
    thousands of frames, training is hours).
    """
    from fetalheart.data.datasets import resolve_dataset_dir

    d = resolve_dataset_dir(root)
    files = sorted((d / "annotations").glob("*.json"))
    if (d / "images").is_dir():
        files += folder_files(d / "images")
    return files_digest(files, d)


def training_parts(cfg: Mapping, cache: dict | None = None) -> dict:
    """What a run trained from ``cfg`` depends on, as a JSON document (recorded in run_key.json, so
    the log can say which key changed). ``cache`` keeps the content digests taken, across runs."""
    cache = {} if cache is None else cache
    config = {}
    for name, value in flatten(cfg).items():
        if covered(name, RUN_ONLY_KEYS):
            continue
        if name == DATASET_KEY and value:
            if ("dataset", value) not in cache:
                cache[("dataset", value)] = {"dataset": dataset_fingerprint(value)}
            config[name] = cache[("dataset", value)]
            continue
        config[name] = _path_content(value, cache)
    code = {"fetalheart": fetalheart.__version__, "training": TRAINING_CODE_VERSION, "enhance_cache": CACHE_VERSION}
    return {"config": config, "code": code}


def training_key(parts: dict) -> str:
    """The 16-hex-digit key of :func:`training_parts`."""
    return content_key(parts)[:16]


def evaluation_settings(cfg: Mapping) -> dict[str, Any]:
    """The ``EVALUATION_KEYS`` of a (current) config, flattened."""
    return {k: v for k, v in flatten(cfg).items() if covered(k, EVALUATION_KEYS)}


def run_only_opts(cfg: Mapping) -> list[str]:
    """``KEY VALUE`` overrides carrying the current plan's run-only keys onto a run's saved config.yaml
    (its evaluation then uses today's EVAL settings, workers and cache folder, not those it was trained
    with). Paths of the config chain stay as they are (``STUDY.CONFIG_FILES`` is provenance)."""
    opts: list[str] = []
    for k, v in flatten(cfg).items():
        if covered(k, RUN_ONLY_KEYS) and k != "STUDY.CONFIG_FILES":
            opts += [k, v if isinstance(v, str) else repr(tuple(v) if isinstance(v, list) else v)]
    return opts


def evaluation_key(run_key: str, model: Path, cfg: Mapping) -> str:
    """Key of one evaluation: the run's training key, the model file's content, the evaluation settings and
    the version of what a report holds (a report from older code lacks what compare_runs checks)."""
    return content_key({"run": run_key, "model": file_sha256(model), "eval": evaluation_settings(cfg),
                        "code": fetalheart.__version__, "report": REPORT_VERSION})[:16]


def why_changed(old: dict | None, new: dict, limit: int = 4) -> str:
    """What differs between two :func:`training_parts` documents, in words (``SOLVER.MOMENTUM 0.9 -> 0.7``)."""
    if not old or "config" not in old:
        return "its key was recorded by an earlier fetalheart, which did not record what it was made of"
    diffs = []
    for section in ("code", "config"):
        a, b = old.get(section, {}), new.get(section, {})
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                diffs.append(_change(f"{'code version ' if section == 'code' else ''}{k}", a.get(k), b.get(k)))
    if not diffs:
        return "its key changed"
    more = f" and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return "; ".join(diffs[:limit]) + more


def _change(name: str, old: Any, new: Any) -> str:
    if isinstance(old, dict) or isinstance(new, dict):  # content keys: the digests say nothing to a reader
        what = "dataset" if name == DATASET_KEY else name
        return f"{what} content changed"
    return f"{name} {json.dumps(old)} -> {json.dumps(new)}"


def labelme_key(folder: str | os.PathLike) -> str:
    """Content key of a LabelMe folder: every JSON's bytes and the bytes of the image each one names
    (also when it lies outside the folder, e.g. ``../frames/x.png``), by path relative to ``folder``."""
    folder = Path(folder)
    entries: dict[str, Any] = {}
    for p in folder_files(folder):
        if p.suffix.lower() != ".json":
            continue
        entry: dict[str, Any] = {"json": file_sha256(p)}
        try:
            image_path = json.loads(p.read_text(encoding="utf-8-sig")).get("imagePath")
        except (OSError, ValueError, AttributeError):
            image_path = None
        if isinstance(image_path, str) and image_path:
            image = p.parent / image_path.replace("\\", "/")
            entry["image"] = file_sha256(image) if image.is_file() else None
        entries[p.relative_to(folder).as_posix()] = entry
    return content_key(entries)[:16]
