#!/usr/bin/env python3
"""The whole study in one command; --demo runs it on phantom videos on a CPU. See --help."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's fetalheart
from fetalheart._startup import use_checkout_venv  # noqa: E402

use_checkout_venv(__file__)  # outside .venv: run again with .venv/bin/python
from fetalheart.cli.run_study import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
