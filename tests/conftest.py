"""Shared test setup: some tests import detectron2 directly, so the detectron2 shims go first."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import fetalheart._compat  # noqa: E402,F401
