"""Per-frame time of MOTRv2 (+ memory), split by stage, and each optimisation against the plain path.

    python tools/benchmark.py                                # CPU, 800x1422 and a small size
    python tools/benchmark.py --device cuda --sizes 800x1422 --amp fp16
    python tools/benchmark.py --upstream /path/to/MOTRv2     # + upstream's own CPU path, same input/weights
    python tools/benchmark.py --sizes 800x1422 --backends torch torch:bf16 onnxruntime openvino openvino:bf16 \
        --upstream /path/to/MOTRv2                           # the backends side by side, per stage

Stand-in weights (util/standin_weights.py) and a synthetic frame with 60 proposals; the first
frame is a warm-up and tracks carry over between frames, as when tracking.  Every variant runs in
this process on the same inputs, interleaved, so a busy machine slows them alike; ratios are
against the "plain" path: reference (grid_sample) attention, torch.no_grad.  The last rows are the
two ways users run the tracker: submit_dance.py's step (`Tracker.track` on a decoded, resized frame)
and the Python API (`Tracker.update(dets, bgr_frame)`, resize included), with their ratio.

`--backends B[:PRECISION] ...` instead times the tracker step (`Tracker.track`: encode + decode +
tracker) on each backend (torch, onnxruntime, openvino; fp32 or bf16), interleaved frame by frame
on the same input, split into encode, decode and the tracker's own Python (queries, ids, QIM,
output filter), with peak resident memory while each backend runs (this process holds them all) and
alone (a fresh process per backend holding the network and tracking two frames), and the ratio
against the first backend and against upstream's CPU path (`--upstream`, run in the same invocation). The exported
backends run graphs exported once from the same stand-in weights. bf16 on a CPU without bf16
instructions falls back to fp32 (the table says which precision ran); `--emulate_bf16` runs it
emulated instead (for quality checks; slow).
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

from models.ms_deform_attn import MSDeformAttn
from models.tracker import Tracker, TrackerConfig
from util.device import autocast_context

STAGES = ("image loading", "backbone", "encoder", "decoder", "memory", "post-processing")


class StageTimer:
    """Accumulates wall time per stage by wrapping methods; synchronises CUDA at each boundary."""

    def __init__(self, device: torch.device):
        self.device = device
        self.times = defaultdict(float)
        self._patched = []

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    @contextlib.contextmanager
    def stage(self, name):
        self._sync()
        t0 = time.perf_counter()
        yield
        self._sync()
        self.times[name] += time.perf_counter() - t0

    def wrap(self, obj, method: str, name: str):
        original = getattr(obj, method)

        def timed(*args, **kwargs):
            with self.stage(name):
                return original(*args, **kwargs)
        setattr(obj, method, timed)
        self._patched.append((obj, method, original))

    def restore(self):
        for obj, method, original in reversed(self._patched):
            setattr(obj, method, original)
        self._patched.clear()


def build_model(memory: bool, device):
    from main import get_args_parser
    from models import build_model as build
    from util.standin_weights import make_state_dict
    argv = (REPO / "configs" / "motrv2.args").read_text().split()
    argv += ["--memory", "sparse"] if memory else ["--memory", "none"]
    model, _, _ = build(get_args_parser().parse_args(argv))
    model.load_state_dict(make_state_dict(model.state_dict()))
    return model.eval().to(device)


def make_frame(hw, n_proposals=60, seed=0):
    """A synthetic RGB uint8 frame (as decoded from disk) and proposals."""
    g = torch.Generator().manual_seed(seed)
    img = (torch.rand(hw[0], hw[1], 3, generator=g) * 255).to(torch.uint8).numpy()
    proposals = torch.cat([torch.rand(n_proposals, 2, generator=g) * 0.8 + 0.1,
                           torch.rand(n_proposals, 2, generator=g) * 0.05 + 0.02,
                           torch.rand(n_proposals, 1, generator=g) * 0.5 + 0.5], 1)
    return img, proposals


class VariantRunner:
    """One configuration (model, attention path, grad mode, amp) tracking its own frames; variants
    take turns frame by frame so that load on a shared machine hits them alike."""

    def __init__(self, model, device, fast_attention: bool, inference_mode: bool, amp: str = "off",
                 path: str = "upstream_api"):
        """`path`: upstream_api (`model.inference_single_image`), tracker (`Tracker.track`, as
        submit_dance.py) or python_api (`Tracker.update` on a BGR frame and pixel boxes)."""
        self.model, self.device = model, device
        self.fast_attention, self.inference_mode, self.amp = fast_attention, inference_mode, amp
        self.path = path
        self.tracks = None
        self.frames = []  # (total seconds, {stage: seconds}) per timed frame
        model.clear()
        memory = "sparse" if model.memory is not None else "none"
        self.tracker = Tracker(model, TrackerConfig.from_flags(memory=memory), device=device, amp=amp,
                               input_size=INPUT_RULE)

    def step(self, img, proposals, hw, timed: bool = True):
        from models.inputs import image_to_input
        model = self.model
        MSDeformAttn.implementation = "auto" if self.fast_attention else "reference"
        timer = StageTimer(self.device)
        timer.wrap(model.backbone, "forward", "backbone")
        timer.wrap(model.transformer.encoder, "forward", "encoder")
        timer.wrap(model.transformer.decoder, "forward", "decoder")
        memory = self.tracker.memory if self.path != "upstream_api" else model.memory
        if memory is not None:
            for m in ("blend_decoder_input", "after_forward", "update"):
                timer.wrap(memory, m, "memory")
        timer.wrap(self.tracker.ids if self.path != "upstream_api" else model.track_base, "update", "post-processing")
        timer.wrap(model.track_embed, "forward", "post-processing")
        grad = torch.inference_mode() if self.inference_mode else torch.no_grad()
        rule = input_rule(hw)
        try:
            with grad, autocast_context(self.device, self.amp):
                t0 = time.perf_counter()
                if self.path == "python_api":
                    self.tracker.input_size = rule
                    self.tracker.update(pixel_dets(proposals, hw), img[..., ::-1])
                else:
                    with timer.stage("image loading"):
                        x = image_to_input(img, *rule).to(self.device)[None]
                    if self.path == "tracker":
                        self.tracker.track(x, proposals, hw)
                    else:
                        self.tracks = model.inference_single_image(x, hw, self.tracks, proposals.to(self.device))[
                            "track_instances"]
                timer._sync()
                total = time.perf_counter() - t0
        finally:
            timer.restore()
            MSDeformAttn.implementation = "auto"
        if timed:
            self.frames.append((total, dict(timer.times)))

    def best(self):
        """The fastest frame (least disturbed by other load): its total and per-stage seconds."""
        total, stages = min(self.frames, key=lambda f: f[0])
        per_stage = {k: stages.get(k, 0.0) for k in STAGES}
        per_stage["other"] = max(0.0, total - sum(per_stage.values()))
        return per_stage, total


INPUT_RULE = (800, 1536)  # short side, long-side cap: submit_dance's resize


def parse_size(text: str):
    """`--sizes` HxW -> (H, W)."""
    return tuple(int(v) for v in text.lower().split("x"))


def input_rule(hw):
    """The resize of a frame of `hw`: submit_dance's at full size, smaller benchmark sizes as given."""
    return INPUT_RULE if hw[0] >= 800 else hw


def pixel_dets(proposals: torch.Tensor, hw) :
    """Normalised cx, cy, w, h, score proposals as the Python API's pixel x1, y1, x2, y2, conf."""
    h, w = hw
    p = proposals.double()
    boxes = torch.stack([(p[:, 0] - p[:, 2] / 2) * w, (p[:, 1] - p[:, 3] / 2) * h,
                         (p[:, 0] + p[:, 2] / 2) * w, (p[:, 1] + p[:, 3] / 2) * h, p[:, 4]], 1)
    return boxes.numpy()


def peak_mb(device) -> float:
    """Peak memory so far: CUDA allocator peak, or the process's peak resident set on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except ImportError:
        return float("nan")


def run_upstream(upstream: str, hw, frame, reps: int, threads: int) -> float:
    """Median seconds per frame of upstream MOTRv2's own code (its pure-PyTorch attention path) on the
    same input and weights, in a subprocess (their packages share our module names)."""
    from models.inputs import image_to_input
    img, proposals = frame
    with tempfile.TemporaryDirectory() as tmp:
        x = image_to_input(img, *input_rule(hw))
        torch.save({"img": x[None], "proposals": proposals}, os.path.join(tmp, "input.pt"))
        cmd = [sys.executable, str(REPO / "tools" / "_upstream_driver.py"), upstream, os.path.join(tmp, "input.pt"),
               str(hw[0]), str(hw[1]), str(reps), str(threads), str(REPO / "util" / "standin_weights.py")]
        env = {**os.environ, "PYTHONPATH": os.path.abspath(upstream)}  # their `models`, not ours
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=upstream, env=env)
        if out.returncode != 0:
            raise RuntimeError(f"upstream run failed:\n{out.stderr[-2000:]}")
        times = json.loads(out.stdout.strip().splitlines()[-1])["times"]
    return min(times[1:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", nargs="+", default=["800x1422", "320x576"], help="HxW of the model input")
    parser.add_argument("--frames", type=int, default=3, help="timed frames per variant (after one warm-up); the fastest is reported")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--amp", default="off", choices=("off", "fp16", "bf16"), help="also time this AMP mode (CUDA)")
    parser.add_argument("--upstream", default=None, help="a checkout of megvii-research/MOTRv2 to time side by side")
    parser.add_argument("--backends", nargs="+", default=None, metavar="BACKEND[:PRECISION]",
                        help="compare backends side by side: torch, onnxruntime, openvino, each :fp32 (default) or :bf16")
    parser.add_argument("--emulate_bf16", action="store_true",
                        help="with --backends: run bf16 even on a CPU without bf16 instructions (emulated)")
    parser.add_argument("--peak_probe", default=None, help=argparse.SUPPRESS)  # peak_in_own_process's child
    parser.add_argument("--probe_graphs", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.emulate_bf16:
        from util.device import BF16_ENV
        os.environ[BF16_ENV] = "emulate"
    if args.peak_probe:
        return peak_probe(args)
    if args.backends:
        from models.backends import check_backend
        from models.export import MissingRuntime
        try:
            specs = [parse_backend(b) for b in args.backends]
            for backend, _ in specs:
                check_backend(backend)
        except (ValueError, MissingRuntime) as exc:
            parser.exit(2, f"error: {exc}\n")
        return compare_backends(args, specs)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is available here (use --device cpu)")
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{args.threads} CPU threads'})"
          f", torch {torch.__version__}")
    plain = build_model(False, device)
    fused = build_model(False, device).optimize_for_inference()
    fused_memory = build_model(True, device).optimize_for_inference()
    for size in args.sizes:
        hw = parse_size(size)
        frame = make_frame(hw)
        variants = {
            "plain (reference attention, no_grad)": (plain, False, False, "off"),
            "+ fast attention": (plain, True, False, "off"),
            "+ inference_mode": (plain, True, True, "off"),
            "+ folded BN, channels-last (= ours)": (fused, True, True, "off"),
            "ours + TF-SASM memory": (fused_memory, True, True, "off"),
            "submit_dance.py step (Tracker.track)": (fused, True, True, "off", "tracker"),
            "Python API (Tracker.update)": (fused, True, True, "off", "python_api"),
        }
        if args.amp != "off" and device.type == "cuda":
            variants[f"ours + amp {args.amp}"] = (fused, True, True, args.amp)
        runners = {name: VariantRunner(*spec[:1], device, *spec[1:]) for name, spec in variants.items()}
        img, proposals = frame
        for i in range(args.frames + 1):  # frame 0 warms up
            for runner in runners.values():
                runner.step(img, proposals, hw, timed=i > 0)
        results = {name: (*r.best(), peak_mb(device)) for name, r in runners.items()}
        base = results["plain (reference attention, no_grad)"][1]
        print(f"\n== input {hw[0]}x{hw[1]}, {args.frames} frames per variant ==")
        print(f"{'variant':<40}" + "".join(f"{s[:10]:>11}" for s in STAGES) + f"{'other':>8}{'s/frame':>9}"
              f"{'FPS':>7}{'vs plain':>9}{'peak MB':>9}")
        for name, (stages, total, peak) in results.items():
            print(f"{name:<40}" + "".join(f"{stages[s]:>11.3f}" for s in STAGES) + f"{stages['other']:>8.3f}"
                  f"{total:>9.3f}{1 / total:>7.2f}{total / base:>8.2f}x{peak:>9.0f}")
        ours = results["+ folded BN, channels-last (= ours)"][1]
        mem = results["ours + TF-SASM memory"]
        print(f"memory step: {mem[0]['memory'] * 1000:.1f} ms/frame = {100 * mem[0]['memory'] / mem[1]:.2f}% of the frame")
        api, step = results["Python API (Tracker.update)"][1], results["submit_dance.py step (Tracker.track)"][1]
        print(f"Python API / submit_dance.py step: {api / step:.3f}x (resize included in the API's time)")
        if args.upstream:
            up = run_upstream(args.upstream, hw, frame, args.frames, args.threads)
            print(f"upstream MOTRv2 (own CPU path): {up:.3f} s/frame; ours {ours:.3f} s/frame = {ours / up:.2f}x upstream")


# -- backends side by side -------------------------------------------------------------------------------
def parse_backend(text: str, flag: str = "--backends"):
    backend, _, precision = text.partition(":")
    precision = precision or "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"{flag} {text}: precision must be fp32 or bf16")
    return backend, precision


class PeakRss:
    """Samples this process's resident set every 20 ms; `peak(label)` the largest seen while `label` ran."""

    def __init__(self):
        self.label, self.peaks = None, defaultdict(float)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def rss_mb() -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError):
            return float("nan")

    def _run(self):
        while not self._stop.wait(0.02):
            if self.label is not None:
                self.peaks[self.label] = max(self.peaks[self.label], self.rss_mb())

    def stop(self):
        self._stop.set()


def compare_backends(args, specs):
    from models.export import export_network
    from util.device import cpu_bf16_supported
    device = torch.device("cpu")
    print(f"device: cpu ({args.threads} threads), torch {torch.__version__}; native bf16: {cpu_bf16_supported()}"
          f"{' (emulated: --emulate_bf16)' if args.emulate_bf16 else ''}")
    model = build_model(False, device).optimize_for_inference()
    tmp = tempfile.TemporaryDirectory()
    paths = None
    if any(b != "torch" for b, _ in specs):
        t0 = time.perf_counter()
        paths = export_network(model, tmp.name, metadata={"config": "benchmark stand-in, configs/motrv2.args"})
        print(f"exported encode/decode graphs in {time.perf_counter() - t0:.1f} s")
    runners, own_peaks = {}, {}
    for backend, precision in specs:
        name, network, tracker = backend_runner(model, paths, backend, precision, args.threads)
        runners[name] = (network, tracker, [])
        own_peaks[name] = (backend, precision)
    rss = PeakRss()
    from models.inputs import image_to_input
    for size in args.sizes:
        hw = parse_size(size)
        img, proposals = make_frame(hw)
        x = image_to_input(img, *input_rule(hw))[None]
        for _, tracker, frames in runners.values():
            tracker.reset()
            frames.clear()
        for i in range(args.frames + 1):  # frame 0 warms up (and compiles the runtimes' graphs)
            for name, (network, tracker, frames) in runners.items():
                timer = StageTimer(device)
                timer.wrap(network, "encode", "encode")
                timer.wrap(network, "decode", "decode")
                rss.label = name
                try:
                    t0 = time.perf_counter()
                    tracker.track(x, proposals, hw)
                    total = time.perf_counter() - t0
                finally:
                    timer.restore()
                    for method in ("encode", "decode"):
                        network.__dict__.pop(method, None)
                    rss.label = None
                if i > 0:
                    frames.append((total, dict(timer.times)))
        upstream = run_upstream(args.upstream, hw, (img, proposals), args.frames, args.threads) if args.upstream else None
        print(f"\n== input {x.shape[2]}x{x.shape[3]}, 60 proposals, {args.threads} threads, best of {args.frames} "
              f"frames ==")
        alone = {name: peak_in_own_process(f"{b}:{p}", size, args.threads, tmp.name if paths else None,
                                           args.emulate_bf16) for name, (b, p) in own_peaks.items()}
        print(f"{'backend':<34}{'encode':>9}{'decode':>9}{'tracker':>9}{'s/frame':>9}{'FPS':>7}{'vs first':>9}"
              f"{'vs upstream':>12}{'peak MB':>9}{'alone MB':>10}")
        base = None
        for name, (_, _, frames) in runners.items():
            total, st = min(frames, key=lambda f: f[0])
            enc, dec = st.get("encode", 0.0), st.get("decode", 0.0)
            base = base or total
            vs_up = f"{total / upstream:>11.2f}x" if upstream else f"{'':>12}"
            print(f"{name:<34}{enc:>9.3f}{dec:>9.3f}{total - enc - dec:>9.3f}{total:>9.3f}{1 / total:>7.2f}"
                  f"{total / base:>8.2f}x{vs_up}{rss.peaks[name]:>9.0f}{alone[name]:>10.0f}")
        if upstream:
            print(f"{'upstream MOTRv2, own CPU path':<34}{'':>27}{upstream:>9.3f}{1 / upstream:>7.2f}"
                  f"{upstream / base:>8.2f}x{1.0:>11.2f}x")
        print("peak MB: this process's resident set while the backend ran (every backend is loaded here); alone MB: "
              "the peak of a process holding the network and tracking two frames on that backend only")
    rss.stop()
    tmp.cleanup()
    return 0


def backend_runner(model, paths, backend: str, precision: str, threads: int):
    """(table name, network, Tracker) of the stand-in `model` on `backend` at `precision`; the
    exported backends run the graphs in `paths`."""
    from models.backends import ExportedNetwork
    from util.device import cpu_bf16_supported
    if backend == "torch":
        network, amp = model, ("bf16" if precision == "bf16" else "off")
        ran = "bf16" if precision == "bf16" and cpu_bf16_supported() else "fp32"
    else:
        network = ExportedNetwork(model, paths, backend, threads=threads, precision=precision)
        amp, ran = "off", network.precision
    name = f"{backend} {precision}" + ("" if ran == precision else f" (ran {ran})")
    tracker = Tracker(network, TrackerConfig.from_flags(memory="none"), device=torch.device("cpu"), amp=amp,
                      input_size=INPUT_RULE)
    return name, network, tracker


def peak_in_own_process(spec: str, size: str, threads: int, graphs, emulate_bf16: bool) -> float:
    """Peak resident MB of a fresh process (`--peak_probe`) that holds the stand-in network and
    tracks two frames of `size` on one backend (the network, the runtime's compiled graphs and
    buffers: what a user's process holds); nan if it fails."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--peak_probe", spec, "--sizes", size,
           "--threads", str(threads)] + (["--probe_graphs", graphs] if graphs else []) \
        + (["--emulate_bf16"] if emulate_bf16 else [])
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        print(f"warning: the peak-memory probe of {spec} failed:\n{out.stderr[-1500:]}", file=sys.stderr)
        return float("nan")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def peak_probe(args) -> int:
    """`--peak_probe SPEC`: two frames on one backend in this (fresh) process; prints its peak RSS."""
    from models.inputs import image_to_input
    backend, precision = parse_backend(args.peak_probe)
    paths = None
    if backend != "torch":  # checked before the network is built
        paths = {p.stem: p for p in Path(args.probe_graphs).glob("*.onnx")} if args.probe_graphs else {}
        if "decode" not in paths:
            raise SystemExit(f"--peak_probe {args.peak_probe}: no exported graphs in --probe_graphs {args.probe_graphs}")
    model = build_model(False, torch.device("cpu")).optimize_for_inference()
    hw = parse_size(args.sizes[0])
    img, proposals = make_frame(hw)
    x = image_to_input(img, *input_rule(hw))[None]
    rss = PeakRss()
    rss.label = "run"  # from here: what tracking holds (not the stand-in weights' one-off making)
    _, _, tracker = backend_runner(model, paths, backend, precision, args.threads)
    for _ in range(2):
        tracker.track(x, proposals, hw)
    rss.label = None
    rss.stop()
    print(json.dumps({"peak_mb": max(rss.peaks["run"], PeakRss.rss_mb())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
