"""Model pieces registered with detectron2 (importing this package registers them)."""

from fetalheart.modeling.square_pad import FetalHeartRCNN

__all__ = ["FetalHeartRCNN"]
