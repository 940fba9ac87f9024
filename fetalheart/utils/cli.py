"""Entry-point wrapper: user errors become one line on stderr and exit 2, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from fetalheart.utils.errors import FetalHeartError


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Call ``main(argv)``; map FetalHeartError/OSError/KeyboardInterrupt to one-line errors.

    Set FETALHEART_DEBUG=1 to get the full traceback instead.
    """
    import os

    prog = os.path.basename(sys.argv[0]) or "fetalheart"
    if os.environ.get("FETALHEART_DEBUG"):
        return int(main(argv) or 0)
    try:
        return int(main(argv) or 0)
    except FetalHeartError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"{prog}: error:{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2


def number(kind: type = float, *, minimum: float = 0, strict: bool = True):
    """An argparse ``type``: a number of ``kind`` above ``minimum`` (or at least it, if not strict)."""
    import argparse

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum}, got {text}")
        return value

    return parse
