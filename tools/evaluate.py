"""MOT evaluation (HOTA, DetA, AssA, MOTA, IDF1, IDSW) on top of the ``trackeval`` package.

Ground truth follows the DanceTrack / MOTChallenge layout::

    SPLIT_DIR/<seq>/gt/gt.txt        frame,id,x,y,w,h,conf,class,visibility
    SPLIT_DIR/<seq>/seqinfo.ini      [Sequence] seqLength=...

and tracker results are ``TRACKER_DIR/<seq>.txt`` in MOTChallenge format
``frame,id,x,y,w,h,conf,-1,-1,-1``.

The scoring settings are the benchmark's entry in datasets/registry.py (``--benchmark NAME``,
default ``custom``: MOTChallenge's rules, which on DanceTrack's gt give DanceTrack's figures; never
guessed from a folder name): TrackEval's BENCHMARK
(which picks the distractor classes), the classes to evaluate and whether its preprocessing runs.
With preprocessing TrackEval keeps a gt row only if its 7th column (the "consider" flag) is non-zero
and its 8th column (class) is 1 (pedestrian); tracker boxes matched to a distractor class are
dropped (MOT17: person on vehicle, static person, distractor, reflection; MOT20 also non-motorized
vehicle). Matching threshold is IoU 0.5 (CLEAR / Identity); HOTA averages over IoU thresholds
0.05..0.95.

We call TrackEval's dataset and metric classes directly rather than its ``Evaluator``: the
``Evaluator`` prints progress and writes summaries/plots next to the tracker files, which we do
not want. The inputs are validated first so that mistakes are reported as
``EvaluationInputError`` naming the file and line, instead of TrackEval's generic messages.

Benchmarks (``--benchmark``, the registry's names):

* ``mot17``, ``mot20``, ``custom`` (your own folder): MOTChallenge's rules as above. For a dataset
  with copies of each video (MOT17's three) in the gt folder and no seqmap, the copies the tracker
  folder has files for are scored (``-FRCNN`` results: the FRCNN copies).
* ``dancetrack``, ``sportsmot``, ``bft``: every gt box is a target (the class and consider
  columns are not read), which is what these benchmarks' own TrackEval runs amount to on their
  ground truth (every row ``1,1,1``; BFT after tools/convert_bft.py).

Every row carries HOTA, DetA, AssA, MOTA, IDF1 (percent) and the counts IDSW, FP, FN, MT, PT,
ML and Frag (TrackEval's CLEAR: CLR_FP, CLR_FN, MT, PT, ML, Frag).

Usage::

    python tools/evaluate.py --gt_folder data/DanceTrack/val --tracker_folder out/tracker \
        [--seqmap val_seqmap.txt] [--json out/tracker/eval.json] [--benchmark mot17]

or from Python: ``evaluate(gt_folder, tracker_folder, seqmap=None, benchmark="custom") -> dict``.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import io
import os
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from datasets import registry
from util.cli import ArgumentParser, run_main
from util.fileio import NotUTF8Error, read_text, write_json_atomic

PathLike = Union[str, os.PathLike]

# Keys of every result row; percentages, then counts.
PERCENT_KEYS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1")
COUNT_KEYS = ("IDSW", "FP", "FN", "MT", "PT", "ML", "Frag")
METRIC_KEYS = PERCENT_KEYS + COUNT_KEYS
BENCHMARKS = registry.NAMES
# Without --benchmark: an own MOTChallenge-format folder's rules (MOTChallenge's).
DEFAULT_BENCHMARK = "custom"

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

def _lines(path: Path) -> List[str]:
    """A text file's lines; a byte that is not UTF-8 is an EvaluationInputError naming file and line."""
    try:
        return read_text(path).splitlines()
    except NotUTF8Error as exc:
        raise EvaluationInputError(exc.what, path, exc.line) from None


def read_seqmap(seqmap: PathLike) -> List[str]:
    """Sequence names of a MOTChallenge seqmap (header line ``name``, then one name per line)."""
    path = Path(seqmap)
    if not path.is_file():
        raise EvaluationInputError("seqmap file not found", path)
    names: List[str] = []
    for line_no, line in enumerate(_lines(path), start=1):
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
    lines = _lines(path)
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


def evaluate(gt_folder: PathLike, tracker_folder: PathLike, seqmap: Optional[PathLike] = None,
             progress: bool = False, benchmark: str = DEFAULT_BENCHMARK,
             on_sequence: Optional[Callable[[str, dict, dict], None]] = None) -> Dict[str, dict]:
    """Evaluate ``tracker_folder/<seq>.txt`` against ``gt_folder/<seq>/gt/gt.txt``.

    Sequences come from ``seqmap`` if given, else from every folder of ``gt_folder`` with
    ``gt/gt.txt``. Returns ``{"combined": row, "per_sequence": {seq: row}}`` where each row has
    HOTA, DetA, AssA, MOTA, IDF1 in percent and IDSW, FP, FN, MT, PT, ML, Frag as ints, and
    ``"benchmark"``: the name of the registry entry whose scoring settings were used (module docstring).
    Raises EvaluationInputError on bad input. Nothing is written to disk.
    ``on_sequence(seq, raw, data)``, if given, sees each sequence's TrackEval data as scored: raw
    (original ids) and preprocessed (ids relabelled 0..n-1), e.g. to replay CLEAR's matching.
    """
    gt_root = Path(gt_folder)
    tracker_root = Path(tracker_folder).resolve()
    if not gt_root.is_dir():
        raise EvaluationInputError("ground-truth folder not found", gt_root)
    if not tracker_root.is_dir():
        raise EvaluationInputError("tracker folder not found", tracker_root)
    seqs = read_seqmap(seqmap) if seqmap is not None else discover_sequences(gt_root)
    try:
        entry = registry.get(benchmark or DEFAULT_BENCHMARK, "--benchmark")
    except registry.DatasetError as err:
        raise EvaluationInputError(str(err)) from None
    benchmark, scoring = entry.name, entry.scoring
    if entry.copies and seqmap is None:
        seqs = _copies_scored(entry, tracker_root, seqs)
    (cls,) = scoring.classes  # TrackEval's MotChallenge2DBox evaluates pedestrians only

    # Validate everything before handing it to TrackEval, so errors name file and line.
    seq_lengths: Dict[str, int] = {}
    for seq in seqs:
        seq_dir = gt_root / seq
        gt_file = seq_dir / "gt" / "gt.txt"
        if not gt_file.is_file():
            raise EvaluationInputError(f"ground-truth file for sequence {seq!r} not found", gt_file)
        length = read_seq_length(seq_dir)
        tracker_file = tracker_root / f"{seq}.txt"
        if not tracker_file.is_file():
            raise EvaluationInputError(f"tracker file for sequence {seq!r} is missing", tracker_file)
        load_mot_file(gt_file, length, is_gt=True, seqinfo_path=seq_dir / "seqinfo.ini",
                      check_classes=not scoring.every_gt_box_a_target)
        load_mot_file(tracker_file, length, is_gt=False, seqinfo_path=seq_dir / "seqinfo.ini")
        seq_lengths[seq] = length

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
        "SPLIT_TO_EVAL": "val",
        "SKIP_SPLIT_FOL": True,
        "DO_PREPROC": scoring.preprocessing,
        "SEQ_INFO": dict(seq_lengths),
        "PRINT_CONFIG": False,
    }
    quiet = {"PRINT_CONFIG": False}
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
                if scoring.every_gt_box_a_target:  # class pedestrian, none zero-marked
                    for t, classes in enumerate(raw["gt_classes"]):
                        raw["gt_classes"][t] = np.ones_like(classes)
                        raw["gt_extras"][t]["zero_marked"] = np.ones_like(raw["gt_extras"][t]["zero_marked"])
                data = dataset.get_preprocessed_seq_data(raw, cls)
                if on_sequence is not None:
                    on_sequence(seq, raw, data)
                for store, metric in zip(per_metric, metrics):
                    store[seq] = metric.eval_sequence(data)
        except trackeval.utils.TrackEvalException as err:
            raise EvaluationInputError(f"TrackEval rejected sequence {seq!r}: {err}",
                                       tracker_root / f"{seq}.txt") from None

    combined = [metric.combine_sequences(store) for metric, store in zip(metrics, per_metric)]
    return {
        "benchmark": benchmark,
        "combined": _row_from_trackeval(*combined),
        "per_sequence": {seq: _row_from_trackeval(*(store[seq] for store in per_metric))
                         for seq in seqs},
    }


# ---------------------------------------------------------------------------------------------
# Reporting / CLI
# ---------------------------------------------------------------------------------------------

def format_table(results: Dict[str, dict]) -> str:
    """Fixed-width table: one row per sequence, then COMBINED."""
    rows: List[Tuple[str, dict]] = list(results["per_sequence"].items())
    rows.append(("COMBINED", results["combined"]))
    name_width = max(len("sequence"), *(len(name) for name, _ in rows))
    header = f"{'sequence':<{name_width}}" + "".join(f"{key:>9}" for key in METRIC_KEYS)
    lines = [header, "-" * len(header)]
    for name, row in rows:
        if name == "COMBINED":
            lines.append("-" * len(header))
        cells = "".join(f"{row[key]:>9d}" if key in COUNT_KEYS else f"{row[key]:>9.3f}"
                        for key in METRIC_KEYS)
        lines.append(f"{name:<{name_width}}" + cells)
    return "\n".join(lines)


def build_arg_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        description="HOTA / DetA / AssA / MOTA / IDF1 / IDSW of a tracker on DanceTrack-style ground truth "
                    "(TrackEval, MOT17/DanceTrack settings).")
    parser.add_argument("--gt_folder", required=True,
                        help="split folder holding <seq>/gt/gt.txt and <seq>/seqinfo.ini")
    parser.add_argument("--tracker_folder", required=True, help="folder holding <seq>.txt tracker results")
    parser.add_argument("--seqmap", default=None,
                        help="MOTChallenge seqmap (header 'name', one sequence per line); "
                             "default: every sequence folder of --gt_folder")
    parser.add_argument("--json", default=None, help="write the results as JSON here")
    parser.add_argument("--benchmark", default=DEFAULT_BENCHMARK, type=str.lower, choices=BENCHMARKS,
                        help="whose scoring settings (datasets/registry.py): mot17 / mot20 / custom "
                             "(pedestrians; distractors, MOT20's included, and zero-marked boxes ignored) or "
                             "dancetrack / sportsmot / bft (every gt box a target); default "
                             f"{DEFAULT_BENCHMARK} (MOTChallenge's rules), never guessed from the folder")
    parser.add_argument("--progress", action="store_true",
                        help="show a progress bar over sequences (default: only when stderr is a terminal)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_arg_parser().parse_args(argv)
    try:
        results = evaluate(args.gt_folder, args.tracker_folder, args.seqmap,
                           progress=args.progress or sys.stderr.isatty(), benchmark=args.benchmark)
    except EvaluationInputError as err:
        print(f"error: {err}".replace("\n", " "), file=sys.stderr)
        return 2
    print(format_table(results))
    if args.json:
        write_json_atomic(args.json, results)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
