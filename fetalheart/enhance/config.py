"""Config plumbing: the INPUT.ENHANCE* keys and reading them back into Enhancer arguments.

The spec and its parameters live in the model's config, so the config.yaml saved with a
trained model carries its preprocessing and evaluation/prediction apply it without being told.
"""

from __future__ import annotations

from typing import Any

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.enhance.spec import DEFAULT_PARAMS


def add_enhance_config(cfg: Any) -> None:
    """Add INPUT.ENHANCE, ENHANCE_MASK, ENHANCE_CACHE_DIR and ENHANCE_PARAMS.* (defaults) if absent."""
    from detectron2.config import CfgNode as CN

    inp = cfg.INPUT
    if "ENHANCE" not in inp:
        inp.ENHANCE = "original"  # spec, e.g. "ahe+clahe"; see fetalheart.enhance.SPECS_OF_STUDY
    if "ENHANCE_MASK" not in inp:
        inp.ENHANCE_MASK = "none"  # "none" (whole frame) or "auto" (equalise inside the fan only)
    if "ENHANCE_CACHE_DIR" not in inp:
        # bd cache folder (kernels + finished images), shareable by a grid's runs and workers;
        # "" = the default the caller passes (the mappers: OUTPUT_DIR/enhance_cache), else memory only
        inp.ENHANCE_CACHE_DIR = ""
    if "ENHANCE_PARAMS" not in inp:
        inp.ENHANCE_PARAMS = CN()
    for key, default in DEFAULT_PARAMS.items():
        if key.upper() not in inp.ENHANCE_PARAMS:
            inp.ENHANCE_PARAMS[key.upper()] = default


def params_from_cfg(cfg: Any) -> dict[str, Any]:
    """The enhancement parameters in ``cfg.INPUT.ENHANCE_PARAMS``; absent keys take the defaults."""
    section = getattr(getattr(cfg, "INPUT", None), "ENHANCE_PARAMS", None) or {}
    out = dict(DEFAULT_PARAMS)
    for key in DEFAULT_PARAMS:
        if key.upper() in section:
            out[key] = section[key.upper()]
    return out


def enhancer_from_cfg(cfg: Any, default_cache_dir: str | None = None):
    """The Enhancer a config asks for (INPUT.ENHANCE, ENHANCE_MASK, ENHANCE_CACHE_DIR, ENHANCE_PARAMS).

    ``default_cache_dir`` is used when ENHANCE_CACHE_DIR is empty (the mappers pass OUTPUT_DIR's).
    """
    from fetalheart.enhance.enhancer import Enhancer

    inp = cfg.INPUT
    return Enhancer(
        str(inp.get("ENHANCE", "original")),
        params=params_from_cfg(cfg),
        mask=str(inp.get("ENHANCE_MASK", "none")),
        cache_dir=str(inp.get("ENHANCE_CACHE_DIR", "")) or default_cache_dir or None,
    )
