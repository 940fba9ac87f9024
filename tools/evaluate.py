#!/usr/bin/env python
"""Evaluate a trained model: COCO AP, study mAP, per-class IoU/Dice with CIs, plots. See --help."""

import sys

from fetalheart.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
