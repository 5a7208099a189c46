"""Track DanceTrack-format sequences with MOTRv2 (+ optional TF-SASM memory) and write
MOTChallenge result files, one `<seq>.txt` per sequence.

    python submit_dance.py $(cat configs/motrv2.args) --resume motrv2_dancetrack.pth \\
        --mot_path data --det_db det_db_motrv2.json --output_dir outputs --exp_name val --split val
    python submit_dance.py --demo          # everything built in: synthetic data, shipped small model

Command-compatible with upstream MOTRv2's submit_dance.py; in addition: --split, --seqs,
--overwrite, --missing_detections, --amp, resumable runs (finished sequences are skipped),
atomic result files, several GPUs with torchrun (sequences split by rank).
"""
import argparse
import contextlib
import os
import signal
import sys
from typing import Iterable, List, Optional

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from datasets.det_db import DetDBError, det_db_key, load_det_db
from datasets.layouts import split_from_args
from datasets.sequences import (SequenceError, SequenceFrames, TrackingSequence, collate_single,
                                list_sequences, read_sequence)
from main import get_args_parser
from models import build_model
from models.checkpoint import CheckpointError, load_checkpoint
from models.motr import RuntimeTrackerBase, resolve_device
from models.structures import Instances
from util.fileio import stale_temp_files, write_atomic

MOT_LINE = "{frame},{id},{x1:.2f},{y1:.2f},{w:.2f},{h:.2f},1,-1,-1,-1\n"


def _iou_threshold(text: str) -> float:
    """argparse type for an IoU threshold in (0, 1]; every parser built on get_submit_parser checks it."""
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: an IoU in (0, 1]")
    return value


def get_submit_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("MOTRv2 tracking on DanceTrack-format data", parents=[get_args_parser()])
    a = parser.add_argument
    a("--score_threshold", default=0.5, type=float, help="score for a new track and for writing a box")
    a("--update_score_threshold", default=0.5, type=float, help="score for QIM to update a track's query")
    a("--miss_tolerance", default=20, type=int, help="frames a track may be missed before it ends")
    a("--track_nms_iou", default=None, type=_iou_threshold,
      help="suppress the lower-scoring of two reported boxes overlapping by more than this IoU "
           "(counted as a miss); default: off, as upstream MOTRv2")
    a("--area_threshold", default=100, type=float, help="boxes of at most this many pixels are not written")
    a("--split", default="val", choices=("train", "val", "test"), help="DanceTrack split under --mot_path")
    a("--seqs", nargs="+", default=None, help="track only these sequences")
    a("--overwrite", action="store_true", help="re-track sequences whose result file exists")
    a("--missing_detections", default="error", choices=("error", "empty"),
      help="a frame absent from the det_db: stop with an error, or track it without proposals")
    a("--val_max_size", default=1536, type=int,
      help="long-side cap of the model input; the short side is --val_width (800), as upstream resizes")
    a("--amp", default="off", choices=("off", "fp16", "bf16"), help="mixed precision (CUDA only)")
    a("--compile", action="store_true", help="torch.compile the backbone (one-off compile time; long runs)")
    a("--demo", action="store_true", help="run the built-in demo (synthetic data, shipped small model)")
    return parser


# -- results ---------------------------------------------------------------------------------------
def mot_lines(tracks: Instances, frame: int, score_threshold: float, area_threshold: float = 100) -> List[str]:
    """MOTChallenge lines of the confident, identified, large-enough tracks of one frame."""
    keep = (tracks.scores > score_threshold) & (tracks.obj_idxes >= 0)
    boxes = tracks.boxes[keep]
    ids = tracks.obj_idxes[keep]
    wh = boxes[:, 2:4] - boxes[:, 0:2]
    big = wh[:, 0] * wh[:, 1] > area_threshold
    lines = []
    for (x1, y1, x2, y2), track_id in zip(boxes[big].tolist(), ids[big].tolist()):
        lines.append(MOT_LINE.format(frame=frame, id=track_id, x1=x1, y1=y1, w=x2 - x1, h=y2 - y1))
    return lines


def remove_stale_temps(out_dir: str, names: Iterable[str]) -> List[str]:
    """Delete the temporary files that a killed run (SIGKILL, power loss) left for these sequences.
    Only this rank's sequences: other ranks may be writing theirs right now."""
    stale = [p for name in names for p in stale_temp_files(out_dir, f"{name}.txt")]
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return [os.path.basename(p) for p in stale]


# -- tracking ---------------------------------------------------------------------------------------
def autocast_context(device: torch.device, amp: str):
    if amp == "off" or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.float16 if amp == "fp16" else torch.bfloat16)


class _ErrorsAsItems(Dataset):
    """Hands a frame's SequenceError/DetDBError to the main process as the item itself: raised in a
    DataLoader worker, it would arrive re-wrapped with the worker's traceback in its message."""

    def __init__(self, frames: SequenceFrames):
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int):
        try:
            return self.frames[index]
        except (SequenceError, DetDBError) as exc:
            return exc


def track_sequence(model, frames: SequenceFrames, device: torch.device, score_threshold: float,
                   area_threshold: float = 100, num_workers: int = 2, amp: str = "off",
                   progress: bool = True) -> List[str]:
    """Track one sequence; returns its MOTChallenge lines. Frames are decoded by DataLoader workers
    while the model runs."""
    model.clear()  # ids start at 0 in every sequence: results do not depend on sequence order
    loader = DataLoader(_ErrorsAsItems(frames), batch_size=1, num_workers=num_workers,
                        collate_fn=collate_single, pin_memory=device.type == "cuda", persistent_workers=False)
    tracks, lines = None, []
    bar = tqdm(loader, desc=frames.seq.name, unit="frame", disable=not progress, leave=False,
               dynamic_ncols=True)
    with torch.inference_mode(), autocast_context(device, amp):
        for item in bar:
            if isinstance(item, Exception):
                raise item
            img = item["image"].to(device, non_blocking=True)[None]
            proposals = item["proposals"].to(device)
            res = model.inference_single_image(img, item["ori_size"], tracks, proposals)
            tracks = res["track_instances"]
            lines += mot_lines(tracks, item["frame"], score_threshold, area_threshold)
            bar.set_postfix(tracks=int((tracks.obj_idxes >= 0).sum()))
    return lines


def check_det_db_covers(det_db, det_db_path: str, sequences: Iterable[TrackingSequence]) -> None:
    """Fail before tracking anything when a frame has no det_db entry (--missing_detections error)."""
    for seq in sequences:
        missing = [key for key in (det_db_key(rel) for _, rel in seq.frames) if key not in det_db]
        if missing:
            raise DetDBError(
                f"{det_db_path} has no entry for {len(missing)} of the {len(seq.frames)} frames of "
                f"{seq.relpath}, first {missing[0]!r} (use --missing_detections empty to track such "
                "frames without proposals)")


def dist_rank_world():
    """(rank, world size) from torchrun (RANK/WORLD_SIZE) or upstream's RLAUNCH_* variables."""
    rank = int(os.environ.get("RANK", os.environ.get("RLAUNCH_REPLICA", 0)))
    world = int(os.environ.get("WORLD_SIZE", os.environ.get("RLAUNCH_REPLICA_TOTAL", 1)))
    return rank, world


def build_tracker(args, device: torch.device):
    model, _, _ = build_model(args)
    if not args.resume:
        raise CheckpointError("no checkpoint given: pass --resume motrv2_dancetrack.pth (or run --demo)")
    load_checkpoint(model, args.resume)
    model.track_embed.score_thr = args.update_score_threshold
    model.track_base = RuntimeTrackerBase(args.score_threshold, args.score_threshold, args.miss_tolerance,
                                          nms_iou=args.track_nms_iou)
    return model.eval().to(device).optimize_for_inference(compile_backbone=args.compile)


def resolve_det_db(args) -> str:
    """upstream reads the det_db relative to --mot_path; absolute or existing paths are used as given."""
    if os.path.isabs(args.det_db) or os.path.isfile(args.det_db):
        return args.det_db
    return os.path.join(args.mot_path, args.det_db)


def run(args) -> List[str]:
    """Track every (unfinished) sequence of the split; returns the result files of this rank."""
    device = resolve_device(args.device)
    rank, world = dist_rank_world()
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    layout = split_from_args(args)  # --dataset / --split / --split_dir / --mot17_copy / --seqs
    names = layout.names[rank::world]
    out_dir = os.path.join(args.output_dir, args.exp_name)
    os.makedirs(out_dir, exist_ok=True)
    todo = [n for n in names if args.overwrite or not os.path.isfile(os.path.join(out_dir, f"{n}.txt"))]
    if len(todo) < len(names):
        print(f"skipping {len(names) - len(todo)} finished sequence(s) in {out_dir} (--overwrite to redo)")
    stale = remove_stale_temps(out_dir, names)
    if stale:
        print(f"removed {len(stale)} temporary file(s) left in {out_dir} by an interrupted run")
    if not todo:
        return [os.path.join(out_dir, f"{n}.txt") for n in names]
    # Everything that can be checked without tracking is checked first: no error after hours of work.
    sequences = layout.read_all(todo)
    det_db_path = resolve_det_db(args)
    det_db = load_det_db(det_db_path)
    if args.missing_detections == "error":
        check_det_db_covers(det_db, det_db_path, sequences)
    model = build_tracker(args, device)
    for name, seq in zip(todo, tqdm(sequences, desc="sequences", unit="seq",
                                    disable=rank != 0 or len(todo) == 1)):
        frames = SequenceFrames(args.mot_path, seq, det_db, args.missing_detections,
                                short=args.val_width, long_max=args.val_max_size)
        lines = track_sequence(model, frames, device, args.score_threshold, args.area_threshold,
                               args.num_workers, args.amp)
        write_atomic(os.path.join(out_dir, f"{name}.txt"), lines)
    return [os.path.join(out_dir, f"{n}.txt") for n in names]


def _quiet_after_interrupt() -> None:
    """Ctrl-C can land inside an object's constructor (a progress bar, a DataLoader iterator); its
    destructor then fails during shutdown and Python prints a traceback for it. After an interrupt
    those reports are noise: keep the one-line message only."""
    interrupted = False
    default_hook = sys.unraisablehook

    def on_sigint(signum, frame):
        nonlocal interrupted
        interrupted = True
        raise KeyboardInterrupt

    def unraisable(report):
        if not interrupted:
            default_hook(report)

    signal.signal(signal.SIGINT, on_sigint)
    sys.unraisablehook = unraisable


def main(argv: Optional[List[str]] = None) -> int:
    args = get_submit_parser().parse_args(argv)
    if args.demo:
        from tools.demo import run_demo
        return run_demo(args)
    try:
        run(args)
    except (CheckpointError, DetDBError, SequenceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished sequences are kept; run the same command again to track the rest",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    _quiet_after_interrupt()  # process-wide hooks: only when run as a command
    sys.exit(main())
