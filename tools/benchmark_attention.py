"""Time multi-scale deformable attention: grid_sample reference vs the fast implementation.

Both run in the same process on the same inputs, interleaved (so a busy machine slows both
alike); prints the median and best time of each and the speed-up, and checks they agree.

    python tools/benchmark_attention.py                      # CPU (2 threads), CUDA too if present
    python tools/benchmark_attention.py --device cpu --repeats 9 --shapes dancetrack
"""
import argparse
import statistics
import time

import torch

from models.ms_deform_attn import ms_deform_attn_reference
from models.ms_deform_attn_ops import ms_deform_attn_fast

# Feature maps of the 4 encoder levels (strides 8, 16, 32, 64) for an input of (height, width).
INPUTS = {"dancetrack": (800, 1422), "small": (320, 576)}
HEADS, HEAD_DIM, LEVELS, POINTS = 8, 32, 4, 4
DECODER_QUERIES = 300


def level_shapes(height, width):
    shapes = []
    for stride in (8, 16, 32, 64):
        shapes.append((-(-height // stride), -(-width // stride)))
    return shapes


def make_inputs(shapes, queries, device, dtype, seed=0):
    """Realistic geometry: encoder queries sit on their own pixel centres, decoder queries anywhere;
    offsets spread a few pixels around the reference point, as a trained model's do.
    `queries`: "encoder" (a query per token, 8 heads of 32 channels), "decoder" (300 queries as the
    decoder samples: each (query, head) pair reads the one sampling table of 257 channels,
    `MSDeformAttn(project_after_sampling=True)`) or a query count on the encoder's head layout."""
    gen = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in shapes)
    heads, head_dim = (1, HEADS * HEAD_DIM + 1) if queries == "decoder" else (HEADS, HEAD_DIM)
    value = torch.randn(1, s, heads, head_dim, generator=gen)
    if queries == "decoder":
        refs = torch.rand(DECODER_QUERIES, 1, 2, generator=gen).expand(-1, HEADS, -1).reshape(-1, 2)
    elif queries == "encoder":
        refs = []
        for h, w in shapes:
            ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
            refs.append(torch.stack([xs, ys], -1).view(-1, 2))
        refs = torch.cat(refs)
    else:
        refs = torch.rand(int(queries), 2, generator=gen)
    lq = refs.shape[0]
    size = torch.tensor([[w, h] for h, w in shapes], dtype=torch.float32)          # [L, 2]
    offsets = torch.randn(1, lq, heads, LEVELS, POINTS, 2, generator=gen) * 2.0 / size[:, None, :]
    loc = refs[None, :, None, None, None, :] + offsets
    weights = torch.rand(1, lq, heads, LEVELS * POINTS, generator=gen).softmax(-1).view(1, lq, heads, LEVELS, POINTS)
    return [t.to(device=device, dtype=dtype) for t in (value, loc, weights)]


def time_pair(fns, repeats, device):
    """Wall time and process CPU time (all threads) per call.  CPU time is the steadier number
    on a shared machine: waiting for a core does not count."""
    wall = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    parser.add_argument("--shapes", nargs="+", choices=sorted(INPUTS), default=["dancetrack", "small"])
    parser.add_argument("--queries", nargs="+", default=["encoder", "decoder"],
                        help="'encoder' (one query per token), 'decoder' (300 queries x 8 heads on the one "
                             "257-channel sampling table) and/or a query count on the encoder's 8 heads")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                        help="CUDA dtype (CPU always float32)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = []
    if args.device in ("all", "cpu"):
        devices.append(torch.device("cpu"))
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        elif args.device == "cuda":
            parser.error("CUDA requested but torch.cuda.is_available() is False")
    print(f"torch {torch.__version__}, {args.threads} CPU threads, {args.repeats} repeats, wall time median / best")
    for device in devices:
        dtype = getattr(torch, args.dtype) if device.type == "cuda" else torch.float32
        for shape_name in args.shapes:
            shapes = level_shapes(*INPUTS[shape_name])
            starts = [0]
            for h, w in shapes[:-1]:
                starts.append(starts[-1] + h * w)
            for queries in args.queries:
                value, loc, weights = make_inputs(shapes, queries, device, dtype)
                fns = {"reference": lambda: ms_deform_attn_reference(value, shapes, loc, weights),
                       "fast": lambda: ms_deform_attn_fast(value, shapes, starts, loc, weights)}
                with torch.inference_mode():
                    ref, out = fns["reference"](), fns["fast"]()  # warm-up (and Triton compile)
                    err = (ref.float() - out.float()).abs().max().item()
                    times, cpu_times = time_pair(fns, args.repeats, device)
                med = {k: statistics.median(v) for k, v in times.items()}
                best = {k: min(v) for k, v in times.items()}
                cpu_med = {k: statistics.median(v) for k, v in cpu_times.items()}
                print(f"{device.type:4s} {str(dtype).replace('torch.', ''):8s} {shape_name:10s} "
                      f"levels={shapes} queries={loc.shape[1]:6d} x {value.shape[2]} heads x {value.shape[3]} ch: "
                      f"reference {med['reference'] * 1e3:8.1f} / {best['reference'] * 1e3:8.1f} ms, "
                      f"fast {med['fast'] * 1e3:7.1f} / {best['fast'] * 1e3:7.1f} ms, "
                      f"speed-up x{med['reference'] / med['fast']:.1f} (median) x{best['reference'] / best['fast']:.1f} (best), "
                      f"max |diff| {err:.1e}")
                if device.type == "cpu":
                    print(f"{'':24s}CPU time (median): reference {cpu_med['reference'] * 1e3:8.1f} ms, "
                          f"fast {cpu_med['fast'] * 1e3:7.1f} ms, x{cpu_med['reference'] / cpu_med['fast']:.1f}")


if __name__ == "__main__":
    main()
