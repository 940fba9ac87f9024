"""``EvalSettings``: how predictions are scored (the ``EVAL.*`` config keys), shared by every evaluation step."""

from __future__ import annotations

from dataclasses import dataclass

from fetalheart.evaluation.study_map import MATTERPORT_MIN_SCORE, STUDY_MAP_MODES
from fetalheart.utils.errors import FetalHeartError


@dataclass
class EvalSettings:
    """How predictions are scored; the ``EVAL.*`` config keys of the same (upper-case) names."""

    score_thresh: float = 0.5
    study_map_mode: str = "matterport"
    study_map_min_score: float = MATTERPORT_MIN_SCORE
    bootstrap_samples: int = 1000
    seed: int = 0
    boundary_metrics: bool = False

    def __post_init__(self):
        if self.study_map_mode not in STUDY_MAP_MODES:
            raise FetalHeartError(f"EVAL.STUDY_MAP_MODE must be one of {', '.join(STUDY_MAP_MODES)}, "
                                  f"got {self.study_map_mode!r}")
        for name in ("score_thresh", "study_map_min_score"):
            if not 0 <= float(getattr(self, name)) <= 1:
                raise FetalHeartError(f"EVAL.{name.upper()} must be in [0, 1], got {getattr(self, name)}")

    @classmethod
    def from_cfg(cls, cfg) -> EvalSettings:
        """From ``cfg.EVAL`` (keys read with defaults, so older configs without them still work)."""
        ev = cfg.get("EVAL", None) or {}
        return cls(score_thresh=float(ev.get("SCORE_THRESH", 0.5)),
                   study_map_mode=str(ev.get("STUDY_MAP_MODE", "matterport")),
                   study_map_min_score=float(ev.get("STUDY_MAP_MIN_SCORE", MATTERPORT_MIN_SCORE)),
                   bootstrap_samples=int(ev.get("BOOTSTRAP_SAMPLES", 1000)), seed=int(ev.get("SEED", 0)),
                   boundary_metrics=bool(ev.get("BOUNDARY_METRICS", False)))

