"""Every shim for detectron2 version differences, in one place.

detectron2 v0.6 (the offline fallback, see tools/install_detectron2.sh) predates Pillow 10,
setuptools 81 and runs without its compiled ``_C``. Each shim below is gated on what is
actually installed, so on an official source build with current libraries it does nothing.

The shims are applied when this module is imported, and only then: every fetalheart module that
imports detectron2 imports ``fetalheart._compat`` first (isort places fetalheart imports before
third-party ones; tests/test_architecture.py checks it), so ``import fetalheart`` alone, or a
statistics tool that never touches detectron2, patches no other library.
``python -m fetalheart.collect_env`` lists the shims applied (``APPLIED``).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

#: Names of the shims that ``apply()`` installed in this process (for collect_env and tests).
APPLIED: list[str] = []


def _detectron2_dir() -> Path | None:
    """detectron2's package folder, found without importing it (importing pulls in torch: seconds)."""
    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _detectron2_has_compiled_ops() -> bool:
    """True when detectron2's compiled extension ``_C`` is installed."""
    d2 = _detectron2_dir()
    return d2 is not None and any(True for pattern in ("_C*.so", "_C*.pyd") for _ in d2.glob(pattern))


def _shim_pillow_linear() -> bool:
    # detectron2/data/transforms/transform.py uses Image.LINEAR as a default argument at import
    # time; Pillow 10 removed that alias of Image.BILINEAR.
    from PIL import Image

    if hasattr(Image, "LINEAR"):
        return False
    Image.LINEAR = Image.BILINEAR
    return True


def _shim_missing_c_extension() -> bool:
    # detectron2/layers/deform_conv.py does `from detectron2 import _C` at import time. Without the
    # compiled ops, an empty placeholder lets it import; Mask R-CNN R50-FPN never calls into it
    # (RoIAlign and NMS come from torchvision). Deformable conv would fail loudly if used.
    if _detectron2_dir() is None or _detectron2_has_compiled_ops():
        return False
    if "detectron2._C" in sys.modules:
        return False
    placeholder = types.ModuleType("detectron2._C")
    placeholder.__file__ = "fetalheart-placeholder"
    placeholder.__doc__ = "Placeholder installed by fetalheart._compat: detectron2 ops not compiled."
    # detectron2.utils.collect_env (logged by default_setup) asks the extension how it was built.
    placeholder.get_compiler_version = lambda: "none: ops not compiled (fetalheart placeholder)"
    placeholder.get_cuda_version = lambda: "none: ops not compiled (fetalheart placeholder)"
    placeholder.has_cuda = lambda: False
    sys.modules["detectron2._C"] = placeholder
    return True


def _shim_pkg_resources() -> bool:
    # detectron2/model_zoo/model_zoo.py imports pkg_resources (only to call resource_filename),
    # which setuptools >= 81 no longer ships. A minimal stand-in resolves package data paths.
    if "pkg_resources" in sys.modules or importlib.util.find_spec("pkg_resources") is not None:
        return False
    module = types.ModuleType("pkg_resources")

    def resource_filename(package: str, resource: str) -> str:
        import os

        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(package)
        return os.path.join(os.path.dirname(spec.origin), resource)

    module.resource_filename = resource_filename  # type: ignore[attr-defined]
    module.__doc__ = "Minimal pkg_resources stand-in from fetalheart._compat."
    sys.modules["pkg_resources"] = module
    return True


def _shim_numpy_bool() -> bool:
    # detectron2/structures/masks.py uses np.bool for empty polygon lists: removed in numpy 1.24,
    # re-added in numpy 2.0. Only numpy 1.24-1.26 needs the alias.
    import numpy as np

    try:
        np.bool  # noqa: B018
        return False
    except AttributeError:
        np.bool = np.bool_  # type: ignore[attr-defined]
        return True


def _shim_quiet_jit_deprecation() -> bool:
    # detectron2 v0.6 decorates a few helpers with torch.jit.script at import time; torch >= 2.10
    # warns about each one (FutureWarning), which buries every tool's output. Only that message
    # is silenced; detectron2 does not depend on scripting at run time.
    import importlib.metadata
    import warnings

    try:
        major, minor = (int(x) for x in importlib.metadata.version("torch").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    if _detectron2_dir() is None or (major, minor) < (2, 9):  # older torch does not warn
        return False
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
    return True


_SHIMS = {
    "pillow_linear": _shim_pillow_linear,
    "detectron2_C_placeholder": _shim_missing_c_extension,
    "pkg_resources": _shim_pkg_resources,
    "numpy_bool": _shim_numpy_bool,
    "quiet_jit_deprecation": _shim_quiet_jit_deprecation,
}


def apply() -> list[str]:
    """Install the shims this environment needs; idempotent. Returns the names applied now."""
    now = []
    for name, shim in _SHIMS.items():
        if name not in APPLIED and shim():
            APPLIED.append(name)
            now.append(name)
    return now


def detectron2_has_compiled_ops() -> bool:
    """Whether detectron2's C++/CUDA ops are compiled (official build) or not (fallback)."""
    return _detectron2_has_compiled_ops()


def coco_evaluator_kwargs() -> dict:
    """Keyword arguments for COCOEvaluator: the fast COCOeval lives in the compiled ops."""
    return {"use_fast_impl": detectron2_has_compiled_ops()}


apply()  # on import, idempotently: see the module docstring
