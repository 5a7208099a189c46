"""Cost of the TF-SASM memory step per frame, against the rest of the frame and dense storage.

    python tools/benchmark_memory.py [--tracks 10 50 200] [--frame_hw 800 1422] [--device cpu]

The memory step is everything the memory adds to a frame: the decoder-input blend, the
distance bookkeeping after the decoder and the store/selection update.  It is timed on
realistic instance sets (full memory, moving, overlapping boxes) and compared, in the same
process, with (a) one whole MOTRv2 frame at DanceTrack resolution (stand-in weights) and
(b) dense storage: keeping every frame's feature over the same window (K = the window).
"""
import argparse
import os
import statistics
import time

import torch


from models.memory import MemoryConfig, MemoryStrategy, build_memory
from models.structures import Instances


def make_tracks(n: int, d: int, k: int, memory: MemoryStrategy, device, seed: int = 0) -> Instances:
    g = torch.Generator().manual_seed(seed)
    inst = Instances((1, 1))
    inst.query_pos = torch.randn(n, d, generator=g).to(device)
    centres = torch.rand(n, 2, generator=g) * 0.8 + 0.1
    sizes = torch.rand(n, 2, generator=g) * 0.08 + 0.02
    inst.pred_boxes = torch.cat([centres, sizes], 1).to(device)
    inst.scores = (torch.rand(n, generator=g) * 0.5 + 0.5).to(device)
    inst.obj_idxes = torch.arange(n, device=device)
    memory.init_fields(inst, d)
    # a full memory, as after a long sequence
    inst.mem_bank = torch.randn(n, k, d, generator=g).to(device)
    inst.mem_padding_mask = torch.zeros(n, k, dtype=torch.bool, device=device)
    return inst


def memory_step(memory: MemoryStrategy, inst: Instances, step: int) -> None:
    jitter = torch.full_like(inst.pred_boxes[:, :2], 0.01 * ((step % 3) - 1))
    first = inst.pred_boxes
    last = torch.cat([inst.pred_boxes[:, :2] + jitter, inst.pred_boxes[:, 2:]], 1)
    memory.blend_decoder_input(inst.query_pos, inst)
    memory.after_forward(inst, first, last)
    inst.pred_boxes = last
    memory.update(inst)


def time_memory(memory: MemoryStrategy, n: int, d: int, k: int, device, reps: int) -> float:
    inst = make_tracks(n, d, k, memory, device)
    for i in range(5):
        memory_step(memory, inst, i)
    times = []
    for i in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        memory_step(memory, inst, i)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_frame(hw, n_proposals: int, device, reps: int) -> float:
    """Median time of one MOTRv2 frame (plain, no memory) with stand-in weights."""
    from main import get_args_parser
    from models import build_model
    from models.tracker import Tracker
    from util.standin_weights import make_state_dict
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    argv = open(os.path.join(repo, "configs", "motrv2.args")).read().split() + ["--memory", "none"]
    model, _, _ = build_model(get_args_parser().parse_args(argv))
    model.load_state_dict(make_state_dict(model.state_dict()))
    model.eval().optimize_for_inference().to(device)
    tracker = Tracker(model, device=device)
    img = torch.randn(1, 3, *hw, device=device)
    g = torch.Generator().manual_seed(1)
    proposals = torch.cat([torch.rand(n_proposals, 2, generator=g) * 0.8 + 0.1,
                           torch.rand(n_proposals, 2, generator=g) * 0.05 + 0.02,
                           torch.rand(n_proposals, 1, generator=g)], 1).to(device)
    times = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        tracker.reset()
        tracker.track(img, proposals, hw)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, nargs="+", default=[10, 50, 100, 200])
    parser.add_argument("--frame_hw", type=int, nargs=2, default=[800, 1422])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--frame_reps", type=int, default=2)
    parser.add_argument("--dense_window", type=int, default=100,
                        help="frames a dense memory keeps (its K) for the dense comparison")
    parser.add_argument("--skip_frame", action="store_true", help="do not time a whole frame")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    d, k = 256, 10
    sparse = build_memory(MemoryConfig(mode="sparse", preset="official", size=k))
    dense = build_memory(MemoryConfig(mode="dense", preset="official", size=args.dense_window))
    frame = None
    if not args.skip_frame:
        frame = time_frame(tuple(args.frame_hw), 60, device, args.frame_reps)
        print(f"whole MOTRv2 frame at {args.frame_hw[0]}x{args.frame_hw[1]} on {device} "
              f"({args.threads} threads): {frame * 1000:.0f} ms")
    print(f"{'tracks':>6} {'sparse ms':>10} {'% of frame':>11} {'dense ms':>9} {'dense/sparse':>13} "
          f"{'sparse MB':>10} {'dense MB':>9}")
    for n in args.tracks:
        t_sparse = time_memory(sparse, n, d, k, device, args.reps)
        t_dense = time_memory(dense, n, d, args.dense_window, device, args.reps)
        mb_sparse = n * k * d * 4 / 2**20
        mb_dense = n * args.dense_window * d * 4 / 2**20
        share = f"{100 * t_sparse / frame:.3f}%" if frame else "-"
        print(f"{n:>6} {t_sparse * 1000:>10.3f} {share:>11} {t_dense * 1000:>9.3f} "
              f"{t_dense / t_sparse:>12.2f}x {mb_sparse:>10.2f} {mb_dense:>9.2f}")


if __name__ == "__main__":
    main()
