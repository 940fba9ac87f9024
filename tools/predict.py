#!/usr/bin/env python
"""Predict on images, folders or a video: overlays, COCO results, LabelMe JSON. See --help."""

import sys

from fetalheart.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
