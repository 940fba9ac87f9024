"""Training engine: the Trainer, its hooks, and run metadata."""

from fetalheart.engine.trainer import Trainer, load_model_for_inference

__all__ = ["Trainer", "load_model_for_inference"]
