"""MOT evaluation (HOTA, DetA, AssA, MOTA, IDF1, IDSW) on top of the ``trackeval`` package.

Ground truth follows the DanceTrack / MOTChallenge layout::

    SPLIT_DIR/<seq>/gt/gt.txt        frame,id,x,y,w,h,conf,class,visibility
    SPLIT_DIR/<seq>/seqinfo.ini      [Sequence] seqLength=...

and tracker results are ``TRACKER_DIR/<seq>.txt`` in MOTChallenge format
``frame,id,x,y,w,h,conf,-1,-1,-1``.

The scoring settings are the benchmark's entry in datasets/registry.py (``--benchmark NAME`` or
``--dataset NAME``, required; never guessed from a folder name): what its owners pass to TrackEval's
run_mot_challenge.py (BENCHMARK, which picks the distractor classes; the classes to evaluate;
DO_PREPROC; the released seqmap). No gt row is edited. With preprocessing TrackEval keeps a gt row
only if its class (8th column) is 1 (pedestrian) and drops tracker boxes matched to a distractor
class (MOT17: person on vehicle, static person, distractor, reflection; MOT20 also non-motorized
vehicle); zero-marked rows (7th column 0) are dropped either way. Matching threshold is IoU 0.5
(CLEAR / Identity); HOTA averages over IoU thresholds 0.05..0.95.

Seqmaps: the sequences scored are those of ``--seqmap``, else of the entry's released seqmap beside
the split folder (DanceTrack/val_seqmap.txt), else of one written from the gt folder (for a gt folder
with MOT17's copies, the copies the tracker folder has files for); TrackEval reads it. A listed
sequence without gt or a result is an error naming it (``--allow_missing``: the rest is scored).

We call TrackEval's dataset and metric classes directly rather than its ``Evaluator``: the
``Evaluator`` prints progress and writes summaries/plots next to the tracker files, which we do
not want. The inputs are validated first so that mistakes are reported as
``EvaluationInputError`` naming the file and line, instead of TrackEval's generic messages.

``--split train_half|val_half`` scores one half of each train video (MOT17 / MOT20), frames
renumbered from 1; SportsMOT's per-sport rows come from ``splits_txt/<sport>.txt``.

Every row carries HOTA, DetA, AssA, MOTA, IDF1 (percent) and the counts IDSW, FP, FN, MT, PT,
ML and Frag (TrackEval's CLEAR: CLR_FP, CLR_FN, MT, PT, ML, Frag).

Usage::

    python tools/evaluate.py --gt_folder data/DanceTrack/val --tracker_folder out/tracker \
        --benchmark dancetrack [--seqmap val_seqmap.txt] [--json out/tracker/eval.json]

or from Python: ``evaluate(gt_folder, tracker_folder, seqmap=None, benchmark="dancetrack") -> dict``.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from datasets import registry
from util.fileio import write_atomic, write_json_atomic

PathLike = Union[str, os.PathLike]

# Keys of every result row; percentages, then counts.
PERCENT_KEYS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1")
COUNT_KEYS = ("IDSW", "FP", "FN", "MT", "PT", "ML", "Frag")
METRIC_KEYS = PERCENT_KEYS + COUNT_KEYS
BENCHMARKS = registry.NAMES

# Column layout of MOTChallenge text files (0-based).
FRAME_COL, ID_COL, CONF_COL, CLASS_COL = 0, 1, 6, 7
# TrackEval reads the tracker confidence (column 7) and, for gt, the class (column 8).
MIN_TRACKER_COLUMNS = 7
MIN_GT_COLUMNS = 8
# MOTChallenge class ids accepted in gt (TrackEval's class_name_to_class_id values).
VALID_GT_CLASSES = tuple(range(1, 14))
# TrackEval relabels ids through a lookup table of size max(id) + 1; bigger ids would
# allocate gigabytes, so they are rejected up front.
MAX_TRACK_ID = 10_000_000


class EvaluationInputError(ValueError):
    """Bad evaluation input; the message names the file (and line) at fault."""

    def __init__(self, message: str, path: Optional[PathLike] = None, line: Optional[int] = None):
        self.path = None if path is None else str(path)
        self.line = line
        prefix = ""
        if self.path is not None:
            prefix = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(prefix + message)


# ---------------------------------------------------------------------------------------------
# Input discovery and validation
# ---------------------------------------------------------------------------------------------

def read_seqmap(seqmap: PathLike) -> List[str]:
    """Sequence names of a MOTChallenge seqmap (header line ``name``, then one name per line)."""
    path = Path(seqmap)
    if not path.is_file():
        raise EvaluationInputError("seqmap file not found", path)
    names: List[str] = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        # First column only, like TrackEval's csv-based reader; the first line is the header.
        name = line.split(",")[0].strip()
        if line_no == 1 or not name:
            continue
        names.append(name)
    if not names:
        raise EvaluationInputError("seqmap lists no sequences", path)
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise EvaluationInputError(f"sequence {dup!r} is listed more than once", path)
    return names


def discover_sequences(gt_folder: PathLike) -> List[str]:
    """Every sub-folder of ``gt_folder`` that has ``gt/gt.txt``, sorted by name."""
    root = Path(gt_folder)
    if not root.is_dir():
        raise EvaluationInputError("ground-truth folder not found", root)
    names = sorted(p.name for p in root.iterdir() if (p / "gt" / "gt.txt").is_file())
    if not names:
        raise EvaluationInputError("no sequence folder with gt/gt.txt found", root)
    return names


def read_seq_length(seq_dir: PathLike) -> int:
    """``seqLength`` from ``seq_dir/seqinfo.ini``."""
    ini_path = Path(seq_dir) / "seqinfo.ini"
    if not ini_path.is_file():
        raise EvaluationInputError("seqinfo.ini not found", ini_path)
    parser = configparser.ConfigParser()
    try:
        parser.read(ini_path)
        length = int(parser["Sequence"]["seqLength"])
    except (configparser.Error, KeyError, ValueError) as err:
        raise EvaluationInputError(f"cannot read [Sequence] seqLength ({err})", ini_path) from None
    if length < 1:
        raise EvaluationInputError(f"seqLength must be positive, got {length}", ini_path)
    return length


def _split_fields(line: str) -> List[str]:
    fields = [f.strip() for f in line.split(",")]
    # A single trailing comma is tolerated (TrackEval drops one empty last field).
    if len(fields) > 1 and fields[-1] == "":
        fields.pop()
    return fields


def load_mot_file(path: PathLike, seq_length: int, is_gt: bool,
                  seqinfo_path: Optional[PathLike] = None, check_classes: bool = True) -> np.ndarray:
    """Parse and validate a MOTChallenge text file; returns an (N, C) float array.

    Checks exactly what TrackEval needs to read the file correctly, reporting the first bad
    line: comma-separated numbers, a constant column count, integer frames in
    ``1..seq_length``, non-negative integer ids, no id twice in one frame, valid classes.
    """
    path = Path(path)
    kind = "ground-truth" if is_gt else "tracker"
    if not path.is_file():
        raise EvaluationInputError(f"{kind} file not found", path)
    lines = path.read_text().splitlines()
    if not lines:
        min_cols = MIN_GT_COLUMNS if is_gt else MIN_TRACKER_COLUMNS
        return np.zeros((0, min_cols))

    rows = [_split_fields(line) for line in lines]
    num_cols = len(rows[0])
    min_cols = MIN_GT_COLUMNS if is_gt else MIN_TRACKER_COLUMNS
    expected = ("frame,id,x,y,w,h,conf,class,visibility" if is_gt
                else "frame,id,x,y,w,h,conf,-1,-1,-1")
    for line_no, (line, fields) in enumerate(zip(lines, rows), start=1):
        if not line.strip():
            raise EvaluationInputError("blank line (TrackEval cannot read it)", path, line_no)
        if len(fields) < min_cols:
            raise EvaluationInputError(
                f"malformed line: {len(fields)} comma-separated columns, need at least {min_cols} "
                f"({expected}): {line!r}", path, line_no)
        if len(fields) != num_cols:
            raise EvaluationInputError(
                f"malformed line: {len(fields)} columns but line 1 has {num_cols}: {line!r}",
                path, line_no)
    try:
        values = np.array(rows, dtype=float)
    except ValueError:
        # Locate the offending line (slow path, only on error).
        for line_no, (line, fields) in enumerate(zip(lines, rows), start=1):
            try:
                np.array(fields, dtype=float)
            except ValueError:
                raise EvaluationInputError(f"malformed line: non-numeric value in {line!r}",
                                           path, line_no) from None
        raise  # unreachable: some line must have failed

    def fail_first(bad_mask: np.ndarray, message) -> None:
        bad = np.flatnonzero(bad_mask)
        if bad.size:
            i = int(bad[0])
            raise EvaluationInputError(message(i), path, i + 1)

    fail_first(~np.isfinite(values).all(axis=1),
               lambda i: f"malformed line: non-finite value in {lines[i]!r}")
    frames, ids = values[:, FRAME_COL], values[:, ID_COL]
    fail_first(frames != np.round(frames),
               lambda i: f"malformed line: frame {frames[i]:g} is not an integer")
    fail_first(ids != np.round(ids), lambda i: f"malformed line: id {ids[i]:g} is not an integer")
    fail_first(frames < 1, lambda i: f"frame {int(frames[i])} is before the first frame (frames start at 1)")
    where_len = f" (seqLength in {seqinfo_path})" if seqinfo_path is not None else ""
    fail_first(frames > seq_length,
               lambda i: f"frame {int(frames[i])} is beyond the sequence length {seq_length}{where_len}")
    fail_first(ids < 0, lambda i: f"id {int(ids[i])} is negative")
    fail_first(ids > MAX_TRACK_ID, lambda i: f"id {int(ids[i])} exceeds {MAX_TRACK_ID}")
    if is_gt:
        if check_classes:
            classes = values[:, CLASS_COL]
            fail_first(~np.isin(classes, VALID_GT_CLASSES),
                       lambda i: f"gt class {classes[i]:g} (column 8) is not a MOTChallenge class 1..13 "
                                 f"(1 = pedestrian)")
    elif num_cols > CLASS_COL:
        classes = values[:, CLASS_COL]
        fail_first(classes > 1, lambda i: f"class {classes[i]:g} (column 8) is not pedestrian; "
                                          f"tracker files must have -1 or 1 there")

    # Duplicate ids within a frame: sort by (frame, id); lexsort is stable, so among equal keys
    # the earlier line comes first.
    order = np.lexsort((ids, frames))
    same = (frames[order][1:] == frames[order][:-1]) & (ids[order][1:] == ids[order][:-1])
    dup_pairs = np.flatnonzero(same)
    if dup_pairs.size:
        later = order[dup_pairs + 1]
        k = int(np.argmin(later))
        earlier_line, later_line = int(order[dup_pairs[k]]) + 1, int(later[k]) + 1
        raise EvaluationInputError(
            f"id {int(ids[later[k]])} appears twice in frame {int(frames[later[k]])} "
            f"(also on line {earlier_line})", path, later_line)
    return values


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------

def _trackeval():
    # Imported lazily: importing trackeval (scipy and all its datasets) takes about a second.
    import trackeval
    return trackeval


def _copies_scored(entry: registry.DatasetEntry, tracker_root: Path, seqs: List[str]) -> List[str]:
    """A gt folder with copies of each video (MOT17: -DPM, -FRCNN, -SDP): score the copies the
    tracker has results for. Sequences without such a suffix are always scored."""
    copies = {registry.copy_of(entry, s) for s in seqs} - {None}
    if len(copies) < 2:
        return seqs
    present = {c for c in copies if any((tracker_root / f"{s}.txt").is_file()
                                        for s in seqs if registry.copy_of(entry, s) == c)}
    if not present:
        return seqs  # nothing at all: the missing-file error below names the first one
    return [s for s in seqs if registry.copy_of(entry, s) in present or registry.copy_of(entry, s) is None]


def _row_from_trackeval(hota: dict, clear: dict, identity: dict) -> Dict[str, Union[float, int]]:
    # HOTA-family scores are arrays over the 19 IoU thresholds; TrackEval reports their mean.
    def count(key):
        return int(round(float(clear[key])))
    return {
        "HOTA": 100.0 * float(np.mean(hota["HOTA"])),
        "DetA": 100.0 * float(np.mean(hota["DetA"])),
        "AssA": 100.0 * float(np.mean(hota["AssA"])),
        "MOTA": 100.0 * float(clear["MOTA"]),
        "IDF1": 100.0 * float(identity["IDF1"]),
        "IDSW": count("IDSW"),
        "FP": count("CLR_FP"),
        "FN": count("CLR_FN"),
        "MT": count("MT"),
        "PT": count("PT"),
        "ML": count("ML"),
        "Frag": count("Frag"),
    }


class _Plan:
    """What one evaluation scores: the seqmap's sequences, those left out, and the gt folder TrackEval reads."""

    def __init__(self, seqs: List[str], seqmap: str, missing: Dict[str, List[str]]):
        self.seqs, self.seqmap, self.missing = seqs, seqmap, missing


def write_seqmap(names: Sequence[str], path: PathLike) -> None:
    """A MOTChallenge seqmap: header `name`, one sequence per line (what TrackEval reads)."""
    write_atomic(path, "name\n" + "".join(f"{n}\n" for n in names))


def released_seqmap(entry: registry.DatasetEntry, gt_root: Path) -> Optional[Path]:
    """The entry's released seqmap beside the split folder (DanceTrack/val -> DanceTrack/val_seqmap.txt),
    when the entry has one and it is there."""
    if entry.scoring.seqmap is None:
        return None
    path = gt_root.parent / entry.scoring.seqmap.format(split=gt_root.name)
    return path if path.is_file() else None


def read_group_list(path: PathLike) -> List[str]:
    """A plain list of sequence names, one per line (a first line `name` is a header)."""
    names = [line.split(",")[0].strip() for line in Path(path).read_text().splitlines()]
    names = [n for n in names if n]
    return names[1:] if names[:1] == ["name"] else names


def _half_gt_folder(gt_root: Path, seqs: List[str], half: str, convention: str, out: Path) -> Dict[str, int]:
    """gt and seqinfo.ini of `half` of each sequence under `out`, frames renumbered from 1."""
    lengths = {}
    for seq in seqs:
        src = gt_root / seq
        length = read_seq_length(src)
        first, last = registry.half_frames(length, half, convention)
        rows = load_mot_file(src / "gt" / "gt.txt", length, is_gt=True, seqinfo_path=src / "seqinfo.ini",
                             check_classes=False)
        keep = rows[(rows[:, FRAME_COL] >= first) & (rows[:, FRAME_COL] <= last)]
        keep[:, FRAME_COL] -= first - 1
        (out / seq / "gt").mkdir(parents=True)
        np.savetxt(out / seq / "gt" / "gt.txt", keep, fmt="%.10g", delimiter=",")
        lengths[seq] = last - first + 1
        (out / seq / "seqinfo.ini").write_text(f"[Sequence]\nname={seq}\nseqLength={lengths[seq]}\n")
    return lengths


def _plan(entry: registry.DatasetEntry, gt_root: Path, tracker_root: Path, seqmap: Optional[PathLike],
          allow_missing: bool) -> _Plan:
    """The sequences to score (module docstring: Seqmaps); every listed sequence needs gt and a result."""
    official = Path(seqmap) if seqmap is not None else released_seqmap(entry, gt_root)
    if official is not None:
        seqs, source = read_seqmap(official), str(official)
    else:
        seqs, source = discover_sequences(gt_root), "written from the gt folder"
        if entry.copies:
            seqs = _copies_scored(entry, tracker_root, seqs)
    missing = {"gt": [s for s in seqs if not (gt_root / s / "gt" / "gt.txt").is_file()],
               "results": [s for s in seqs if not (tracker_root / f"{s}.txt").is_file()]}
    if not allow_missing:
        where = f" (seqmap {official})" if official is not None else ""
        if missing["gt"]:
            raise EvaluationInputError(
                f"no ground truth (<seq>/gt/gt.txt) for listed sequence(s) {', '.join(missing['gt'])}{where}; "
                "--allow_missing scores the rest", gt_root)
        if missing["results"]:
            raise EvaluationInputError(
                f"no result file (<seq>.txt) for listed sequence(s) {', '.join(missing['results'])}{where}; "
                "--allow_missing scores the rest", tracker_root)
    left_out = set(missing["gt"]) | set(missing["results"])
    scored = [s for s in seqs if s not in left_out]
    if not scored:
        raise EvaluationInputError(f"none of the {len(seqs)} listed sequences has both gt and a result", tracker_root)
    return _Plan(scored, source, {k: v for k, v in missing.items() if v})


def evaluate(gt_folder: PathLike, tracker_folder: PathLike, seqmap: Optional[PathLike] = None,
             progress: bool = False, benchmark: Optional[str] = None, allow_missing: bool = False,
             half: Optional[str] = None, half_convention: str = "bytetrack",
             groups_folder: Optional[PathLike] = None,
             on_sequence: Optional[Callable[[str, dict, dict], None]] = None) -> Dict[str, dict]:
    """Evaluate ``tracker_folder/<seq>.txt`` against ``gt_folder/<seq>/gt/gt.txt`` with the
    scoring settings of the registry entry ``benchmark`` (required).

    The sequences are those of a seqmap: ``seqmap``, else the entry's released one beside the gt
    folder, else one written from the gt folder's sequences; TrackEval reads it. A listed sequence
    without gt or without a result is an EvaluationInputError naming it, unless ``allow_missing``
    (then the rest is scored and ``"missing"`` lists them). ``half`` ('train_half' / 'val_half'):
    gt_folder is the train split and each sequence's half is scored, frames renumbered from 1.
    Returns ``{"benchmark", "seqmap", "combined": row, "per_sequence": {seq: row}}`` (rows: HOTA,
    DetA, AssA, MOTA, IDF1 in percent; IDSW, FP, FN, MT, PT, ML, Frag as ints), ``"groups":
    {group: row}`` for an entry with group lists (SportsMOT's sports; read from ``groups_folder``,
    default the folder above gt_folder) and ``"missing"`` when sequences were left out. Nothing is
    written to disk but temporaries. ``on_sequence(seq, raw, data)``, if given, sees each sequence's
    TrackEval data as scored: raw (original ids) and preprocessed (ids relabelled 0..n-1), e.g. to
    replay CLEAR's matching.
    """
    if not benchmark:
        raise EvaluationInputError("name the scoring settings: --benchmark NAME or --dataset NAME "
                                   f"({', '.join(BENCHMARKS)}); they are never guessed from a folder")
    try:
        entry = registry.get(benchmark, "--benchmark")
    except registry.DatasetError as err:
        raise EvaluationInputError(str(err)) from None
    gt_root = Path(gt_folder)
    tracker_root = Path(tracker_folder).resolve()
    if not gt_root.is_dir():
        raise EvaluationInputError("ground-truth folder not found", gt_root)
    if not tracker_root.is_dir():
        raise EvaluationInputError("tracker folder not found", tracker_root)
    scoring = entry.scoring
    plan = _plan(entry, gt_root, tracker_root, seqmap, allow_missing)
    seqs = plan.seqs

    with tempfile.TemporaryDirectory(prefix="evaluate_") as tmp:
        tmp_dir = Path(tmp)
        scored_gt = gt_root
        if half is not None:
            scored_gt = tmp_dir / "gt"
            try:
                _half_gt_folder(gt_root, seqs, half, half_convention, scored_gt)
            except registry.DatasetError as err:
                raise EvaluationInputError(str(err)) from None
        # Validate everything before handing it to TrackEval, so errors name file and line.
        for seq in seqs:
            seq_dir = scored_gt / seq
            length = read_seq_length(seq_dir)
            load_mot_file(seq_dir / "gt" / "gt.txt", length, is_gt=True, seqinfo_path=seq_dir / "seqinfo.ini",
                          check_classes=scoring.preprocessing)
            load_mot_file(tracker_root / f"{seq}.txt", length, is_gt=False, seqinfo_path=seq_dir / "seqinfo.ini")
        seqmap_file = tmp_dir / "seqmap.txt"
        write_seqmap(seqs, seqmap_file)
        per_metric, metrics = _run_trackeval(scoring, scored_gt, tracker_root, seqmap_file, seqs, progress,
                                              on_sequence)

    def row_of(names):
        return _row_from_trackeval(*(metric.combine_sequences({s: store[s] for s in names})
                                     for metric, store in zip(metrics, per_metric)))
    results = {
        "benchmark": entry.name,
        "seqmap": plan.seqmap,
        "combined": row_of(seqs),
        "per_sequence": {seq: _row_from_trackeval(*(store[seq] for store in per_metric)) for seq in seqs},
    }
    groups = _group_members(entry, gt_root, groups_folder, seqs)
    if groups:
        results["groups"] = {g: row_of(names) for g, names in groups.items()}
    if plan.missing:
        results["missing"] = plan.missing
    return results


def _group_members(entry: registry.DatasetEntry, gt_root: Path, groups_folder: Optional[PathLike],
                   seqs: List[str]) -> Dict[str, List[str]]:
    """The scored sequences of each group whose list is found (SportsMOT: splits_txt/<sport>.txt)."""
    scoring = entry.scoring
    if scoring.group_lists is None:
        return {}
    root = Path(groups_folder) if groups_folder is not None else gt_root.parent
    members = {}
    for group in scoring.groups:
        path = root / scoring.group_lists.format(group=group)
        if groups_folder is None and not path.is_file():
            continue
        if not path.is_file():
            raise EvaluationInputError(f"group list for {group!r} not found", path)
        names = set(read_group_list(path))
        chosen = [s for s in seqs if s in names]
        if chosen:
            members[group] = chosen
    return members


def _run_trackeval(scoring: registry.Scoring, gt_root: Path, tracker_root: Path, seqmap_file: Path,
                   seqs: List[str], progress: bool, on_sequence=None):
    """TrackEval's MotChallenge2DBox with the owners' settings, sequence by sequence."""
    trackeval = _trackeval()
    # TrackEval looks for TRACKERS_FOLDER/<tracker>/<TRACKER_SUB_FOLDER>/<seq>.txt; with an empty
    # sub-folder and SKIP_SPLIT_FOL this is exactly tracker_root/<seq>.txt.
    dataset_config = {
        "GT_FOLDER": str(gt_root),
        "TRACKERS_FOLDER": str(tracker_root.parent),
        "TRACKERS_TO_EVAL": [tracker_root.name],
        "TRACKER_SUB_FOLDER": "",
        "OUTPUT_FOLDER": None,  # unused: we never call the Evaluator's writers
        "CLASSES_TO_EVAL": list(scoring.classes),
        "BENCHMARK": scoring.benchmark,
        "SPLIT_TO_EVAL": "val",  # names nothing: SKIP_SPLIT_FOL and SEQMAP_FILE are given
        "SKIP_SPLIT_FOL": True,
        "DO_PREPROC": scoring.preprocessing,
        "SEQMAP_FILE": str(seqmap_file),
        "PRINT_CONFIG": False,
    }
    quiet = {"PRINT_CONFIG": False}
    (cls,) = scoring.classes  # TrackEval's MotChallenge2DBox evaluates pedestrians only
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            dataset = trackeval.datasets.MotChallenge2DBox(dataset_config)
            metrics = [trackeval.metrics.HOTA(quiet), trackeval.metrics.CLEAR(quiet),
                       trackeval.metrics.Identity(quiet)]
    except trackeval.utils.TrackEvalException as err:
        raise EvaluationInputError(f"TrackEval rejected the input: {err}", tracker_root) from None

    per_metric: List[Dict[str, dict]] = [{} for _ in metrics]
    seq_iter = seqs
    if progress:
        from tqdm import tqdm
        seq_iter = tqdm(seqs, desc="evaluating", unit="seq")
    for seq in seq_iter:
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                raw = dataset.get_raw_seq_data(tracker_root.name, seq)
                data = dataset.get_preprocessed_seq_data(raw, cls)
                if on_sequence is not None:
                    on_sequence(seq, raw, data)
                for store, metric in zip(per_metric, metrics):
                    store[seq] = metric.eval_sequence(data)
        except trackeval.utils.TrackEvalException as err:
            raise EvaluationInputError(f"TrackEval rejected sequence {seq!r}: {err}",
                                       tracker_root / f"{seq}.txt") from None
    return per_metric, metrics


# ---------------------------------------------------------------------------------------------
# Reporting / CLI
# ---------------------------------------------------------------------------------------------

def format_table(results: Dict[str, dict]) -> str:
    """Fixed-width table: one row per sequence, then each group (SportsMOT's sports), then COMBINED."""
    rows: List[Tuple[str, dict]] = list(results["per_sequence"].items())
    groups = [(f"[{name}]", row) for name, row in results.get("groups", {}).items()]
    names = [name for name, _ in rows + groups] + ["COMBINED"]
    name_width = max(len("sequence"), *(len(name) for name in names))
    header = f"{'sequence':<{name_width}}" + "".join(f"{key:>9}" for key in METRIC_KEYS)

    def line(name, row):
        return f"{name:<{name_width}}" + "".join(
            f"{row[key]:>9d}" if key in COUNT_KEYS else f"{row[key]:>9.3f}" for key in METRIC_KEYS)
    lines = [header, "-" * len(header)] + [line(n, r) for n, r in rows]
    if groups:
        lines += ["-" * len(header)] + [line(n, r) for n, r in groups]
    lines += ["-" * len(header), line("COMBINED", results["combined"])]
    return "\n".join(lines)


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="HOTA / DetA / AssA / MOTA / IDF1 / IDSW of a tracker, scored with TrackEval as each "
                    "benchmark's owners run it (datasets/registry.py).")
    parser.add_argument("--gt_folder", required=True,
                        help="split folder holding <seq>/gt/gt.txt and <seq>/seqinfo.ini")
    parser.add_argument("--tracker_folder", required=True, help="folder holding <seq>.txt tracker results")
    parser.add_argument("--seqmap", default=None,
                        help="MOTChallenge seqmap (header 'name', one sequence per line), e.g. the official one; "
                             "default: the dataset's released seqmap beside --gt_folder (DanceTrack, BFT: "
                             "<split>_seqmap.txt), else one written from --gt_folder's sequences")
    parser.add_argument("--json", default=None, help="write the results as JSON here")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--benchmark", default=None, type=str.lower, choices=BENCHMARKS,
                       help="whose scoring settings (datasets/registry.py: the owners' TrackEval BENCHMARK, "
                            "DO_PREPROC, seqmap); required unless --dataset names the layout")
    which.add_argument("--dataset", default=None, type=str.lower, choices=BENCHMARKS,
                       help="the layout the results were tracked on (as submit_dance.py --dataset): its "
                            "registry entry's scoring settings")
    parser.add_argument("--allow_missing", action="store_true",
                        help="score the listed sequences that have gt and a result, and print the others "
                             "(default: a listed sequence without either is an error)")
    parser.add_argument("--split", default=None, choices=tuple(registry.HALF_SPLITS),
                        help="score one half of each sequence of --gt_folder (the train split; MOT17 / MOT20), "
                             "frames renumbered from 1, as submit_dance.py --split train_half / val_half tracks it")
    parser.add_argument("--half_split", default=registry.HALF_CONVENTIONS[0], choices=registry.HALF_CONVENTIONS,
                        help="where --split cuts: bytetrack (train 1..n//2+1; default) or motip (1..n//2)")
    parser.add_argument("--groups_folder", default=None,
                        help="folder of the per-group lists (SportsMOT: the one holding splits_txt/); "
                             "default: the folder above --gt_folder")
    parser.add_argument("--progress", action="store_true",
                        help="show a progress bar over sequences (default: only when stderr is a terminal)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    benchmark = args.benchmark or args.dataset
    if benchmark is None:
        parser.error("name the scoring settings: --benchmark NAME or --dataset NAME (never guessed from a folder)")
    if args.split is not None and not registry.get(benchmark).half_splits:
        parser.error(f"--split {args.split}: {benchmark} has no half splits")
    try:
        results = evaluate(args.gt_folder, args.tracker_folder, args.seqmap,
                           progress=args.progress or sys.stderr.isatty(), benchmark=benchmark,
                           allow_missing=args.allow_missing, half=args.split, half_convention=args.half_split,
                           groups_folder=args.groups_folder)
    except EvaluationInputError as err:
        print(f"evaluate.py: error: {err}".replace("\n", " "), file=sys.stderr)
        return 1
    for what, names in results.get("missing", {}).items():
        print(f"not scored (no {'ground truth' if what == 'gt' else 'result file'}): {', '.join(names)}")
    print(format_table(results))
    if args.json:
        write_json_atomic(args.json, results)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
