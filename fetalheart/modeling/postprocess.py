"""Mask R-CNN's post-processing with Gaussian pasting and refined masks (what ``FetalHeartRCNN.inference``
calls instead of detectron2's ``detector_postprocess`` when either is on).

Boxes are rescaled, clipped and filtered by detectron2's own ``detector_postprocess`` (the masks held
aside), then each soft mask is pasted at the output resolution: step 1's M x M mask into its box, or a
refined S x S mask into its crop box (rescaled, not clipped: the crop may leave the frame), each with
the sigma its mask size's fit gives for that box's width (0 without a fit: detectron2's paste).
"""

from __future__ import annotations

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.modeling.paste import SigmaFit, paste_mask

import torch
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Instances

_HELD = ("pred_masks", "refined_masks", "refined_boxes", "refined")


def postprocess(results: Instances, height: int, width: int, fits: dict[int, SigmaFit] | None = None) -> Instances:
    """Raw detections of one image (input coordinates) -> detections at ``height`` x ``width``."""
    held = {k: results.get(k) for k in _HELD if results.has(k)}
    fields = {k: v for k, v in results.get_fields().items() if k not in held}
    n = len(results)
    raw = Instances(results.image_size, **fields, fh_index=torch.arange(n, device=results.pred_boxes.device))
    scale_x, scale_y = width / results.image_size[1], height / results.image_size[0]
    out = detector_postprocess(raw, height, width)
    index = out.fh_index
    out.remove("fh_index")
    if "pred_masks" not in held:
        return out
    soft = held["pred_masks"]
    refined = held.get("refined")
    masks = []
    for k, i in enumerate(index.tolist()):
        if refined is not None and bool(refined[i]):
            m = held["refined_masks"][i, 0]
            box = held["refined_boxes"].tensor[i] * torch.tensor([scale_x, scale_y, scale_x, scale_y], device=m.device)
        else:
            m, box = soft[i, 0], out.pred_boxes.tensor[k]
        fit = (fits or {}).get(int(m.shape[-1]))
        sigma = fit.sigma(float(box[2] - box[0])) if fit else 0.0
        masks.append(paste_mask(m, box, (height, width), sigma))
    out.pred_masks = torch.stack(masks) if masks else torch.zeros((0, height, width), dtype=torch.bool,
                                                                  device=soft.device)
    return out
