"""ResNet backbone with frozen batch norm, returning multi-scale feature maps with masks."""
import copy
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
        self.channels_last = False

    @torch.no_grad()
    def optimize_for_inference(self) -> int:
        """Fold every frozen batch norm into the convolution before it and run the convolutions in
        channels-last layout (what oneDNN/cuDNN prefer): about 2x faster on CPU, same outputs to float
        rounding. The state dict changes (BN buffers gone, conv biases added): load checkpoints first.
        Returns the number of folded pairs."""
        pairs = [(self.body, "conv1", "bn1")]
        for block in self.body.modules():
            if isinstance(block, (torchvision.models.resnet.Bottleneck, torchvision.models.resnet.BasicBlock)):
                pairs += [(block, f"conv{i}", f"bn{i}") for i in (1, 2, 3) if hasattr(block, f"bn{i}")]
                if block.downsample is not None:
                    pairs.append((block.downsample, "0", "1"))
        folded = 0
        for parent, conv_name, bn_name in pairs:
            conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
            if not isinstance(bn, FrozenBatchNorm2d):
                continue
            scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                              conv.dilation, conv.groups, bias=True).to(conv.weight)
            fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            fused.bias.copy_(bn.bias - bn.running_mean * scale
                             + (conv.bias * scale if conv.bias is not None else 0))
            fused.weight.requires_grad_(False)
            fused.bias.requires_grad_(False)
            setattr(parent, conv_name, fused)
            setattr(parent, bn_name, nn.Identity())
            folded += 1
        self.body.to(memory_format=torch.channels_last)
        self.channels_last = True
        return folded

    @torch.no_grad()
    def use_folded_copy_if_frozen(self) -> bool:
        """Training with no backbone weight trained (`--lr_backbone 0`): run a batch-norm-folded,
        channels-last copy of the body (optimize_for_inference's features, to float rounding; about
        twice as fast on a CPU) while the module and its state dict stay as they are. Call after the
        weights are loaded and the model is on its device. Returns whether the copy is in use."""
        self.__dict__.pop("_folded_body", None)
        if any(p.requires_grad for p in self.body.parameters()):
            return False
        fast = copy.deepcopy(self)
        fast.optimize_for_inference()
        # Not a registered submodule: it must not appear in the state dict or the optimizer.
        self.__dict__["_folded_body"] = fast.body
        return True

    def forward(self, tensor_list: NestedTensor) -> Dict[str, NestedTensor]:
        out = {}
        x = tensor_list.tensors
        body = self.__dict__.get("_folded_body")
        if body is None:
            body = self.body
        if self.channels_last or body is not self.body:
            x = x.contiguous(memory_format=torch.channels_last)
        for name, x in body(x).items():
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
