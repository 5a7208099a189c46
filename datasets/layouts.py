"""Where each dataset's sequences are, as released, and which of them a run uses.

The layouts are the entries of datasets/registry.py (`<mot_path>/<folder>/<split>/<seq>/img1/`;
MOT17's videos three times, one per public detector: --mot17_copy picks DPM, FRCNN (default) or
SDP, or `all` for the three). `--split_dir DIR` reads any MOTChallenge-format split folder:
DIR/<seq>/img1/*.jpg, optional gt/gt.txt and seqinfo.ini (inferred from the images when absent).

When `<mot_path>/<Dataset>/<split>` does not exist but `<mot_path>/<split>` does, --mot_path is
taken to be the dataset folder itself (e.g. --mot_path data/MOT17).

Det_db keys are the image path relative to the *key root* with the image suffix replaced by
`.txt`. The key root is --mot_path (`MOT17/train/MOT17-02-FRCNN/img1/000001.txt`), except for a
--split_dir outside --mot_path, whose keys are relative to the split folder's parent
(`--split_dir /x/mysplit` -> `mysplit/<seq>/img1/000001.txt`).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from . import registry
from .sequences import SequenceError, TrackingSequence, list_sequences, read_sequence

DATASETS = registry.NAMES
DATASET_DIRS = {e.name: e.folder for e in registry.ENTRIES if e.folder is not None}
MOT17_COPIES = registry.REGISTRY["mot17"].copies
DEFAULT_MOT17_COPY = registry.REGISTRY["mot17"].default_copy


def add_dataset_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--dataset, --mot17_copy and --split_dir (a no-op when the parser has them already)."""
    if "--dataset" in parser._option_string_actions:  # e.g. inherited through parents=[...]
        return parser
    a = parser.add_argument
    a("--dataset", default=registry.DEFAULT, choices=DATASETS,
      help="which dataset's released layout to read under --mot_path (datasets/registry.py; default "
           f"{registry.DEFAULT}; custom: only --split_dir)")
    a("--mot17_copy", default=DEFAULT_MOT17_COPY, choices=registry.COPY_NAMES + ("all",),
      help="MOT17: the copy of each video to use (its public detector); 'all' tracks the three "
           "(training always uses one copy per video: FRCNN with 'all')")
    a("--split_dir", default=None,
      help="a MOTChallenge-format split folder of your own (<seq>/img1/*.jpg); replaces --dataset/--split")
    a("--half_split", default=registry.HALF_CONVENTIONS[0], choices=registry.HALF_CONVENTIONS,
      help="--split train_half / val_half (MOT17, MOT20): where each train video is cut: bytetrack "
           "(train 1..n//2+1, default) or motip (1..n//2); val_half frames are renumbered from 1")
    a("--train_split", default="train", choices=("train", "train_half"),
      help="training: the train split, or its first halves (MOT17 / MOT20, --half_split) to validate on val_half")
    return parser


def mot17_video(name: str) -> Optional[str]:
    """'MOT17-02-FRCNN' -> 'MOT17-02'; None for a name without a detector suffix."""
    return registry.video_of(registry.REGISTRY["mot17"], name)


def mot17_copy_of(name: str) -> Optional[str]:
    return registry.copy_of(registry.REGISTRY["mot17"], name)


def _inside(path: str, root: str) -> bool:
    path, root = os.path.abspath(path), os.path.abspath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


@dataclass
class SplitLayout:
    """The sequences of one split: `names` (sorted; result files are `<name>.txt`), the folder
    holding them (`split_dir`, also the ground-truth folder for tools/evaluate.py) and the key
    root that frame paths and det_db keys are relative to."""
    dataset: str
    split_dir: str
    key_root: str
    names: List[str] = field(default_factory=list)
    half: Optional[str] = None              # 'train_half' / 'val_half' of split_dir (the train split)
    half_convention: str = registry.HALF_CONVENTIONS[0]

    @property
    def rel(self) -> str:
        """split_dir relative to key_root, with forward slashes."""
        return os.path.relpath(os.path.abspath(self.split_dir), os.path.abspath(self.key_root)).replace("\\", "/")

    def read(self, name: str) -> TrackingSequence:
        """One sequence's frames (paths relative to key_root) and seqinfo."""
        seq = read_sequence(self.key_root, f"{self.rel}/{name}")
        seq.root = self.key_root
        if self.half is not None:  # the half's frames, numbered from 1 (its results and gt are too)
            first, last = registry.half_frames(len(seq.frames), self.half, self.half_convention)
            seq.frames = [(i + 1, path) for i, (_, path) in enumerate(seq.frames[first - 1:last])]
            seq.info = {**seq.info, "seqlength": str(len(seq.frames))}
        return seq

    def read_all(self, names: Optional[Sequence[str]] = None) -> List[TrackingSequence]:
        return [self.read(n) for n in (self.names if names is None else names)]


def _select_copies(entry: registry.DatasetEntry, split_dir: str, found: List[str], copy: str) -> List[str]:
    """The chosen copy of each video (all of them for 'all')."""
    if copy == "all":
        return found
    copy_of = lambda name: registry.copy_of(entry, name)  # noqa: E731
    suffixed = [n for n in found if copy_of(n) is not None]
    chosen = [n for n in found if copy_of(n) == copy]
    if suffixed and not chosen:
        have = sorted({copy_of(n) for n in suffixed})
        raise SequenceError(f"{split_dir}: no -{copy} copies (found -{', -'.join(have)}); "
                            "pick one with --mot17_copy")
    # Folders without a detector suffix (e.g. MOT20-style names) are kept as they are.
    return sorted(chosen + [n for n in found if copy_of(n) is None])


def _select_names(split_dir: str, available: List[str], seqs: Optional[Sequence[str]]) -> List[str]:
    """--seqs: exact names, or for MOT17 a video name ('MOT17-02') standing for its chosen copies."""
    if not seqs:
        return available
    names, unknown = [], []
    for wanted in seqs:
        hits = [wanted] if wanted in available else [n for n in available if mot17_video(n) == wanted]
        if not hits:
            unknown.append(wanted)
        names += [h for h in hits if h not in names]
    if unknown:
        raise SequenceError(f"sequences not found in {split_dir}: {', '.join(unknown)}")
    return names


def resolve_split(mot_path: str, dataset: str = registry.DEFAULT, split: str = "val",
                  split_dir: Optional[str] = None, mot17_copy: str = DEFAULT_MOT17_COPY,
                  seqs: Optional[Sequence[str]] = None, half_convention: str = registry.HALF_CONVENTIONS[0]
                  ) -> SplitLayout:
    """The split a run reads (module docstring); raises SequenceError naming what is missing.
    `train_half` / `val_half` read the train split's videos cut in two (registry.half_frames)."""
    try:
        entry = registry.get(dataset)
    except registry.DatasetError as exc:
        raise SequenceError(str(exc)) from None
    half = split if split in registry.HALF_SPLITS else None
    if half is not None:
        if not entry.half_splits and split_dir is None:
            raise SequenceError(f"--split {split}: {dataset} has no half splits (mot17 and mot20 do)")
        split = registry.HALF_SPLITS[half]
    mot_path = str(mot_path)
    if split_dir is not None:
        split_dir = str(split_dir)
        key_root = mot_path if mot_path and _inside(split_dir, mot_path) else \
            os.path.dirname(os.path.abspath(split_dir))
    elif entry.folder is None:
        raise SequenceError(f"--dataset {dataset}: give the split folder with --split_dir")
    else:
        split_dir = os.path.join(mot_path, entry.folder, split)
        key_root = mot_path
        if not os.path.isdir(split_dir) and os.path.isdir(os.path.join(mot_path, split)):
            split_dir = os.path.join(mot_path, split)  # --mot_path is the dataset folder itself
    found = list_sequences(split_dir)
    # A folder of MOT17-named copies is read as MOT17's whatever --dataset says.
    copies = entry if entry.copies else registry.REGISTRY["mot17"]
    if entry.copies or any(registry.copy_of(copies, n) for n in found):
        found = _select_copies(copies, split_dir, found, mot17_copy)
    if not found:
        raise SequenceError(f"no sequences (folders with img1/) in {split_dir}")
    return SplitLayout(dataset=dataset, split_dir=split_dir, key_root=key_root,
                       names=_select_names(split_dir, found, seqs), half=half, half_convention=half_convention)


def split_from_args(args, split: Optional[str] = None) -> SplitLayout:
    """resolve_split with the flags of add_dataset_args (and --split / --seqs where the parser has them)."""
    return resolve_split(args.mot_path, getattr(args, "dataset", None) or registry.DEFAULT,
                         split if split is not None else getattr(args, "split", "val"),
                         getattr(args, "split_dir", None), getattr(args, "mot17_copy", DEFAULT_MOT17_COPY),
                         getattr(args, "seqs", None), getattr(args, "half_split", registry.HALF_CONVENTIONS[0]))
