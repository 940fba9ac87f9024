"""Frame file names: ``<video stem>_<frame index:06d>``, written and read in one place.

The index is the frame's position in the source video (not in the extracted set), so a frame maps
back to its time, and LabelMe files, COCO images and predictions of one frame share one stem.
``frame_stem_and_index`` also reads names written by other tools (``clip-12.png``, ``a.b.7.png``).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

#: A frame index is the digits at the end of the name after a separator (``_``, ``-`` or ``.``):
#: ``phantom_s3_000045`` -> 45, but ``case001`` has none (its digits are part of an id, not a frame number).
_FRAME_RE = re.compile(r"^(?P<stem>.*?)[_\-.](?P<index>\d+)$")


def frame_stem(video_stem: str, index: int) -> str:
    """``frame_stem("clip", 45)`` -> ``"clip_000045"``."""
    return f"{video_stem}_{int(index):06d}"


def frame_name(video_stem: str, index: int, suffix: str) -> str:
    """``frame_name("clip", 45, "png")`` -> ``"clip_000045.png"`` (``suffix`` with or without its dot)."""
    return f"{frame_stem(video_stem, index)}.{suffix.lstrip('.')}"


def frame_name_pattern(video_stem: str, suffix: str) -> re.Pattern:
    """What ``frame_name(video_stem, <any index>, suffix)`` matches (to find earlier outputs)."""
    return re.compile(re.escape(video_stem) + r"_\d{6}\." + re.escape(suffix.lstrip(".")) + r"$")


def frame_stem_and_index(name: str) -> tuple[str, int | None]:
    """``phantom_s3_000045.png`` -> (``phantom_s3``, 45); no index after a ``_``/``-``/``.`` -> (stem, None)."""
    stem = PurePosixPath(name).with_suffix("").as_posix()
    m = _FRAME_RE.match(stem)
    if not m or not m.group("stem"):
        return stem, None
    return m.group("stem"), int(m.group("index"))
