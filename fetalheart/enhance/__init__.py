"""Image enhancement for the study: HE, AHE, CLAHE, blind deblurring (bd), composed by spec strings.

    from fetalheart.enhance import enhance, Enhancer, SPECS_OF_STUDY
    out = enhance(bgr_uint8, "ahe+clahe", mask="auto")

``fetalheart.enhance.augmentation`` (imports detectron2) holds the online training step.
"""

from fetalheart.enhance.config import add_enhance_config, enhancer_from_cfg, params_from_cfg
from fetalheart.enhance.deblur import blind_deblur, estimate_kernel, kernel_sigma
from fetalheart.enhance.enhancer import Enhancer
from fetalheart.enhance.sector import auto_sector_mask
from fetalheart.enhance.spec import (
    DEFAULT_PARAMS,
    OPERATIONS,
    SPECS_OF_STUDY,
    enhance,
    parse_spec,
    resolve_params,
    spec_name,
)

__all__ = [
    "DEFAULT_PARAMS",
    "OPERATIONS",
    "SPECS_OF_STUDY",
    "Enhancer",
    "add_enhance_config",
    "auto_sector_mask",
    "blind_deblur",
    "enhance",
    "enhancer_from_cfg",
    "estimate_kernel",
    "kernel_sigma",
    "params_from_cfg",
    "parse_spec",
    "resolve_params",
    "spec_name",
]
