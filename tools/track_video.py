"""Track the people in your own video in one command: YOLOX proposals, MOTRv2 (+ TF-SASM) tracking,
a MOTChallenge result file and an annotated video.

    python tools/track_video.py my_video.mp4 --detector yolox_x.pth \\
        --resume motrv2_dancetrack.pth $(cat configs/motrv2.args) \\
        [--memory sparse --memory_preset official] [--output_dir outputs/track_video] \\
        [--device auto] [--amp fp16] [--save_det_db | --det_db my_video_det_db.json]

Writes, in --output_dir (default outputs/track_video):
  <stem>.txt           MOTChallenge lines `frame,id,x,y,w,h,1,-1,-1,-1`, frames numbered from 1
  <stem>_tracked.mp4   the video with boxes, ids and trails, at the input's size and fps
  <stem>_det_db.json   with --save_det_db: the proposals, keys `<stem>/img1/00000001.txt`
                       (MOTRv2's det_db format); pass it back with --det_db to skip detection

The video is streamed: a chunk of --det_batch_size frames is decoded, detected, tracked, drawn
and written before the next is read. Every model/tracker/memory flag is submit_dance.py's;
those not given come from the model card beside --resume when it has one (models/card.py).
Outputs are written to temporary files and renamed when complete.
"""
import argparse
import contextlib
import json
import os
import sys
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm


from datasets.det_db import (DetDB, DetDBError, find_key, format_det_lines, frame_identity, load_det_db,
                             lookup_detections, parse_det_db_frames,
                             parse_det_lines)
from datasets.sequences import SequenceError
from models.card import CardError, apply_card_defaults, card_note, given_dests
from models.checkpoint import CheckpointError
from models.export import BackendError, MissingRuntime
from models.inputs import proposals_from_detections
from models.tracker import Tracker, build_network, mot_lines
from models.yolox import (DANCETRACK_TEST_SIZE, DEFAULT_NMS_THRE, DEFAULT_SCORE_FLOOR,
                          YOLOX_SIZES, detect_frames, load_yolox)
from tools.visualize import draw_tracks
from main import get_tracking_parser
from util.cli import ArgumentParser
from util.device import AmpError, check_amp, resolve_device
from util.flags import checked, non_negative, positive, probability
from util.fileio import NotWritableError, atomic_path, check_writable_folder, write_atomic

DEFAULT_OUTPUT_DIR = os.path.join("outputs", "track_video")
FALLBACK_FPS = 25.0


class VideoError(ValueError):
    """A video that cannot be read or written; the message names the file."""


@dataclass
class VideoOutputs:
    mot_file: str
    video_file: Optional[str]
    det_db_file: Optional[str]
    frames: int
    fps: float


# -- video in -----------------------------------------------------------------------------------------
def open_video(path: str) -> Tuple[cv2.VideoCapture, float, int]:
    """(capture, fps, frame count as the container states it, 0 when unknown)."""
    if not os.path.isfile(path):
        raise VideoError(f"video not found: {path}")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise VideoError(f"OpenCV cannot open video {path} (not a video, or a codec this OpenCV build lacks)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return cap, float(fps), int(count) if np.isfinite(count) and count > 0 else 0


def frame_count(path: str) -> int:
    """The frame count the container states (0: unknown)."""
    cap, _, count = open_video(path)
    cap.release()
    return count


def check_first_frame(path: str) -> None:
    cap = open_video(path)[0]
    try:
        if not cap.read()[0]:
            raise VideoError(f"video {path} has no frames (or none that OpenCV can decode)")
    finally:
        cap.release()


def read_chunks(cap, size: int) -> Iterator[List[np.ndarray]]:
    """Consecutive lists of at most `size` BGR frames until the stream ends (only one chunk in memory)."""
    while True:
        chunk = []
        while len(chunk) < size:
            ok, frame = cap.read()
            if not ok:
                break
            chunk.append(frame)
        if chunk:
            yield chunk
        if len(chunk) < size:
            return


def frame_key(stem: str, frame: int) -> str:
    """det_db key of a video frame, shaped like a DanceTrack image key."""
    return f"{stem}/img1/{frame:08d}.txt"


# -- proposals ----------------------------------------------------------------------------------------
def video_entries(det_db_path: str, stem: str) -> Tuple[Optional[Dict[str, List[str]]], str]:
    """The det_db entries of this video (None if the file is absent or has none) and why not."""
    if not det_db_path:
        return None, "no --det_db given"
    if not os.path.isfile(det_db_path):
        return None, f"--det_db {det_db_path} not found"
    # This video's keys are those naming a sequence folder called like it (datasets/det_db.py's rule):
    # `<stem>/img1/...` as --save_det_db writes them, or `.../<stem>/img1/...` from make_detdb.py.
    entries = DetDB((k, v) for k, v in load_det_db(det_db_path).items()
                    if (frame_identity(k) or ("",))[0] == stem)
    if not entries:
        return None, f"--det_db {det_db_path} has no keys '.../{stem}/img1/...' for this video"
    return entries, ""


def check_video_entries(entries: Dict[str, List[str]], det_db_path: str, stem: str, count: int,
                        missing: str = "error") -> Dict[str, np.ndarray]:
    """Before the first frame: every line of the video's det_db entries parsed and range-checked (the
    file, key and line named), and the frames 1..`count` (the container's count; 0: unknown) covered:
    a frame without an entry is an error (`missing` 'error'), or with 'empty' more than half of them
    without one warns. Returns the parsed entries."""
    parsed = parse_det_db_frames(entries, entries, det_db_path)
    absent = [f for f in range(1, count + 1) if find_key(parsed, frame_key(stem, f)) is None]
    if absent and missing == "error":
        raise DetDBError(f"{det_db_path} has no entry for {len(absent)} of the {count} frames of {stem}, first "
                         f"{frame_key(stem, absent[0])!r} (use --missing_detections empty to track such frames "
                         "without proposals)")
    if 2 * len(absent) > count:
        print(f"warning: {det_db_path} has no entry for {len(absent)} of the {count} frames of {stem}: they are "
              "tracked without proposals", file=sys.stderr)
    return parsed


def config_det_dbs() -> set:
    """The split det_dbs the tracking configs name (`--det_db det_db_motrv2.json` in configs/motrv2.args):
    a command that passes a config passes that too, and it is not a det_db of this video."""
    names = set()
    for path in (Path(__file__).resolve().parents[1] / "configs").glob("*.args"):
        words = path.read_text().split()
        names.update(words[i + 1] for i, w in enumerate(words[:-1]) if w == "--det_db")
    return names


class Detections:
    """Proposals per frame: from the det_db entries of the video, or the detector.

    Detector output is rounded as the det_db stores it (1 decimal, score 2) before it is used,
    so that tracking again from the saved det_db gives the same result."""

    def __init__(self, stem: str, detector=None, entries: Optional[Dict[str, List[str]]] = None,
                 missing: str = "error", test_size: Tuple[int, int] = DANCETRACK_TEST_SIZE,
                 score_floor: float = DEFAULT_SCORE_FLOOR, nms_thre: float = DEFAULT_NMS_THRE,
                 half: bool = False):
        assert (detector is None) != (entries is None), "give exactly one of detector, entries"
        self.stem, self.detector, self.entries, self.missing = stem, detector, entries, missing
        self.test_size, self.score_floor, self.nms_thre, self.half = test_size, score_floor, nms_thre, half
        self.detected: Dict[str, List[str]] = {}  # what the detector found, for --save_det_db

    def for_chunk(self, frames_bgr: Sequence[np.ndarray], first_frame: int) -> List[np.ndarray]:
        keys = [frame_key(self.stem, first_frame + i) for i in range(len(frames_bgr))]
        if self.entries is not None:
            return [lookup_detections(self.entries, key, self.missing) for key in keys]
        dets = detect_frames(self.detector, frames_bgr, self.test_size, self.score_floor, self.nms_thre,
                             batch_size=len(frames_bgr), half=self.half)
        out = []
        for key, frame_dets in zip(keys, dets):
            lines = format_det_lines(frame_dets)
            self.detected[key] = lines
            out.append(parse_det_lines(lines, key))
        return out


# -- tracking + drawing -------------------------------------------------------------------------------
def boxes_of_lines(lines: Sequence[str]) -> List[Tuple[int, float, float, float, float]]:
    """(id, x, y, w, h) of MOTChallenge lines: draw exactly what is written."""
    boxes = []
    for line in lines:
        parts = line.split(",")
        boxes.append((int(parts[1]), *map(float, parts[2:6])))
    return boxes


def track_video(video: str, tracker: Tracker, detections: Detections, output_dir: str, chunk_size: int = 8,
                trail: int = 20, write_video: bool = True, fps: Optional[float] = None, save_det_db: bool = False,
                progress: bool = True) -> VideoOutputs:
    """Stream `video` (BGR frames: `tracker.rgb` False) through detection, tracking and drawing; write the
    outputs atomically."""
    stem = Path(video).stem
    cap, video_fps, count = open_video(video)
    if fps is None:
        fps = video_fps if np.isfinite(video_fps) and video_fps > 0 else FALLBACK_FPS
        if fps != video_fps:
            print(f"warning: {video} does not state its fps; writing {fps:g} fps (set --fps)", file=sys.stderr)
    os.makedirs(output_dir, exist_ok=True)
    mot_path = os.path.join(output_dir, f"{stem}.txt")
    video_path = os.path.join(output_dir, f"{stem}_tracked.mp4")
    trails = defaultdict(lambda: deque(maxlen=trail)) if trail > 0 else None
    writer, size, frame, lines = None, None, 0, []
    tracker.reset()  # ids start at 0 for every video
    bar = tqdm(total=count or None, desc=stem, unit="frame", disable=not progress, dynamic_ncols=True)
    with contextlib.ExitStack() as stack:
        # the video goes to a temporary file, renamed when the block ends without an error
        tmp_video = stack.enter_context(atomic_path(video_path)) if write_video else None
        try:
            for chunk in read_chunks(cap, chunk_size):
                chunk_dets = detections.for_chunk(chunk, frame + 1)
                for img_bgr, dets in zip(chunk, chunk_dets):
                    frame += 1
                    h, w = img_bgr.shape[:2]
                    if size is None:
                        size = (w, h)
                    elif size != (w, h):
                        raise VideoError(f"{video}: frame {frame} is {w}x{h}, the first frame was "
                                         f"{size[0]}x{size[1]}")
                    proposals = proposals_from_detections(dets, w, h)
                    frame_lines = mot_lines(tracker.track(tracker.input_tensor(img_bgr), proposals, (h, w)), frame)
                    lines += frame_lines
                    if write_video:
                        if writer is None:
                            writer = cv2.VideoWriter(tmp_video, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
                            if not writer.isOpened():
                                raise VideoError(f"OpenCV cannot write video {video_path} (mp4v codec)")
                        writer.write(draw_tracks(img_bgr, boxes_of_lines(frame_lines), trails))
                    bar.update(1)
                    bar.set_postfix(tracks=len(frame_lines))
            if frame == 0:
                raise VideoError(f"video {video} has no frames (or none that OpenCV can decode)")
            if count and frame < count:
                print(f"warning: {video} states {count} frames but only {frame} could be decoded", file=sys.stderr)
            write_atomic(mot_path, lines)
            if writer is not None:
                writer.release()
                writer = None   # released before the rename: the container is complete
            det_db_path = None
            if save_det_db and detections.detected:
                det_db_path = os.path.join(output_dir, f"{stem}_det_db.json")
                write_atomic(det_db_path, [json.dumps(detections.detected)])
        finally:
            bar.close()
            cap.release()
            if writer is not None:
                writer.release()
    return VideoOutputs(mot_path, video_path if write_video else None, det_db_path, frame, fps)


# -- command line -------------------------------------------------------------------------------------
def get_parser() -> argparse.ArgumentParser:
    # submit_dance's parser as parent: every model, tracker and memory flag is spelt the same.
    parser = ArgumentParser("tools/track_video.py", parents=[get_tracking_parser()], add_help=False,
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", help="input video (anything OpenCV decodes: mp4, avi, mkv, ...)")
    g = parser.add_argument_group("video tracking")
    g.add_argument("--detector", default=None, help="YOLOX checkpoint (e.g. yolox_x.pth; ByteTrack/YOLOX layout)")
    g.add_argument("--detector_name", default="yolox-x", choices=sorted(YOLOX_SIZES), help="YOLOX size")
    g.add_argument("--trust_checkpoint", action="store_true",
                   help="allow full pickle loading of a detector checkpoint that holds more than tensors")
    g.add_argument("--det_test_size", type=int, nargs=2, default=list(DANCETRACK_TEST_SIZE), metavar=("H", "W"),
                   help="detector input size, multiples of 32 (default 800 1440, as MOTRv2's det_db)")
    g.add_argument("--det_score_floor", type=checked(float, probability), default=DEFAULT_SCORE_FLOOR,
                   help="keep proposals with obj * cls >= this (default 0.05, as MOTRv2's det_db)")
    g.add_argument("--det_nms", type=checked(float, probability), default=DEFAULT_NMS_THRE, help="detector NMS IoU (default 0.7)")
    g.add_argument("--det_batch_size", type=checked(int, positive), default=8,
                   help="frames decoded, detected, tracked and written per chunk")
    g.add_argument("--save_det_db", action="store_true", help="also write <stem>_det_db.json (reuse: --det_db)")
    g.add_argument("--trail", type=checked(int, non_negative), default=20, help="frames of centre trail in the video (0: none)")
    g.add_argument("--fps", type=checked(float, positive), default=None, help="output fps (default: the input's)")
    g.add_argument("--no_video", action="store_true", help="write only the MOTChallenge file")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def run(args, detector=None) -> VideoOutputs:
    if any(s <= 0 or s % 32 for s in args.det_test_size):
        raise VideoError(f"--det_test_size must be positive multiples of 32, got {args.det_test_size}")
    if args.det_batch_size < 1:
        raise VideoError(f"--det_batch_size must be at least 1, got {args.det_batch_size}")
    device = resolve_device(args.device)
    check_amp(device, args.amp)
    stem = Path(args.video).stem
    check_first_frame(args.video)  # a bad video fails before minutes of model loading
    check_writable_folder(args.output_dir or DEFAULT_OUTPUT_DIR)
    entries, why = video_entries(args.det_db, stem)
    if entries is None and detector is None:
        if not args.detector:
            raise DetDBError(f"no proposals for {args.video}: {why}; pass --detector yolox_x.pth, or a --det_db "
                             f"with keys '{frame_key(stem, 1)}', ...")
        if args.det_db and args.det_db not in config_det_dbs():
            print(f"note: {why}; running the detector", file=sys.stderr)
        detector = load_yolox(args.detector, device, args.detector_name, trust_checkpoint=args.trust_checkpoint)
    if entries is not None:
        entries = check_video_entries(entries, args.det_db, stem, frame_count(args.video), args.missing_detections)
        detector = None
        if args.save_det_db:
            print(f"note: proposals read from {args.det_db}; --save_det_db has nothing new to write",
                  file=sys.stderr)
    detections = Detections(stem, detector, entries, args.missing_detections, tuple(args.det_test_size),
                            args.det_score_floor, args.det_nms, half=args.amp == "fp16" and device.type == "cuda")
    tracker = Tracker.from_args(build_network(args), args)
    return track_video(args.video, tracker, detections, args.output_dir or DEFAULT_OUTPUT_DIR, args.det_batch_size,
                       args.trail, not args.no_video, args.fps, args.save_det_db,
                       progress=not (args.quiet or getattr(args, "no_progress", False)))


def main(argv: Optional[Sequence[str]] = None, detector=None) -> int:
    """CLI entry; `detector` (a YOLOX module) replaces --detector loading, for tests and notebooks."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = get_parser().parse_args(argv)
    try:
        if args.resume:  # the checkpoint's card gives every model / tracker setting not typed here
            card, changed = apply_card_defaults(args, given_dests(get_parser(), argv), args.resume)
            if card is not None:
                print(card_note(card, changed, args.resume), file=sys.stderr)
        out = run(args, detector)
    except (AmpError, VideoError, CheckpointError, CardError, DetDBError, SequenceError, FileNotFoundError,
            NotWritableError, MissingRuntime, BackendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written (run the same command again)", file=sys.stderr)
        return 130
    except OSError as exc:  # a read-only or full output folder
        print(f"error: {exc.filename or args.output_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    written = [p for p in (out.mot_file, out.video_file, out.det_db_file) if p]
    print(f"tracked {out.frames} frames at {out.fps:g} fps -> {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
