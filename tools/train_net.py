#!/usr/bin/env python
"""Train or evaluate a fetal-heart Mask R-CNN (detectron2-style train_net). See --help."""

import sys

from fetalheart.cli.train_net import main

if __name__ == "__main__":
    sys.exit(main())
