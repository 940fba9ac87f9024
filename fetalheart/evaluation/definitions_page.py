"""docs/metrics.md's definitions, rendered from the texts every report writes (one source).

``metrics.DEFINITIONS`` heads every evaluation report and ``compare.COMPARE_DEFINITIONS`` every
comparison, with the run's own settings filled in; here the settings are named by their config key
and their default under each protocol (read from the configs). The page's generated part sits
between two markers; ``tests/test_docs_commands.py`` fails when it no longer matches the code::

    .venv/bin/python -m fetalheart.evaluation.definitions_page   # rewrite docs/metrics.md's generated part
"""

from __future__ import annotations

import sys
from pathlib import Path

from fetalheart.config import protocol_default
from fetalheart.evaluation.compare import COMPARE_DEFINITIONS
from fetalheart.evaluation.metrics import DEFINITIONS, MIN_GROUPS_FOR_BOOTSTRAP

PAGE = Path(__file__).resolve().parent.parent.parent / "docs" / "metrics.md"
BEGIN = ("<!-- generated from fetalheart/evaluation/metrics.py and compare.py by "
         "`.venv/bin/python -m fetalheart.evaluation.definitions_page`: edit those, not this -->")
END = "<!-- end of the generated definitions -->"


def _setting(key: str) -> str:
    return f"`{key}` ({protocol_default(key)})"


def render() -> str:
    """The generated part of docs/metrics.md, markers included."""
    evaluation = DEFINITIONS.format(
        score_thresh=_setting("EVAL.SCORE_THRESH"), n_boot=_setting("EVAL.BOOTSTRAP_SAMPLES"),
        study_min_score=_setting("EVAL.STUDY_MAP_MIN_SCORE"), study_mode=protocol_default("EVAL.STUDY_MAP_MODE"),
        group_source="the COCO image's `group` key written by labelme2coco, else the file name without its "
                     "trailing `_<frame index>`", min_boot=MIN_GROUPS_FOR_BOOTSTRAP)
    comparison = COMPARE_DEFINITIONS.format(n_boot="`--bootstrap` (1000)", min_boot=MIN_GROUPS_FOR_BOOTSTRAP)
    return "\n".join([BEGIN, "", "## In every evaluation report", "", evaluation.strip(), "",
                      "## In every comparison (`compare_runs`)", "", comparison.strip(), "", END])


def current(page: Path = PAGE) -> str:
    """The generated part as the page has it now ('' when the markers are missing)."""
    text = page.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        return ""
    return text[text.index(BEGIN):text.index(END) + len(END)]


def write(page: Path = PAGE) -> None:
    text = page.read_text(encoding="utf-8")
    old = current(page)
    if not old:
        raise SystemExit(f"{page}: the markers of the generated part are missing ({BEGIN[:40]}...)")
    page.write_text(text.replace(old, render()), encoding="utf-8")


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else PAGE)
    print(f"rewrote the definitions in {sys.argv[1] if len(sys.argv) > 1 else PAGE}")
