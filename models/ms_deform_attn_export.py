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
