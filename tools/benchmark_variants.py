"""Time per frame of one pass with N tracker variants against N separate passes, and peak memory.

    python tools/benchmark_variants.py                       # CPU, 800x1422, N = 1 4 16
    python tools/benchmark_variants.py --device cuda --frames 10

Stand-in weights (util/standin_weights.py), a synthetic 800x1422 input with 60 proposals, tracks
carried over between frames. "One pass": each frame encoded once (backbone + encoder), then every
variant's Tracker steps on it (`models.tracker.track_frame`). "Separate": N trackers each
encoding the frame itself, i.e. what N runs of submit_dance.py cost per frame. Both run in this
process, in turn, on the same frames; the ratios are what to compare (timings on a shared machine are noisy).
Peak memory of one pass with N variants: the CUDA allocator's peak, or on CPU the peak resident set
of a fresh process that builds the network and runs two frames with N trackers (so the figures
compare N with 1: what each variant adds beyond the one shared network).
"""
import argparse
import resource
import subprocess
import sys
import time
import tempfile
from pathlib import Path
from typing import Optional

import torch


from models.tracker import Tracker, TrackerConfig, track_frame

# A spread of the ablation rows (memory on and off, presets, OFS modes, K, tau).
ROW_CONFIGS = [dict(memory="none"), dict(memory="sparse"), dict(memory="sparse", ofs="latest"),
               dict(memory="dense", ofs="latest"), dict(memory="sparse", ofs="delay"),
               dict(memory="sparse", memory_preset="paper")] + [
              dict(memory="sparse", memory_size=k) for k in (5, 15, 20)] + [
              dict(memory="sparse", memory_tau=t) for t in (0.05, 0.2, 0.3, 0.4)] + [
              dict(memory="sparse", memory_alpha=a) for a in (0.25, 0.75, 1.0)]


def build_network(device, backend: str = "torch", graphs_dir: Optional[str] = None, export: bool = True):
    """The stand-in MOTRv2 (tools/benchmark.py's) on `backend` ("torch", "onnxruntime", "openvino",
    ":bf16" for bf16), its graphs exported into `graphs_dir` (`export=False`: taken from there)."""
    from tools.benchmark import build_model, parse_backend
    runtime, precision = parse_backend(backend)
    model = build_model(False, device).optimize_for_inference()
    if runtime == "torch":
        return model
    from models.backends import ExportedNetwork
    from models.export import export_network
    paths = export_network(model, graphs_dir) if export else {p.stem: p for p in Path(graphs_dir).glob("*.onnx")}
    return ExportedNetwork(model, paths, runtime, precision=precision, device=str(device))


def _backend_flag(text: str) -> str:
    from tools.benchmark import parse_backend
    try:
        parse_backend(text, "--backend")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def frame_inputs(hw, n_proposals, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(1, 3, *hw, generator=g).to(device)
    proposals = torch.cat([torch.rand(n_proposals, 2, generator=g) * 0.8 + 0.1,
                           torch.rand(n_proposals, 2, generator=g) * 0.05 + 0.02,
                           torch.rand(n_proposals, 1, generator=g) * 0.5 + 0.5], 1).to(device)
    return img, proposals


def make_trackers(network, n, device):
    return [Tracker(network, TrackerConfig.from_flags(score_threshold=0.3, update_score_threshold=0.3,
                                                      **ROW_CONFIGS[i % len(ROW_CONFIGS)]), device=device)
            for i in range(n)]


def cpu_peak_mb(n: int, hw, threads: int, n_proposals: int, backend: str, graphs_dir: str) -> float:
    """Peak resident set (MB) of a fresh process running one pass with `n` variants for two frames
    (on an exported backend, with the graphs already in `graphs_dir`: the export is not counted)."""
    cmd = [sys.executable, __file__, "--_peak_of", str(n), "--hw", *map(str, hw), "--threads", str(threads),
           "--proposals", str(n_proposals), "--backend", backend, "--_graphs", graphs_dir]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hw", type=int, nargs=2, default=[800, 1422], help="model input H W")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 4, 16], help="numbers of variants")
    parser.add_argument("--frames", type=int, default=2, help="timed frames per mode (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--proposals", type=int, default=60)
    parser.add_argument("--backend", default="torch", type=_backend_flag,
                        help="torch, onnxruntime or openvino, ':bf16' for bf16 (the network exported first)")
    parser.add_argument("--_peak_of", type=int, default=None, help=argparse.SUPPRESS)  # the child of cpu_peak_mb
    parser.add_argument("--_graphs", default=None, help=argparse.SUPPRESS)  # the parent's exported graphs
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    hw = tuple(args.hw)
    if args._peak_of is not None:
        network = build_network(device, args.backend, args._graphs, export=False)
        img, proposals = frame_inputs(hw, args.proposals, device)
        trackers = make_trackers(network, args._peak_of, device)
        for _ in range(2):
            track_frame(trackers, img, proposals, hw)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU, {args.threads} threads'}"
          f", torch {torch.__version__}, input {hw[0]}x{hw[1]}, {args.proposals} proposals, backend {args.backend}")
    graphs = tempfile.TemporaryDirectory()  # the exported graphs, shared with the peak probes
    network = build_network(device, args.backend, graphs.name)
    img, proposals = frame_inputs(hw, args.proposals, device)
    rows = []
    modes = ("one pass", "separate")
    for n in args.counts:
        times = {mode: [] for mode in modes}
        trackers = {mode: make_trackers(network, n, device) for mode in modes}
        for i in range(args.frames + 1):  # frame 0 warms up; the modes take turns frame by frame
            for mode in modes:
                sync(device)
                t0 = time.perf_counter()
                if mode == "separate":
                    for t in trackers[mode]:
                        t.track(img, proposals, hw)
                else:
                    track_frame(trackers[mode], img, proposals, hw)
                sync(device)
                if i:
                    times[mode].append(time.perf_counter() - t0)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            track_frame(make_trackers(network, n, device), img, proposals, hw)
            peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = cpu_peak_mb(n, hw, args.threads, args.proposals, args.backend, graphs.name)
        rows.append((n, *(min(times[mode]) for mode in modes), peak))
    base = rows[0][1]
    print(f"\n{'variants':>8} {'one pass s/frame':>17} {'vs 1 variant':>13} {'separate s/frame':>17} "
          f"{'separate/one pass':>18} {'FPS one pass':>13} {'peak MB one pass':>17} {'vs 1 variant':>13}")
    for n, one, sep, peak in rows:
        print(f"{n:>8} {one:>17.3f} {one / base:>12.2f}x {sep:>17.3f} "
              f"{sep / one:>17.2f}x {1 / one:>13.2f} {peak:>17.0f} {peak - rows[0][3]:>+12.0f}")
    print("one pass: the frame encoded once, every variant decoding it; separate: each variant encodes the "
          "frame itself (N runs of submit_dance.py)")
    print("peak MB: CUDA allocator peak" if device.type == "cuda" else
          "peak MB: peak resident set of a fresh process (network + N trackers, two frames)")


if __name__ == "__main__":
    main()
