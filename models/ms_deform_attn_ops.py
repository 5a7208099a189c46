"""Fast multi-scale deformable attention: the same numbers as `ms_deform_attn_reference`, far less time.

The reference runs one `grid_sample` per level, stacks the samples and reduces them with the
attention weights; most of its time goes into materialising [N*M, D, Lq, L*P] sample tensors.
Here the bilinear corner weights and the attention weight are folded into one weight per
(query, head, level, point, corner), and one weighted gather-sum over the value table does the
rest:

    out[n, q, m] = sum_{l, p, corner} w[n, q, m, l, p, corner] * value[n, row(l, p, corner), m]

`F.embedding_bag(mode="sum", per_sample_weights=...)` does that gather-sum in one fused pass
(one "bag" per (n, q, m), 4*L*P rows each), reading the value tensor in place: viewed as a
table of N*S*M rows of D channels, row (n*S + s)*M + m is `value[n, s, m]`.  Geometry (pixel
coordinates, corner validity, weights) is computed with plain tensor ops, in chunks of queries
small enough to stay in cache; indices are int32 where they fit (faster than int64).  On CPU,
without autograd, the chunks run on torch.get_num_threads() worker threads that each use
single-threaded ops (see `_map_on_cpu_workers` for why).

Semantics are grid_sample's bilinear, zero padding, align_corners=False: pixel centres sit at
(i + 0.5) / W, so the pixel coordinate is x * W - 0.5, and corners outside the map get weight 0.

Autograd: the gather path is differentiable w.r.t. value, sampling_locations (through the
bilinear fractions, as in grid_sample) and attention_weights.  On CUDA, without grad, a Triton
kernel is used when `triton` imports (one program per (n, head, block of queries); computes and
accumulates in float32, returns the value dtype); anything else takes the gather path.

Precision: float64 inputs compute in float64; float32/float16/bfloat16 compute the geometry in
float32, then the gather-sum runs in the value dtype (embedding_bag accumulates in float32 for
half types) and the result is returned in the value dtype.
"""
import concurrent.futures
import os
import threading
import warnings
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = ["ms_deform_attn_fast", "ms_deform_attn_gather", "ms_deform_attn_triton", "triton_available"]

# (query, head, level, point) samples per chunk.  On CPU, chunks of 64k-512k samples keep the
# float temporaries at 0.25-2 MB (in cache) and give every worker thread several chunks; on CUDA
# chunks only bound memory (~100 bytes of temporaries per sample).
_CPU_CHUNK_MIN, _CPU_CHUNK_MAX = 1 << 16, 1 << 19
_CUDA_SAMPLES_PER_CHUNK = 1 << 24
# Largest table row count addressed with int32 indices (tests lower it to exercise int64).
_INT32_ROWS = 2 ** 31 - 1


def _levels(spatial_shapes, level_start_index, n_tokens: int) -> Tuple[List[Tuple[int, int]], List[int]]:
    """Python (H, W) per level and the start row of each level, checked against S."""
    if isinstance(spatial_shapes, torch.Tensor):
        spatial_shapes = spatial_shapes.tolist()
    shapes = [(int(h), int(w)) for h, w in spatial_shapes]
    starts, total = [], 0
    for h, w in shapes:
        if h <= 0 or w <= 0:
            raise ValueError(f"ms_deform_attn: every level needs H, W >= 1, got spatial_shapes={shapes}")
        starts.append(total)
        total += h * w
    if total != n_tokens:
        raise ValueError(f"ms_deform_attn: spatial_shapes {shapes} cover {total} tokens but value has S={n_tokens}")
    if level_start_index is not None:
        if isinstance(level_start_index, torch.Tensor):
            # Reading a CUDA tensor would force a device sync per call; the shapes already fix it.
            given = None if level_start_index.is_cuda else [int(i) for i in level_start_index.tolist()]
        else:
            given = [int(i) for i in level_start_index]
        if given is not None and given != starts:
            raise ValueError(f"ms_deform_attn: level_start_index {given} does not match spatial_shapes "
                             f"{shapes} (expected {starts})")
    return shapes, starts


def _check_shapes(value, sampling_locations, attention_weights, n_levels):
    if value.dim() != 4:
        raise ValueError(f"ms_deform_attn: value must be [N, S, M, D], got {tuple(value.shape)}")
    n, _, m, _ = value.shape
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError("ms_deform_attn: sampling_locations must be [N, Lq, M, L, P, 2], "
                         f"got {tuple(sampling_locations.shape)}")
    _, lq, m_loc, l_loc, p, _ = sampling_locations.shape
    if sampling_locations.shape[0] != n or m_loc != m or l_loc != n_levels:
        raise ValueError(f"ms_deform_attn: sampling_locations {tuple(sampling_locations.shape)} does not fit "
                         f"value {tuple(value.shape)} with {n_levels} levels")
    if tuple(attention_weights.shape) != (n, lq, m, n_levels, p):
        raise ValueError(f"ms_deform_attn: attention_weights must be {(n, lq, m, n_levels, p)}, "
                         f"got {tuple(attention_weights.shape)}")


def _geometry_dtype(value, sampling_locations):
    return torch.float64 if torch.float64 in (value.dtype, sampling_locations.dtype) else torch.float32


# --------------------------------------------------------------------------------------------
# Gather path (any device, differentiable)
# --------------------------------------------------------------------------------------------

def ms_deform_attn_gather(value: torch.Tensor, spatial_shapes: Sequence[Tuple[int, int]], level_start_index,
                          sampling_locations: torch.Tensor, attention_weights: torch.Tensor,
                          samples_per_chunk: Optional[int] = None) -> torch.Tensor:
    """Bilinear weights folded with the attention weights, then one `embedding_bag` gather-sum.
    Same arguments and result as `ms_deform_attn_reference` (plus level_start_index)."""
    shapes, starts = _levels(spatial_shapes, level_start_index, value.shape[1])
    _check_shapes(value, sampling_locations, attention_weights, len(shapes))
    n, s, m, d = value.shape
    lq, n_levels, n_points = sampling_locations.shape[1], sampling_locations.shape[3], sampling_locations.shape[4]
    if lq == 0 or n == 0:
        return value.new_zeros(n, lq, m * d)
    device = value.device
    geo = _geometry_dtype(value, sampling_locations)
    # int32 indices gather measurably faster than int64; fall back when rows would overflow.
    index_dtype = torch.int32 if n * s * m <= _INT32_ROWS else torch.int64
    k = n_levels * n_points

    def per_sample(rows: List[float], dtype) -> torch.Tensor:  # one value per level -> [1, L*P]
        return torch.tensor(rows, dtype=dtype, device=device).view(n_levels, 1).expand(n_levels, n_points).reshape(1, k)

    widths = per_sample([w for _, w in shapes], geo)
    heights = per_sample([h for h, _ in shapes], geo)
    consts = dict(
        size=torch.stack([widths, heights]),                                   # [2, 1, K] (x, y)
        last=torch.stack([widths, heights]).to(index_dtype) - 1,               # [2, 1, K]
        row_stride=per_sample([w * m for _, w in shapes], index_dtype),        # table rows per image row
        level_base=per_sample([st * m for st in starts], index_dtype),         # table row of each level
        # table row offset of batch n, head m: [N, 1, M, 1]
        nm_base=(torch.arange(n, dtype=index_dtype, device=device).view(n, 1, 1, 1) * (s * m)
                 + torch.arange(m, dtype=index_dtype, device=device).view(1, 1, m, 1)),
        index_dtype=index_dtype,
    )
    table = value.reshape(n * s * m, d)
    workers = 1 if value.is_cuda else max(1, torch.get_num_threads())
    if samples_per_chunk is None:
        total = n * lq * m * k
        samples_per_chunk = (_CUDA_SAMPLES_PER_CHUNK if value.is_cuda
                             else min(_CPU_CHUNK_MAX, max(_CPU_CHUNK_MIN, total // (2 * workers))))
    chunk = max(1, samples_per_chunk // max(1, n * m * k))
    locations = sampling_locations.to(geo)
    weights = attention_weights.to(geo)
    any_grad = torch.is_grad_enabled() and (value.requires_grad or locations.requires_grad or weights.requires_grad)
    weights_grad = any_grad and (locations.requires_grad or weights.requires_grad)
    chunk_starts = range(0, lq, chunk)
    if workers > 1 and len(chunk_starts) > 1 and not any_grad:
        outs = _map_on_cpu_workers(workers, lambda i: _gather_chunk(
            table, consts, locations[:, i:i + chunk], weights[:, i:i + chunk], False), chunk_starts)
    else:
        outs = [_gather_chunk(table, consts, locations[:, i:i + chunk], weights[:, i:i + chunk], weights_grad)
                for i in chunk_starts]
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
    return out.view(n, lq, m * d)


# Chunks run on a small pool of Python threads, each with single-threaded ATen ops, instead of
# one thread with multi-threaded ops: each op is only ~1 ms, and an OpenMP barrier per op costs a
# whole scheduler time slice whenever the machine is busy (measured: 2 cores shared with other
# jobs, 1.6 s instead of 0.2 s per encoder layer).  The threads only meet once, at the end.
_worker_pools = {}
_worker_pools_lock = threading.Lock()


def _map_on_cpu_workers(workers: int, fn, items) -> list:
    key = (os.getpid(), workers)  # a forked child has the pool object but not its threads
    with _worker_pools_lock:
        pool = _worker_pools.get(key) or _start_cpu_workers(key, workers)

    def run(item):
        with torch.no_grad():  # grad mode is per thread; this path is only taken without autograd
            return fn(item)

    return list(pool.map(run, items))


def _start_cpu_workers(key, workers: int) -> concurrent.futures.ThreadPoolExecutor:
    started = threading.Barrier(workers + 1)

    def single_threaded_worker():
        # OpenMP's team size is per thread: this sets it for this worker only (it also
        # overwrites ATen's process-wide default, which is restored below).
        torch.set_num_threads(1)
        started.wait()

    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="ms_deform_attn",
                                                 initializer=single_threaded_worker)
    for _ in range(workers):
        pool.submit(lambda: None)  # each submit starts one more worker (they wait in the barrier)
    started.wait()
    torch.set_num_threads(workers)
    _worker_pools[key] = pool
    return pool


def _gather_chunk(table, consts, locations, weights, needs_grad):
    n, lq, m, n_levels, n_points, _ = locations.shape
    b, k = n * lq * m, n_levels * n_points
    it = consts["index_dtype"]
    # x and y in separate contiguous planes: [2, B, K] (a copy, so in-place ops below are safe)
    pix = locations.reshape(b, k, 2).permute(2, 0, 1).clone(memory_format=torch.contiguous_format)
    pix = pix.mul_(consts["size"]).sub_(0.5)                   # pixel coordinates, centres at integers
    # Far-away (even infinite) points: clamp to just outside the map, where all 4 corners are
    # still outside (weight 0, gradient 0 as in grid_sample), so the int conversion stays in range.
    pix = torch.minimum(pix.clamp_(min=-2.0), consts["size"])
    low = pix.detach().floor()
    frac = pix - low                                           # bilinear fraction (carries the gradient)
    low = low.to(it)
    zero = torch.zeros((), dtype=it, device=low.device)
    corner0 = torch.clamp(low, zero, consts["last"])         # nearest in-range corner coordinate
    valid0 = corner0 == low                                    # zero padding: out-of-range corners weigh 0
    high = low.add_(1)
    corner1 = torch.clamp(high, zero, consts["last"])
    valid1 = corner1 == high
    w_low = (1 - frac).mul_(valid0)                            # [2, B, K] weight of the lower corner per axis
    w_high = frac.mul_(valid1)
    attn = weights.reshape(b, k)
    wy0, wy1 = w_low[1] * attn, w_high[1] * attn
    wx0, wx1 = w_low[0], w_high[0]
    # corner order within a bag does not matter for the sum: [B, 4, K]
    if needs_grad:
        w4 = torch.stack([wx0 * wy0, wx1 * wy0, wx0 * wy1, wx1 * wy1], dim=1)
    else:
        w4 = torch.empty((b, 4, k), dtype=frac.dtype, device=frac.device)
        torch.mul(wx0, wy0, out=w4[:, 0])
        torch.mul(wx1, wy0, out=w4[:, 1])
        torch.mul(wx0, wy1, out=w4[:, 2])
        torch.mul(wx1, wy1, out=w4[:, 3])
    # table rows: (n*S + level_start + y*W + x) * M + m
    rows_y0 = corner0[1].mul_(consts["row_stride"]).add_(consts["level_base"])
    rows_y1 = corner1[1].mul_(consts["row_stride"]).add_(consts["level_base"])
    rows_y0.view(n, lq, m, k).add_(consts["nm_base"])
    rows_y1.view(n, lq, m, k).add_(consts["nm_base"])
    cols_x0, cols_x1 = corner0[0].mul_(m), corner1[0].mul_(m)
    rows = torch.empty((b, 4, k), dtype=it, device=pix.device)
    torch.add(rows_y0, cols_x0, out=rows[:, 0])
    torch.add(rows_y0, cols_x1, out=rows[:, 1])
    torch.add(rows_y1, cols_x0, out=rows[:, 2])
    torch.add(rows_y1, cols_x1, out=rows[:, 3])
    out = F.embedding_bag(rows.view(b, 4 * k), table, per_sample_weights=w4.view(b, 4 * k).to(table.dtype),
                          mode="sum")
    return out.view(n, lq, m * table.shape[1])


# --------------------------------------------------------------------------------------------
# Triton path (CUDA inference)
# --------------------------------------------------------------------------------------------

# "broken": the launches (channel block, dtype) the compiler or driver failed on; they take the gather
# path from then on, while others (the encoder's heads when the decoder's wide table failed) keep the kernel.
_triton_state = {"checked": False, "kernel": None, "broken": set()}


def _build_triton_kernel():
    import triton
    import triton.language as tl

    # head_dim is not specialised: Triton 3.6 fails to compile this kernel ("PassManager::run failed"
    # in TritonGPURemoveLayoutConversions) when it knows the head dim is a multiple of 16.
    @triton.jit(do_not_specialize=["head_dim"])
    def msda_forward_kernel(value_ptr, levels_ptr, loc_ptr, attn_ptr, out_ptr,
                            n_tokens, n_queries, n_heads, head_dim,
                            N_LEVELS: tl.constexpr, N_POINTS: tl.constexpr,
                            BLOCK_Q: tl.constexpr, BLOCK_D: tl.constexpr):
        # One program: one (batch, head) and BLOCK_Q queries; acc [BLOCK_Q, BLOCK_D] in float32.
        pid_q = tl.program_id(0)
        pid_nm = tl.program_id(1)
        batch = (pid_nm // n_heads).to(tl.int64)
        head = (pid_nm % n_heads).to(tl.int64)
        q = pid_q.to(tl.int64) * BLOCK_Q + tl.arange(0, BLOCK_Q).to(tl.int64)
        q_ok = q < n_queries
        ch = tl.arange(0, BLOCK_D)
        ch_ok = ch < head_dim
        acc = tl.zeros([BLOCK_Q, BLOCK_D], dtype=tl.float32)
        # sample index of (batch, q, head, level 0, point 0) in [N, Lq, M, L, P]
        sample0 = ((batch * n_queries + q) * n_heads + head) * (N_LEVELS * N_POINTS)
        # A runtime loop over (level, point): unrolling all L*P*4 gathers made compiling take minutes.
        for lp in range(N_LEVELS * N_POINTS):
            lvl = lp // N_POINTS
            h = tl.load(levels_ptr + 3 * lvl)
            w = tl.load(levels_ptr + 3 * lvl + 1)
            start = tl.load(levels_ptr + 3 * lvl + 2).to(tl.int64)
            hf = h.to(tl.float32)
            wf = w.to(tl.float32)
            sample = sample0 + lp
            lx = tl.load(loc_ptr + 2 * sample, mask=q_ok, other=0.0).to(tl.float32)
            ly = tl.load(loc_ptr + 2 * sample + 1, mask=q_ok, other=0.0).to(tl.float32)
            a = tl.load(attn_ptr + sample, mask=q_ok, other=0.0).to(tl.float32)
            x = lx * wf - 0.5
            y = ly * hf - 0.5
            x0f = tl.floor(x)
            y0f = tl.floor(y)
            fx = x - x0f
            fy = y - y0f
            # keep the int conversion in range for far-away points (their corners are all outside)
            x0 = tl.minimum(tl.maximum(x0f, -2.0), wf).to(tl.int32)
            y0 = tl.minimum(tl.maximum(y0f, -2.0), hf).to(tl.int32)
            for corner in tl.static_range(4):
                dx = corner % 2
                dy = corner // 2
                xc = x0 + dx
                yc = y0 + dy
                wx = fx if dx == 1 else 1.0 - fx
                wy = fy if dy == 1 else 1.0 - fy
                ok = q_ok & (xc >= 0) & (xc < w) & (yc >= 0) & (yc < h)
                token = start + tl.where(ok, yc * w + xc, 0).to(tl.int64)
                row = (batch * n_tokens + token) * n_heads + head
                v = tl.load(value_ptr + row[:, None] * head_dim + ch[None, :],
                            mask=ok[:, None] & ch_ok[None, :], other=0.0).to(tl.float32)
                acc += v * (wx * wy * a)[:, None]
        out_off = ((batch * n_queries + q) * n_heads + head)[:, None] * head_dim + ch[None, :]
        tl.store(out_ptr + out_off, acc.to(out_ptr.dtype.element_ty), mask=q_ok[:, None] & ch_ok[None, :])

    return msda_forward_kernel


def triton_available() -> bool:
    """True when the Triton kernel can be built (triton imports and CUDA is present)."""
    if not _triton_state["checked"]:
        _triton_state["checked"] = True
        if torch.cuda.is_available():
            try:
                _triton_state["kernel"] = _build_triton_kernel()
            except Exception as err:  # noqa: BLE001 - any failure just means "use the gather path"
                warnings.warn(f"ms_deform_attn: Triton kernel unavailable ({err}); using the gather path")
    return _triton_state["kernel"] is not None


def _block_d(head_dim: int) -> int:
    """The kernel's channel block: the head dim rounded up to a power of two, 16 at least."""
    return max(16, 1 << (head_dim - 1).bit_length())


def ms_deform_attn_triton(value: torch.Tensor, spatial_shapes: Sequence[Tuple[int, int]], level_start_index,
                          sampling_locations: torch.Tensor, attention_weights: torch.Tensor,
                          block_q: Optional[int] = None) -> torch.Tensor:
    """Forward-only Triton kernel (no autograd).  Runs on CUDA tensors, or on CPU tensors under
    TRITON_INTERPRET=1 (used by the tests)."""
    kernel = _triton_state["kernel"]
    if kernel is None:
        kernel = _triton_state["kernel"] = _build_triton_kernel()
    shapes, starts = _levels(spatial_shapes, level_start_index, value.shape[1])
    _check_shapes(value, sampling_locations, attention_weights, len(shapes))
    n, s, m, d = value.shape
    lq, n_levels, n_points = sampling_locations.shape[1], sampling_locations.shape[3], sampling_locations.shape[4]
    out = torch.empty((n, lq, m * d), dtype=value.dtype, device=value.device)
    if lq == 0 or n == 0:
        return out
    levels = torch.tensor([[h, w, st] for (h, w), st in zip(shapes, starts)], dtype=torch.int32,
                          device=value.device)
    locations = sampling_locations.contiguous()
    weights = attention_weights.contiguous()
    block_d = _block_d(d)
    if block_q is None:  # an accumulator of ~4096 floats a program (8 queries at least): 64 queries of
        block_q = max(8, min(64, 4096 // block_d))  # 32-64 channels, 8 of the decoder's 257 (sampling_table)
    grid = (-(-lq // block_q), n * m)  # query blocks on axis 0 (no 65535 limit there)
    kernel[grid](value.contiguous(), levels, locations, weights, out, s, lq, m, d,
                 N_LEVELS=n_levels, N_POINTS=n_points, BLOCK_Q=block_q, BLOCK_D=block_d)
    return out


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------

def ms_deform_attn_fast(value: torch.Tensor, spatial_shapes: Sequence[Tuple[int, int]], level_start_index,
                        sampling_locations: torch.Tensor, attention_weights: torch.Tensor) -> torch.Tensor:
    """Fastest available implementation: Triton on CUDA for inference, the gather path otherwise
    (CPU, autograd, float64, or no Triton)."""
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (value, sampling_locations, attention_weights))
    launch = (_block_d(value.shape[-1]), value.dtype)
    if (value.is_cuda and not needs_grad and value.dtype != torch.float64
            and sampling_locations.dtype != torch.float64 and triton_available()
            and launch not in _triton_state["broken"]):
        try:
            return ms_deform_attn_triton(value, spatial_shapes, level_start_index, sampling_locations,
                                         attention_weights)
        except ValueError:  # bad arguments: the gather path would say the same
            raise
        except Exception as err:  # noqa: BLE001 - a compiler/driver problem: fall back for good
            _triton_state["broken"].add(launch)
            warnings.warn(f"ms_deform_attn: Triton kernel failed for {value.shape[-1]} channels in "
                          f"{value.dtype} ({err}); using the gather path for them from now on")
    return ms_deform_attn_gather(value, spatial_shapes, level_start_index, sampling_locations,
                                 attention_weights)
