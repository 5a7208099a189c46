"""Tracking whole splits: the run behind `submit_dance.py`, its `--variants` and the demo.

Every sequence not yet finished is read, checked (images, det_db coverage) before any tracking,
then tracked frame by frame with `models.tracker.track_frame`: each frame is decoded and encoded
once, and every variant's `Tracker` decodes, gives ids and updates its memory on that encoding.
A variant `NAME` writes `OUTPUT_DIR/NAME/<seq>.txt` (one variant: `--exp_name`), atomically.
"""
import argparse
import contextlib
import copy
import os
import re
import warnings
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence

from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from datasets.det_db import DetDBError, det_db_key, find_key, load_det_db, parse_det_db_frames
from datasets.layouts import split_from_args
from datasets.sequences import (CorruptImageError, SequenceError, SequenceFrames, TrackingSequence, check_images,
                                collate_single)
from models.config import add_memory_args, add_tracker_args, tracker_flags
from models.backends import check_backend
from models.tracker import Tracker, TrackerConfig, build_network, mot_lines, track_frame
from util.device import check_amp, dist_rank_world, rank_device, resolve_device
from util.fileio import check_writable_folder, read_text, stale_temp_files, write_atomic


class VariantError(ValueError):
    """A bad `--variants` file; the message names the file and line."""


@dataclass
class Variant:
    """One tracker configuration of a run, and where its results go."""
    name: str
    config: TrackerConfig
    out_dir: str
    line: int = 0  # in the variants file (0: the command line itself)


# -- variants ---------------------------------------------------------------------------------------------
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def _line_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A copy of `parser` that returns only the flags given (no defaults) and raises VariantError."""
    p = copy.deepcopy(parser)
    for action in p._actions:
        action.default = argparse.SUPPRESS
    p.allow_abbrev = False  # a variant names its flags in full

    def fail(message):
        raise VariantError(message)
    p.error = fail
    return p


def read_variants(path: str, base: argparse.Namespace, parser: argparse.ArgumentParser) -> List[Variant]:
    """Variants of a file of `NAME FLAG...` lines (blank lines and `#` comments ignored), each the
    base command plus its flags. Only tracker and memory flags (TrackerConfig's fields) are allowed;
    `parser` (the command's own) tells those from the command's other flags."""
    if not os.path.isfile(path):
        raise VariantError(f"--variants {path}: file not found")
    allowed = {f.dest: f.flag for f in tracker_flags()}
    line_parser = _line_parser(parser)
    variants: List[Variant] = []
    try:
        lines = read_text(path).splitlines()
    except ValueError as exc:  # not UTF-8: the message names the file and line
        raise VariantError(str(exc)) from None
    for lineno, text in enumerate(lines, start=1):
        words = text.split("#", 1)[0].split()
        if not words:
            continue
        name, flags = words[0], words[1:]
        asks_help = next((w for w in flags if w in ("-h", "--help")), None)
        if asks_help:  # argparse would print the help and exit 0 in the middle of the run
            raise VariantError(f"{path}:{lineno}: {asks_help} is not a tracker or memory flag; a variant may set "
                               f"only those: {', '.join(f.flag for f in tracker_flags())}")
        if not _NAME.fullmatch(name):
            raise VariantError(f"{path}:{lineno}: variant name {name!r}: letters, digits and _ . + - only "
                               "(it is a folder name), starting with a letter or digit")
        if any(v.name == name for v in variants):
            first = next(v.line for v in variants if v.name == name)
            raise VariantError(f"{path}:{lineno}: duplicate variant name {name!r} (first on line {first})")
        try:
            given = vars(line_parser.parse_args(flags))
        except VariantError as exc:
            raise VariantError(f"{path}:{lineno}: {exc}") from None
        refused = sorted(set(given) - set(allowed))
        if refused:
            option = next(o for a in parser._actions if a.dest == refused[0] for o in a.option_strings)
            raise VariantError(f"{path}:{lineno}: {option} is not a tracker or memory flag; a variant may set only "
                               f"those (it would change the network, the input or the run): "
                               f"{', '.join(allowed.values())}")
        merged = argparse.Namespace(**{**vars(base), **given})
        try:
            config = TrackerConfig.from_args(merged)
        except ValueError as exc:
            raise VariantError(f"{path}:{lineno}: {exc}") from exc
        variants.append(Variant(name, config, os.path.join(base.output_dir, name), lineno))
    if not variants:
        raise VariantError(f"--variants {path}: no variants (one 'NAME FLAG...' per line)")
    return variants


def variant_parser() -> argparse.ArgumentParser:
    """A parser of the tracker and memory flags alone (generated from `TrackerConfig`)."""
    parser = argparse.ArgumentParser("variant", add_help=False)
    add_tracker_args(parser)
    return add_memory_args(parser)


def run_variants(args: argparse.Namespace, parser: Optional[argparse.ArgumentParser] = None) -> List[Variant]:
    """The variants of a run: those of `--variants`, or the command line itself as `--exp_name`.
    `parser`: the command's parser (default: the tracker and memory flags only)."""
    if args.variants:
        return read_variants(args.variants, args, parser or variant_parser())
    return [Variant(args.exp_name, TrackerConfig.from_args(args), os.path.join(args.output_dir, args.exp_name))]


# -- sequences --------------------------------------------------------------------------------------------
def remove_stale_temps(out_dir: str, names: Iterable[str]) -> List[str]:
    """Delete the temporary files that a killed run (SIGKILL, power loss) left for these sequences.
    Only this rank's sequences: other ranks may be writing theirs right now."""
    stale = [p for name in names for p in stale_temp_files(out_dir, f"{name}.txt")]
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return [os.path.basename(p) for p in stale]


def check_det_db_covers(det_db, det_db_path: str, sequences: Iterable[TrackingSequence],
                        missing_detections: str = "error") -> None:
    """Before tracking anything: a frame without a det_db entry is an error (--missing_detections error);
    with 'empty', a sequence with more than half of its frames without one warns with the count, and a
    det_db none of whose keys is a frame to be tracked warns with an example of each."""
    sequences = list(sequences)
    found = 0
    for seq in sequences:
        keys = [det_db_key(rel) for _, rel in seq.frames]
        missing = [key for key in keys if find_key(det_db, key) is None]
        found += len(keys) - len(missing)
        if missing and missing_detections == "error":
            raise DetDBError(
                f"{det_db_path} has no entry for {len(missing)} of the {len(seq.frames)} frames of "
                f"{seq.relpath}, first {missing[0]!r} (use --missing_detections empty to track such "
                "frames without proposals)")
        if 2 * len(missing) > len(keys):
            warnings.warn(f"{det_db_path} has no entry for {len(missing)} of the {len(keys)} frames of "
                          f"{seq.relpath} (first {missing[0]!r}): they are tracked without proposals")
    if sequences and found == 0:
        example = next(iter(det_db), None)
        warnings.warn(f"none of the keys of {det_db_path} is a frame to be tracked: its keys look like "
                      f"{example!r}, the frames' like {det_db_key(sequences[0].frames[0][1])!r} (relative to "
                      "--mot_path); every frame is tracked without proposals")


def resolve_det_db(args) -> str:
    """upstream reads the det_db relative to --mot_path; absolute or existing paths are used as given."""
    if os.path.isabs(args.det_db) or os.path.isfile(args.det_db):
        return args.det_db
    return os.path.join(args.mot_path, args.det_db)


def prepare_sequences(args, layout, names: Sequence[str]) -> tuple:
    """Everything that can be checked without tracking, before the first frame: every sequence's
    folder, every image's header (size, channels, truncation), the det_db's coverage of the frames
    and every one of its lines for them. Returns ({name: sequence}, {det_db key: [n, 5] proposals})."""
    sequences = dict(zip(names, layout.read_all(names)))
    policy = getattr(args, "corrupt_frames", "error")
    for seq in sequences.values():
        check_images(seq.root or args.mot_path, seq, policy)
    det_db_path = resolve_det_db(args)
    det_db = load_det_db(det_db_path)
    check_det_db_covers(det_db, det_db_path, sequences.values(), args.missing_detections)
    keys = (det_db_key(rel) for seq in sequences.values() for _, rel in seq.frames)
    return sequences, parse_det_db_frames(det_db, keys, det_db_path)


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


def track_sequence(trackers: Sequence[Tracker], frames: SequenceFrames, num_workers: int = 2,
                   progress: bool = True, skip_corrupt: bool = False) -> List[List[str]]:
    """Track one sequence with every tracker at once; returns each tracker's MOTChallenge lines.
    Frames are decoded by DataLoader workers while the model runs. `skip_corrupt`: a frame that does
    not decode is left out with a warning (else its error is raised)."""
    for tracker in trackers:
        tracker.reset()  # ids start at 0 in every sequence: results do not depend on sequence order
    device = trackers[0].device
    loader = DataLoader(_ErrorsAsItems(frames), batch_size=1, num_workers=num_workers,
                        collate_fn=collate_single, pin_memory=device.type == "cuda", persistent_workers=False)
    lines: List[List[str]] = [[] for _ in trackers]
    desc = frames.seq.name if len(trackers) == 1 else f"{frames.seq.name} x{len(trackers)} variants"
    bar = tqdm(loader, desc=desc, unit="frame", disable=not progress, leave=False, dynamic_ncols=True)
    for item in bar:
        if isinstance(item, CorruptImageError) and skip_corrupt:
            warnings.warn(f"{item}; frame left out (--corrupt_frames skip)")
            continue
        if isinstance(item, Exception):
            raise item
        outputs = track_frame(trackers, item["image"][None], item["proposals"], item["ori_size"])
        for tracker_lines, output in zip(lines, outputs):
            tracker_lines += mot_lines(output, item["frame"])
        if len(trackers) == 1:
            bar.set_postfix(tracks=len(outputs[0]))
    return lines


def run(args, variants: Optional[List[Variant]] = None, progress: bool = True) -> Dict[str, List[str]]:
    """Track every unfinished (sequence, variant) of the split; returns each variant's result files
    of this rank. Variants whose file of a sequence exists skip it (unless --overwrite)."""
    variants = variants if variants is not None else run_variants(args)
    rank, world = dist_rank_world()
    device = rank_device(resolve_device(args.device), rank, world)
    check_amp(device, args.amp)  # before any work
    check_backend(getattr(args, "backend", "torch"))  # a missing runtime: one line saying what to install
    progress = progress and not getattr(args, "no_progress", False)
    layout = split_from_args(args)  # --dataset / --split / --split_dir / --mot17_copy / --seqs
    names = layout.names[rank::world]
    files = {v.name: [os.path.join(v.out_dir, f"{n}.txt") for n in names] for v in variants}
    for v in variants:  # a read-only folder or a full disk is found before any work, not after a sequence
        check_writable_folder(v.out_dir)
    todo: Dict[str, List[Variant]] = {}
    skipped = 0
    for v in variants:
        os.makedirs(v.out_dir, exist_ok=True)
        stale = remove_stale_temps(v.out_dir, names)
        if stale:
            print(f"removed {len(stale)} temporary file(s) left in {v.out_dir} by an interrupted run")
        for n in names:
            if args.overwrite or not os.path.isfile(os.path.join(v.out_dir, f"{n}.txt")):
                todo.setdefault(n, []).append(v)
            else:
                skipped += 1
    if skipped and len(variants) == 1:
        print(f"skipping {skipped} finished sequence(s) in {variants[0].out_dir} (--overwrite to redo)")
    elif skipped:
        partial = sum(len(todo[n]) < len(variants) for n in todo)
        print(f"skipping {len(names) - len(todo)} sequence(s) every variant has finished; {partial} more are "
              "tracked for their missing variants only (--overwrite to redo)")
    if not todo:
        return files
    # Everything that can be checked without tracking is checked first: no error after hours of work.
    order = [n for n in names if n in todo]
    sequences, proposals = prepare_sequences(args, layout, order)
    network = build_network(argparse.Namespace(**{**vars(args), "device": str(device)}))
    trackers = {v.name: Tracker(network, v.config, device=device, amp=args.amp,
                                input_size=(args.val_width, args.val_max_size)) for v in variants}
    empty: Dict[str, List[str]] = {}
    for name in tqdm(order, desc="sequences", unit="seq", disable=not progress or rank != 0 or len(order) == 1):
        frames = SequenceFrames(args.mot_path, sequences[name], proposals, args.missing_detections,
                                short=args.val_width, long_max=args.val_max_size)
        pending = todo[name]
        results = track_sequence([trackers[v.name] for v in pending], frames, args.num_workers, progress,
                                 skip_corrupt=getattr(args, "corrupt_frames", "error") == "skip")
        for v, lines in zip(pending, results):
            write_atomic(os.path.join(v.out_dir, f"{name}.txt"), lines)
            if not lines:
                empty.setdefault(v.out_dir, []).append(name)
    for out_dir, seqs in empty.items():  # said at the end, where it is read
        warnings.warn(f"{len(seqs)} sequence(s) got no box at all in {out_dir}: "
                      f"{', '.join(seqs)} (empty result files: check the det_db, --score_threshold and the "
                      "checkpoint)")
    return files
