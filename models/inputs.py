"""Model-input preprocessing: an image -> the network's input tensor, detections -> proposals.

The rules are upstream MOTRv2's submit_dance.py: RGB, short side resized to 800 (long side at
most 1536), ImageNet mean/std; proposals are normalised cx, cy, w, h plus the detector score.
Tracking (datasets/sequences.py, models/tracker.py, tools/) and the benchmarks all call these.
"""
from typing import Tuple

import cv2
import numpy as np
import torch

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def resized_shape(h: int, w: int, short: int = 800, long_max: int = 1536) -> Tuple[int, int]:
    """(height, width) of the model input: short side `short`, long side at most `long_max`."""
    scale = short / min(h, w)
    if max(h, w) * scale > long_max:
        scale = long_max / max(h, w)
    return int(h * scale), int(w * scale)


def image_to_input(img_rgb: np.ndarray, short: int = 800, long_max: int = 1536) -> torch.Tensor:
    """RGB uint8 HxWx3 -> normalised float tensor [3, h, w] at the model's input size."""
    th, tw = resized_shape(img_rgb.shape[0], img_rgb.shape[1], short, long_max)
    if (th, tw) != img_rgb.shape[:2]:
        img_rgb = cv2.resize(img_rgb, (tw, th))
    x = torch.from_numpy(np.ascontiguousarray(img_rgb)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (x - mean) / std


def proposals_from_detections(dets: np.ndarray, im_w: int, im_h: int) -> torch.Tensor:
    """Pixel `x, y, w, h, score` [n, 5] -> the model's proposals [n, 5]: normalised cx, cy, w, h, score."""
    d = torch.as_tensor(dets, dtype=torch.float64).reshape(-1, 5)
    out = torch.stack([(d[:, 0] + d[:, 2] / 2) / im_w, (d[:, 1] + d[:, 3] / 2) / im_h,
                       d[:, 2] / im_w, d[:, 3] / im_h, d[:, 4]], dim=1)
    return out.float()
