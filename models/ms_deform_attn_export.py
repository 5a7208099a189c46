"""Multi-scale deformable attention for export: standard ONNX ops only, every size a tensor.

`ms_deform_attn_export` computes what `ms_deform_attn_reference` computes (one bilinear
`grid_sample` per level, zero padding, align_corners=False; the ONNX `GridSample` op, opset 16+),
but the level layout is a tensor, `spatial_shapes` `[L, 2]` int64 (H, W), rather than Python ints:
traced by `torch.onnx.export`, the graph slices and reshapes the value table with shapes computed
from that tensor, so one graph serves any image size and any number of queries.

The layouts are chosen for the runtimes (measured in OpenVINO, an encoder layer at 800x1422: 0.18 s
against 0.28 s for the reference's layout): the value table comes channels-first, [N*M, D, S], as
the value projection computes it (`W @ x^T`: no transpose of the tokens per level), and the grid is
laid out [N*M, P, Lq] so that the weighted sum over points reduces a non-innermost axis of
`GridSample`'s output [N*M, D, P, Lq], accumulated level by level.

`MSDeformAttn.implementation = "export"` routes the module to it (`models/export.py` sets it while
tracing); eager PyTorch gives the same numbers, which the tests check.
"""
import torch
import torch.nn.functional as F


def ms_deform_attn_export(value_t: torch.Tensor, spatial_shapes: torch.Tensor, sampling_locations: torch.Tensor,
                          attention_weights: torch.Tensor) -> torch.Tensor:
    """value_t [N*M, D, S] (head-major channels first), spatial_shapes [L, 2] int64 tensor,
    sampling_locations [N, Lq, M, L, P, 2] in [0, 1] (x, y), attention_weights [N, Lq, M, L, P]
    -> [N, Lq, M*D]."""
    nm, d, _ = value_t.shape
    n, lq, m, n_levels = sampling_locations.shape[:4]
    sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    starts = torch.cumsum(sizes, 0) - sizes
    grids = (2 * sampling_locations - 1).permute(0, 2, 3, 4, 1, 5).flatten(0, 1)  # [N*M, L, P, Lq, 2], [-1, 1]
    weights = attention_weights.permute(0, 2, 3, 4, 1).flatten(0, 1).unsqueeze(2)  # [N*M, L, 1, P, Lq]
    out = None
    for lvl in range(n_levels):
        h, w = spatial_shapes[lvl, 0], spatial_shapes[lvl, 1]
        v = value_t[:, :, starts[lvl]:starts[lvl] + sizes[lvl]].reshape(nm, d, h, w)
        sampled = F.grid_sample(v, grids[:, lvl], mode="bilinear", padding_mode="zeros", align_corners=False)
        part = (sampled * weights[:, lvl]).sum(2)  # [N*M, D, Lq]
        out = part if out is None else out + part
    return out.reshape(n, m * d, lq).transpose(1, 2)


def ms_deform_attn_export_gather(value: torch.Tensor, spatial_shapes: torch.Tensor, sampling_locations: torch.Tensor,
                                 attention_weights: torch.Tensor) -> torch.Tensor:
    """The same result from the value table in its natural layout, value [N, S, M, D]: each sample's
    4 bilinear corners are gathered as rows of the [N*S*M, D] table and summed with their weights.
    For few queries (the decoder's): it materialises [N, Lq, M, L*P*4, D] but needs no
    channels-first copy of the S tokens per layer, which the grid_sample layout costs."""
    n, s, m, d = value.shape
    lq, n_levels, n_points = sampling_locations.shape[1], sampling_locations.shape[3], sampling_locations.shape[4]
    size = spatial_shapes.flip(-1).to(sampling_locations.dtype)  # [L, 2] (W, H)
    last = spatial_shapes.flip(-1) - 1
    sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    starts = torch.cumsum(sizes, 0) - sizes
    per_level = (1, 1, 1, n_levels, 1, 2)
    pix = sampling_locations * size.view(per_level) - 0.5  # pixel centres at integers
    # Far-away points: clamped to just outside the map (all 4 corners outside, as in grid_sample).
    pix = torch.minimum(pix.clamp(min=-2.0), size.view(per_level))
    low = pix.floor()
    frac = pix - low
    step = torch.arange(2, dtype=torch.int64)  # the corner below / above on each axis
    corner = low.to(torch.int64).unsqueeze(-1) + step  # [N, Lq, M, L, P, 2 (x, y), 2]
    inside = (corner >= 0) & (corner <= last.view(*per_level, 1))
    corner = torch.minimum(corner.clamp(min=0), last.view(*per_level, 1))
    axis_w = torch.where(step == 1, frac.unsqueeze(-1), 1 - frac.unsqueeze(-1)) * inside.to(frac.dtype)
    wy = axis_w[..., 1, :] * attention_weights.unsqueeze(-1)  # [N, Lq, M, L, P, 2]
    weights = wy.unsqueeze(-1) * axis_w[..., 0, :].unsqueeze(-2)  # [N, Lq, M, L, P, 2 (y), 2 (x)]
    token = starts.view(1, 1, 1, n_levels, 1, 1) + corner[..., 1, :] * spatial_shapes[:, 1].view(1, 1, 1, n_levels, 1, 1)
    rows = ((torch.arange(n, dtype=torch.int64).view(n, 1, 1, 1, 1, 1) * s + token) * m
            + torch.arange(m, dtype=torch.int64).view(1, 1, m, 1, 1, 1))
    rows = rows.unsqueeze(-1) + (corner[..., 0, :] * m).unsqueeze(-2)  # [N, Lq, M, L, P, 2, 2]
    gathered = value.reshape(n * s * m, d)[rows.reshape(-1)].view(n, lq, m, -1, d)
    out = (gathered * weights.reshape(n, lq, m, -1, 1).to(value.dtype)).sum(3)
    return out.reshape(n, lq, m * d)
