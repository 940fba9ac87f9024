"""The commands of README.md and docs/ work as written in a fresh shell (no venv activated).

Every line of a ``bash`` code block is a command; its first word must be something a fresh shell
has: ``make <target>``, ``tools/<name>.py`` (it re-runs itself with ``.venv/bin/python``),
``.venv/bin/<program>``, or a plain Unix command. A bare ``fetalheart-...`` or ``python ...`` works
only inside an activated venv, so it fails here. Each tool named is then run once with ``--help``
in an environment without the venv on PATH, and every ``--flag`` the docs give it must be in that
help text: a renamed option cannot stay documented.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
#: Pages whose commands must work. CHANGELOG.md is history: its commands are those of their day.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: Programs a fresh shell on Linux or macOS has (the first word of a command).
SHELL_COMMANDS = {"cat", "cd", "cp", "du", "export", "git", "head", "less", "ls", "mkdir", "open", "rm", "tail",
                  "time", "/usr/bin/time", "wc", "xdg-open", "nvidia-smi", "srun", "sbatch", "flock", "uptime",
                  "ffmpeg", "pip", "python3",
                  # other projects' programs, in their own environment (the page says so)
                  "nnUNetv2_plan_and_preprocess", "nnUNetv2_train", "nnUNetv2_predict"}
BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.S | re.M)


def _commands(text: str) -> list[str]:
    """The commands of a page's bash blocks: continuation lines joined, comments and output left out."""
    found = []
    for block in BLOCK.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                words = shlex.split(line, comments=True)
            except ValueError:  # unbalanced quotes: not a command
                continue
            if words:
                found.append(" ".join(shlex.quote(w) for w in words))
    return found


def _all_commands() -> list[tuple[str, str]]:
    return [(p.relative_to(ROOT).as_posix(), c) for p in PAGES for c in _commands(p.read_text(encoding="utf-8"))]


def _console_scripts() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict((x.strip() for x in line.split("=", 1)) for line in lines)


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


def _program(words: list[str]) -> tuple[str, list[str]]:
    """(the tool a command runs, its arguments); '' when it runs none of ours."""
    if words[0] in (".venv/bin/python", "python3") and len(words) > 1 and words[1].endswith(".py"):
        words = words[1:]
    if re.fullmatch(r"(tools|benchmarks)/\w+\.py", words[0]):
        return words[0], words[1:]
    if words[0].startswith(".venv/bin/fetalheart-"):
        return words[0], words[1:]
    return "", words[1:]


def _problem(command: str) -> str | None:
    words = shlex.split(command)
    first = words[0]
    if first == "make":
        unknown = [w for w in words[1:] if "=" not in w and w not in _make_targets()]
        return f"no make target {unknown}" if unknown else None
    if first.startswith("fetalheart-") or first in ("python", "pytest", "ruff", "labelme"):
        return f"'{first}' is on PATH only in an activated venv: write .venv/bin/{first} or tools/<name>.py"
    if first.startswith(".venv/bin/"):
        name = first.removeprefix(".venv/bin/")
        known = set(_console_scripts()) | {"python", "pip", "pytest", "ruff", "labelme"}
        return None if name in known else f"{first}: no such program in the venv (setup.cfg console_scripts)"
    if first.startswith(("tools/", "benchmarks/")):
        return None if (ROOT / first).is_file() else f"{first}: no such file"
    return None if first in SHELL_COMMANDS else f"'{first}': not a command a fresh shell has"


def test_commands_start_with_something_a_fresh_shell_runs():
    bad = [f"{page}: {cmd}\n    -> {why}" for page, cmd in _all_commands() if (why := _problem(cmd))]
    assert not bad, "commands that do not work as written:\n" + "\n".join(bad)


def _fresh_env() -> dict[str, str]:
    """A new shell's environment: no venv on PATH, none activated, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    paths = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != VENV_BIN.resolve()]
    env["PATH"] = os.pathsep.join([*paths, str(Path(sys.base_prefix) / "bin")])
    return env


@cache
def _help(program: str) -> tuple[int, str]:
    if program.startswith("benchmarks/"):  # documented as .venv/bin/python benchmarks/<name>.py
        argv, env = [str(VENV_BIN / "python"), str(ROOT / program), "--help"], _fresh_env()
    elif program.startswith(".venv/bin/fetalheart-"):
        # A console script imports the installed fetalheart; PYTHONPATH decides which checkout that is.
        argv, env = [str(ROOT / program), "--help"], {**os.environ, "PYTHONPATH": str(ROOT)}
    else:  # tools/<name>.py as a fresh shell runs it: its shebang, then its switch into .venv
        argv, env = [str(ROOT / program), "--help"], _fresh_env()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def _documented_flags() -> dict[str, set[str]]:
    flags: dict[str, set[str]] = {}
    for _, command in _all_commands():
        program, args = _program(shlex.split(command))
        if program and (ROOT / program).exists():
            flags.setdefault(program, set()).update(a.split("=")[0] for a in args if re.fullmatch(r"--[a-z][\w-]*(=.*)?", a))
    return flags


@pytest.mark.skipif(not (VENV_BIN / "python").exists(), reason="needs the checkout's .venv (make bootstrap)")
def test_every_documented_tool_prints_help_in_a_fresh_shell_and_knows_its_flags():
    flags = _documented_flags()
    assert any(p.startswith("tools/") for p in flags), "README and docs/ name no tool: the extraction is broken"
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(flags, pool.map(_help, flags), strict=True))
    failed = [f"{p}: exit {rc}\n{out[-800:]}" for p, (rc, out) in results.items() if rc != 0]
    assert not failed, "--help failed in a fresh shell:\n" + "\n".join(failed)
    unknown = {p: sorted(f for f in fs if f not in results[p][1]) for p, fs in flags.items()}
    unknown = {p: fs for p, fs in unknown.items() if fs}
    assert not unknown, f"documented flags that the tool's --help does not list: {unknown}"


def test_the_metrics_page_shows_the_definitions_the_reports_write():
    from fetalheart.evaluation.definitions_page import current, render

    assert current() == render(), ("docs/metrics.md differs from the definitions in the code: run "
                                   ".venv/bin/python -m fetalheart.evaluation.definitions_page")
