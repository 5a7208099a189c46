"""YOLOX detector (backbone + head), its standard sizes and strict checkpoint loading."""

import torch
from torch import nn

from models.checkpoint import CheckpointError, extract_state_dict, mismatched_keys

from .head import YOLOXHead
from .network import YOLOPAFPN

# (depth multiplier, width multiplier) of the official YOLOX sizes.
YOLOX_SIZES = {
    "yolox-s": (0.33, 0.50),
    "yolox-m": (0.67, 0.75),
    "yolox-l": (1.00, 1.00),
    "yolox-x": (1.33, 1.25),
}


class YOLOX(nn.Module):
    """forward(images [B, 3, H, W], normalised) -> [B, N, 5 + num_classes] decoded predictions."""

    def __init__(self, depth: float = 1.33, width: float = 1.25, num_classes: int = 1):
        super().__init__()
        self.backbone = YOLOPAFPN(depth, width)
        self.head = YOLOXHead(num_classes, width)
        self.num_classes = num_classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2] % 32 or images.shape[-1] % 32:
            raise ValueError(f"YOLOX input height and width must be multiples of 32, got {tuple(images.shape)}")
        return self.head(self.backbone(images))


def build_yolox(name: str = "yolox-x", num_classes: int = 1) -> YOLOX:
    """The DanceTrack/ByteTrack detector is build_yolox('yolox-x', num_classes=1)."""
    if name not in YOLOX_SIZES:
        raise ValueError(f"unknown YOLOX size {name!r}; choose one of {sorted(YOLOX_SIZES)}")
    depth, width = YOLOX_SIZES[name]
    return YOLOX(depth, width, num_classes)


def load_state_dict_strict(model: nn.Module, checkpoint, source: str = "checkpoint") -> None:
    """Load every tensor; on any mismatch raise one error listing missing, unexpected and
    mis-shaped keys (torch stops at the first kind of problem and hides shapes behind it)."""
    state = extract_state_dict(checkpoint)
    missing, unexpected, misshaped = mismatched_keys(model, state)
    if missing or unexpected or misshaped:
        lines = [f"{source} does not match the YOLOX model:"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                lines.append(f"  {len(keys)} {title} key(s):")
                lines.extend(f"    {k}" for k in keys)
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state, strict=True)
