"""Deformable DETR encoder-decoder with iterative box refinement, as MOTRv2 configures it.

The decoder's content queries (`tgt`) are MOTRv2's `query_pos` field (learned queries,
proposal-score embeddings, or track embeddings from QIM); its positional queries are the sine
encoding of the current reference boxes, recomputed at every layer.
"""
import copy
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from util.device import float32_if_half

from .ms_deform_attn import MSDeformAttn, sampling_table
from .position_encoding import pos2posemb
from .structures import inverse_sigmoid


class DeformableTransformer(nn.Module):
    def __init__(self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 1024, dropout: float = 0.1,
                 num_feature_levels: int = 4, dec_n_points: int = 4, enc_n_points: int = 4,
                 decoder_self_cross: bool = True, sigmoid_attn: bool = False):
        super().__init__()
        self.d_model = d_model
        self.nhead = nhead
        encoder_layer = DeformableTransformerEncoderLayer(d_model, dim_feedforward, dropout, num_feature_levels,
                                                          nhead, enc_n_points, sigmoid_attn)
        self.encoder = DeformableTransformerEncoder(encoder_layer, num_encoder_layers)
        decoder_layer = DeformableTransformerDecoderLayer(d_model, dim_feedforward, dropout, num_feature_levels,
                                                          nhead, dec_n_points, decoder_self_cross, sigmoid_attn)
        self.decoder = DeformableTransformerDecoder(decoder_layer, num_decoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.reset_parameters()

    def reset_parameters(self):
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    @staticmethod
    def valid_ratio(mask: torch.Tensor) -> torch.Tensor:
        """Fraction of each feature map that is image rather than padding: [B, 2] as (w, h)."""
        _, h, w = mask.shape
        valid_h = (~mask[:, :, 0]).sum(1)
        valid_w = (~mask[:, 0, :]).sum(1)
        return torch.stack([valid_w.float() / w, valid_h.float() / h], -1)

    def encode(self, srcs: List[torch.Tensor], masks: List[torch.Tensor],
               pos_embeds: List[torch.Tensor]) -> "EncodedFeatures":
        """The encoder over the flattened feature levels (`srcs`/`pos_embeds` [B, C, H_l, W_l],
        `masks` [B, H_l, W_l]); depends on the image alone, so one encoding serves every decoder run."""
        spatial_shapes: List[Tuple[int, int]] = [tuple(s.shape[-2:]) for s in srcs]
        src_flatten = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        mask_flatten = torch.cat([m.flatten(1) for m in masks], 1)
        pos_flatten = torch.cat([p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1)
                                 for lvl, p in enumerate(pos_embeds)], 1)
        level_start_index = level_starts(spatial_shapes)
        valid_ratios = torch.stack([self.valid_ratio(m) for m in masks], 1)
        # A single unpadded image (tracking) has nothing to mask: skip masking the values in every layer.
        padding_mask = mask_flatten if bool(mask_flatten.any()) else None
        encoded = self.encoder(src_flatten, spatial_shapes, level_start_index, valid_ratios, pos_flatten,
                               padding_mask)
        return EncodedFeatures(encoded, spatial_shapes, level_start_index, valid_ratios, padding_mask)

    def decode(self, encoded: "EncodedFeatures", tgt: torch.Tensor, ref_pts: torch.Tensor,
               attn_mask: Optional[torch.Tensor] = None):
        """The decoder for content queries `tgt` [Q, C] at reference boxes `ref_pts` [Q, 4].
        Returns (hs [layers, B, Q, C], boxes [layers, B, Q, 4] (sigmoid space, with gradient))."""
        bs = encoded.tokens.shape[0]
        tgt = tgt.unsqueeze(0).expand(bs, -1, -1)
        reference_points = ref_pts.unsqueeze(0).expand(bs, -1, -1)
        return self.decoder(tgt, reference_points, encoded.tokens, encoded.spatial_shapes,
                            encoded.level_start_index, encoded.valid_ratios, encoded.padding_mask, attn_mask)


def level_starts(spatial_shapes: Sequence[Tuple[int, int]]) -> List[int]:
    """First row of each level in the flattened tokens of levels of size (H_l, W_l)."""
    starts = [0]
    for h, w in spatial_shapes[:-1]:
        starts.append(starts[-1] + h * w)
    return starts


@dataclass
class EncodedFeatures:
    """The encoder's output for one image batch, with the level layout the decoder needs."""
    tokens: torch.Tensor                      # [B, sum of H_l * W_l, C], the encoded feature tokens
    spatial_shapes: List[Tuple[int, int]]     # (H_l, W_l) per level
    level_start_index: List[int]              # first row of each level in `tokens`
    valid_ratios: torch.Tensor                # [B, levels, 2]
    padding_mask: Optional[torch.Tensor]      # [B, S] (True = padding), None when nothing is padded


class DeformableTransformerEncoderLayer(nn.Module):
    def __init__(self, d_model=256, d_ffn=1024, dropout=0.1, n_levels=4, n_heads=8, n_points=4,
                 sigmoid_attn=False):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points, sigmoid_attn=sigmoid_attn)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index, padding_mask=None):
        src2 = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index, padding_mask)
        return self.after_attention(src, src2)

    def after_attention(self, src, attended):
        """Residual, norm, feed-forward, norm: the layer after its attention's output `attended` [N, S, C]
        (the exported CPU backends run the attention's sampling between graphs, models/export.py)."""
        src = self.norm1(src + self.dropout1(attended))
        src2 = self.linear2(self.dropout2(F.relu(self.linear1(src), inplace=True)))
        return self.norm2(src + self.dropout3(src2))


class DeformableTransformerEncoder(nn.Module):
    def __init__(self, encoder_layer: nn.Module, num_layers: int):
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers)
        self.num_layers = num_layers

    @staticmethod
    def reference_points(spatial_shapes: Sequence[Tuple[int, int]], valid_ratios: torch.Tensor,
                         device) -> torch.Tensor:
        """Pixel centres of every level, normalised to the valid image area: [B, S, L, 2]."""
        points = []
        for lvl, (h, w) in enumerate(spatial_shapes):
            ref_y, ref_x = torch.meshgrid(
                torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
                torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device), indexing="ij")
            ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * h)
            ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * w)
            points.append(torch.stack((ref_x, ref_y), -1))
        return torch.cat(points, 1)[:, :, None] * valid_ratios[:, None]

    def forward(self, src, spatial_shapes, level_start_index, valid_ratios, pos, padding_mask):
        reference_points = self.reference_points(spatial_shapes, valid_ratios, src.device)
        for layer in self.layers:
            src = layer(src, pos, reference_points, spatial_shapes, level_start_index, padding_mask)
        return src


class DeformableTransformerDecoderLayer(nn.Module):
    def __init__(self, d_model=256, d_ffn=1024, dropout=0.1, n_levels=4, n_heads=8, n_points=4,
                 self_cross=True, sigmoid_attn=False):
        super().__init__()
        self.self_cross = self_cross
        # A few hundred queries on thousands of tokens: sampling the features and projecting the
        # samples is cheaper than a value table of every token (MSDeformAttn).
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points, sigmoid_attn=sigmoid_attn,
                                       project_after_sampling=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def _self_attention(self, tgt, query_pos, attn_mask):
        q = k = (tgt + query_pos).transpose(0, 1)
        tgt2 = self.self_attn(q, k, tgt.transpose(0, 1), attn_mask=attn_mask, need_weights=False)[0]
        return self.norm2(tgt + self.dropout2(tgt2.transpose(0, 1)))

    def _cross_attention(self, tgt, query_pos, reference_points, src, spatial_shapes, level_start_index,
                         padding_mask, table):
        tgt2 = self.cross_attn(tgt + query_pos, reference_points, src, spatial_shapes, level_start_index,
                               padding_mask, table=table)
        return self.norm1(tgt + self.dropout1(tgt2))

    def forward(self, tgt, query_pos, reference_points, src, spatial_shapes, level_start_index,
                padding_mask=None, attn_mask=None, table=None):
        """`table`: `sampling_table(src, padding_mask)` when the caller has it (the decoder, once for all
        its layers); made here otherwise."""
        cross = (reference_points, src, spatial_shapes, level_start_index, padding_mask, table)
        if self.self_cross:
            tgt = self._self_attention(tgt, query_pos, attn_mask)
            tgt = self._cross_attention(tgt, query_pos, *cross)
        else:
            tgt = self._cross_attention(tgt, query_pos, *cross)
            tgt = self._self_attention(tgt, query_pos, attn_mask)
        tgt2 = self.linear2(self.dropout3(F.relu(self.linear1(tgt), inplace=True)))
        return self.norm3(tgt + self.dropout4(tgt2))


class DeformableTransformerDecoder(nn.Module):
    def __init__(self, decoder_layer: nn.Module, num_layers: int):
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        # Set by MOTR: the per-layer box heads, shared with MOTR.bbox_embed (iterative refinement).
        self.bbox_embed: Optional[nn.ModuleList] = None

    def forward(self, tgt, reference_points, src, spatial_shapes, level_start_index, valid_ratios,
                padding_mask=None, attn_mask=None):
        """Returns every layer's output [layers, B, Q, C] and refined boxes [layers, B, Q, 4]."""
        output = tgt
        # The features as every layer's cross-attention samples them: made once per decode.
        table = sampling_table(src, padding_mask)
        outputs, boxes = [], []
        ratios4 = torch.cat([valid_ratios, valid_ratios], -1)[:, None]
        for lid, layer in enumerate(self.layers):
            reference_input = reference_points[:, :, None] * ratios4
            # 4 box coordinates x (d_model / 4) features: 64 each for the 256-d model
            query_pos = pos2posemb(reference_points, output.shape[-1] // 4)
            output = layer(output, query_pos, reference_input, src, spatial_shapes, level_start_index,
                           padding_mask, attn_mask, table=table)
            # Box of this layer = refinement of the box it started from; the next layer starts from
            # it without gradient (Deformable DETR's iterative refinement).
            with torch.autocast(output.device.type, enabled=False):  # boxes in float32 under autocast too
                refined = (self.bbox_embed[lid](float32_if_half(output)) + inverse_sigmoid(reference_points)).sigmoid()
            reference_points = refined.detach()
            outputs.append(output)
            boxes.append(refined)
        return torch.stack(outputs), torch.stack(boxes)


def _clones(module: nn.Module, n: int) -> nn.ModuleList:
    return nn.ModuleList([copy.deepcopy(module) for _ in range(n)])


def build_deformable_transformer(args) -> DeformableTransformer:
    if args.two_stage:
        raise NotImplementedError("--two_stage is not used by MOTRv2 and is not implemented")
    return DeformableTransformer(
        d_model=args.hidden_dim, nhead=args.nheads, num_encoder_layers=args.enc_layers,
        num_decoder_layers=args.dec_layers, dim_feedforward=args.dim_feedforward, dropout=args.dropout,
        num_feature_levels=args.num_feature_levels, dec_n_points=args.dec_n_points,
        enc_n_points=args.enc_n_points, decoder_self_cross=not args.decoder_cross_self,
        sigmoid_attn=args.sigmoid_attn)
