"""Shared test setup: import fetalheart first so the detectron2 shims are in place."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import fetalheart  # noqa: E402,F401
