"""Run the YOLOX detector over image sequences and write a MOTRv2 det_db JSON.

det_db format (as MOTRv2's det_db_motrv2.json): {key: [line, ...]} with
  key  = the image path relative to --mot_path, extension replaced by '.txt'
         (e.g. 'DanceTrack/val/dancetrack0004/img1/00000001.txt'),
  line = 'x,y,w,h,score\\n' (left, top, width, height in frame pixels, 1 decimal; score
         = obj * cls_conf, 2 decimals), sorted by decreasing score.
Every frame gets a key, with an empty list when nothing is detected.

With --from_det_txt no detector runs: the det_db is made from each sequence's public detections
`det/det.txt` (`frame,-1,x,y,w,h,score`, as MOTChallenge releases them; boxes keep the file's
numbers, lines sorted by decreasing score). Scores are mapped into [0, 1], the range the model's
score input was trained on, by the rule of the sequence's copy (datasets/registry.py
PUBLIC_SCORE_RULES): MOT17 DPM's raw SVM margins by the logistic 1 / (1 + exp(-margin)); FRCNN's,
SDP's and MOT20's probabilities clipped to [0, 1] (unchanged). Tracking on them follows the
public-detection protocol only with submit_dance.py --public_protocol (README, MOT17).

Examples:
  python tools/make_detdb.py --mot_path /data/mot --split val test \\
      --checkpoint yolox_x_dancetrack.pth.tar --output /data/mot/det_db_motrv2.json
  python tools/make_detdb.py --frames my_video/img1 --checkpoint yolox_x.pth --output det_db.json
  python tools/make_detdb.py --from_det_txt --dataset mot17 --mot17_copy all --mot_path /data/mot \
      --split train test --output /data/mot/det_db_mot17_public.json

Resumable: after each sequence its entries are appended to '<output>.partial.jsonl'; a rerun
with the same settings skips the sequences found there. The final JSON is written to a
temporary file and renamed, and the partial file is then removed.
"""
import argparse
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from tqdm import tqdm

from datasets.det_db import AS_READ, format_det_lines
from util.cli import ArgumentParser, run_main
from util.fileio import NotWritableError, check_writable_folder, write_json_atomic
from util.flags import checked, non_negative, positive, probability

from datasets.det_db import DetDBError, read_det_txt
from datasets.det_db import det_db_key as _key_of_relpath
from datasets import registry
from datasets.layouts import SplitLayout, resolve_split
from datasets.sequences import SequenceError, read_header, truncation
from models.checkpoint import CheckpointError

from models.yolox import (DANCETRACK_TEST_SIZE, DEFAULT_NMS_THRE, DEFAULT_SCORE_FLOOR,
                          detect_frames, detect_preprocessed, load_yolox, preproc)

__all__ = ["detect_frames", "load_yolox", "format_det_lines", "find_split_sequences", "find_frame_sequences",
           "make_detdb", "main"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SequenceFrames = Tuple[str, List[Path]]  # (sequence name, its frame paths in order)


def _absolute(path: Path) -> Path:
    # abspath, not resolve(): dataset folders are often symlinks to other disks.
    return Path(os.path.abspath(path))


def det_db_key(image: Path, root: Path) -> str:
    rel = _absolute(image).relative_to(_absolute(root))
    return rel.with_suffix(".txt").as_posix()


def _list_images(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def find_split_sequences(mot_path: Path, split: str, dataset: str = registry.DEFAULT, split_dir: Optional[Path] = None,
                         mot17_copy: str = registry.REGISTRY["mot17"].default_copy) -> List[SequenceFrames]:
    """The sequences of a split as datasets/layouts.py finds them (DanceTrack by default:
    mot_path/DanceTrack/<split>/<seq>/img1/*.jpg), named by their path relative to the key root."""
    layout = _layout(mot_path, split, dataset, split_dir, mot17_copy)
    root = Path(layout.key_root)
    return [(seq.relpath, [root / rel for _, rel in seq.frames]) for seq in layout.read_all()]


def _layout(mot_path, split, dataset, split_dir, mot17_copy) -> SplitLayout:
    try:
        return resolve_split(str(mot_path) if mot_path is not None else "", dataset, split,
                             None if split_dir is None else str(split_dir), mot17_copy)
    except SequenceError as exc:
        raise FileNotFoundError(str(exc)) from None


def detdb_from_det_txt(layouts: Sequence[SplitLayout], output: Optional[Path] = None) -> Dict[str, List[str]]:
    """The det_db of the public detections (`<seq>/det/det.txt`) of every sequence of `layouts`:
    every frame of img1/ gets a key (an empty list when it has no detection). Written atomically
    to `output` when given. Raises DetDBError naming the file (and line) at fault."""
    det_db: Dict[str, List[str]] = {}
    for layout in layouts:
        for seq in layout.read_all():
            det_path = os.path.join(layout.key_root, seq.relpath, "det", "det.txt")
            if not os.path.isfile(det_path):
                raise DetDBError(f"no public detections {det_path} (--from_det_txt needs <seq>/det/det.txt)")
            per_frame = read_det_txt(det_path)
            rule = registry.public_score_rule(registry.get(layout.dataset), seq.name)
            for dets in per_frame.values():  # scores into [0, 1] (registry.PUBLIC_SCORE_RULES)
                dets[:, 4] = registry.map_public_scores(dets[:, 4], rule)
            numbers = {n for n, _ in seq.frames}
            stray = sorted(set(per_frame) - numbers)
            if stray:
                raise DetDBError(f"{det_path}: detections for frame {stray[0]} but {seq.relpath} has no image for it "
                                 f"(frames {min(numbers)}..{max(numbers)})")
            for number, rel in seq.frames:
                dets = per_frame.get(number)
                det_db[_key_of_relpath(rel)] = [] if dets is None else format_det_lines(dets, AS_READ, sort=True)
    if output is not None:
        write_json_atomic(output, det_db, indent=None)
    return det_db


def find_frame_sequences(folders: Sequence[Path], root: Path) -> List[SequenceFrames]:
    """Each folder of images is one sequence, named by its path relative to root."""
    sequences = []
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"--frames folder {folder} does not exist")
        frames = _list_images(folder)
        if not frames:
            raise FileNotFoundError(f"--frames folder {folder} has no {'/'.join(IMAGE_EXTENSIONS)} images")
        try:
            name = _absolute(folder).relative_to(_absolute(root)).as_posix()
        except ValueError:
            raise ValueError(f"--frames folder {folder} is not inside the key root {root}") from None
        if any(name == other for other, _ in sequences):
            raise ValueError(f"--frames folder {folder} is given twice")
        sequences.append((name, frames))
    return sequences


def _read_and_prepare(path: Path, test_size: Tuple[int, int]) -> Tuple[np.ndarray, float]:
    data = np.fromfile(str(path), dtype=np.uint8)
    why = truncation(data[:8].tobytes(), data[-4096:].tobytes())  # libjpeg would only warn, grey-filling it
    image = None if why else cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise SequenceError(f"cannot decode image ({why or 'corrupt or unsupported'}): {path}")
    return preproc(image, test_size)


def _prefetched_batches(frames: List[Path], batch_size: int, test_size: Tuple[int, int],
                        pool: ThreadPoolExecutor) -> Iterator[Tuple[List[Path], torch.Tensor, List[float]]]:
    """Decode + letterbox the next batch in worker threads while the current one runs."""
    chunks = [frames[i:i + batch_size] for i in range(0, len(frames), batch_size)]

    def submit(chunk):
        return [pool.submit(_read_and_prepare, p, test_size) for p in chunk]

    pending = submit(chunks[0]) if chunks else None
    for k, chunk in enumerate(chunks):
        prepared = [f.result() for f in pending]
        pending = submit(chunks[k + 1]) if k + 1 < len(chunks) else None
        images = torch.from_numpy(np.stack([p[0] for p in prepared]))
        yield chunk, images, [p[1] for p in prepared]


def _read_partial(path: Path, settings: dict) -> Dict[str, Dict[str, List[str]]]:
    """Finished sequences of a previous run. A torn last line (killed mid-write) is cut off
    the file, so that its sequence is redone and later appends start on a fresh line."""
    done: Dict[str, Dict[str, List[str]]] = {}
    if not path.exists():
        return done
    with open(path, "rb") as f:
        data = f.read()
    complete = data[:data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(path, "r+b") as f:
            f.truncate(len(complete))
    for lineno, line in enumerate(complete.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{lineno}: corrupt line in the partial det_db ({err}); "
                             "delete the file or use --restart") from None
        if "settings" in record:
            if record["settings"] != settings:
                raise ValueError(f"{path} was made with other settings {record['settings']} (now {settings}); "
                                 "use --restart to discard it")
        else:
            done[record["sequence"]] = record["det_db"]
    return done


def _append_record(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def make_detdb(model, sequences: List[SequenceFrames], key_root: Path, output: Path,
               test_size: Tuple[int, int] = DANCETRACK_TEST_SIZE, score_floor: float = DEFAULT_SCORE_FLOOR,
               nms_thre: float = DEFAULT_NMS_THRE, batch_size: int = 8, half: bool = False, workers: int = 4,
               settings: Optional[dict] = None, restart: bool = False) -> Dict[str, List[str]]:
    """Detect on every frame of every sequence; returns the det_db and writes it to output."""
    partial = output.with_name(output.name + ".partial.jsonl")
    settings = dict(settings or {}, test_size=list(test_size), score_floor=score_floor, nms_thre=nms_thre,
                    half=half)
    if restart and partial.exists():
        partial.unlink()
    done = _read_partial(partial, settings)
    if not partial.exists() or partial.stat().st_size == 0:
        _append_record(partial, {"settings": settings})

    todo = [(name, frames) for name, frames in sequences if name not in done]
    total = sum(len(frames) for _, frames in sequences)
    with tqdm(total=total, initial=total - sum(len(f) for _, f in todo), unit="frame", desc="det_db") as bar, \
            ThreadPoolExecutor(max(1, workers)) as pool:
        for name, frames in todo:
            bar.set_postfix_str(name)
            seq_db: Dict[str, List[str]] = {}
            for paths, images, ratios in _prefetched_batches(frames, batch_size, test_size, pool):
                dets = detect_preprocessed(model, images, ratios, score_floor, nms_thre, half)
                for path, frame_dets in zip(paths, dets):
                    seq_db[det_db_key(path, key_root)] = format_det_lines(frame_dets)
                bar.update(len(paths))
            _append_record(partial, {"sequence": name, "det_db": seq_db})
            done[name] = seq_db

    det_db: Dict[str, List[str]] = {}
    for name, _ in sequences:
        det_db.update(done[name])
    write_json_atomic(output, det_db, indent=None)
    partial.unlink()
    return det_db


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--split", nargs="+", help="DanceTrack split(s) under --mot_path, e.g. val test")
    src.add_argument("--frames", nargs="+", type=Path, help="folders of frames, one sequence each")
    src.add_argument("--split_dir", type=Path, default=None,
                     help="a MOTChallenge-format split folder of your own (<seq>/img1/*.jpg)")
    parser.add_argument("--dataset", default=registry.DEFAULT, choices=registry.NAMES,
                        help="layout of --split under --mot_path (datasets/registry.py): " +
                             ", ".join(f"{e.name} ({e.folder}/<split>)" for e in registry.ENTRIES if e.folder))
    parser.add_argument("--mot17_copy", default=registry.REGISTRY["mot17"].default_copy,
                        choices=registry.COPY_NAMES + ("all",),
                        help="MOT17: which copy of each video (default FRCNN; all: the three)")
    parser.add_argument("--from_det_txt", action="store_true",
                        help="no detector: the det_db of the sequences' public detections det/det.txt")
    parser.add_argument("--mot_path", type=Path, default=None,
                        help="dataset root; det_db keys are relative to it (with --frames default: "
                             "the folder above each sequence folder, FOLDER/..: keys <seq>/img1/<frame>.txt)")
    parser.add_argument("--output", type=Path, default=None,
                        help="det_db JSON to write (default: <mot_path>/det_db_yolox.json)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="YOLOX-X weights, e.g. yolox_x.pth (not with --from_det_txt)")
    parser.add_argument("--trust_checkpoint", action="store_true",
                        help="allow full pickle loading for checkpoints that hold more than tensors")
    parser.add_argument("--test_size", type=checked(int, positive), nargs=2, default=list(DANCETRACK_TEST_SIZE),
                        metavar=("H", "W"), help="network input size, multiples of 32 (default 800 1440)")
    parser.add_argument("--score_floor", type=checked(float, probability), default=DEFAULT_SCORE_FLOOR,
                        help="drop detections with obj * cls below this (default 0.05, as MOTRv2's det_db)")
    parser.add_argument("--nms", type=checked(float, probability), default=DEFAULT_NMS_THRE, help="NMS IoU threshold (default 0.7)")
    parser.add_argument("--batch_size", type=checked(int, positive), default=8)
    parser.add_argument("--workers", type=checked(int, non_negative), default=4, help="image decoding threads")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--half", action="store_true", help="fp16 autocast (CUDA only)")
    parser.add_argument("--restart", action="store_true", help="ignore the partial file of an earlier run")
    return parser


def main(argv: Optional[Sequence[str]] = None, model=None) -> Dict[str, List[str]]:
    """CLI entry; `model` replaces --checkpoint loading (tests pass a model with stand-in weights).
    Bad input (flags, files, images, a checkpoint that is not YOLOX's) is SystemExit('error: ...'),
    raised before any detection."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args, model)
    except (CheckpointError, DetDBError, SequenceError, FileNotFoundError, NotWritableError, ValueError) as exc:
        # One line: a key listing (indented deeper) is left out, its counts kept.
        lines = str(exc).splitlines() or [""]
        summary = [lines[0]] + [line.strip() for line in lines[1:] if line.startswith("  ") and line[2:3] != " "]
        raise SystemExit(f"error: {' '.join(summary)}") from None


def _run(args, model=None) -> Dict[str, List[str]]:
    if any(s % 32 for s in args.test_size):
        raise SystemExit(f"--test_size must be multiples of 32, got {args.test_size}")
    if args.split or args.split_dir is not None:
        if args.split and args.mot_path is None:
            raise SystemExit("--split needs --mot_path")
        layouts = [_layout(args.mot_path, split, args.dataset, args.split_dir, args.mot17_copy)
                   for split in (args.split or [None])]
        key_root = Path(layouts[0].key_root)
        if args.from_det_txt:
            output = args.output
            if output is None:
                if args.mot_path is None:
                    raise SystemExit("give --output (or --mot_path for the default <mot_path>/det_db_public.json)")
                output = args.mot_path / "det_db_public.json"
            check_writable_folder(Path(output).parent)
            return detdb_from_det_txt(layouts, output)
        sequences = [(seq.relpath, [key_root / rel for _, rel in seq.frames])
                     for layout in layouts for seq in layout.read_all()]
    else:
        if args.from_det_txt:
            raise SystemExit("--from_det_txt reads <seq>/det/det.txt: give --split or --split_dir, not --frames")
        # Default key root: the folder above each sequence folder (FOLDER/..), so keys name the
        # sequence: `--frames my_video/img1` -> `my_video/img1/00000001.txt` (datasets/det_db.py's rule).
        parents = {_absolute(f).parent.parent for f in args.frames}
        if args.mot_path is None and len(parents) > 1:
            raise SystemExit("--frames folders lie in different places; give --mot_path as the key root")
        key_root = args.mot_path if args.mot_path is not None else parents.pop()
        sequences = find_frame_sequences(args.frames, key_root)
    output = args.output
    if output is None:
        if args.mot_path is None:
            raise SystemExit("give --output (or --mot_path for the default <mot_path>/det_db_yolox.json)")
        output = args.mot_path / "det_db_yolox.json"
    # Before the detector loads: the output folder, and every image's header (a truncated frame is named).
    check_writable_folder(Path(output).parent)
    for _, frames in sequences:
        for path in frames:
            read_header(str(path))
    if model is None:
        if args.checkpoint is None:
            raise SystemExit("give --checkpoint (YOLOX weights), or --from_det_txt for the public detections")
        model = load_yolox(args.checkpoint, args.device, trust_checkpoint=args.trust_checkpoint)
    settings = {"checkpoint": str(_absolute(args.checkpoint)) if args.checkpoint else None}
    return make_detdb(model, sequences, key_root, output, tuple(args.test_size), args.score_floor, args.nms,
                      args.batch_size, args.half, args.workers, settings, args.restart)


if __name__ == "__main__":
    raise SystemExit(run_main(main))
