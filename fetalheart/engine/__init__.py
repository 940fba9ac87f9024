"""Training engine: the Trainer and its hooks."""

from fetalheart.engine.trainer import Trainer, load_model_for_inference

__all__ = ["Trainer", "load_model_for_inference"]
