"""A padded image batch and its padding mask (True = padding), as DETR models take them."""
from typing import List, Optional

import torch


class NestedTensor:
    def __init__(self, tensors: torch.Tensor, mask: Optional[torch.Tensor]):
        self.tensors = tensors
        self.mask = mask

    def to(self, device, non_blocking: bool = False) -> "NestedTensor":
        mask = None if self.mask is None else self.mask.to(device, non_blocking=non_blocking)
        return NestedTensor(self.tensors.to(device, non_blocking=non_blocking), mask)

    def decompose(self):
        return self.tensors, self.mask

    def __repr__(self) -> str:
        return f"NestedTensor({tuple(self.tensors.shape)})"


def nested_tensor_from_tensor_list(tensor_list: List[torch.Tensor]) -> NestedTensor:
    """Pad `[C, H, W]` images to a common size (bottom/right) and mark the padding."""
    if isinstance(tensor_list, torch.Tensor) and tensor_list.dim() == 4:
        tensor_list = list(tensor_list)
    if tensor_list[0].dim() != 3:
        raise ValueError(f"expected [C, H, W] images, got shape {tuple(tensor_list[0].shape)}")
    c = tensor_list[0].shape[0]
    h = max(t.shape[1] for t in tensor_list)
    w = max(t.shape[2] for t in tensor_list)
    first = tensor_list[0]
    batch = first.new_zeros((len(tensor_list), c, h, w))
    mask = torch.ones((len(tensor_list), h, w), dtype=torch.bool, device=first.device)
    for img, pad, m in zip(tensor_list, batch, mask):
        pad[:, : img.shape[1], : img.shape[2]].copy_(img)
        m[: img.shape[1], : img.shape[2]] = False
    return NestedTensor(batch, mask)
