#!/usr/bin/env python
"""Import NIfTI image + label volumes (CAMUS-style) as LabelMe frames, optionally converted to COCO. See --help."""

import sys

from fetalheart.cli.import_nifti import main

if __name__ == "__main__":
    sys.exit(main())
