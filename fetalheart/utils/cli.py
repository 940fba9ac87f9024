"""Entry-point wrapper: user errors become one line on stderr and exit 2, never a traceback."""

from __future__ import annotations

import re
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


# ------------------------------------------------------------------ one vocabulary of flags for every tool
# -q/--quiet, -j/--jobs N, --config-file, --max-parallel, --overwrite (= replace this tool's outputs),
# lists written "2,14" (a space-separated list is accepted too). Old spellings stay as hidden aliases.

def add_quiet(p, what: str = "no progress bars or summaries (errors and warnings are still printed)") -> None:
    """``-q/--quiet``."""
    p.add_argument("-q", "--quiet", action="store_true", help=what)


def add_jobs(p, default: int | None, what: str = "worker processes") -> None:
    """``-j/--jobs N`` (old spelling ``--workers`` kept hidden)."""
    import argparse

    shown = "all cores" if default is None else str(default)
    p.add_argument("-j", "--jobs", type=number(int, minimum=1, strict=False), default=default, metavar="N",
                   help=f"{what} (default {shown})")
    p.add_argument("--workers", dest="jobs", type=number(int, minimum=1, strict=False), help=argparse.SUPPRESS)


def add_overwrite(p, what: str) -> None:
    """``--overwrite``: replace this tool's outputs (``what`` names them)."""
    p.add_argument("--overwrite", action="store_true", help=f"replace this tool's outputs ({what})")


def parallel_count(text: str) -> int | str:
    """argparse type of ``--max-parallel``: a number >= 1 or ``auto``."""
    import argparse

    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1 or 'auto', got {text!r}")
    return n


def int_list(text: str) -> list[int]:
    """argparse type: ``"2,14"`` -> [2, 14]."""
    import argparse

    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 2,14, got {text!r}") from None


def key_value(text: str) -> tuple[str, str]:
    """argparse type: ``"clahe_clip_limit=3"`` -> ("clahe_clip_limit", "3") (``--param KEY=VALUE``)."""
    import argparse

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def add_int_list(p, flag: str, help: str, **kwargs) -> None:
    """A list flag written ``--flag 2,14`` (``--flag 2 14`` is accepted too: see ``join_int_lists``)."""
    p.add_argument(flag, type=int_list, metavar="N,N,...", help=help, **kwargs)


def join_int_lists(argv: Sequence[str], flags: Sequence[str]) -> list[str]:
    """``--seeds 0 1 2`` -> ``--seeds 0,1,2`` for list flags (the old space-separated spelling)."""
    out: list[str] = []
    i = 0
    argv = list(argv)
    while i < len(argv):
        out.append(argv[i])
        if argv[i] in flags:
            j = i + 1
            while j < len(argv) and argv[j].replace(",", "").isdigit():
                j += 1
            if j > i + 1:
                out.append(",".join(argv[i + 1:j]))
            i = j
        else:
            i += 1
    return out


_CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")


def is_config_key(token: str) -> bool:
    """A detectron2 config key such as ``MODEL.WEIGHTS`` (dotted upper case)."""
    return bool(_CONFIG_KEY.match(token))


def split_overrides(tokens: Sequence[str], is_path=None) -> tuple[list[str], list[str]]:
    """Separate ``KEY VALUE`` config overrides from everything else, wherever they stand.

    A token is a key when it looks like one (and, with ``is_path``, is not an existing file).
    Raises FetalHeartError for a key without a value.
    """
    rest, opts, i = [], [], 0
    tokens = list(tokens)
    while i < len(tokens):
        tok = tokens[i]
        if is_config_key(tok) and not (is_path and is_path(tok)):
            if i + 1 >= len(tokens):
                raise FetalHeartError(f"config override {tok} has no value")
            opts += [tok, tokens[i + 1]]
            i += 2
        else:
            rest.append(tok)
            i += 1
    return rest, opts
