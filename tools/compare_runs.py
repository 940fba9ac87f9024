#!/usr/bin/env python
"""Compare evaluated runs: table, ranks, Wilcoxon + Holm against a baseline, figure. See --help."""

import sys

from fetalheart.cli.compare_runs import main

if __name__ == "__main__":
    sys.exit(main())
