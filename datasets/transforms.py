"""Clip-consistent data augmentation for MOT training (MOTRv2's recipe).

Every transform takes and returns `(imgs, targets)`: a list of frames and one target dict per
frame, and draws its random parameters once per clip, so all frames of a clip get the same
flip / scale / crop / colour change (the track queries must see a coherent video).

Frames are `H x W x 3` uint8 RGB numpy arrays until `MotToTensor`.  A target dict holds
    boxes   [n_gt + n_det, 4] float32, pixel xyxy: the ground truth first, then the detections
    scores  [n_gt + n_det]    1 for ground truth, detector score for detections
    labels  [n_gt], obj_ids [n_gt]
so the proposals (detections) get exactly the geometric changes of the ground-truth boxes.
`MotNormalize` turns `boxes` into normalised cxcywh.

Randomness comes from Python's `random` module only, which PyTorch re-seeds in every
DataLoader worker (numpy's global generator would repeat across workers).
"""
from __future__ import annotations

import random
from typing import Callable, List, Sequence, Tuple

import cv2
import numpy as np
import torch

from models.structures import box_xyxy_to_cxcywh

Frames = List[np.ndarray]
Targets = List[dict]

# Fields indexed by ground truth only; `boxes` and `scores` also cover the detections.
_GT_FIELDS = ("labels", "obj_ids")
_ALL_FIELDS = ("boxes", "scores")

# Upstream MOTRv2 training sizes for DanceTrack.
DEFAULT_TRAIN_SCALES = [608, 640, 672, 704, 736, 768, 800, 832, 864, 896, 928, 960, 992]
DEFAULT_TRAIN_MAX_SIZE = 1536
DEFAULT_CROP_SCALES = [800, 1000, 1200]
DEFAULT_CROP_SIZE = (800, 1200)
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _keep_boxes(target: dict, keep: torch.Tensor) -> dict:
    """Drop the boxes where `keep` is False, with their gt fields (the first n_gt entries)."""
    out = dict(target)
    for name in _ALL_FIELDS:
        if name in out:
            out[name] = out[name][keep]
    for name in _GT_FIELDS:
        if name in out:
            out[name] = out[name][keep[:len(out[name])]]
    return out


def _has_area(boxes_xyxy: torch.Tensor) -> torch.Tensor:
    return (boxes_xyxy[:, 2:] > boxes_xyxy[:, :2]).all(dim=1)


def crop_frame(img: np.ndarray, target: dict, region: Tuple[int, int, int, int]):
    """Crop to `region = (top, left, height, width)`; boxes are clipped to it, boxes left with no
    area are dropped (gt and detections alike)."""
    top, left, height, width = region
    img = np.ascontiguousarray(img[top:top + height, left:left + width])
    target = dict(target)
    boxes = target["boxes"] - torch.tensor([left, top, left, top], dtype=torch.float32)
    boxes = torch.min(boxes.reshape(-1, 2, 2), torch.tensor([width, height], dtype=torch.float32))
    target["boxes"] = boxes.clamp(min=0).reshape(-1, 4)
    return img, _keep_boxes(target, _has_area(target["boxes"]))


def hflip_frame(img: np.ndarray, target: dict):
    width = img.shape[1]
    target = dict(target)
    x0, y0, x1, y1 = target["boxes"].unbind(-1)
    target["boxes"] = torch.stack([width - x1, y0, width - x0, y1], dim=-1)
    return np.ascontiguousarray(img[:, ::-1]), target


def resized_hw(height: int, width: int, size: int, max_size: int | None) -> Tuple[int, int]:
    """Output `(h, w)` with the short side `size`, lowered so the long side stays within
    `max_size` (DETR's rule, integer sizes as upstream computes them)."""
    if max_size is not None:
        short, long = float(min(height, width)), float(max(height, width))
        if long / short * size > max_size:
            size = int(round(max_size * short / long))
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def resize_frame(img: np.ndarray, target: dict, size: int, max_size: int | None = None):
    height, width = img.shape[:2]
    out_h, out_w = resized_hw(height, width, size, max_size)
    if (out_h, out_w) != (height, width):
        img = cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    target = dict(target)
    scale = torch.tensor([out_w / width, out_h / height] * 2, dtype=torch.float32)
    target["boxes"] = target["boxes"] * scale
    return img, target


def shift_frame(img: np.ndarray, target: dict, region: Tuple[int, int, int, int]):
    """Crop `region` and stretch it back to the frame size: a small camera move + zoom.
    Boxes follow (not clipped, as upstream); boxes with no area inside the frame are dropped."""
    height, width = img.shape[:2]
    top, left, reg_h, reg_w = region
    out = cv2.resize(np.ascontiguousarray(img[top:top + reg_h, left:left + reg_w]), (width, height),
                     interpolation=cv2.INTER_LINEAR)
    target = dict(target)
    scale = torch.tensor([width / reg_w, height / reg_h] * 2, dtype=torch.float32)
    boxes = (target["boxes"] - torch.tensor([left, top, left, top], dtype=torch.float32)) * scale
    target["boxes"] = boxes
    # Upstream clips to the region's size here (a few pixels short of the frame); we clip to
    # the frame the boxes now live in.
    clipped = torch.min(boxes.reshape(-1, 2, 2), torch.tensor([width, height], dtype=torch.float32)).clamp(min=0)
    return out, _keep_boxes(target, _has_area(clipped.reshape(-1, 4)))


class MotCompose:
    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, imgs: Frames, targets: Targets):
        for transform in self.transforms:
            imgs, targets = transform(imgs, targets)
        return imgs, targets

    def __repr__(self) -> str:
        return "MotCompose(" + "".join(f"\n    {t!r}" for t in self.transforms) + "\n)"


class MotRandomHorizontalFlip:
    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, imgs: Frames, targets: Targets):
        if random.random() < self.p:
            flipped = [hflip_frame(img, tgt) for img, tgt in zip(imgs, targets)]
            return [f[0] for f in flipped], [f[1] for f in flipped]
        return imgs, targets

    def __repr__(self) -> str:
        return f"MotRandomHorizontalFlip(p={self.p})"


class MotRandomResize:
    """Short side to a size drawn from `sizes`, long side capped at `max_size`."""

    def __init__(self, sizes: Sequence[int], max_size: int | None = None):
        if not sizes:
            raise ValueError("MotRandomResize: sizes is empty")
        self.sizes = list(sizes)
        self.max_size = max_size

    def __call__(self, imgs: Frames, targets: Targets):
        size = random.choice(self.sizes)
        resized = [resize_frame(img, tgt, size, self.max_size) for img, tgt in zip(imgs, targets)]
        return [r[0] for r in resized], [r[1] for r in resized]

    def __repr__(self) -> str:
        return f"MotRandomResize(sizes={self.sizes}, max_size={self.max_size})"


class MotRandomSizeCrop:
    """Crop a random `h x w` window, each side drawn in `[min_size, min(side, max_size)]`
    (upstream's `FixedMotRandomCrop`).  A side shorter than `min_size` is kept whole (upstream
    would fail there), so small training images work with the default sizes too."""

    def __init__(self, min_size: int, max_size: int):
        if min_size > max_size:
            raise ValueError(f"MotRandomSizeCrop: min_size {min_size} > max_size {max_size}")
        self.min_size = min_size
        self.max_size = max_size

    def _side(self, full: int) -> int:
        high = min(full, self.max_size)
        return random.randint(min(self.min_size, high), high)

    def __call__(self, imgs: Frames, targets: Targets):
        full_h, full_w = imgs[0].shape[:2]
        width = self._side(full_w)
        height = self._side(full_h)
        top = random.randint(0, full_h - height)
        left = random.randint(0, full_w - width)
        cropped = [crop_frame(img, tgt, (top, left, height, width)) for img, tgt in zip(imgs, targets)]
        return [c[0] for c in cropped], [c[1] for c in cropped]

    def __repr__(self) -> str:
        return f"MotRandomSizeCrop(min_size={self.min_size}, max_size={self.max_size})"


FixedMotRandomCrop = MotRandomSizeCrop  # upstream's name


class MotRandomSelect:
    """`first` with probability `p`, otherwise `second`."""

    def __init__(self, first: Callable, second: Callable, p: float = 0.5):
        self.first, self.second, self.p = first, second, p

    def __call__(self, imgs: Frames, targets: Targets):
        if random.random() < self.p:
            return self.first(imgs, targets)
        return self.second(imgs, targets)

    def __repr__(self) -> str:
        return f"MotRandomSelect(p={self.p},\n  {self.first!r},\n  {self.second!r})"


class MOTHSV:
    """Random hue / saturation / value offsets (YOLOX style), the same for the whole clip:
    each channel is changed with probability 1/2, by an integer in (-gain, gain)."""

    def __init__(self, hgain: int = 5, sgain: int = 30, vgain: int = 30):
        self.gains = (hgain, sgain, vgain)

    def draw_offsets(self) -> np.ndarray:
        offsets = [random.uniform(-1, 1) * gain * random.randint(0, 1) for gain in self.gains]
        return np.array(offsets).astype(np.int16)  # truncation towards zero, as upstream

    @staticmethod
    def apply(img: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + offsets[0]) % 180  # OpenCV's 8-bit hue is 0..179
        hsv[..., 1] = np.clip(hsv[..., 1] + offsets[1], 0, 255)
        hsv[..., 2] = np.clip(hsv[..., 2] + offsets[2], 0, 255)
        return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)

    def __call__(self, imgs: Frames, targets: Targets):
        offsets = self.draw_offsets()
        if not offsets.any():
            return imgs, targets
        return [self.apply(img, offsets) for img in imgs], targets

    def __repr__(self) -> str:
        return "MOTHSV(hgain={}, sgain={}, vgain={})".format(*self.gains)


class MotToTensor:
    """`H x W x 3` uint8 -> `[3, H, W]` float in [0, 1]."""

    def __call__(self, imgs: Frames, targets: Targets):
        return [torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255) for img in imgs], targets


class MotNormalize:
    """Standardise the pixels and turn pixel xyxy boxes into cxcywh normalised by the frame size."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def __call__(self, imgs: List[torch.Tensor], targets: Targets):
        out_imgs, out_targets = [], []
        for img, target in zip(imgs, targets):
            out_imgs.append((img - self.mean) / self.std)
            if target is not None:
                height, width = img.shape[-2:]
                target = dict(target)
                scale = torch.tensor([width, height, width, height], dtype=torch.float32)
                target["boxes"] = box_xyxy_to_cxcywh(target["boxes"]) / scale
            out_targets.append(target)
        return out_imgs, out_targets


class FixedMotRandomShift:
    """Make a clip of `num_frames` out of one still image (CrowdHuman): each frame is the previous
    one moved by the same random shift of 1..`padding` px per axis (random sign), stretched back
    to full size."""

    def __init__(self, num_frames: int = 1, padding: int = 50):
        self.num_frames = num_frames
        self.padding = padding

    def _draw_shift(self) -> int:
        return (int(self.padding * random.random()) + 1) * random.choice((-1, 1))

    def __call__(self, imgs: Frames, targets: Targets):
        height, width = imgs[0].shape[:2]
        dx, dy = self._draw_shift(), self._draw_shift()
        top, bottom = max(0, -dy), min(height, height - dy)
        left, right = max(0, -dx), min(width, width - dx)
        region = (top, left, bottom - top, right - left)
        out_imgs, out_targets = [imgs[0]], [targets[0]]
        for _ in range(1, self.num_frames):
            img, target = shift_frame(out_imgs[-1], out_targets[-1], region)
            out_imgs.append(img)
            out_targets.append(target)
        return out_imgs, out_targets


def _arg(args, name: str, default):
    value = getattr(args, name, None) if args is not None else None
    return default if value is None else value


def make_mot_transforms(image_set: str, args=None) -> MotCompose:
    """MOTRv2's training / validation pipeline.

    Training: flip (p=0.5); then with p=0.5 a resize to `--train_scales` (long side <=
    `--train_max_size`), otherwise resize to `--train_crop_scales`, random crop with sides in
    `--train_crop_size MIN MAX`, resize to `--train_scales`; HSV jitter; to tensor; normalise.
    Unset flags take upstream's DanceTrack values (608..992 / 1536 / 800,1000,1200 / 800 1200).
    Validation: short side 800, long side <= 1333.
    """
    normalize = MotCompose([MotToTensor(), MotNormalize()])
    if image_set == "train":
        scales = list(_arg(args, "train_scales", DEFAULT_TRAIN_SCALES))
        max_size = _arg(args, "train_max_size", DEFAULT_TRAIN_MAX_SIZE)
        crop_scales = list(_arg(args, "train_crop_scales", DEFAULT_CROP_SCALES))
        crop_min, crop_max = _arg(args, "train_crop_size", DEFAULT_CROP_SIZE)
        return MotCompose([
            MotRandomHorizontalFlip(),
            MotRandomSelect(
                MotRandomResize(scales, max_size=max_size),
                MotCompose([
                    MotRandomResize(crop_scales),
                    MotRandomSizeCrop(crop_min, crop_max),
                    MotRandomResize(scales, max_size=max_size),
                ])),
            MOTHSV(),
            normalize,
        ])
    if image_set == "val":
        return MotCompose([MotRandomResize([800], max_size=1333), normalize])
    raise ValueError(f"unknown image_set '{image_set}' (expected 'train' or 'val')")
