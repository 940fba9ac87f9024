#!/usr/bin/env python
"""Train every model of a grid (the study's 22), skipping finished runs. See --help."""

import sys

from fetalheart.cli.run_grid import main

if __name__ == "__main__":
    sys.exit(main())
