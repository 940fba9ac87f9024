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
