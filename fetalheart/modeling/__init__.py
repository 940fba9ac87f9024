"""Model pieces registered with detectron2 (importing this package registers them)."""

from fetalheart.modeling.roi_heads import FetalHeartROIHeads
from fetalheart.modeling.rpn import FetalHeartRPN
from fetalheart.modeling.square_pad import FetalHeartRCNN

__all__ = ["FetalHeartRCNN", "FetalHeartROIHeads", "FetalHeartRPN"]
