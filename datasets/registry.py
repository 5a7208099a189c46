"""The datasets: one entry each, the one place that says how a dataset is laid out, trained on and scored.

Everything that names a dataset reads this module: tracking and det_db making (`--dataset`,
datasets/layouts.py), training (`--dataset_file`, datasets/dance.py; the number of classes that
engine.py hands to the network), the synthetic layouts (datasets/synthetic.py) and scoring
(`tools/evaluate.py --benchmark NAME`). Adding a dataset is one `DatasetEntry` in `ENTRIES` (and
its test).

    name        folder under --mot_path            splits             copies of each video
    dancetrack  DanceTrack/<split>/<seq>/img1      train val test     -
    sportsmot   SportsMOT/<split>/<seq>/img1       train val test     -
    mot17       MOT17/<split>/MOT17-NN-<copy>/img1 train test         DPM FRCNN SDP (one per public detector)
    mot20       MOT20/<split>/MOT20-NN/img1        train test         -
    bft         BFT/<split>/<seq>/img1             train val test     - (after tools/convert_bft.py)
    custom      --split_dir DIR: DIR/<seq>/img1    -                  -
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

# MOTChallenge gt classes (column 8), as TrackEval's mot_challenge_2d_box.py numbers them.
MOT_CLASSES = {"pedestrian": 1, "person_on_vehicle": 2, "car": 3, "bicycle": 4, "motorbike": 5,
               "non_mot_vehicle": 6, "static_person": 7, "distractor": 8, "occluder": 9,
               "occluder_on_ground": 10, "occluder_full": 11, "reflection": 12, "crowd": 13}
# The classes that are not people: dropped from training where every person class is kept.
NON_PERSON_CLASSES = (3, 4, 5, 6, 9, 10, 11)
# TrackEval's distractors (matched tracker boxes removed, not counted as FP): MOT17's four;
# BENCHMARK 'MOT20' adds non_mot_vehicle.
MOT17_DISTRACTORS = (2, 7, 8, 12)
MOT20_DISTRACTORS = (2, 6, 7, 8, 12)


# The half-train validation split of MOT17 / MOT20 (`--split train_half` / `val_half`): the train
# split's videos cut in two. ByteTrack's tools/convert_mot17_to_coco.py (the split the MOT17
# val_half literature compares on, the default): of n frames, train_half is frames 1 .. n//2 + 1 and
# val_half n//2 + 2 .. n. MOTIP's data/split_mot17_for_val.py cuts one frame earlier: 1 .. n//2 and
# n//2 + 1 .. n. Either way val_half's frames and gt are renumbered from 1.
HALF_SPLITS: Dict[str, str] = {"train_half": "train", "val_half": "train"}
HALF_CONVENTIONS: Tuple[str, ...] = ("bytetrack", "motip")


def half_frames(num_frames: int, half: str, convention: str = "bytetrack") -> Tuple[int, int]:
    """(first, last) 1-based frame numbers, inclusive, of `half` ('train_half' / 'val_half') of a
    video of `num_frames` frames under `convention` (HALF_CONVENTIONS)."""
    if half not in HALF_SPLITS:
        raise DatasetError(f"--split {half!r}: not a half split (expected {', '.join(HALF_SPLITS)})")
    if convention not in HALF_CONVENTIONS:
        raise DatasetError(f"--half_split {convention!r}: expected one of {', '.join(HALF_CONVENTIONS)}")
    last_train = num_frames // 2 + 1 if convention == "bytetrack" else num_frames // 2
    return (1, last_train) if half == "train_half" else (last_train + 1, num_frames)


# Public detections' scores into [0, 1], the range of the YOLOX scores the model's score input was
# trained on (tools/make_detdb.py --from_det_txt). MOT17's DPM det.txt holds raw DPM SVM margins
# (about -0.5 .. 2.5, 0 the detector's own threshold): the logistic 1 / (1 + exp(-margin)), so the
# margin 0 maps to 0.5 and the order is kept. FRCNN's and SDP's (and MOT20's) are probabilities
# already: clipped to [0, 1] (a no-op on the released files).
PUBLIC_SCORE_RULES = ("sigmoid", "clip")


def public_score_rule(entry: "DatasetEntry", sequence: str) -> str:
    """The PUBLIC_SCORE_RULES name for `sequence`'s det.txt ('MOT17-02-DPM' -> 'sigmoid')."""
    return dict(entry.public_scores).get(copy_of(entry, sequence) or "", "clip")


def map_public_scores(scores, rule: str):
    """`scores` (numpy array) mapped into [0, 1] by `rule`."""
    scores = np.asarray(scores, dtype=np.float64)
    if rule == "sigmoid":
        return 1.0 / (1.0 + np.exp(-scores))
    if rule == "clip":
        return np.clip(scores, 0.0, 1.0)
    raise DatasetError(f"unknown public score rule {rule!r} (expected {', '.join(PUBLIC_SCORE_RULES)})")


class DatasetError(ValueError):
    """An unknown dataset name; the message names the flag and the known names."""


@dataclass(frozen=True)
class Scoring:
    """How a dataset's owners run TrackEval's MotChallenge2DBox on it (their run_mot_challenge.py
    settings, `source` says where they were read); tools/evaluate.py passes these and never edits a
    gt row.

    benchmark:          BENCHMARK ('MOT20' adds non_mot_vehicle to the distractors; any other name
                        gets MOT17's four)
    classes:            CLASSES_TO_EVAL
    preprocessing:      DO_PREPROC: tracker boxes matched to a distractor-class gt box are removed;
                        gt rows kept only where class is pedestrian. Zero-marked gt rows (column 7 =
                        0) are dropped with or without it.
    distractor_classes: the distractors `benchmark` makes TrackEval use (tests check the two agree)
    seqmap:             the released seqmap, relative to the dataset folder, `{split}` filled in
                        (None: tools/evaluate.py writes one from the gt folder)
    group_lists:        released per-group sequence lists, relative to the dataset folder, `{group}`
                        filled in (SportsMOT's per-sport splits_txt/), scored beside the total
    groups:             the group names
    """
    benchmark: str = "MOT17"
    classes: Tuple[str, ...] = ("pedestrian",)
    preprocessing: bool = True
    distractor_classes: Tuple[int, ...] = MOT17_DISTRACTORS
    seqmap: Optional[str] = None
    group_lists: Optional[str] = None
    groups: Tuple[str, ...] = ()
    source: str = field(default="", compare=False)


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset (module docstring's table).

    folder:        its folder under --mot_path (None: read from --split_dir only)
    splits:        the released splits
    frame_digits:  digits of the released frame file names (readers accept any; synthetic writes these)
    sequence_name: released sequence names, `{split}` / `{index}` (1-based) filled in (synthetic)
    copies:        folders per video, one per public detector (`<video>-<copy>`); default_copy is used
                   when --mot17_copy is not given, and for training (one copy per video)
    public_detections: each sequence has det/det.txt (tools/make_detdb.py --from_det_txt)
    train_classes: gt classes kept for training (None: every class that is a person)
    num_classes:   classes the network predicts
    released_loose: released with images loose in the sequence folder and gt beside the split
                   (tools/convert_bft.py moves it into MOTChallenge layout)
    frame_rate:    frame rate written to generated seqinfo.ini files (the released ones state their own)
    half_splits:   `train_half` / `val_half` of the train split are offered (HALF_SPLITS)
    public_scores: how each copy's det.txt scores are mapped into [0, 1] for the model's score input
                   (PUBLIC_SCORE_RULES; copies not named, and datasets without copies: 'clip')
    """
    name: str
    folder: Optional[str]
    splits: Tuple[str, ...]
    scoring: Scoring
    frame_digits: int = 6
    sequence_name: str = "{split}{index:04d}"
    copies: Tuple[str, ...] = ()
    default_copy: Optional[str] = None
    public_detections: bool = False
    train_classes: Optional[Tuple[int, ...]] = None
    num_classes: int = 1
    released_loose: bool = False
    frame_rate: int = 25
    half_splits: bool = False
    public_scores: Tuple[Tuple[str, str], ...] = ()
    description: str = field(default="", compare=False)


# Each is what the owners run (source); all leave DO_PREPROC at TrackEval's default (True).
_DANCETRACK = Scoring("MOT17", seqmap="{split}_seqmap.txt", source=(
    "DanceTrack README: run_mot_challenge.py --SPLIT_TO_EVAL val --METRICS HOTA CLEAR Identity "
    "--GT_FOLDER dancetrack/val --SEQMAP_FILE dancetrack/val_seqmap.txt --SKIP_SPLIT_FOL True "
    "(BENCHMARK and DO_PREPROC not given: MOT17, True)"))
_SPORTSMOT = Scoring("sportsmot", group_lists="splits_txt/{group}.txt",
                     groups=("basketball", "football", "volleyball"), source=(
    "SportsMOT codes/evaluation/TrackEval/evalutate.sh: run_mot_challenge.py --BENCHMARK sportsmot "
    "--SPLIT_TO_EVAL val --METRICS HOTA CLEAR Identity VACE (seqmaps/sportsmot-val.txt; DO_PREPROC True)"))
_MOT17 = Scoring("MOT17", source="TrackEval scripts/run_mot_challenge.py --BENCHMARK MOT17 (DO_PREPROC True)")
_MOT20 = Scoring("MOT20", distractor_classes=MOT20_DISTRACTORS,
                 source="TrackEval scripts/run_mot_challenge.py --BENCHMARK MOT20 (DO_PREPROC True)")
_BFT = Scoring("MOT17", seqmap="{split}_seqmap.txt", source=(
    "MOTIP submit_and_evaluate.py on BFT: run_mot_challenge.py --SPLIT_TO_EVAL <split> --GT_FOLDER "
    "BFT/<split> --SEQMAP_FILE BFT/<split>_seqmap.txt --SKIP_SPLIT_FOL True (BENCHMARK MOT17, "
    "DO_PREPROC True; its gt rows all end 1,1,1 as tools/convert_bft.py writes them)"))

ENTRIES: Tuple[DatasetEntry, ...] = (
    DatasetEntry("dancetrack", "DanceTrack", ("train", "val", "test"), _DANCETRACK, frame_digits=8,
                 frame_rate=20, description="DanceTrack (the default)"),
    DatasetEntry("sportsmot", "SportsMOT", ("train", "val", "test"), _SPORTSMOT, description="SportsMOT"),
    DatasetEntry("mot17", "MOT17", ("train", "test"), _MOT17,
                 sequence_name="MOT17-{index:02d}", copies=("DPM", "FRCNN", "SDP"), default_copy="FRCNN",
                 public_detections=True, train_classes=(1,), half_splits=True,
                 public_scores=(("DPM", "sigmoid"), ("FRCNN", "clip"), ("SDP", "clip")),
                 description="MOT17 (three copies per video)"),
    DatasetEntry("mot20", "MOT20", ("train", "test"), _MOT20,
                 sequence_name="MOT20-{index:02d}", public_detections=True, train_classes=(1,), half_splits=True,
                 description="MOT20"),
    DatasetEntry("bft", "BFT", ("train", "val", "test"), _BFT, released_loose=True,
                 description="BFT, Bird Flock Tracking (after tools/convert_bft.py)"),
    DatasetEntry("custom", None, (), Scoring("MOT17", source="MOTChallenge's rules (TrackEval's defaults)"),
                 description="your own MOTChallenge-format split folder (--split_dir)"),
)
REGISTRY: Dict[str, DatasetEntry] = {entry.name: entry for entry in ENTRIES}
NAMES: Tuple[str, ...] = tuple(REGISTRY)
# Datasets with a released folder under --mot_path (what --dataset and the synthetic layouts offer).
LAYOUT_NAMES: Tuple[str, ...] = tuple(e.name for e in ENTRIES if e.folder is not None)
DEFAULT = "dancetrack"
# Every copy name any entry has (--mot17_copy's choices).
COPY_NAMES: Tuple[str, ...] = tuple(dict.fromkeys(c for e in ENTRIES for c in e.copies))

# Upstream MOTR/MOTRv2 `--dataset_file` names: None stands for --dataset; main.py's default `coco`
# too (upstream's .args files always set e2e_dance).
UPSTREAM_DATASET_FILES: Dict[str, Optional[str]] = {
    "e2e_dance": None, "coco": None, "e2e_mot": "mot17", "e2e_joint": "mot17", "e2e_static_mot": "mot17"}
# Training-set names that are not datasets of this registry: left to --append_crowd.
EXTRA_TRAINING_SETS = ("crowdhuman",)


def get(name: str, flag: str = "--dataset") -> DatasetEntry:
    """The entry called `name` (case-insensitive); DatasetError naming `flag` otherwise."""
    entry = REGISTRY.get(str(name).lower())
    if entry is None:
        raise DatasetError(f"{flag} {name!r}: unknown dataset (expected one of {', '.join(NAMES)})")
    return entry


def copy_of(entry: DatasetEntry, sequence: str) -> Optional[str]:
    """'MOT17-02-FRCNN' -> 'FRCNN' for an entry with copies; None for a name without a copy suffix."""
    for copy in entry.copies:
        if sequence.endswith("-" + copy) and len(sequence) > len(copy) + 1:
            return copy
    return None


def video_of(entry: DatasetEntry, sequence: str) -> Optional[str]:
    """'MOT17-02-FRCNN' -> 'MOT17-02'; None for a name without a copy suffix."""
    copy = copy_of(entry, sequence)
    return None if copy is None else sequence[:-len(copy) - 1]


def training_sets(dataset_file: Optional[str], dataset: Optional[str] = None) -> List[str]:
    """The datasets `--dataset_file` names, in order: one name or several joined by `,` or `+`
    (`mot17,dancetrack`, `dancetrack+sportsmot`); `e2e_<name>` is `<name>`; upstream's names as
    UPSTREAM_DATASET_FILES maps them (`e2e_dance`: `--dataset`, default dancetrack); `crowdhuman`
    is left to --append_crowd. DatasetError names an unknown part."""
    default = (dataset or DEFAULT).lower()
    names: List[str] = []
    for part in str(dataset_file or "").replace("+", ",").split(","):
        name = part.strip().lower()
        if name in UPSTREAM_DATASET_FILES:
            name = UPSTREAM_DATASET_FILES[name] or default
        elif name.startswith("e2e_"):
            name = name[len("e2e_"):]
        if name == "":
            name = default
        if name in EXTRA_TRAINING_SETS:
            continue
        if name not in REGISTRY:
            raise DatasetError(f"--dataset_file {dataset_file!r}: unknown dataset {part.strip()!r} (expected "
                               f"{', '.join(NAMES)}, {', '.join(EXTRA_TRAINING_SETS)} or "
                               f"{', '.join(UPSTREAM_DATASET_FILES)}, joined by ',' or '+')")
        if name not in names:
            names.append(name)
    return names or [default]


def num_classes(dataset_file: Optional[str], dataset: Optional[str] = None) -> int:
    """The number of classes the network predicts for a `--dataset_file` (all of a mix must agree)."""
    counts = {REGISTRY[name].num_classes for name in training_sets(dataset_file, dataset)}
    if len(counts) != 1:
        raise DatasetError(f"--dataset_file {dataset_file!r} mixes datasets with {sorted(counts)} classes")
    return counts.pop()
