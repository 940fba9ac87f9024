"""Enhancement and bd cache keys follow the one content-key scheme (issue 19 item 3): pixels or file
bytes + spec + used parameters + mask + CACHE_VERSION; never a path, so a moved dataset or cache is
still found, and a new CACHE_VERSION is never served an old entry."""

from __future__ import annotations

import json
import shutil

import fetalheart.enhance.cache as cache_mod
import fetalheart.enhance.dataset as dataset_mod
from fetalheart.enhance import Enhancer
from fetalheart.enhance.cache import cache_key
from fetalheart.enhance.dataset import enhance_coco
from fetalheart.enhance.kernels import kernel_key
from fetalheart.enhance.spec import resolve_params

import cv2
import numpy as np

from tests._enhance_helpers import fake_echo


def _coco(root, n=3):
    (root / "images").mkdir(parents=True)
    images = []
    for i in range(n):
        cv2.imwrite(str(root / "images" / f"v_{i:04d}.png"), fake_echo(40, 56, seed=i))
        images.append({"id": i + 1, "file_name": f"v_{i:04d}.png", "height": 40, "width": 56})
    (root / "train.json").write_text(json.dumps({"images": images, "annotations": [], "categories": []}))
    return root


def test_dataset_manifest_survives_a_moved_dataset_and_not_a_new_cache_version(tmp_path, monkeypatch):
    src = _coco(tmp_path / "a")
    out = tmp_path / "out"
    first = enhance_coco(src / "train.json", src / "images", "ahe+clahe", out, quiet=True)
    assert (first["enhanced"], first["cached"]) == (3, 0)
    moved = tmp_path / "elsewhere" / "b"
    shutil.copytree(src, moved)  # another path, the same bytes
    again = enhance_coco(moved / "train.json", moved / "images", "ahe+clahe", out, overwrite=True, quiet=True)
    assert (again["enhanced"], again["cached"]) == (0, 3)
    monkeypatch.setattr(dataset_mod, "CACHE_VERSION", dataset_mod.CACHE_VERSION + 1)
    bumped = enhance_coco(moved / "train.json", moved / "images", "ahe+clahe", out, overwrite=True, quiet=True)
    assert (bumped["enhanced"], bumped["cached"]) == (3, 0)


def test_bd_caches_are_found_after_the_cache_folder_moved(tmp_path, monkeypatch):
    img = np.repeat(fake_echo(48, 64, seed=3)[..., None], 3, axis=2)
    params = resolve_params({"bd_iters": 2, "bd_max_size": 64})
    first = Enhancer("bd", params=params, cache_dir=tmp_path / "c1")
    out = first(img)
    shutil.copytree(tmp_path / "c1", tmp_path / "moved" / "c2")
    second = Enhancer("bd", params=params, cache_dir=tmp_path / "moved" / "c2", memory_items=0)
    assert np.array_equal(second(img), out) and second.cache.hits == 1 and second.cache.misses == 0
    # keys are pure content: the same image and parameters give the same key anywhere
    plane = img[..., 0]
    assert kernel_key(plane, params, "none") == kernel_key(plane.copy(), dict(params), "none")
    key = cache_key(img, "bd", {"bd_iters": 2}, "none")
    assert key != cache_key(img[::-1].copy(), "bd", {"bd_iters": 2}, "none")
    monkeypatch.setattr(cache_mod, "CACHE_VERSION", cache_mod.CACHE_VERSION + 1)
    assert cache_key(img, "bd", {"bd_iters": 2}, "none") != key
