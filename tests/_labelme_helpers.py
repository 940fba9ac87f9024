"""Write small LabelMe files (and their images) for the converter tests."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image


def png_bytes(arr: np.ndarray, mode: str | None = None, exif_orientation: int | None = None, fmt: str = "PNG") -> bytes:
    im = Image.fromarray(arr)
    if mode and im.mode != mode:
        im = im.convert(mode)
    buf = io.BytesIO()
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        im.save(buf, fmt, exif=exif.tobytes())
    else:
        im.save(buf, fmt)
    return buf.getvalue()


def write_image(path: Path, height: int = 120, width: int = 160, value: int = 40, **kw) -> Path:
    """A flat grey image with its path stamped into the first row: two files never share their pixels
    (the converter merges or refuses images with the same pixels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((height, width, 3), value, np.uint8)
    stamp = np.frombuffer(hashlib.sha256(str(path).encode()).digest(), np.uint8)[: min(width, 32)]
    arr[0, : len(stamp)] = stamp[:, None]
    path.write_bytes(png_bytes(arr, **kw))
    return path


def poly(label: str, pts, group_id=None, shape_type: str | None = "polygon", **extra) -> dict:
    s = {"label": label, "points": [list(map(float, p)) for p in pts], "group_id": group_id,
         "shape_type": shape_type, "flags": {}, "description": ""}
    s.update(extra)
    return s


def mask_shape(label: str, crop: np.ndarray, x0: float, y0: float, group_id=None) -> dict:
    h, w = crop.shape
    b64 = base64.b64encode(png_bytes((crop > 0).astype(np.uint8) * 255)).decode()
    return {"label": label, "points": [[x0, y0], [x0 + w - 1, y0 + h - 1]], "group_id": group_id,
            "shape_type": "mask", "mask": b64, "flags": {}}


def write_labelme(json_path: Path, shapes: list[dict], image_path: str | None = None, height: int = 120,
                  width: int = 160, make_image: bool = True, image_data: str | None = None, **extra) -> Path:
    """LabelMe file beside its PNG (``<stem>.png``) unless ``image_path`` says otherwise."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    image_path = image_path if image_path is not None else json_path.with_suffix(".png").name
    if make_image:
        write_image(json_path.parent / image_path.replace("\\", "/"), height, width)
    doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path,
           "imageData": image_data, "imageHeight": height, "imageWidth": width}
    doc.update(extra)
    json_path.write_text(json.dumps(doc))
    return json_path


def heart_shapes(offset: float = 0.0) -> list[dict]:
    """A few shapes of different types that fit in a 160x120 image."""
    o = offset
    return [
        poly("LA", [[10 + o, 10], [60 + o, 12], [55, 60], [12, 50]]),
        poly("right atrium", [[70, 20], [120, 70]], shape_type="rectangle"),
        poly("Spine", [[130, 95], [130, 110]], shape_type="circle"),
    ]


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def outline_band(shape_type: str, points, h: int, w: int, width: float = 1.5) -> np.ndarray:
    """Pixels within ``width`` of a shape's outline (continuous geometry, pixel centres): where two
    rasterisers may legitimately disagree."""
    import cv2
    from scipy import ndimage

    pts = np.asarray(points, float)
    if shape_type == "rectangle" and len(pts) == 2:
        (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
        pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    if shape_type == "circle":
        r = np.hypot(*(pts[1] - pts[0]))
        t = np.linspace(0, 2 * np.pi, 720, endpoint=False)
        pts = np.stack([pts[0][0] + r * np.cos(t), pts[0][1] + r * np.sin(t)], 1)
    line = np.full((h, w), 255, np.uint8)
    cv2.polylines(line, [np.round(pts * 16).astype(np.int32)], True, 0, 1, cv2.LINE_8, shift=4)
    return ndimage.distance_transform_edt(line) <= width


def coco_masks(out: Path, split: str = "train") -> list[tuple[dict, np.ndarray]]:
    """(annotation, decoded mask) for every annotation of a written COCO file, as the evaluator decodes them."""
    from fetalheart.annotations.rle import segmentation_to_mask

    doc = load(out / "annotations" / f"{split}.json")
    img = {i["id"]: i for i in doc["images"]}
    return [(a, segmentation_to_mask(a["segmentation"], img[a["image_id"]]["height"], img[a["image_id"]]["width"]))
            for a in doc["annotations"]]
