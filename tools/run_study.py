#!/usr/bin/env python
"""The whole study in one command; --demo runs it on phantom videos on a CPU. See --help."""

import sys

from fetalheart.cli.run_study import main

if __name__ == "__main__":
    sys.exit(main())
