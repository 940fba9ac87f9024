"""fetalheart._startup: a user's own detectron2 script works in the venv with no first line, and the
tools run from a shell where the venv is not active."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fetalheart import _startup

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: A user's script: detectron2 first, nothing of fetalheart. Its transforms module uses PIL.Image.LINEAR
#: as a default argument (gone since Pillow 10); deform_conv imports the compiled _C at import time.
USER_SCRIPT = """
import sys
before = "fetalheart._compat" in sys.modules
from detectron2.data import transforms as T
from detectron2.layers import deform_conv  # noqa: F401
import numpy as np
img = np.zeros((20, 30, 3), np.uint8)
out = T.ResizeTransform(20, 30, 10, 15).apply_image(img)
print("ok", before, "fetalheart._compat" in sys.modules, out.shape)
"""


def _run(code: str, site_dir: Path | None) -> subprocess.CompletedProcess:
    prelude = f"import site; site.addsitedir({str(site_dir)!r})\n" if site_dir else ""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=env)


def test_the_pth_hook_applies_the_shims_just_before_detectron2_is_imported(tmp_path):
    pth = _startup.install_pth(tmp_path)
    assert pth.read_text() == _startup.PTH_LINE
    proc = _run(USER_SCRIPT, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # not applied at start-up (nothing imported detectron2 yet), applied by the time it was imported
    assert proc.stdout.split() == ["ok", "False", "True", "(10,", "15,", "3)"]


def test_a_process_that_never_imports_detectron2_is_not_touched(tmp_path):
    _startup.install_pth(tmp_path)
    # not even fetalheart itself: importing it at start-up would pin the checkout found then, before a
    # tool puts its own checkout first on sys.path
    proc = _run("import sys, numpy; print(sorted(m for m in ('fetalheart', 'fetalheart._compat', 'PIL', 'detectron2', "
                "'torch') if m in sys.modules))", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_without_the_hook_the_same_script_fails_on_this_pillow():
    """The hook is what makes the script work: the same script, with site-packages on the path but no .pth
    file processed (``python -S``), fails on Pillow >= 10. Runs whether or not bootstrap installed the hook."""
    import sysconfig

    import PIL

    if int(PIL.__version__.split(".")[0]) < 10:
        pytest.skip("a Pillow with Image.LINEAR: detectron2 v0.6 needs no shim there")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), sysconfig.get_path("purelib"),
                                                        sysconfig.get_path("platlib")])}
    proc = subprocess.run([sys.executable, "-S", "-c", USER_SCRIPT], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=env)
    assert proc.returncode != 0 and "LINEAR" in proc.stderr, (proc.stdout, proc.stderr[-2000:])


@pytest.mark.skipif(not _startup.checkout_venv_python(ROOT).exists(), reason="needs the checkout's .venv")
def test_a_tool_started_by_another_python_reruns_itself_in_the_venv(tmp_path):
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", _startup.REEXEC_ENV)}
    script = tmp_path / "tool.py"
    script.write_text(f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
                      "from fetalheart._startup import use_checkout_venv\n"
                      "use_checkout_venv(__file__)\n"
                      "print(sys.prefix, *sys.argv[1:])\n")
    proc = subprocess.run([str(base_python), str(script), "--flag", "x y"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    prefix, *args = proc.stdout.split(" ", 1)[0], proc.stdout.strip().split(" ", 1)[1]
    assert Path(prefix).resolve() == (ROOT / ".venv").resolve() and args == ["--flag x y"]
    # and a real tool, as a fresh shell runs it (its shebang, then the switch)
    proc = subprocess.run([str(ROOT / "tools" / "compare_runs.py"), "--help"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={**env, "PATH": f"{base_python.parent}{os.pathsep}/usr/bin:/bin"})
    assert proc.returncode == 0 and "usage: compare_runs.py" in proc.stdout, proc.stderr[-2000:]
