#!/usr/bin/env python
"""Export a labelme2coco dataset (split or K folds) as an nnU-Net v2 raw dataset with our splits. See --help."""

import sys

from fetalheart.cli.export_nnunet import main

if __name__ == "__main__":
    sys.exit(main())
