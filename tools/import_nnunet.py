#!/usr/bin/env python
"""Import nnU-Net predicted label maps as COCO results for tools/evaluate.py --predictions. See --help."""

import sys

from fetalheart.cli.import_nnunet import main

if __name__ == "__main__":
    sys.exit(main())
