"""The 10 fetal-heart structures: one source of truth for names, order, ids, aliases, colours.

COCO category ids are 1..10 in this order; detectron2's contiguous ids are 0..9 in the same
order. Changing the order invalidates every trained model, so it is fixed here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Structure:
    """One annotated structure."""

    name: str  # canonical label written to COCO and reports
    full_name: str
    color: tuple[int, int, int]  # RGB, for overlays and plots
    aliases: tuple[str, ...] = ()


STRUCTURES: tuple[Structure, ...] = (
    Structure("LA", "left atrium", (230, 25, 75), ("left atrium", "l atrium", "latrium")),
    Structure("RA", "right atrium", (60, 180, 75), ("right atrium", "r atrium", "ratrium")),
    Structure("LV", "left ventricle", (0, 130, 200), ("left ventricle", "l ventricle", "lventricle")),
    Structure("RV", "right ventricle", (245, 130, 48), ("right ventricle", "r ventricle", "rventricle")),
    Structure("TV", "tricuspid valve", (145, 30, 180), ("tricuspid valve", "tricuspid")),
    Structure("PV", "pulmonary valve", (70, 240, 240), ("pulmonary valve", "pulmonic valve", "pulmonary")),
    Structure("MV", "mitral valve", (240, 50, 230), ("mitral valve", "mitral")),
    Structure("AV", "aortic valve", (210, 245, 60), ("aortic valve",)),
    Structure("Ao", "aorta", (250, 190, 212), ("aorta", "descending aorta", "dao", "desc aorta")),
    Structure("Spine", "spine", (255, 225, 25), ("vertebra", "vertebrae", "spinal column", "sp")),
)

CLASS_NAMES: tuple[str, ...] = tuple(s.name for s in STRUCTURES)
NUM_CLASSES: int = len(STRUCTURES)
COLORS: tuple[tuple[int, int, int], ...] = tuple(s.color for s in STRUCTURES)
#: COCO category id (1-based) of each canonical name.
CATEGORY_IDS: dict[str, int] = {s.name: i + 1 for i, s in enumerate(STRUCTURES)}


def _key(label: str) -> str:
    # Case, surrounding space, and separators ("_", "-", ".", repeated spaces) do not matter.
    return re.sub(r"[\s_\-.]+", " ", label.strip().lower()).strip()


_ALIASES: dict[str, str] = {}
for _s in STRUCTURES:
    for _a in (_s.name, _s.full_name, *_s.aliases):
        _ALIASES[_key(_a)] = _s.name


def normalize_label(label: str) -> str | None:
    """Canonical name for a user's label ("ao", "Aorta", "left_atrium" -> "Ao", "LA"), or None."""
    return _ALIASES.get(_key(label))


def coco_categories(names: Sequence[str] = CLASS_NAMES) -> list[dict]:
    """COCO ``categories`` with ids 1..N in the given order (default: the 10 structures).

    Category id = contiguous class id + 1 for every label set, so a model's output maps to its
    dataset's categories without a lookup table.
    """
    return [{"id": i + 1, "name": n, "supercategory": "other" if n == "Spine" else "heart"}
            for i, n in enumerate(names)]
