"""Training engine: the Trainer and its hooks."""

from fetalheart.engine.trainer import Trainer

__all__ = ["Trainer"]
