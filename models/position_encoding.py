"""Sine position encodings: of image feature maps (DETR) and of boxes/scores (MOTRv2 queries)."""
import math

import torch
from torch import nn

from .structures import NestedTensor


class PositionEmbeddingSine(nn.Module):
    """2-D sine/cosine encoding of pixel positions, normalised to the unpadded image extent.

    Output channels: `num_pos_feats` for y followed by `num_pos_feats` for x.
    """

    def __init__(self, num_pos_feats: int = 128, temperature: int = 10000, normalize: bool = True,
                 scale: float = 2 * math.pi):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale

    def forward(self, tensor_list: NestedTensor) -> torch.Tensor:
        not_mask = ~tensor_list.mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            eps = 1e-6
            y_embed = (y_embed - 0.5) / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = (x_embed - 0.5) / (x_embed[:, :, -1:] + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=not_mask.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_pos_feats)
        pos_x = _interleave_sin_cos(x_embed[:, :, :, None] / dim_t)
        pos_y = _interleave_sin_cos(y_embed[:, :, :, None] / dim_t)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class PositionEmbeddingLearned(nn.Module):
    """Learned row/column embeddings (upstream's `--position_embedding learned`)."""

    def __init__(self, num_pos_feats: int = 128):
        super().__init__()
        self.row_embed = nn.Embedding(50, num_pos_feats)
        self.col_embed = nn.Embedding(50, num_pos_feats)
        nn.init.uniform_(self.row_embed.weight)
        nn.init.uniform_(self.col_embed.weight)

    def forward(self, tensor_list: NestedTensor) -> torch.Tensor:
        x = tensor_list.tensors
        h, w = x.shape[-2:]
        x_emb = self.col_embed(torch.arange(w, device=x.device))
        y_emb = self.row_embed(torch.arange(h, device=x.device))
        pos = torch.cat([x_emb.unsqueeze(0).repeat(h, 1, 1), y_emb.unsqueeze(1).repeat(1, w, 1)], dim=-1)
        return pos.permute(2, 0, 1).unsqueeze(0).repeat(x.shape[0], 1, 1, 1)


def _interleave_sin_cos(angles: torch.Tensor) -> torch.Tensor:
    """[..., F] angles -> [..., F] with sin of even and cos of odd channels, interleaved pairwise."""
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)


def pos2posemb(pos: torch.Tensor, num_pos_feats: int = 64, temperature: int = 10000) -> torch.Tensor:
    """Sine encoding of each of the last-dim values of `pos` (in [0, 1]): [..., k] -> [..., k * num_pos_feats].

    MOTRv2 uses it for the decoder's positional query (boxes, 4 x 64 = 256) and to turn a
    proposal's detection score into a content query (1 x 256).
    """
    pos = pos * (2 * math.pi)
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=pos.device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_pos_feats)
    return _interleave_sin_cos(pos[..., None] / dim_t).flatten(-2)


def build_position_encoding(args) -> nn.Module:
    n_steps = args.hidden_dim // 2
    if args.position_embedding in ("sine", "v2"):
        return PositionEmbeddingSine(n_steps, normalize=True)
    if args.position_embedding in ("learned", "v3"):
        return PositionEmbeddingLearned(n_steps)
    raise ValueError(f"--position_embedding must be 'sine' or 'learned', got {args.position_embedding!r}")
