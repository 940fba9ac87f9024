"""Synthetic fetal four-chamber echo phantom: videos, frames and exact LabelMe ground truth.

Real fetal echo cannot be shipped, yet the demo, the tests and the benchmarks need realistic
input whose ground truth is known exactly. Every frame is rendered from an explicit geometry
(an apical four-chamber heart with valves, aortic/pulmonary roots, descending aorta and spine),
so the annotations come from that geometry, never from thresholding the rendered image.

The image model gives enhancement and deblurring something real to fix: a sector field of view,
depth attenuation with time-gain compensation, multiplicative Rayleigh speckle that decorrelates
from frame to frame, a point-spread blur that grows with depth, an acoustic shadow behind the
spine, on-screen text and a depth ruler in the margins, a cardiac cycle and slow probe drift.
Frames fall into the study's four categories (``CATEGORIES``) in contiguous runs.

Everything is a pure function of ``(seed, frame index, fps, size, n_frames, proportions)``:
the same seed gives byte-identical PNGs and JSONs on one machine.

Modules: ``schedule`` (categories in runs), ``anatomy`` (sector, heart model, pose),
``groundtruth`` (clipped masks to simple polygons), ``render`` (one frame), ``writer``
(files, video, ``make_phantom``).
"""

from fetalheart.phantom.groundtruth import is_simple_polygon
from fetalheart.phantom.render import render_frame
from fetalheart.phantom.schedule import CATEGORIES, DEFAULT_PROPORTIONS, category_schedule
from fetalheart.phantom.writer import PhantomSpec, make_phantom, phantom_metadata

__all__ = [
    "CATEGORIES",
    "DEFAULT_PROPORTIONS",
    "PhantomSpec",
    "category_schedule",
    "is_simple_polygon",
    "make_phantom",
    "phantom_metadata",
    "render_frame",
]
