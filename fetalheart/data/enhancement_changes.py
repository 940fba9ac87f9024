"""How much the model's own enhancement changes the frames it trains and is evaluated on.

A spec whose step leaves the pixels alone trains the same model as its twin without that step
(bd used to be the identity on every in-focus frame, and nothing said so). Every training run
writes these counts into env.json and every evaluation into its report, and a step that changes
fewer than 95% of the frames is logged as a warning.
"""

from __future__ import annotations

import logging
import os
import sys

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)

logger = logging.getLogger(__name__)


def dataset_image_paths(dataset_names) -> list[str]:
    """Unique image files of registered datasets, in order."""
    from detectron2.data import DatasetCatalog

    return list(dict.fromkeys(d["file_name"] for name in dataset_names for d in DatasetCatalog.get(name)))


def enhancement_changes(cfg, dataset_names, quiet: bool = True) -> dict:
    """``fetalheart.enhance.measure_changes`` of ``cfg.INPUT.ENHANCE`` over the datasets' frames."""
    from fetalheart.enhance import format_changes, measure_changes, params_from_cfg

    cache = cfg.INPUT.ENHANCE_CACHE_DIR or (os.path.join(cfg.OUTPUT_DIR, "enhance_cache") if cfg.OUTPUT_DIR else None)
    stats = measure_changes(dataset_image_paths(dataset_names), cfg.INPUT.ENHANCE, params_from_cfg(cfg),
                            cfg.INPUT.ENHANCE_MASK, cache, quiet, image_format=cfg.INPUT.FORMAT)
    logger.info("enhancement on %s: %s", ", ".join(dataset_names), format_changes(stats))
    if stats.get("warning"):
        logger.warning("ENHANCEMENT WARNING: %s", stats["warning"])
        print(f"WARNING: {stats['warning']}", file=sys.stderr)
    return stats
