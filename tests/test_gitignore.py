"""Patient data stays out of git: datasets/ (but its README), data/ and outputs/ are ignored (issue 19 item 5)."""

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _ignored(paths: list[str]) -> set[str]:
    # --no-index: judge the patterns alone, also for paths git already tracks (fetalheart/data/...).
    proc = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=REPO, input="\n".join(paths),
                          capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stderr
    return set(proc.stdout.split())


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_data_folders_are_ignored_but_not_the_package_or_test_data():
    data = ["datasets/fetal4ch/images/a.png", "datasets/fetal4ch/annotations/train.json", "data/labelme/x.json",
            "data/videos/v.mp4", "outputs/demo/report.md"]
    code = ["datasets/README.md", "fetalheart/data/mapper.py", "tests/data/matterport_ap_cases.json",
            "fetalheart/annotations/split.py"]
    assert _ignored(data + code) == set(data)
