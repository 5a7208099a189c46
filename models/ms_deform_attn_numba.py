"""Multi-scale deformable attention as one fused CPU kernel (Numba), for inference.

The gather path (`ms_deform_attn_ops.ms_deform_attn_gather`) writes a row index and a weight for
each of the 4 bilinear corners of every sample ([N*Lq*M, 4*L*P] each, ~100 MB per encoder layer
at 800x1422) before `embedding_bag` reads them back; computing them takes twice as long as the
gather itself. Here each (query, head) computes its samples' corners and weights in registers and
accumulates the D channels of the value rows straight away: nothing is materialised.

Semantics are those of `ms_deform_attn_reference` (grid_sample: bilinear, zero padding,
align_corners=False; pixel coordinate x * W - 0.5; corners outside the map weigh 0), with what
`MSDeformAttn.forward` computes before the sampling (locations = reference + offset / size, the
softmax / sigmoid of the attention logits) done here too, in float32, in the same order of
operations. One entry point, `sample_from_offsets`: the exported CPU backends call it between
their graphs (`models/backends.py`), so a runtime that runs the projections in bf16 still places the
samples in float32.

Numba compiles the kernel on first use (~2 s, then cached on disk next to this file); `available()`
says whether it imports. The kernel uses Numba's threads (as many as torch's intra-op threads).
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np
import torch

__all__ = ["available", "sample_from_offsets"]

try:
    import numba as nb
except ImportError:  # the exported backends then sample with the gather path
    nb = None


def available() -> bool:
    """Whether numba imports (the kernels compile on first call)."""
    return nb is not None


if nb is not None:
    from numba import types
    from numba.extending import intrinsic, overload

    @intrinsic
    def _bitcast(typingctx, value, to):
        """The bits of a 32-bit scalar read as the other 32-bit type (uint32 <-> float32)."""
        target = to.instance_type
        sig = target(value, to)

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(target))
        return sig, codegen

    def as_float32(x):
        """A table entry as float32 (bf16 tables are uint16 arrays of bf16 bits)."""

    @overload(as_float32, inline="always")
    def _as_float32(x):
        if x == types.uint16:
            return lambda x: _bitcast(np.uint32(np.uint32(x) << np.uint32(16)), types.float32)
        return lambda x: np.float32(x)

    def from_float32(x, like):
        """A float32 result in the output array's dtype (bf16 bits: rounded to nearest even)."""

    @overload(from_float32, inline="always")
    def _from_float32(x, like):
        if like == types.uint16:
            def to_bf16(x, like):
                bits = _bitcast(np.float32(x), types.uint32)
                return np.uint16((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
            return to_bf16
        return lambda x, like: x

    @nb.njit(inline="always")
    def accumulate(table, m, h, w, start, px, py, a, acc):
        """acc += a * bilinear(value level at pixel (px, py)), zero outside the map."""
        wf, hf = np.float32(w), np.float32(h)
        # Far-away (even infinite) points: clamped to just outside the map, all 4 corners outside.
        px = min(max(px, np.float32(-2.0)), wf)
        py = min(max(py, np.float32(-2.0)), hf)
        x0f, y0f = np.floor(px), np.floor(py)
        fx, fy = px - x0f, py - y0f
        x0, y0 = int(x0f), int(y0f)
        d = acc.shape[0]
        for dy in range(2):
            yc = y0 + dy
            if yc < 0 or yc >= h:
                continue
            wy = (fy if dy == 1 else np.float32(1.0) - fy) * a
            for dx in range(2):
                xc = x0 + dx
                if xc < 0 or xc >= w:
                    continue
                weight = (fx if dx == 1 else np.float32(1.0) - fx) * wy
                row = start + yc * w + xc
                for c in range(d):
                    acc[c] += weight * as_float32(table[row, m, c])

    @nb.njit(parallel=True, cache=True)
    def from_offsets(value, shapes, starts, ref, offsets, logits, sigmoid, out):
        # ref [N, Lq, L, 2] (x, y in [0, 1]), offsets [N, Lq, M, L, P, 2] (pixels of each level),
        # logits [N, Lq, M, L*P]: softmax over a head's L*P samples, or each sample's sigmoid.
        n_batch, lq, n_heads, n_levels, n_points, _ = offsets.shape
        d = value.shape[3]
        k = n_levels * n_points
        for job in nb.prange(n_batch * lq):
            n, q = job // lq, job % lq
            table = value[n]
            acc = np.empty(d, np.float32)
            weights = np.empty(k, np.float32)
            for m in range(n_heads):
                if sigmoid:
                    for i in range(k):
                        weights[i] = np.float32(1.0) / (np.float32(1.0) + math.exp(-as_float32(logits[n, q, m, i])))
                else:
                    top = as_float32(logits[n, q, m, 0])
                    for i in range(1, k):
                        top = max(top, as_float32(logits[n, q, m, i]))
                    total = np.float32(0.0)
                    for i in range(k):
                        weights[i] = math.exp(as_float32(logits[n, q, m, i]) - top)
                        total += weights[i]
                    for i in range(k):
                        weights[i] = weights[i] / total
                for c in range(d):
                    acc[c] = 0.0
                for lvl in range(n_levels):
                    h, w = shapes[lvl, 0], shapes[lvl, 1]
                    wf, hf = np.float32(w), np.float32(h)
                    for p in range(n_points):
                        # MSDeformAttn's location, then the pixel coordinate, in its order of operations
                        lx = ref[n, q, lvl, 0] + as_float32(offsets[n, q, m, lvl, p, 0]) / wf
                        ly = ref[n, q, lvl, 1] + as_float32(offsets[n, q, m, lvl, p, 1]) / hf
                        accumulate(table, m, h, w, starts[lvl], lx * wf - np.float32(0.5),
                                   ly * hf - np.float32(0.5), weights[lvl * n_points + p], acc)
                for c in range(d):
                    out[n, q, m, c] = from_float32(acc[c], out[n, q, m, c])



def _kernel():
    if nb is None:
        raise ImportError("ms_deform_attn_numba needs numba (pip install numba)")
    return from_offsets


def _levels(spatial_shapes) -> Tuple[np.ndarray, np.ndarray]:
    shapes = np.asarray(spatial_shapes.tolist() if isinstance(spatial_shapes, torch.Tensor) else spatial_shapes,
                        dtype=np.int64).reshape(-1, 2)
    sizes = shapes[:, 0] * shapes[:, 1]
    return shapes, np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


def _f32(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        t = t.detach().to("cpu", torch.float32).contiguous().numpy()
    return np.ascontiguousarray(t, dtype=np.float32)


def _check(value: np.ndarray, shapes: np.ndarray, offsets: np.ndarray):
    if value.ndim != 4:
        raise ValueError(f"ms_deform_attn_numba: value must be [N, S, M, D], got {value.shape}")
    if int((shapes[:, 0] * shapes[:, 1]).sum()) != value.shape[1] or (shapes <= 0).any():
        raise ValueError(f"ms_deform_attn_numba: spatial_shapes {shapes.tolist()} do not cover value's "
                         f"S={value.shape[1]} tokens")
    n, _, m, _ = value.shape
    if offsets.ndim != 6 or offsets.shape[0] != n or offsets.shape[2] != m or offsets.shape[3] != len(shapes) \
            or offsets.shape[5] != 2:
        raise ValueError(f"ms_deform_attn_numba: offsets must be [N, Lq, M, L, P, 2] with N={n}, M={m}, "
                         f"L={len(shapes)}, got {offsets.shape}")


def _set_threads():
    import numba
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def sample_from_offsets(value, spatial_shapes: Sequence[Tuple[int, int]], reference_points, offsets, logits,
                        sigmoid: bool = False, bf16_out: bool = False) -> np.ndarray:
    """MSDeformAttn's sampling for point references, from its projections: value [N, S, M, D];
    reference_points [N, Lq, L, 2] (x, y in [0, 1]); offsets [N, Lq, M, L, P, 2] (the sampling_offsets
    projection, pixels of each level); logits [N, Lq, M, L*P] (the attention_weights projection:
    softmax over a head's samples, or each one's `sigmoid`) -> [N, Lq, M, D], no autograd. Arrays or
    tensors; value, offsets and logits may be uint16 arrays of bf16 bits (what a bf16 runtime hands
    over: half the bytes to read). `bf16_out`: the result as bf16 bits (uint16, rounded to nearest
    even), else float32. Computes in float32."""
    from_offsets = _kernel()
    v, off, lg = (np.ascontiguousarray(a) if isinstance(a, np.ndarray) and a.dtype == np.uint16 else _f32(a)
                  for a in (value, offsets, logits))
    ref = _f32(reference_points)
    shapes, starts = _levels(spatial_shapes)
    _check(v, shapes, off)
    n, lq, m, n_levels, n_points, _ = off.shape
    if ref.shape != (n, lq, n_levels, 2):
        raise ValueError(f"sample_from_offsets: reference_points must be {(n, lq, n_levels, 2)}, "
                         f"got {ref.shape}")
    if lg.size != n * lq * m * n_levels * n_points:
        raise ValueError(f"sample_from_offsets: logits must be {(n, lq, m, n_levels * n_points)}, "
                         f"got {lg.shape}")
    lg = lg.reshape(n, lq, m, n_levels * n_points)
    out = np.empty((n, lq, m, v.shape[3]), np.uint16 if bf16_out else np.float32)
    _set_threads()
    from_offsets(v, shapes, starts, ref, off, lg, bool(sigmoid), out)
    return out
