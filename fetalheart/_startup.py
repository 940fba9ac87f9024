"""What runs before anything else: the tools' switch into the checkout's ``.venv``, and the
detectron2 import hook a ``.pth`` file installs into that venv. Standard library only.

* ``tools/*.py`` call :func:`use_checkout_venv` first: run from a shell where ``.venv`` is not
  active (``tools/labelme2coco.py ...``, the way README spells the commands), they re-run
  themselves with ``.venv/bin/python``, so no command needs ``source .venv/bin/activate``.
* ``make bootstrap`` writes ``fetalheart_shims.pth`` into the venv's site-packages
  (:func:`install_pth`). At interpreter start-up it registers :class:`Detectron2Hook`, which does
  nothing until something imports ``detectron2``; then it imports ``fetalheart._compat`` (the
  shims: ``PIL.Image.LINEAR`` and the others) just before. A user's own script that imports
  detectron2 in that venv therefore works without a first line; anywhere else,
  ``import fetalheart._compat`` before detectron2 does the same. Nothing else is patched, and a
  process that never imports detectron2 imports neither ``_compat`` nor PIL.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

#: Set in the re-executed process, so a broken venv cannot make a tool re-execute forever.
REEXEC_ENV = "FETALHEART_REEXEC"
PTH_NAME = "fetalheart_shims.pth"

#: The hook, as source: the ``.pth`` line runs it at start-up, this module runs it for
#: :class:`Detectron2Hook`. It must import nothing at start-up (not even ``fetalheart``: that would
#: pin the package to the checkout found then, before a tool puts its own checkout first on the path);
#: when detectron2 is first looked up it imports ``fetalheart._compat`` from the path as it is then,
#: and stays registered but inert (removing a finder while the import system iterates over
#: ``sys.meta_path`` would make it skip the next one).
HOOK_SOURCE = """\
class Detectron2Hook:
    active = True

    def find_spec(self, name, path=None, target=None):
        if self.active and name.partition(".")[0] == "detectron2":
            self.active = False  # first: _compat itself looks detectron2 up
            try:
                import fetalheart._compat  # noqa: F401  (the shims, applied on import)
            except ImportError:  # no fetalheart on this path: detectron2 imports as it would anyway
                pass
        return None  # the regular finders import the module


def install_detectron2_hook():
    import sys

    if "detectron2" not in sys.modules and not any(type(f).__name__ == "Detectron2Hook" for f in sys.meta_path):
        sys.meta_path.insert(0, Detectron2Hook())
"""
#: One line (a .pth line starting with ``import`` is executed at start-up).
PTH_LINE = f"import sys; exec({HOOK_SOURCE + 'install_detectron2_hook()'!r}, {{}})\n"

exec(HOOK_SOURCE)  # defines Detectron2Hook and install_detectron2_hook here too (one source)


def checkout_venv_python(root: Path | None = None) -> Path:
    """The checkout's ``.venv/bin/python`` (it may not exist)."""
    root = root or Path(__file__).resolve().parent.parent
    return root / ".venv" / "bin" / "python"


def use_checkout_venv(script: str) -> None:
    """Re-run ``script`` with the checkout's ``.venv`` Python when another Python runs it.

    Does nothing inside that venv, when there is no ``.venv`` (an install into your own
    environment), or in a process this function already re-executed."""
    python = checkout_venv_python()
    venv = python.parent.parent
    if os.environ.get(REEXEC_ENV) or not python.exists():
        return
    if Path(sys.prefix).resolve() == venv.resolve():
        return
    os.environ[REEXEC_ENV] = "1"
    os.execv(str(python), [str(python), str(script), *sys.argv[1:]])


def install_pth(site_dir: str | Path | None = None) -> Path:
    """Write ``fetalheart_shims.pth`` into ``site_dir`` (default: this interpreter's site-packages)."""
    path = Path(site_dir or sysconfig.get_path("purelib")) / PTH_NAME
    path.write_text(PTH_LINE, encoding="utf-8")
    return path


if __name__ == "__main__":  # make bootstrap: python -m fetalheart._startup
    print(f"installed {install_pth()}")
