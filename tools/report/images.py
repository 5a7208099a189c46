"""Small JPEG crops of the frames before and after an identity event, every tracker's box on that gt drawn."""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from tools.visualize import id_color

GT_COLOR = (255, 255, 255)  # BGR: the gt box in white, under the trackers' boxes
MAX_SIDE = 320              # px: the longer side of a crop
JPEG_QUALITY = 85
PAD = 0.35                  # crop margin around the drawn boxes, as a fraction of their extent

# One drawn box: label, x, y, w, h, BGR colour, thickness.
Drawn = Tuple[str, float, float, float, float, Tuple[int, int, int], int]


def crop_with_boxes(image: np.ndarray, boxes: Sequence[Drawn], max_side: int = MAX_SIDE) -> np.ndarray:
    """The region of ``image`` (BGR, H x W x 3) around ``boxes``, scaled to ``max_side``, boxes drawn."""
    h_img, w_img = image.shape[:2]
    xyxy = np.array([[x, y, x + w, y + h] for _, x, y, w, h, _, _ in boxes], dtype=float).reshape(-1, 4)
    x1, y1 = xyxy[:, :2].min(axis=0)
    x2, y2 = xyxy[:, 2:].max(axis=0)
    pad_x, pad_y = PAD * (x2 - x1) + 16, PAD * (y2 - y1) + 16
    left, top = int(max(0, np.floor(x1 - pad_x))), int(max(0, np.floor(y1 - pad_y)))
    right, bottom = int(min(w_img, np.ceil(x2 + pad_x))), int(min(h_img, np.ceil(y2 + pad_y)))
    if right - left < 2 or bottom - top < 2:  # boxes off the image: show it whole
        left, top, right, bottom = 0, 0, w_img, h_img
    crop = image[top:bottom, left:right]
    scale = max_side / max(crop.shape[:2])
    crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    for label, x, y, w, h, color, thickness in boxes:
        p1 = (int(round((x - left) * scale)), int(round((y - top) * scale)))
        p2 = (int(round((x + w - left) * scale)), int(round((y + h - top) * scale)))
        cv2.rectangle(crop, p1, p2, color, thickness)
        if label:
            (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
            ty = max(th + 3, p1[1])
            cv2.rectangle(crop, (p1[0], ty - th - 3), (p1[0] + tw + 2, ty), color, -1)
            cv2.putText(crop, label, (p1[0] + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return crop


def event_boxes(gt_box: np.ndarray, tracker_boxes: Dict[str, Tuple[int, np.ndarray]],
                extra: Optional[Tuple[str, int, np.ndarray]] = None) -> List[Drawn]:
    """What to draw for one frame of an event: the gt box, each tracker's box matched to that gt
    (``{name: (id, xywh)}``, NaN box where it had none) and ``extra`` (name, id, xywh): where the
    switching tracker's old id is now, if it is elsewhere in the frame."""
    drawn: List[Drawn] = []
    if np.all(np.isfinite(gt_box)):
        drawn.append(("gt", *map(float, gt_box), GT_COLOR, 3))
    for name, (track_id, box) in tracker_boxes.items():
        if np.all(np.isfinite(box)):
            drawn.append((f"{name} {track_id}", *map(float, box), id_color(track_id), 2))
    if extra is not None:
        name, track_id, box = extra
        drawn.append((f"{name} {track_id} (old)", *map(float, box), id_color(track_id), 1))
    return drawn


def write_jpeg(path: str, image: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"cannot encode {path}")
    with open(path, "wb") as f:
        f.write(buf.tobytes())
