"""YOLOX backbone: CSPDarknet with a Focus stem, and the PAFPN neck on top of it.

Module and attribute names follow the official YOLOX code so that its checkpoints
(and ByteTrack's / OC-SORT's DanceTrack detectors) load without renaming.
"""
from typing import Dict, Sequence, Tuple

import torch
from torch import nn

# YOLOX trains with these BatchNorm settings (set after construction in its Exp.get_model).
BN_EPS = 1e-3
BN_MOMENTUM = 0.03


class ConvBNAct(nn.Module):
    """Conv (no bias, 'same' padding for odd kernels) -> BatchNorm -> SiLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding=(kernel_size - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Focus(nn.Module):
    """Space-to-depth (each 2x2 pixel block becomes 4 channels), then a conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = ConvBNAct(in_channels * 4, out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channel order (even row/even col, odd/even, even/odd, odd/odd) is what the
        # pretrained stem weights expect.
        x = torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), dim=1)
        return self.conv(x)


class Bottleneck(nn.Module):
    """1x1 conv -> 3x3 conv, with a residual connection when asked and shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, shortcut: bool = True, expansion: float = 0.5):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = ConvBNAct(in_channels, hidden, 1)
        self.conv2 = ConvBNAct(hidden, out_channels, 3)
        self.use_add = shortcut and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.use_add else y


class CSPLayer(nn.Module):
    """Cross-stage partial block: one half goes through n bottlenecks, the other bypasses them."""

    def __init__(self, in_channels: int, out_channels: int, n: int = 1, shortcut: bool = True,
                 expansion: float = 0.5):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = ConvBNAct(in_channels, hidden, 1)
        self.conv2 = ConvBNAct(in_channels, hidden, 1)
        self.conv3 = ConvBNAct(2 * hidden, out_channels, 1)
        self.m = nn.Sequential(*[Bottleneck(hidden, hidden, shortcut, expansion=1.0) for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.m(self.conv1(x))
        bypass = self.conv2(x)
        return self.conv3(torch.cat((main, bypass), dim=1))


class SPPBottleneck(nn.Module):
    """Spatial pyramid pooling: the input and its stride-1 max-pools at several sizes, concatenated."""

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: Sequence[int] = (5, 9, 13)):
        super().__init__()
        hidden = in_channels // 2
        self.conv1 = ConvBNAct(in_channels, hidden, 1)
        self.m = nn.ModuleList([nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes])
        self.conv2 = ConvBNAct(hidden * (len(kernel_sizes) + 1), out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.m], dim=1))


class CSPDarknet(nn.Module):
    """Strides 2..32; returns the stride 8, 16 and 32 maps (dark3, dark4, dark5)."""

    def __init__(self, depth: float, width: float):
        super().__init__()
        base = int(width * 64)
        n = max(round(depth * 3), 1)
        self.stem = Focus(3, base, 3)
        self.dark2 = nn.Sequential(ConvBNAct(base, base * 2, 3, 2), CSPLayer(base * 2, base * 2, n))
        self.dark3 = nn.Sequential(ConvBNAct(base * 2, base * 4, 3, 2), CSPLayer(base * 4, base * 4, n * 3))
        self.dark4 = nn.Sequential(ConvBNAct(base * 4, base * 8, 3, 2), CSPLayer(base * 8, base * 8, n * 3))
        self.dark5 = nn.Sequential(
            ConvBNAct(base * 8, base * 16, 3, 2),
            SPPBottleneck(base * 16, base * 16),
            CSPLayer(base * 16, base * 16, n, shortcut=False),
        )

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = self.dark2(self.stem(x))
        c3 = self.dark3(x)
        c4 = self.dark4(c3)
        c5 = self.dark5(c4)
        return {"dark3": c3, "dark4": c4, "dark5": c5}


class YOLOPAFPN(nn.Module):
    """Top-down then bottom-up path aggregation over the dark3/4/5 maps."""

    def __init__(self, depth: float, width: float, in_channels: Sequence[int] = (256, 512, 1024)):
        super().__init__()
        c3, c4, c5 = (int(c * width) for c in in_channels)
        n = round(3 * depth)
        self.backbone = CSPDarknet(depth, width)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        # top-down
        self.lateral_conv0 = ConvBNAct(c5, c4, 1)
        self.C3_p4 = CSPLayer(2 * c4, c4, n, shortcut=False)
        self.reduce_conv1 = ConvBNAct(c4, c3, 1)
        self.C3_p3 = CSPLayer(2 * c3, c3, n, shortcut=False)
        # bottom-up
        self.bu_conv2 = ConvBNAct(c3, c3, 3, 2)
        self.C3_n3 = CSPLayer(2 * c3, c4, n, shortcut=False)
        self.bu_conv1 = ConvBNAct(c4, c4, 3, 2)
        self.C3_n4 = CSPLayer(2 * c4, c5, n, shortcut=False)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = self.backbone(x)
        c3, c4, c5 = feats["dark3"], feats["dark4"], feats["dark5"]
        p5_lateral = self.lateral_conv0(c5)
        p4 = self.C3_p4(torch.cat((self.upsample(p5_lateral), c4), dim=1))
        p4_reduced = self.reduce_conv1(p4)
        out3 = self.C3_p3(torch.cat((self.upsample(p4_reduced), c3), dim=1))
        out4 = self.C3_n3(torch.cat((self.bu_conv2(out3), p4_reduced), dim=1))
        out5 = self.C3_n4(torch.cat((self.bu_conv1(out4), p5_lateral), dim=1))
        return out3, out4, out5
