"""The one exception type tools turn into a one-line error and a non-zero exit."""

from __future__ import annotations


class FetalHeartError(Exception):
    """A user-facing problem (bad input, refused overwrite, ...): printed as one line, exit 2."""

    exit_code = 2
