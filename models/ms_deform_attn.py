"""Multi-scale deformable attention (Deformable DETR), in plain PyTorch.

Each query looks at `n_points` learned offsets around its reference point on each of the
`n_levels` feature maps, per head, and takes an attention-weighted sum of the bilinearly
sampled values.  No compiled extension is needed: `ms_deform_attn_reference` is the
`grid_sample` formulation the public code uses on CPU, and `ms_deform_attn` dispatches to the
fastest implementation available (see `models/ms_deform_attn_ops.py`), all of which agree with
the reference to float rounding.
"""
import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from util.device import float32_if_half

from .ms_deform_attn_export import ms_deform_attn_export, ms_deform_attn_export_rows


def ms_deform_attn_reference(value: torch.Tensor, spatial_shapes: Sequence[Tuple[int, int]],
                             sampling_locations: torch.Tensor,
                             attention_weights: torch.Tensor) -> torch.Tensor:
    """The reference computation: one `grid_sample` per level.

    value:              [N, S, M, D]   (S = sum of H*W over levels, M heads, D channels per head)
    spatial_shapes:     [(H, W)] per level
    sampling_locations: [N, Lq, M, L, P, 2] in [0, 1], x then y
    attention_weights:  [N, Lq, M, L, P]
    returns             [N, Lq, M*D]
    """
    n, _, m, d = value.shape
    _, lq, _, n_levels, n_points, _ = sampling_locations.shape
    values = value.split([int(h) * int(w) for h, w in spatial_shapes], dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    sampled = []
    for lvl, (h, w) in enumerate(spatial_shapes):
        # [N, HW, M, D] -> [N*M, D, H, W]
        v = values[lvl].flatten(2).transpose(1, 2).reshape(n * m, d, int(h), int(w))
        # [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, n_levels * n_points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)
    return out.view(n, m * d, lq).transpose(1, 2).contiguous()


def ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    """Dispatch to the fastest available implementation (same signature as the reference,
    plus `level_start_index`)."""
    try:
        from .ms_deform_attn_ops import ms_deform_attn_fast
    except ImportError:
        return ms_deform_attn_reference(value, spatial_shapes, sampling_locations, attention_weights)
    return ms_deform_attn_fast(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)


def sampling_table(input_flatten: torch.Tensor, padding_mask=None) -> torch.Tensor:
    """The features as a late-projecting attention samples them (`MSDeformAttn(project_after_sampling=True)`):
    `input_flatten` [N, S, C] with a column of ones, the whole row zero at padding, as [N, S, 1, C+1] (one
    table that every head samples).
    The ones column sampled is how much of the attention fell on the map, which weighs the value
    projection's bias: zero padding drops a corner's whole value, bias included."""
    n, s, _ = input_flatten.shape
    ones = input_flatten.new_ones(n, s, 1) if padding_mask is None else (~padding_mask[..., None]).to(input_flatten.dtype)
    if padding_mask is not None:
        input_flatten = input_flatten.masked_fill(padding_mask[..., None], 0.0)
    return torch.cat([input_flatten, ones], -1).unsqueeze(2)


class MSDeformAttn(nn.Module):
    """The attention module; parameter names match the public Deformable DETR / MOTRv2 code.

    `project_after_sampling` (the decoder's cross-attention): sample the features and project the few
    sampled rows, rather than project every token into the value table and sample that. The value
    projection is linear and the sampling a weighted sum, so the two orders give the same numbers to
    float rounding, at Lq*M*(4*L*P + D)*C multiply-adds instead of S*C*C: for the decoder's ~100
    queries on the ~24k tokens of an 800x1422 frame, 1.5 ms a layer on 2 CPU cores instead of 20. The
    encoder (Lq = S) keeps the value table, which is cheaper there.
    """

    # Which implementation forward() uses: "auto" (fastest), "reference" (for tests/benchmarks), or
    # "export" (standard ONNX ops; `spatial_shapes` is then a [L, 2] int64 tensor: models/export.py).
    implementation = "auto"

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4,
                 sigmoid_attn: bool = False, project_after_sampling: bool = False):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sigmoid_attn = sigmoid_attn
        self.project_after_sampling = project_after_sampling
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def exporting(self) -> bool:
        return self.implementation == "export"

    def reset_parameters(self):
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        # Initial offsets point in n_heads directions, at distances 1..n_points.
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def project_value(self, input_flatten, padding_mask=None, channels_first: bool = False):
        """The value table of `input_flatten` [N, S, C]: [N, S, M, D], zero at padding
        (`channels_first`: [N*M, D, S], as the export formulation takes it)."""
        n, s, _ = input_flatten.shape
        m = self.n_heads
        if channels_first:  # W @ x^T: the runtimes fold the transpose into the matmul
            value = torch.matmul(self.value_proj.weight, input_flatten.transpose(1, 2)) + self.value_proj.bias[:, None]
            if padding_mask is not None:
                value = value.masked_fill(padding_mask[:, None], 0.0)
            return value.reshape(n * m, self.d_model // m, s)
        value = self.value_proj(input_flatten)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        return value.view(n, s, m, self.d_model // m)

    def sampling_inputs(self, query, input_flatten, padding_mask=None, channels_first: bool = False):
        """The projections the sampling needs: value (`project_value`'s), offsets [N, Lq, M, L, P, 2]
        (pixels of each level) and attention logits [N, Lq, M, L*P]; offsets and logits in float32 even
        under autocast: bf16's 8-bit mantissa would move sample locations by pixels (a value at 0.7 is
        rounded by 0.002)."""
        value = self.project_value(input_flatten, padding_mask, channels_first)
        return (value,) + self.sampling_geometry(query)

    def sampling_geometry(self, query):
        """offsets [N, Lq, M, L, P, 2] and attention logits [N, Lq, M, L*P] of `query` [N, Lq, C], in float32."""
        n, lq, _ = query.shape
        m, lv, p = self.n_heads, self.n_levels, self.n_points
        with torch.autocast(query.device.type, enabled=False):
            query32 = float32_if_half(query)
            offsets = self.sampling_offsets(query32).view(n, lq, m, lv, p, 2)
            logits = self.attention_weights(query32).view(n, lq, m, lv * p)
        return offsets, logits

    def forward(self, query, reference_points, input_flatten, spatial_shapes: List[Tuple[int, int]],
                level_start_index, padding_mask=None, table=None):
        """
        query:            [N, Lq, C]
        reference_points: [N, Lq, L, 2] (points) or [N, Lq, L, 4] (boxes cx, cy, w, h), in [0, 1]
        input_flatten:    [N, S, C]
        spatial_shapes:   [(H, W)] per level (python ints)
        padding_mask:     [N, S], True at padding
        table:            with `project_after_sampling`, `sampling_table(input_flatten, padding_mask)`
                          when the caller has it (the decoder makes it once for its layers); then
                          `input_flatten` is not read
        """
        n, lq, _ = query.shape
        m, lv, p = self.n_heads, self.n_levels, self.n_points
        export = self.exporting()
        late = self.project_after_sampling
        if table is not None and not late:
            raise ValueError("MSDeformAttn: a sampling table was given to an attention that projects its values "
                             "first (project_after_sampling=False); it would be ignored")
        if late:
            value = sampling_table(input_flatten, padding_mask) if table is None else table
            offsets, logits = self.sampling_geometry(query)
        else:
            value, offsets, logits = self.sampling_inputs(query, input_flatten, padding_mask, channels_first=export)
        with torch.autocast(query.device.type, enabled=False):
            weights = (logits.sigmoid() if self.sigmoid_attn else logits.softmax(-1)).view(n, lq, m, lv, p)
            reference_points = float32_if_half(reference_points)
        if reference_points.shape[-1] == 2:
            if export:  # the level sizes are a tensor there
                normaliser = spatial_shapes.flip(-1).to(offsets.dtype)
            else:
                normaliser = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=offsets.dtype,
                                          device=query.device)
            locations = reference_points[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            locations = (reference_points[:, :, None, :, None, :2]
                         + offsets / p * reference_points[:, :, None, :, None, 2:] * 0.5)
        else:
            raise ValueError(f"reference_points must end in 2 or 4, got {reference_points.shape[-1]}")
        if late:  # every head samples the one table: the sampling's queries are (query, head) pairs
            locations = locations.reshape(n, lq * m, 1, lv, p, 2)
            weights = weights.reshape(n, lq * m, 1, lv, p)
        # Under autocast the value table may be bf16/fp16 while the geometry is float32: grid_sample
        # wants one dtype (the fast path takes both and samples in float32).
        if export and late:
            out = ms_deform_attn_export_rows(value[:, :, 0], spatial_shapes, locations, weights)
        elif export:
            out = ms_deform_attn_export(value, spatial_shapes, locations.to(value.dtype), weights.to(value.dtype))
        elif self.implementation == "reference":
            out = ms_deform_attn_reference(value, spatial_shapes, locations.to(value.dtype), weights.to(value.dtype))
        else:
            out = ms_deform_attn(value, spatial_shapes, level_start_index, locations, weights)
        if late:
            out = self.project_sampled(out.reshape(n, lq, m, self.d_model + 1))
        return self.output_proj(out)

    def project_sampled(self, sampled: torch.Tensor) -> torch.Tensor:
        """What sampling the value table would have given, from the sampled table rows `sampled`
        [N, Lq, M, C+1] (`sampling_table`'s columns, per head): each head's slice of the value
        projection applied to its rows, its bias weighted by the ones column. -> [N, Lq, M*D]."""
        n, lq, m, _ = sampled.shape
        c, d = self.d_model, self.d_model // m
        weight = self.value_proj.weight.view(m, d, c).transpose(1, 2)          # [M, C, D]
        heads = torch.matmul(sampled[..., :c].transpose(1, 2), weight)           # [N, M, Lq, D]
        heads = heads + sampled[..., c:].transpose(1, 2) * self.value_proj.bias.view(m, 1, d)
        return heads.transpose(1, 2).reshape(n, lq, c)
