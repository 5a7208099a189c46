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

`ms_deform_attn_export_rows` is the decoder's (`MSDeformAttn(project_after_sampling=True)`): every
(query, head) pair samples one table of C+1 = 257 channels, which the runtimes' `GridSample` walks one
channel plane at a time, recomputing the corners for each (40 of onnxruntime's 66 ms decode at
800x1422). It gathers each corner's whole row instead (`Gather` on a channels-last table) and sums
them weighted with one batched `MatMul`: a decode 0.040 s against 0.068 s in OpenVINO, 0.048 against
0.059 s in onnxruntime (best of 6, 70 queries, the two graphs in turn in one process).

`MSDeformAttn.implementation = "export"` routes the module to them (`models/export.py` sets it while
tracing); eager PyTorch gives the same numbers, which the tests check.
"""
import torch
import torch.nn.functional as F


def _level_sizes_and_starts(spatial_shapes: torch.Tensor):
    """Each level's token count and first token in the flattened table, as tensors (traced)."""
    sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    return sizes, torch.cumsum(sizes, 0) - sizes


def ms_deform_attn_export(value_t: torch.Tensor, spatial_shapes: torch.Tensor, sampling_locations: torch.Tensor,
                          attention_weights: torch.Tensor) -> torch.Tensor:
    """value_t [N*M, D, S] (head-major channels first), spatial_shapes [L, 2] int64 tensor,
    sampling_locations [N, Lq, M, L, P, 2] in [0, 1] (x, y), attention_weights [N, Lq, M, L, P]
    -> [N, Lq, M*D]."""
    nm, d, _ = value_t.shape
    n, lq, m, n_levels = sampling_locations.shape[:4]
    sizes, starts = _level_sizes_and_starts(spatial_shapes)
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


# The four corners of a bilinear sample, (dx, dy), in the order the weights are laid out.
_CORNERS = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0))


def ms_deform_attn_export_rows(table: torch.Tensor, spatial_shapes: torch.Tensor, sampling_locations: torch.Tensor,
                               attention_weights: torch.Tensor) -> torch.Tensor:
    """table [N, S, C] (channels last: one table every query samples), spatial_shapes [L, 2] int64
    tensor, sampling_locations [N, Lq, 1, L, P, 2] in [0, 1] (x, y), attention_weights [N, Lq, 1, L, P]
    -> [N, Lq, C]: what `ms_deform_attn_reference` gives for one head (bilinear, zero padding,
    align_corners=False), as gathers of whole rows."""
    n, s, c = table.shape
    lq = sampling_locations.shape[1]
    loc, attn = sampling_locations[:, :, 0], attention_weights[:, :, 0]        # [N, Lq, L, P, 2], [N, Lq, L, P]
    sizes, starts = _level_sizes_and_starts(spatial_shapes)
    starts = starts.to(loc.dtype)
    wh = spatial_shapes.flip(-1).to(loc.dtype)                                  # [L, 2]: (W, H)
    pixel = loc * wh[:, None, :] - 0.5                                          # pixel centres at .5
    base = pixel.floor()
    frac = (pixel - base).unsqueeze(-2)                                         # [N, Lq, L, P, 1, 2]
    corner = torch.tensor(_CORNERS, dtype=loc.dtype)                            # [4, 2]
    at = base.unsqueeze(-2) + corner                                            # [N, Lq, L, P, 4, 2], whole numbers
    # Arithmetic rather than Where (slow under broadcasting in onnxruntime): (dx ? fx : 1 - fx) per axis,
    # times 1 on the map and 0 off it (`at` is whole, so the clamps are 0 or 1).
    bilinear = (1 - corner) + (2 * corner - 1) * frac
    on_map = (at + 1).clamp(0, 1) * (wh[:, None, None, :] - at).clamp(0, 1)
    weight = (bilinear * on_map).prod(-1) * attn.unsqueeze(-1)                  # [N, Lq, L, P, 4]
    # A corner off the map weighs 0, so any row will do for it: clamped into the table.
    row = starts[:, None, None] + at[..., 1] * wh[:, 0, None, None] + at[..., 0]
    row = torch.minimum(row.clamp(min=0), sizes.sum().to(loc.dtype) - 1).to(torch.int64)
    row = row + (torch.arange(n) * s).view(n, 1, 1, 1, 1)
    k = weight.shape[2] * weight.shape[3] * len(_CORNERS)
    rows = table.reshape(n * s, c).index_select(0, row.reshape(-1)).reshape(n * lq, k, c)
    return torch.matmul(weight.reshape(n * lq, 1, k).to(table.dtype), rows).reshape(n, lq, c)
