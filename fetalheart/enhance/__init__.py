"""Image enhancement for the study: HE, AHE, CLAHE, blind deblurring (bd), composed by spec strings.

    from fetalheart.enhance import enhance, Enhancer, SPECS_OF_STUDY
    out = enhance(bgr_uint8, "ahe+clahe", mask="auto")

bd's kernel is estimated once per original image and shared by every bd spec:
``warm_bd_cache(paths, params, cache_dir, jobs)`` fills that cache before a grid starts, and
``measure_changes(paths, spec, ...)`` says how many frames each step changed and by how much.
``fetalheart.enhance.augmentation`` (imports detectron2) holds the online training step.
"""

from fetalheart.enhance.config import add_enhance_config, enhancer_from_cfg, params_from_cfg
from fetalheart.enhance.deblur import (
    blind_deblur,
    deblur_with_kernel,
    estimate_kernel,
    kernel_sigma,
    widen_kernel,
)
from fetalheart.enhance.enhancer import Enhancer
from fetalheart.enhance.kernels import KernelCache, read_image, warm_bd_cache
from fetalheart.enhance.spec import (
    DEFAULT_PARAMS,
    OPERATIONS,
    SPECS_OF_STUDY,
    enhance,
    parse_spec,
    resolve_params,
    spec_name,
)
from fetalheart.enhance.stats import (
    CHANGE_THRESHOLD,
    bd_sentence,
    changes_table,
    format_changes,
    measure_changes,
)

__all__ = [
    "CHANGE_THRESHOLD",
    "DEFAULT_PARAMS",
    "OPERATIONS",
    "SPECS_OF_STUDY",
    "Enhancer",
    "KernelCache",
    "add_enhance_config",
    "blind_deblur",
    "bd_sentence",
    "changes_table",
    "deblur_with_kernel",
    "enhance",
    "enhancer_from_cfg",
    "estimate_kernel",
    "format_changes",
    "kernel_sigma",
    "measure_changes",
    "params_from_cfg",
    "parse_spec",
    "read_image",
    "resolve_params",
    "spec_name",
    "warm_bd_cache",
    "widen_kernel",
]
