"""fetalheart: instance segmentation of fetal-heart ultrasound with Mask R-CNN on Detectron2."""

from fetalheart import _compat

__version__ = "0.1.0"

_compat.apply()
