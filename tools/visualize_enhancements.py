#!/usr/bin/env python
"""Grid of an image's enhancement variants (the study's Figure 2) with histograms; see --help."""

import sys

from fetalheart.cli.visualize_enhancements import main

if __name__ == "__main__":
    sys.exit(main())
