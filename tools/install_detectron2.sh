#!/usr/bin/env bash
# Install detectron2 into the current Python (the one named by $PYTHON, default `python`),
# trying in order:
#   1. an already-installed detectron2 (nothing to do);
#   2. the official source at a pinned commit (compiles the C++/CUDA ops; what GPU users want);
#      skipped fast when GitHub is unreachable (10 s probe), or with FETALHEART_D2_OFFLINE=1;
#   3. the offline fallback: the pure-Python sources of the v0.6 release from PyPI's
#      `pb1-detectron2==0.6` sdist (identical .py files to the official v0.6 tag, model-zoo
#      configs included, but without layers/csrc, so its own setup.py cannot build). We install
#      those sources as the distribution `detectron2` 0.6 with no compiled `_C`;
#      fetalheart/_compat.py supplies what the missing ops and newer libraries break.
# Idempotent: a second run finds (1) and returns at once.
set -euo pipefail
PYTHON=${PYTHON:-python}
D2_COMMIT=${D2_COMMIT:-2dde706855d87baa9760fbcd0bdb6004a3937204}  # a main-branch commit after v0.6 (builds on torch 2.x)
SDIST_NAME=pb1-detectron2
SDIST_VERSION=0.6
SDIST_SHA256=5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29

say() { echo "[install_detectron2] $*" >&2; }

if "$PYTHON" -c "import detectron2" 2>/dev/null; then
  say "detectron2 already installed: $("$PYTHON" -c 'import detectron2; print(detectron2.__version__, detectron2.__file__)')"
  exit 0
fi
"$PYTHON" -c "import torch" 2>/dev/null || { say "error: install torch first (detectron2's setup imports it)"; exit 1; }

if [ "${FETALHEART_D2_OFFLINE:-0}" != "1" ] && timeout 10 git ls-remote https://github.com/facebookresearch/detectron2.git HEAD >/dev/null 2>&1; then
  say "GitHub reachable: building official detectron2 at $D2_COMMIT (compiles ops; minutes)"
  if "$PYTHON" -m pip install --no-build-isolation "git+https://github.com/facebookresearch/detectron2.git@$D2_COMMIT"; then
    exit 0
  fi
  say "official build failed; falling back to the pure-Python v0.6 sources"
else
  say "GitHub unreachable (or FETALHEART_D2_OFFLINE=1): using the offline pure-Python fallback"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# --no-build-isolation: the sdist's setup.py imports torch even to read metadata. pip >= 26
# refuses to prepare that sdist (an extra of it names a direct URL), so the download uses a
# pinned pip 25.0 put on PYTHONPATH for this one command; the environment's own pip is untouched.
"$PYTHON" -m pip install -q --target "$work/pip" "pip==25.0" 2>&1 | grep -v "is ignored" >&2 || true
PYTHONPATH="$work/pip${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m pip download -q --no-deps --no-build-isolation \
  "$SDIST_NAME==$SDIST_VERSION" -d "$work" 2>&1 | grep -v "is ignored" >&2 || true
sdist="$work/$SDIST_NAME-$SDIST_VERSION.tar.gz"
[ -f "$sdist" ] || { say "error: could not download $SDIST_NAME==$SDIST_VERSION from PyPI"; exit 1; }
echo "$SDIST_SHA256  $sdist" | sha256sum -c --quiet - || { say "error: $sdist checksum mismatch"; exit 1; }
tar -xzf "$sdist" -C "$work"
src="$work/$SDIST_NAME-$SDIST_VERSION"
# A minimal setup.py: same packages and model-zoo configs, no extension, distribution name
# `detectron2` so `pip show detectron2` and `pip uninstall detectron2` work as usual.
cat > "$src/setup.py" <<'PY'
from setuptools import find_packages, setup
PROJECTS = {
    "detectron2.projects.point_rend": "projects/PointRend/point_rend",
    "detectron2.projects.deeplab": "projects/DeepLab/deeplab",
    "detectron2.projects.panoptic_deeplab": "projects/Panoptic-DeepLab/panoptic_deeplab",
}
setup(
    name="detectron2",
    version="0.6",
    description="detectron2 v0.6 pure-Python sources (no compiled ops), installed by fetalheart",
    packages=find_packages(exclude=("configs", "tests*", "projects*", "tools*")) + list(PROJECTS),
    package_dir=PROJECTS,
    package_data={"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]},
)
PY
rm -rf "$src/pb1_detectron2.egg-info" "$src/setup.cfg"
echo "pure-python-fallback pb1-detectron2==0.6 sha256=$SDIST_SHA256" > "$src/detectron2/FETALHEART_FALLBACK"
sed -i 's|package_data={"detectron2.model_zoo": \[|package_data={"detectron2": ["FETALHEART_FALLBACK"], "detectron2.model_zoo": [|' "$src/setup.py"
"$PYTHON" -m pip install -q --no-deps --no-build-isolation "$src" 2>&1 | grep -v "is ignored" >&2 || true
"$PYTHON" -c "import detectron2" 2>/dev/null || true
"$PYTHON" -m pip show detectron2 >/dev/null 2>&1 || { say "error: fallback install failed"; exit 1; }
say "installed detectron2 0.6 (pure-Python fallback, no compiled ops)"
