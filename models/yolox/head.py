"""YOLOX decoupled head (anchor-free): separate classification and regression branches per level."""
import math
from typing import List, Sequence

import torch
from torch import nn

from .network import ConvBNAct


class YOLOXHead(nn.Module):
    """Per FPN level: 1x1 stem, two 3x3 convs per branch, then 1x1 predictors.

    forward() returns the decoded predictions [B, N, 5 + num_classes]: cx, cy, w, h in
    pixels of the network input, objectness and class scores after sigmoid. N runs over
    the levels (stride 8, 16, 32), each flattened row-major (y, then x).
    """

    def __init__(self, num_classes: int, width: float, strides: Sequence[int] = (8, 16, 32),
                 in_channels: Sequence[int] = (256, 512, 1024), prior_prob: float = 0.01):
        super().__init__()
        self.num_classes = num_classes
        self.strides = tuple(strides)
        hidden = int(256 * width)
        levels = range(len(in_channels))
        # Registration order matches YOLOX's, so state_dict() lists keys in its order.
        self.cls_convs = nn.ModuleList(
            [nn.Sequential(ConvBNAct(hidden, hidden, 3), ConvBNAct(hidden, hidden, 3)) for _ in levels])
        self.reg_convs = nn.ModuleList(
            [nn.Sequential(ConvBNAct(hidden, hidden, 3), ConvBNAct(hidden, hidden, 3)) for _ in levels])
        self.cls_preds = nn.ModuleList([nn.Conv2d(hidden, num_classes, 1) for _ in levels])
        self.reg_preds = nn.ModuleList([nn.Conv2d(hidden, 4, 1) for _ in levels])
        self.obj_preds = nn.ModuleList([nn.Conv2d(hidden, 1, 1) for _ in levels])
        self.stems = nn.ModuleList([ConvBNAct(int(c * width), hidden, 1) for c in in_channels])
        # Start scores near prior_prob (focal-loss style) so untrained training starts stable.
        bias = -math.log((1 - prior_prob) / prior_prob)
        for conv in list(self.cls_preds) + list(self.obj_preds):
            nn.init.constant_(conv.bias, bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        outputs: List[torch.Tensor] = []
        sizes = []
        for k, x in enumerate(feats):
            x = self.stems[k](x)
            cls_logit = self.cls_preds[k](self.cls_convs[k](x))
            reg_feat = self.reg_convs[k](x)
            box = self.reg_preds[k](reg_feat)
            obj_logit = self.obj_preds[k](reg_feat)
            out = torch.cat((box, obj_logit.sigmoid(), cls_logit.sigmoid()), dim=1)
            sizes.append(out.shape[-2:])
            outputs.append(out.flatten(start_dim=2))
        raw = torch.cat(outputs, dim=2).permute(0, 2, 1)  # [B, N, 5 + C]
        # Decode in float32 even under fp16 autocast: fp16 has 1-pixel steps above 1024.
        return self.decode(raw.float(), sizes)

    def decode(self, raw: torch.Tensor, sizes) -> torch.Tensor:
        """Grid offsets + cell index, times stride -> centres; exp(log-size) * stride -> sizes."""
        grids, strides = [], []
        for (h, w), stride in zip(sizes, self.strides):
            ys, xs = torch.meshgrid(torch.arange(h, device=raw.device), torch.arange(w, device=raw.device),
                                    indexing="ij")
            grids.append(torch.stack((xs, ys), dim=-1).reshape(-1, 2))
            strides.append(torch.full((h * w, 1), float(stride), device=raw.device))
        grid = torch.cat(grids).to(raw.dtype)
        stride = torch.cat(strides).to(raw.dtype)
        centres = (raw[..., 0:2] + grid) * stride
        wh = torch.exp(raw[..., 2:4]) * stride
        return torch.cat((centres, wh, raw[..., 4:]), dim=-1)
