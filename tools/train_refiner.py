#!/usr/bin/env python3
"""Train step 2 of the two-step refinement and fit the Gaussian mask paste. See --help."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's fetalheart
from fetalheart._startup import use_checkout_venv  # noqa: E402

use_checkout_venv(__file__)  # outside .venv: run again with .venv/bin/python
from fetalheart.cli.train_refiner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
