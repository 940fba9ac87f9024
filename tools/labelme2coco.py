#!/usr/bin/env python
"""Convert LabelMe JSON to a split COCO dataset with a conversion report. See --help."""

import sys

from fetalheart.cli.labelme2coco import main

if __name__ == "__main__":
    sys.exit(main())
