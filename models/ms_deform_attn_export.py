"""Multi-scale deformable attention for export: standard ONNX ops only, every size a tensor.

`ms_deform_attn_export` computes what `ms_deform_attn_reference` computes (one bilinear
`grid_sample` per level, zero padding, align_corners=False; the ONNX `GridSample` op, opset 16+),
but the level layout is a tensor, `spatial_shapes` `[L, 2]` int64 (H, W), rather than Python ints:
traced by `torch.onnx.export`, the graph slices and reshapes the value table with shapes computed
from that tensor, so one graph serves any image size and any number of queries. The weighted sum is
accumulated level by level (no `[N*M, D, Lq, L*P]` stack is materialised).

`MSDeformAttn.implementation = "export"` routes the module to it (`models/export.py` sets it while
tracing); eager PyTorch gives the same numbers, which the tests check.
"""
import torch
import torch.nn.functional as F


def ms_deform_attn_export(value: torch.Tensor, spatial_shapes: torch.Tensor, sampling_locations: torch.Tensor,
                          attention_weights: torch.Tensor) -> torch.Tensor:
    """value [N, S, M, D], spatial_shapes [L, 2] int64 tensor, sampling_locations [N, Lq, M, L, P, 2]
    in [0, 1] (x, y), attention_weights [N, Lq, M, L, P] -> [N, Lq, M*D]."""
    n, _, m, d = value.shape
    n_levels, n_points = sampling_locations.shape[3], sampling_locations.shape[4]
    sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    starts = torch.cumsum(sizes, 0) - sizes
    grids = 2 * sampling_locations - 1  # grid_sample's [-1, 1]
    flat = value.flatten(2).transpose(1, 2)  # [N, M*D, S]
    out = None
    for lvl in range(n_levels):
        h, w = spatial_shapes[lvl, 0], spatial_shapes[lvl, 1]
        v = flat[:, :, starts[lvl]:starts[lvl] + sizes[lvl]].reshape(n * m, d, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)  # [N*M, Lq, P, 2]
        sampled = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)  # [N*M, D, Lq, P]
        wl = attention_weights[:, :, :, lvl].transpose(1, 2).flatten(0, 1).unsqueeze(1)  # [N*M, 1, Lq, P]
        part = (sampled * wl).sum(-1)
        out = part if out is None else out + part
    return out.reshape(n, m * d, -1).transpose(1, 2)
