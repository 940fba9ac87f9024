#!/usr/bin/env python
"""Extract curated frames (sampled, sharp, de-duplicated, cropped) from echo videos. See --help."""

import sys

from fetalheart.cli.extract_frames import main

if __name__ == "__main__":
    sys.exit(main())
