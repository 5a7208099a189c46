"""ResNet backbone with frozen batch norm, returning multi-scale feature maps with masks."""
from typing import Dict, List

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter

from .position_encoding import build_position_encoding
from .structures import NestedTensor


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters (buffers, never trained)."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.eps = eps

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints saved from a regular BatchNorm2d carry a counter we do not keep.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)


class Backbone(nn.Module):
    """A torchvision ResNet (random init: weights come from the checkpoint) as a feature extractor."""

    def __init__(self, name: str, train_backbone: bool, return_interm_layers: bool, dilation: bool):
        super().__init__()
        if not hasattr(torchvision.models, name) or not name.startswith(("resnet", "resnext", "wide_resnet")):
            raise ValueError(f"--backbone {name!r}: expected a torchvision ResNet (resnet18/34/50/101, ...)")
        body = getattr(torchvision.models, name)(
            weights=None, replace_stride_with_dilation=[False, False, dilation], norm_layer=FrozenBatchNorm2d)
        for pname, p in body.named_parameters():
            if not train_backbone or not pname.startswith(("layer2", "layer3", "layer4")):
                p.requires_grad_(False)
        layers = ["layer2", "layer3", "layer4"] if return_interm_layers else ["layer4"]
        self.strides = [{"layer2": 8, "layer3": 16, "layer4": 32}[n] for n in layers]
        if dilation:
            self.strides[-1] //= 2
        self.num_channels = [_out_channels(getattr(body, n)) for n in layers]
        self.body = IntermediateLayerGetter(body, return_layers={n: str(i) for i, n in enumerate(layers)})

    def forward(self, tensor_list: NestedTensor) -> Dict[str, NestedTensor]:
        out = {}
        for name, x in self.body(tensor_list.tensors).items():
            mask = F.interpolate(tensor_list.mask[None].float(), size=x.shape[-2:]).to(torch.bool)[0]
            out[name] = NestedTensor(x, mask)
        return out


def _out_channels(layer: nn.Sequential) -> int:
    last_block = layer[-1]
    last_bn = getattr(last_block, "bn3", None) or last_block.bn2
    return last_bn.weight.shape[0]


class Joiner(nn.Sequential):
    """`backbone.0` is the ResNet, `backbone.1` the position encoding (names as in the checkpoint)."""

    def __init__(self, backbone: Backbone, position_embedding: nn.Module):
        super().__init__(backbone, position_embedding)
        self.strides = backbone.strides
        self.num_channels = backbone.num_channels

    def forward(self, tensor_list: NestedTensor):
        feats: List[NestedTensor] = [x for _, x in sorted(self[0](tensor_list).items())]
        pos = [self[1](x).to(x.tensors.dtype) for x in feats]
        return feats, pos


def build_backbone(args) -> Joiner:
    return_interm_layers = args.masks or args.num_feature_levels > 1
    backbone = Backbone(args.backbone, args.lr_backbone > 0, return_interm_layers, args.dilation)
    return Joiner(backbone, build_position_encoding(args))
