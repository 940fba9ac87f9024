"""Provenance: ``python -m fetalheart.collect_env`` (versions to paste into bug reports) and
``write_run_info`` (the same, with config and seed, next to every training and evaluation output).

Like detectron2's own collect_env, plus which detectron2 install path is in use (official
build with compiled ops, or the pure-Python fallback) and which compatibility shims are active.
Self-describing output folders: a number in a paper can be traced back to exactly what produced it.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import fetalheart
from fetalheart import _compat
from fetalheart.utils.io import write_json_atomic, write_text_atomic


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def git_revision(path: str | Path | None = None) -> str:
    """The git revision of the fetalheart checkout ("+dirty" if modified), or "unknown"."""
    root = Path(path) if path else Path(fetalheart.__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def detectron2_install_kind() -> str:
    """'official build (compiled ops)', 'pure-Python fallback (no compiled ops)', or 'not installed'."""
    spec = importlib.util.find_spec("detectron2")
    if spec is None or spec.origin is None:
        return "not installed"
    if (Path(spec.origin).parent / "FETALHEART_FALLBACK").exists():
        return "pure-Python fallback v0.6 from PyPI sdist (no compiled ops)"
    if _compat.detectron2_has_compiled_ops():
        return "official build (compiled ops)"
    return "installed without compiled ops"


def collect_env() -> dict[str, str]:
    """Everything a bug report needs, as an ordered dict of strings."""
    import torch

    info: dict[str, str] = {
        "sys.platform": sys.platform,
        "Python": sys.version.replace("\n", " "),
        "machine": platform.machine(),
        "fetalheart": f"{fetalheart.__version__} @ {Path(fetalheart.__file__).parent}",
        "fetalheart git revision": git_revision(),
        "detectron2": _version("detectron2"),
        "detectron2 install": detectron2_install_kind(),
        "detectron2 compiled ops": str(_compat.detectron2_has_compiled_ops()),
        "fetalheart compat shims": ", ".join(_compat.APPLIED) or "none",
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "CUDA available": str(torch.cuda.is_available()),
    }
    if torch.cuda.is_available():
        info["GPU"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        info["CUDA (torch built with)"] = str(torch.version.cuda)
    info["CPU threads (torch)"] = str(torch.get_num_threads())
    for dist in ("numpy", "opencv-python-headless", "opencv-python", "pycocotools", "scikit-image", "Pillow",
                 "labelme", "fvcore", "iopath", "matplotlib"):
        v = _version(dist)
        if v != "not installed" or dist in ("pycocotools", "labelme"):
            info[dist] = v
    try:
        cv2 = importlib.import_module("cv2")
        info["cv2 (import)"] = cv2.__version__
    except ImportError:
        info["cv2 (import)"] = "import failed"
    return info


def format_env(info: dict[str, str]) -> str:
    from tabulate import tabulate

    return tabulate(list(info.items()), tablefmt="plain", disable_numparse=True)


def write_run_info(output_dir: str | os.PathLike, cfg=None, extra: dict | None = None,
                   name: str = "env.json") -> Path:
    """Write ``env.json`` (versions, git revision, seed, command line) and ``config.yaml`` if cfg given."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "command": sys.argv,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": collect_env(),
    }
    if cfg is not None:
        info["seed"] = int(cfg.SEED)
        info["enhance"] = cfg.INPUT.ENHANCE
        write_text_atomic(out / "config.yaml", cfg.dump())
    info.update(extra or {})
    return write_json_atomic(out / name, info)


def main(argv=None) -> int:
    print(format_env(collect_env()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
