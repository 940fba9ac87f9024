"""Defaults are stated once, in the configs: help texts read them from there, and the grid takes
--config-file like every other tool (issue 25 item 3)."""

from __future__ import annotations

from fetalheart.cli import evaluate as evaluate_cli
from fetalheart.cli import predict as predict_cli
from fetalheart.cli.run_grid import _parse
from fetalheart.config import CONFIGS_DIR, STUDY_FAITHFUL_BASE, protocol_default
from fetalheart.utils.errors import FetalHeartError

import pytest
import yaml


def _yaml_eval(name: str) -> dict:
    return yaml.safe_load((CONFIGS_DIR / name).read_text())["EVAL"]


def test_protocol_default_reads_each_protocol_from_its_configs():
    faithful = _yaml_eval(STUDY_FAITHFUL_BASE)["SCORE_THRESH"]
    recommended = _yaml_eval("overlays/recommended.yaml")["SCORE_THRESH"]
    assert faithful != recommended  # the contradiction issue 25 found: 0.7 in the config, "0.5" in help texts
    assert protocol_default("EVAL.SCORE_THRESH") == f"{faithful} study-faithful, {recommended} recommended"
    # a key both protocols share is one value
    assert protocol_default("EVAL.STUDY_MAP_MIN_SCORE") == str(_yaml_eval(STUDY_FAITHFUL_BASE)["STUDY_MAP_MIN_SCORE"])


@pytest.mark.parametrize("module", [evaluate_cli, predict_cli])
def test_help_texts_state_the_configs_threshold(module):
    text = " ".join(module.build_parser().format_help().split())
    assert f"EVAL.SCORE_THRESH: {protocol_default('EVAL.SCORE_THRESH')}" in text
    assert "default: EVAL.SCORE_THRESH, 0.5" not in text


def test_run_grid_takes_config_file_and_still_the_old_positional_grid():
    new = _parse(["--config-file", "configs/demo_grid.yaml", "-o", "out", "--dry-run", "DATASETS.ROOT", "d"])
    old = _parse(["configs/demo_grid.yaml", "-o", "out", "--dry-run", "DATASETS.ROOT", "d"])
    assert new.grid == old.grid == "configs/demo_grid.yaml" and new.opts == old.opts == ["DATASETS.ROOT", "d"]
    with pytest.raises(FetalHeartError, match="--config-file GRID.yaml is required"):
        _parse(["-o", "out"])
    with pytest.raises(FetalHeartError, match="two grids"):
        _parse(["configs/study_grid.yaml", "--config-file", "configs/demo_grid.yaml", "-o", "out"])
