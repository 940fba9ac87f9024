"""Offline enhancement of a COCO dataset: enhanced image copies + a COCO JSON pointing at them.

Layout follows ``labelme2coco``: ``OUT/images/<file_name>`` and ``OUT/annotations/<name>.json``
(register with image_root ``OUT/images``). Annotations are copied unchanged. Images are written
as lossless PNG (a JPEG source gets ``.png`` in its file_name: re-encoding enhanced pixels as
JPEG would add the very artefacts HE amplifies).

Caching: ``OUT/images/.enhance_manifest.json`` records, per output image, a key made of the
SHA-256 of the source file's bytes + spec + the parameters it uses + mask mode + ``CACHE_VERSION``
(``fetalheart.utils.keys``: content, never a path), and the image's change record. A rerun (another split, ``--overwrite``, an interrupted run) skips every image
whose key matches and whose output exists, so it costs one hash per image. bd kernels go to
``cache_dir`` (default ``OUT/enhance_cache``): pass one folder to every bd spec so each source
image's kernel is estimated once.

Change statistics (``fetalheart.enhance.stats``): how many frames each step of the spec changed
and by how much, written per split to ``OUT/enhance_report.json``; a step changing fewer than
95% of the frames gives a ``warning``.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fetalheart.enhance.cache import CACHE_VERSION
from fetalheart.enhance.enhancer import Enhancer
from fetalheart.enhance.kernels import process_pool
from fetalheart.enhance.spec import parse_spec, resolve_params, spec_name, used_params
from fetalheart.enhance.stats import image_changes, summarise_changes
from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import atomic_path, ensure_writable_dir, file_sha256, write_json_atomic
from fetalheart.utils.keys import content_key

import cv2
from tqdm import tqdm

MANIFEST_NAME = ".enhance_manifest.json"
REPORT_NAME = "enhance_report.json"

_WORKER_ENHANCER: Enhancer | None = None


def _init_worker(spec: str, params: dict, mask: str, cache_dir: str | None) -> None:
    global _WORKER_ENHANCER
    cv2.setNumThreads(1)  # parallelism is across images
    _WORKER_ENHANCER = Enhancer(spec, params=params, mask=mask, cache_dir=cache_dir, memory_items=0)


def _enhance_one(src: str, dst: str) -> dict[str, Any]:
    """Enhance one file into ``dst``; its change record (see ``stats.image_changes``)."""
    img = cv2.imread(src, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FetalHeartError(f"cannot read image {src}")
    assert _WORKER_ENHANCER is not None
    out, record = image_changes(_WORKER_ENHANCER, img)
    with atomic_path(dst) as tmp:
        if not cv2.imwrite(str(tmp), out):
            raise FetalHeartError(f"cannot write {dst}")
    return record


def _out_name(file_name: str) -> str:
    p = Path(file_name)
    if p.is_absolute():
        p = Path(p.name)
    return str(p.with_suffix(".png")).replace(os.sep, "/")


def _load_coco(coco_json: Path) -> dict:
    try:
        coco = json.loads(coco_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FetalHeartError(f"COCO file not found: {coco_json}") from None
    except json.JSONDecodeError as exc:
        raise FetalHeartError(f"{coco_json} is not valid JSON: {exc}") from None
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise FetalHeartError(f"{coco_json} is not a COCO file (no 'images' list)")
    return coco


def _plan(coco: dict, images_dir: Path) -> list[tuple[Path, str]]:
    """(source path, output file_name) per COCO image, checked before anything is written."""
    jobs: list[tuple[Path, str]] = []
    seen: dict[str, str] = {}
    for im in coco["images"]:
        fn = im.get("file_name")
        if not isinstance(fn, str):
            raise FetalHeartError(f"image id {im.get('id')} has no file_name")
        src = Path(fn) if Path(fn).is_absolute() else images_dir / fn
        if not src.is_file():
            raise FetalHeartError(f"image not found: {src} (file_name {fn!r} under --images {images_dir})")
        out_rel = _out_name(fn)
        if seen.setdefault(out_rel, fn) != fn:
            raise FetalHeartError(f"{fn!r} and {seen[out_rel]!r} would both be written as {out_rel}")
        jobs.append((src, out_rel))
    return jobs


def _run(todo: list, init: tuple, workers: int, manifest: dict, desc: str, quiet: bool) -> None:
    """Enhance the ``todo`` images (serially or in a process pool), recording each in ``manifest``."""
    bar = tqdm(total=len(todo), desc=desc, unit="img", disable=quiet)
    try:
        if workers <= 1 or len(todo) <= 1:
            _init_worker(*init)
            for src, dst, out_rel, key in todo:
                manifest[out_rel] = {"key": key, "changes": _enhance_one(str(src), str(dst))}
                bar.update()
        else:
            with process_pool(workers, _init_worker, init) as pool:
                futures = {pool.submit(_enhance_one, str(s), str(d)): (r, k) for s, d, r, k in todo}
                for fut in as_completed(futures):
                    out_rel, key = futures[fut]
                    manifest[out_rel] = {"key": key, "changes": fut.result()}
                    bar.update()
    finally:
        bar.close()


def _todo(jobs: list[tuple[Path, str]], image_root: Path, meta: dict, manifest: dict, quiet: bool) -> list:
    """The (src, dst, out_rel, key) still to enhance: those whose manifest key or output is missing."""
    todo = []
    for src, out_rel in tqdm(jobs, desc="hashing", unit="img", disable=quiet or len(jobs) < 200):
        key = content_key({"source": file_sha256(src), **meta})
        dst = image_root / out_rel
        entry = manifest.get(out_rel)
        if not (isinstance(entry, dict) and entry.get("key") == key and "changes" in entry and dst.is_file()):
            todo.append((src, dst, out_rel, key))
    return todo


def _write_coco(out_json: Path, coco: dict, file_names: list[str], provenance: dict) -> None:
    """The input COCO with the enhanced file names and ``info.fetalheart_enhance``; annotations as is."""
    new = copy.deepcopy(coco)
    for im, out_rel in zip(new["images"], file_names, strict=True):
        im["file_name"] = out_rel
    info = new.get("info") if isinstance(new.get("info"), dict) else {}
    info["fetalheart_enhance"] = provenance
    new["info"] = info
    write_json_atomic(out_json, new, overwrite=True)


def _write_report(output: Path, coco_json: Path, enhancer: Enhancer, counts: dict, changes: dict) -> Path:
    """Merge this split's entry into ``OUT/enhance_report.json`` (one entry per COCO file name)."""
    path = output / REPORT_NAME
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        report = {}
    if not isinstance(report, dict) or report.get("spec") != enhancer.spec or not isinstance(report.get("splits"), dict):
        report = {"splits": {}}
    report.update(spec=enhancer.spec, mask=changes["mask"], params=changes["params"])
    report["splits"][coco_json.name] = {"source_json": str(coco_json), **counts, "changes": changes}
    return write_json_atomic(path, report)


@dataclass(frozen=True)
class EnhanceOptions:
    """How a dataset is enhanced besides its spec: parameters, mask, bd's kernel cache, worker processes."""

    params: Mapping[str, Any] | None = None  # overrides of DEFAULT_PARAMS
    mask: str = "none"  # "none" | "auto" (inside the detected ultrasound sector)
    cache_dir: str | os.PathLike | None = None  # bd kernel cache (default OUT/enhance_cache); share it between specs
    workers: int = 1


def enhance_coco(coco_json: str | os.PathLike, images_dir: str | os.PathLike, spec: str, output: str | os.PathLike,
                 options: EnhanceOptions | None = None, *, overwrite: bool = False, quiet: bool = False
                 ) -> dict[str, Any]:
    """Enhance every image of ``coco_json`` with ``spec``; a summary (counts, paths, change statistics)."""
    o = options or EnhanceOptions()
    params, mask, workers, cache_dir = o.params, o.mask, o.workers, o.cache_dir
    ops = parse_spec(spec)
    name = spec_name(ops)
    resolved = resolve_params(params)
    if mask not in ("none", "auto"):
        raise FetalHeartError(f"--mask must be 'none' or 'auto', got {mask!r}")
    coco_json, images_dir, output = Path(coco_json), Path(images_dir), Path(output)
    coco = _load_coco(coco_json)
    out_json = output / "annotations" / coco_json.name
    if out_json.exists() and not overwrite:
        raise FetalHeartError(f"{out_json} exists; pass --overwrite to replace it")
    if output.resolve() == images_dir.resolve() or (output / "images").resolve() == images_dir.resolve():
        raise FetalHeartError("output must not be the input image folder (inputs are never modified)")
    jobs = _plan(coco, images_dir)

    image_root = ensure_writable_dir(output / "images")
    manifest_path = image_root / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        manifest = {}
    meta = {"v": CACHE_VERSION, "spec": name, "params": used_params(ops, resolved), "mask": mask}
    todo = _todo(jobs, image_root, meta, manifest, quiet)
    cached = len(jobs) - len(todo)
    kernel_dir = str(cache_dir if cache_dir is not None else output / "enhance_cache") if "bd" in ops else None
    try:
        _run(todo, (name, resolved, mask, kernel_dir), workers, manifest, f"enhance {name}", quiet)
    finally:
        write_json_atomic(manifest_path, manifest)

    enhancer = Enhancer(name, params=resolved, mask=mask)
    changes = summarise_changes(enhancer, [manifest[out_rel]["changes"] for _, out_rel in jobs])
    counts = {"images": len(jobs), "enhanced": len(todo), "cached": cached}
    report = _write_report(output, coco_json, enhancer, counts, changes)
    provenance = {"spec": name, "params": used_params(ops, resolved), "mask": mask,
                  "source_json": str(coco_json), "source_images": str(images_dir)}
    _write_coco(out_json, coco, [out_rel for _, out_rel in jobs], provenance)
    return {**counts, "json": str(out_json), "image_root": str(image_root), "spec": name,
            "report": str(report), "changes": changes, "warning": changes["warning"], "cache_dir": kernel_dir}
