"""Acceptance: bd deblurs the frames the pipeline keeps (phantom video -> extraction with auto-crop).

Before the kernel floor, bd returned every kept phantom frame unchanged (estimated blur 0.6-0.9
px, below the old "no blur" threshold), so the 5 bd specs trained on the same pixels as their
twins without bd. Since the phantom has a real point-spread function (issue 22) bd estimates
~2 px on them. Run with ``-s`` to see the table of changes.
"""

from fetalheart.enhance import (
    SPECS_OF_STUDY,
    Enhancer,
    KernelCache,
    changes_table,
    measure_changes,
    read_image,
)

import numpy as np
import pytest

BD_SPECS = [s for s in SPECS_OF_STUDY if "bd" in s]


@pytest.fixture(scope="module")
def kept_frames(tmp_path_factory):
    from fetalheart.phantom import PhantomSpec, make_phantom
    from fetalheart.video.extract import ExtractOptions, extract_frames

    root = tmp_path_factory.mktemp("bd_phantom")
    make_phantom(root / "phantom", PhantomSpec(seconds=4, size=(640, 360), seed=0), quiet=True)
    videos = sorted((root / "phantom").glob("*.mp4"))
    result = extract_frames(videos, root / "frames", ExtractOptions(every=3, auto_crop=True, min_sharpness="auto"), quiet=True)
    paths = sorted((root / "frames").glob("*.png"))
    assert len(paths) == len(result.kept) >= 20
    return paths


def _without_bd(spec):
    return "+".join(op for op in spec.split("+") if op != "bd") or "original"


def test_every_bd_spec_changes_at_least_95_percent_of_kept_frames(kept_frames, tmp_path):
    images = [read_image(p) for p in kept_frames]
    kernels = KernelCache()  # one estimate per frame for the 5 specs
    rows = []
    for spec in BD_SPECS:
        with_bd, without = Enhancer(spec, kernels=kernels), Enhancer(_without_bd(spec))
        diffs = [np.abs(with_bd(img).astype(np.int64) - without(img)).mean() for img in images]
        changed = sum(d > 0 for d in diffs)
        rows.append((spec, changed, len(images), float(np.mean(diffs))))
        assert changed >= 0.95 * len(images), f"{spec}: only {changed} of {len(images)} frames changed by bd"
        # Deblurred, not wrecked: a few grey levels on average (up to ~16 after AHE, whose output
        # is all contrast, on frames with a real PSF to undo).
        assert 1.0 <= np.mean(diffs) <= 20.0, spec
    for spec, changed, n, mad in rows:
        print(f"{spec:<14} vs {_without_bd(spec):<10}: {changed}/{n} frames changed, mean |change| {mad:.2f} grey levels")
    # measure_changes (what training and evaluation report) agrees with the direct comparison.
    stats = [measure_changes(kept_frames, spec, cache_dir=tmp_path / "cache", quiet=True) for spec in BD_SPECS]
    print(changes_table(stats))
    for st, (_spec, changed, n, mad) in zip(stats, rows, strict=True):
        bd = st["steps"][-1]
        assert (bd["frames_changed"], bd["frames_total"]) == (changed, n) and st["warning"] is None
        assert bd["mean_abs_change"] == pytest.approx(mad, abs=1e-3)
        # ... and says per frame what set the kernel: on these in-focus frames mostly the 1 px floor.
        src = bd["bd"]["kernel_source"]
        assert src["estimate"] + src["floor"] == n and bd["bd"]["floor_share"] == pytest.approx(src["floor"] / n, abs=1e-4)


def test_skip_sharp_leaves_frames_below_the_floor_unchanged_and_is_reported(kept_frames):
    # The phantom has a real point-spread function (issue 22): bd estimates ~2 px, above the 1 px
    # floor, so skip_sharp skips nothing and bd deblurs every kept frame ...
    stats = measure_changes(kept_frames, "bd", params={"bd_skip_sharp": True}, quiet=True)
    bd = stats["steps"][0]
    print(changes_table(stats))
    assert bd["bd"]["below_floor"] == 0 and bd["fraction_changed"] >= 0.95
    # ... with the floor above every estimate, every frame counts as sharp: left unchanged, and said.
    stats = measure_changes(kept_frames, "bd", params={"bd_skip_sharp": True, "bd_min_sigma": 3.5}, quiet=True)
    bd = stats["steps"][0]
    print(changes_table(stats))
    assert bd["fraction_changed"] < 0.95 and bd["bd"]["below_floor"] >= 0.9 * bd["frames_total"]
    assert "step 'bd' changed" in stats["warning"]
