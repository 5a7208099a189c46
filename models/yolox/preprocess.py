"""ByteTrack's YOLOX test-time preprocessing (yolox/data/data_augment.py: preproc / ValTransform).

Recipe: letterbox-resize the BGR frame by r = min(H_t / h, W_t / w) (cv2 bilinear, to
(int(w * r), int(h * r))) into the top-left corner of an (H_t, W_t) canvas filled with 114,
swap BGR -> RGB, divide by 255, subtract the ImageNet mean and divide by its std, HWC -> CHW.
Detections in network pixels map back to the frame by dividing by r.
"""
from typing import Sequence, Tuple

import cv2
import numpy as np

RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)
PAD_VALUE = 114
DANCETRACK_TEST_SIZE = (800, 1440)  # (height, width) of ByteTrack's DanceTrack / MOT17 detector


def _normalisation_lut(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    # The canvas holds integers 0..255, so a per-channel lookup table gives exactly
    # ByteTrack's float64 arithmetic (/255, -mean, /std) rounded once to float32.
    values = np.arange(256, dtype=np.float64) / 255.0
    return np.stack([(values - m) / s for m, s in zip(mean, std)]).astype(np.float32)  # [3 (RGB), 256]


_DEFAULT_LUT = _normalisation_lut(RGB_MEAN, RGB_STD)


def letterbox_ratio(image_hw: Tuple[int, int], test_size: Tuple[int, int]) -> float:
    return min(test_size[0] / image_hw[0], test_size[1] / image_hw[1])


def preproc(image_bgr: np.ndarray, test_size: Tuple[int, int] = DANCETRACK_TEST_SIZE,
            mean: Sequence[float] = RGB_MEAN, std: Sequence[float] = RGB_STD) -> Tuple[np.ndarray, float]:
    """BGR uint8 frame [h, w, 3] -> (normalised RGB float32 [3, H_t, W_t], resize ratio r)."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 image [h, w, 3], got {image_bgr.dtype} {image_bgr.shape}")
    h, w = image_bgr.shape[:2]
    r = letterbox_ratio((h, w), test_size)
    new_w, new_h = int(w * r), int(h * r)
    canvas = np.full((test_size[0], test_size[1], 3), PAD_VALUE, dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    lut = _DEFAULT_LUT if (tuple(mean), tuple(std)) == (RGB_MEAN, RGB_STD) else _normalisation_lut(mean, std)
    # RGB channel c is BGR channel 2 - c.
    out = np.stack([lut[c][canvas[:, :, 2 - c]] for c in range(3)])
    return out, r
