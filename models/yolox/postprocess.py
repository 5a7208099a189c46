"""Score filtering and NMS of decoded YOLOX predictions (as yolox.utils.postprocess)."""
from typing import List

import torch
import torchvision


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def postprocess(predictions: torch.Tensor, num_classes: int = 1, conf_thre: float = 0.1,
                nms_thre: float = 0.7, class_agnostic: bool = False) -> List[torch.Tensor]:
    """predictions [B, N, 5 + num_classes] (cx, cy, w, h, obj, class scores) ->
    per image [n, 7] = x1, y1, x2, y2, obj, cls_conf, cls, in decreasing obj * cls_conf
    (torchvision's NMS returns kept indices sorted by score).

    Differences from yolox: the input is not modified in place, and an image without
    detections gives an empty [0, 7] tensor instead of None.
    """
    if predictions.dim() != 3 or predictions.shape[-1] != 5 + num_classes:
        raise ValueError(f"expected predictions [B, N, {5 + num_classes}], got {tuple(predictions.shape)}")
    boxes = cxcywh_to_xyxy(predictions[..., :4])
    cls_conf, cls_idx = predictions[..., 5:5 + num_classes].max(dim=-1, keepdim=True)
    dets = torch.cat((boxes, predictions[..., 4:5], cls_conf, cls_idx.to(predictions.dtype)), dim=-1)
    results = []
    for image_dets in dets:
        scores = image_dets[:, 4] * image_dets[:, 5]
        keep = scores >= conf_thre
        image_dets, scores = image_dets[keep], scores[keep]
        if class_agnostic:
            kept = torchvision.ops.nms(image_dets[:, :4], scores, nms_thre)
        else:
            kept = torchvision.ops.batched_nms(image_dets[:, :4], scores, image_dets[:, 6], nms_thre)
        results.append(image_dets[kept])
    return results
