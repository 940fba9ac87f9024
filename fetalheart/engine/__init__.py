"""Training engine: the Trainer and its hooks; ``trainer_class(cfg)`` picks the model family's trainer."""

from fetalheart.engine.trainer import Trainer

__all__ = ["Trainer", "trainer_class"]


def trainer_class(cfg) -> type[Trainer]:
    """``SMPTrainer`` for the U-Net family (loads segmentation_models_pytorch only then), else ``Trainer``."""
    from fetalheart.config import is_smp

    if is_smp(cfg):
        from fetalheart.engine.smp_trainer import SMPTrainer

        return SMPTrainer
    return Trainer
