"""What a backend or precision does to the tracks: each run against PyTorch fp32 on the demo's data
(the three rows of Table II on the synthetic val split, HOTA / IDF1 deltas and id switches against
the fp32 tracks) and on the parity sequences (tests/data/parity: lines and id switches against the
public code's fp32 tracks).

    python tools/backend_quality.py --runs torch:bf16 openvino:bf16 onnxruntime:fp32 [--emulate_bf16]

bf16 on a CPU without bf16 instructions falls back to fp32 (with a warning); `--emulate_bf16`
(MOTR_BF16=emulate) runs it emulated, which gives bf16's numbers at a slower speed: what to use to
measure bf16's quality on any machine. Results go to `--out` (default outputs/backend_quality).
"""
import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
METRICS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW")


def demo_split(data_dir: Path) -> dict:
    from datasets.synthetic import make_split
    return make_split(data_dir, "val", num_seqs=3, seed=0, progress=False)


def track_demo(data_dir: Path, out_dir: Path, backend: str = "torch", precision: str = "fp32") -> Dict[str, dict]:
    """The demo's Table II rows tracked with `backend` at `precision` into `out_dir/<row>`, evaluated:
    {row folder: {metric: value}}."""
    from inference import Variant, run
    from main import get_tracking_parser
    from models.card import read_card
    from models.tracker import TrackerConfig
    from tools.demo import VARIANTS, WEIGHTS
    from tools.evaluate import evaluate
    info = demo_split(data_dir)
    parser = get_tracking_parser()
    base = read_card(WEIGHTS).argv() + [
        "--resume", str(WEIGHTS), "--mot_path", str(data_dir), "--det_db", str(info["det_db"]), "--output_dir",
        str(out_dir), "--split", "val", "--device", "cpu", "--num_workers", "0", "--overwrite", "--backend", backend,
        "--amp", "bf16" if precision == "bf16" else "off"]
    args = parser.parse_args(base)
    variants = [Variant(folder, TrackerConfig.from_args(parser.parse_args(base + flags)), str(out_dir / folder))
                for _, folder, flags, _ in VARIANTS]
    run(args, variants, progress=False)
    results = {}
    for _, folder, _, _ in VARIANTS:
        combined = evaluate(info["split_dir"], str(out_dir / folder), benchmark="dancetrack")["combined"]
        results[folder] = {m: float(combined[m]) for m in METRICS}
    return results


# -- tracks against tracks -------------------------------------------------------------------------------
def read_lines(path) -> Dict[int, List[Tuple[int, np.ndarray]]]:
    """{frame: [(id, xywh)]} of a MOT result file."""
    return _frames_of(Path(path).read_text().splitlines())


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ax2, bx2 = a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:]
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(ax2, bx2)
    inter = np.clip(hi - lo, 0, None).prod(-1)
    return inter / (a[:, None, 2:].prod(-1) + b[None, :, 2:].prod(-1) - inter + 1e-9)


def switches_against(reference: Dict[int, list], other: Dict[int, list], iou: float = 0.5) -> Dict[str, float]:
    """`other`'s tracks scored with `reference`'s as ground truth: matched boxes (IoU >= `iou`,
    Hungarian per frame), id switches (a reference track matched to another id than before, MOTA's
    rule), and the lines present in one and not the other."""
    from scipy.optimize import linear_sum_assignment
    last: Dict[int, int] = {}
    switches = matched = unmatched = 0
    max_dx = 0.0
    for frame in sorted(set(reference) | set(other)):
        ref, got = reference.get(frame, []), other.get(frame, [])
        pairs = []
        if ref and got:
            overlap = _iou(np.stack([b for _, b in ref]), np.stack([b for _, b in got]))
            rows, cols = linear_sum_assignment(-overlap)
            pairs = [(r, c) for r, c in zip(rows, cols) if overlap[r, c] >= iou]
        for r, c in pairs:
            rid, gid = ref[r][0], got[c][0]
            if rid in last and last[rid] != gid:
                switches += 1
            last[rid] = gid
            max_dx = max(max_dx, float(np.abs(ref[r][1] - got[c][1]).max()))
        matched += len(pairs)
        unmatched += len(ref) + len(got) - 2 * len(pairs)
    return {"matched": matched, "unmatched": unmatched, "id_switches": switches, "max_box_delta_px": round(max_dx, 3)}


def parity_sequences(backend: str, precision: str) -> Dict[str, dict]:
    """The parity fixtures tracked with `backend` at `precision` (PyTorch's Tracker around it), against
    the fixture's fp32 MOT lines."""
    from models.backends import ExportedNetwork
    from models.export import export_network
    from models.tracker import Tracker, TrackerConfig, mot_lines
    from tools.parity_model import PARITY, build_parity_model, frame_input, memory_argv_from_about
    import tempfile
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        graphs = None
        for fixture in sorted(p for p in PARITY.glob("*_reference.pt") if not p.name.startswith("yolox")):
            ref = torch.load(fixture, weights_only=False)
            extra = (memory_argv_from_about(ref["about"]) if "mem_padding_mask" in ref["track_fields"]
                     else ["--memory", "none"])
            model, args = build_parity_model(extra)
            network = model.optimize_for_inference()
            amp = "bf16" if precision == "bf16" else "off"
            if backend != "torch":
                graphs = graphs or export_network(network, tmp)
                network, amp = ExportedNetwork(network, graphs, backend, precision=precision), "off"
            tracker = Tracker(network, dataclasses.replace(
                TrackerConfig.from_args(args), score_threshold=ref["score_threshold"],
                update_score_threshold=ref["update_score_threshold"], miss_tolerance=ref["miss_tolerance"]), amp=amp)
            lines = []
            for i, (frame, proposals) in enumerate(zip(ref["frames_uint8"], ref["proposals"])):
                lines += mot_lines(tracker.track(frame_input(frame), proposals, ref["ori_img_size"]), i + 1)
            same = sum(a.split(",")[:2] == b.split(",")[:2] for a, b in zip(lines, ref["mot_lines"]))
            out[fixture.stem] = {"lines": len(lines), "reference_lines": len(ref["mot_lines"]), "same_frame_and_id": same,
                                 **switches_against(_frames_of(ref["mot_lines"]), _frames_of(lines))}
    return out


def _frames_of(lines) -> Dict[int, list]:
    """{frame: [(id, xywh)]} of MOT lines."""
    frames: Dict[int, list] = {}
    for line in lines:
        v = line.split(",")
        frames.setdefault(int(v[0]), []).append((int(v[1]), np.array([float(x) for x in v[2:6]])))
    return frames


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=["torch:bf16"], metavar="BACKEND[:PRECISION]")
    parser.add_argument("--emulate_bf16", action="store_true", help="bf16 even without CPU support (emulated)")
    parser.add_argument("--data", default=str(REPO / "data" / "synthetic"), help="the demo's synthetic data")
    parser.add_argument("--out", default=str(REPO / "outputs" / "backend_quality"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no_parity", action="store_true", help="only the demo data")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.emulate_bf16:
        from util.device import BF16_ENV
        os.environ[BF16_ENV] = "emulate"
    from models.backends import check_backend
    from models.export import MissingRuntime
    runs = []
    for text in args.runs:
        backend, _, precision = text.partition(":")
        try:
            check_backend(backend)
        except (ValueError, MissingRuntime) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        runs.append((backend, precision or "fp32"))
    out, data = Path(args.out), Path(args.data)
    report = {"emulated_bf16": args.emulate_bf16, "demo": {}, "parity": {}}
    base = track_demo(data, out / "torch_fp32")
    report["demo"]["torch:fp32"] = base
    print(f"{'run':<20}{'row':<16}" + "".join(f"{m:>8}" for m in METRICS) + f"{'dHOTA':>8}{'dIDF1':>8}"
          f"{'IDSW vs fp32':>14}{'unmatched':>11}")
    for folder, row in base.items():
        print(f"{'torch:fp32':<20}{folder:<16}" + "".join(f"{row[m]:>8.2f}" for m in METRICS))
    for backend, precision in runs:
        name = f"{backend}:{precision}"
        res = track_demo(data, out / f"{backend}_{precision}", backend, precision)
        report["demo"][name] = res
        for folder, row in res.items():
            vs = {"matched": 0, "unmatched": 0, "id_switches": 0}
            for seq in sorted((out / "torch_fp32" / folder).glob("*.txt")):
                s = switches_against(read_lines(seq), read_lines(out / f"{backend}_{precision}" / folder / seq.name))
                for k in vs:
                    vs[k] += s[k]
            row["vs_fp32"] = vs
            print(f"{name:<20}{folder:<16}" + "".join(f"{row[m]:>8.2f}" for m in METRICS)
                  + f"{row['HOTA'] - base[folder]['HOTA']:>+8.2f}{row['IDF1'] - base[folder]['IDF1']:>+8.2f}"
                  f"{vs['id_switches']:>14}{vs['unmatched']:>11}")
        if not args.no_parity:
            report["parity"][name] = parity_sequences(backend, precision)
            for seq, r in report["parity"][name].items():
                print(f"  parity {seq}: {r['lines']} lines ({r['reference_lines']} in the fp32 reference), "
                      f"{r['same_frame_and_id']} with the same frame and id, {r['id_switches']} id switches, "
                      f"{r['unmatched']} unmatched, boxes within {r['max_box_delta_px']} px")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
