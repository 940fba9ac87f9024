"""fetalheart._compat: shims apply only when needed, and make detectron2 importable."""

import subprocess
import sys

from fetalheart import _compat


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_import_compat_then_detectron2_engine_works():
    out = _run("import fetalheart._compat, detectron2.engine, detectron2.model_zoo; "
               "from detectron2.data import transforms; print('ok')")
    assert out.endswith("ok")


def test_fetalheart_modules_that_use_detectron2_apply_the_shims_themselves():
    # No explicit shim import: the trainer module imports detectron2, so it must bring the shims.
    out = _run("import fetalheart.engine.trainer; from fetalheart import _compat; print(sorted(_compat.APPLIED))")
    assert out == str(sorted(_compat.APPLIED))


def test_importing_fetalheart_alone_patches_nothing():
    # Importing the package, or the statistics modules, leaves Pillow, numpy and sys.modules alone.
    out = _run("import sys\nfrom PIL import Image\nif hasattr(Image, 'LINEAR'): del Image.LINEAR\n"
               "import fetalheart, fetalheart.evaluation.metrics, fetalheart.evaluation.compare\n"
               "print(hasattr(Image, 'LINEAR'), 'fetalheart._compat' in sys.modules, 'pkg_resources' in sys.modules)")
    assert out == "False False False"


def test_pillow_alias_added_only_when_missing():
    # Pillow already has LINEAR (a user or an old Pillow): the shim must leave it alone.
    out = _run("from PIL import Image; Image.LINEAR = 12345; "
               "from fetalheart import _compat; print(Image.LINEAR, 'pillow_linear' in _compat.APPLIED)")
    assert out == "12345 False"
    # Missing (Pillow >= 10): added, equal to BILINEAR.
    out = _run("from PIL import Image\nif hasattr(Image, 'LINEAR'): del Image.LINEAR\n"
               "from fetalheart import _compat\n"
               "print(Image.LINEAR == Image.BILINEAR, 'pillow_linear' in _compat.APPLIED)")
    assert out == "True True"


def test_numpy_bool_shim_not_applied_on_numpy2():
    import numpy as np

    if int(np.__version__.split(".")[0]) >= 2:
        assert "numpy_bool" not in _compat.APPLIED


def test_apply_is_idempotent():
    before = list(_compat.APPLIED)
    assert _compat.apply() == []
    assert _compat.APPLIED == before


def test_c_placeholder_matches_installed_detectron2():
    compiled = _compat.detectron2_has_compiled_ops()
    assert ("detectron2_C_placeholder" in _compat.APPLIED) == (not compiled)
    assert _compat.coco_evaluator_kwargs() == {"use_fast_impl": compiled}


def test_collect_env_names_install_path_and_versions():
    out = subprocess.run([sys.executable, "-m", "fetalheart.collect_env"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    for key in ("fetalheart", "detectron2 install", "torch", "torchvision", "CUDA available", "cv2 (import)",
                "pycocotools", "labelme"):
        assert key in out.stdout
