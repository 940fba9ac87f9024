#!/usr/bin/env python
"""Train step 2 of the two-step refinement and fit the Gaussian mask paste. See --help."""

import sys

from fetalheart.cli.train_refiner import main

if __name__ == "__main__":
    sys.exit(main())
