"""docs/matterport_differences.md and the study-faithful configs cannot drift apart.

Every fetalheart cell of the table is a line of ``train_net.py --print-config`` for model 14; every key
of ``config.MATTERPORT_KEYS`` has a row; every row has a status; every table key the base YAML sets
carries a comment there (its source).
"""

import re
from pathlib import Path

from fetalheart.config import CONFIGS_DIR, MATTERPORT_KEYS, format_config, load_cfg

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "matterport_differences.md"
BASE_YAML = CONFIGS_DIR / "Base-FetalHeart-MaskRCNN-R50-FPN.yaml"


def _rows() -> list[list[str]]:
    """The rows of the section "## The table" (other tables of the page are not differences)."""
    rows = []
    text = PAGE.read_text(encoding="utf-8")
    section = text.split("## The table", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        if re.match(r"^\| \d+ \|", line):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            assert len(cells) == 6, line
            rows.append(cells)
    return rows


ROWS = _rows()


def _cells() -> list[str]:
    return [tok for row in ROWS for tok in re.findall(r"`([^`]+)`", row[3])]


@pytest.fixture(scope="module")
def model14():
    return load_cfg(CONFIGS_DIR / "study" / "model14.yaml")


def test_the_table_has_every_row_numbered_and_a_status():
    assert [int(r[0]) for r in ROWS] == list(range(1, len(ROWS) + 1)) and len(ROWS) >= 40
    for r in ROWS:
        assert re.match(r"^(matched|approximated|differs)\b", r[4]), r


def test_every_cell_is_what_the_config_resolves_to(model14):
    for token in _cells():
        key = token.split(" ", 1)[0]
        assert format_config(model14, key) == token, f"table says {token!r}"


def test_the_table_and_the_print_config_selection_cover_the_same_keys():
    keys = [t.split(" ", 1)[0] for t in _cells()]
    assert sorted(set(keys)) == sorted(MATTERPORT_KEYS)
    assert len(keys) == len(set(keys))  # one row per key


def _yaml_keys_with_comments() -> dict[str, bool]:
    """Dotted key -> whether its line (or the comment line just above it) has a comment, from indentation."""
    out, stack, last_comment = {}, [], False
    for raw in BASE_YAML.read_text(encoding="utf-8").splitlines():
        if not raw.strip():
            continue
        if raw.strip().startswith("#"):
            last_comment = True
            continue
        indent = len(raw) - len(raw.lstrip())
        key = raw.strip().split(":", 1)[0]
        stack = [(i, k) for i, k in stack if i < indent] + [(indent, key)]
        dotted = ".".join(k for _, k in stack)
        value = raw.split(":", 1)[1].split("#", 1)[0].strip()
        if value:
            out[dotted] = "#" in raw or last_comment
        last_comment = False
    return out


def test_every_table_key_the_base_sets_says_its_source_there():
    commented = _yaml_keys_with_comments()
    missing = [k for k in MATTERPORT_KEYS if k in commented and not commented[k]]
    assert not missing, f"no source comment in {BASE_YAML.name} for {missing}"
    assert {"SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "SOLVER.WEIGHT_DECAY_MODE", "MODEL.RPN.BBOX_REG_WEIGHTS",
            "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT", "MODEL.INIT"} <= set(commented)
