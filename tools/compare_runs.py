#!/usr/bin/env python3
"""Compare evaluated runs: table, ranks, Wilcoxon + Holm against a baseline, figure. See --help."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's fetalheart
from fetalheart._startup import use_checkout_venv  # noqa: E402

use_checkout_venv(__file__)  # outside .venv: run again with .venv/bin/python
from fetalheart.cli.compare_runs import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
