#!/usr/bin/env python
"""Enhanced copies of a COCO split (HE/AHE/CLAHE/bd spec) with the same annotations; see --help."""

import sys

from fetalheart.cli.enhance_dataset import main

if __name__ == "__main__":
    sys.exit(main())
