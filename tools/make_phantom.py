#!/usr/bin/env python
"""Write a synthetic fetal four-chamber echo video with LabelMe ground truth. See --help."""

import sys

from fetalheart.cli.make_phantom import main

if __name__ == "__main__":
    sys.exit(main())
