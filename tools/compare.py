"""Line up several trackers' identities against the ground truth: where each one switched or lost an id.

    python tools/compare.py --gt_folder data/DanceTrack/val --benchmark dancetrack \\
        --trackers MOTRv2=outputs/motrv2 TF-SASM=outputs/tfsasm [--seqs dancetrack0004 ...] \\
        [--images data/DanceTrack/val] -o outputs/compare

writes a static report that opens from disk in a browser (no server, no network):

* ``index.html``: per sequence and in total HOTA, DetA, AssA, IDF1, IDSW and Frag of each tracker
  (``tools/evaluate.py``'s figures, from its own run); a timeline per gt identity showing, frame by
  frame, which tracker id covered it under TrackEval's CLEAR matching (tools/report/matching.py),
  one colour per id, gaps where missed, each id switch and fragmentation marked; and the list of
  events, those where one tracker switched (or fragmented) and another did not first;
* ``report.json``: the same tables, every event (sequence, frame, gt id, tracker, old id, new id,
  kind, ...) and the timelines, for scripts;
* with ``--images SPLIT_DIR`` (the folder of ``<seq>/img1``), ``images/``: crops of the frames
  before and after each such event, with the gt box and every tracker's box on that gt drawn.

Two events match when they are of the same kind, on the same gt identity, at most ``--window``
frames apart. Or from Python: ``compare(gt_folder, {"A": dir_a, "B": dir_b}, out_dir) -> dict``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from datasets import registry
from tools.evaluate import EvaluationInputError, discover_sequences, evaluate
from tools.report.matching import ABSENT, SequenceMatch, cover_runs, replay_clear
from util.fileio import write_atomic, write_json_atomic

TABLE_KEYS = ("HOTA", "DetA", "AssA", "IDF1", "IDSW", "Frag")
DEFAULT_WINDOW = 10       # frames: a switch in another tracker this close is "the same" switch
DEFAULT_MAX_IMAGES = 200  # events with crops, at most (two JPEGs of a few kB each)


class CompareInputError(ValueError):
    """Bad arguments to the comparison; the message names the flag or path at fault."""


def parse_tracker_args(items: Sequence[str]) -> Dict[str, str]:
    """``["A=dir", ...]`` -> ``{"A": "dir"}``, in order; names must be unique and non-empty."""
    trackers: Dict[str, str] = {}
    for item in items:
        name, sep, folder = item.partition("=")
        name = name.strip()
        if not sep or not name or not folder:
            raise CompareInputError(f"--trackers: {item!r} is not NAME=DIR")
        if name in trackers:
            raise CompareInputError(f"--trackers: the name {name!r} is given twice")
        trackers[name] = folder
    if not trackers:
        raise CompareInputError("--trackers: name at least one NAME=DIR")
    return trackers


def _check_inputs(gt_folder: str, trackers: Dict[str, str], seqs: Optional[Sequence[str]],
                  images: Optional[str]) -> Optional[List[str]]:
    """Check the arguments before any work; returns the sequences named (None: let evaluate choose)."""
    for name, folder in trackers.items():
        if not Path(folder).is_dir():
            raise CompareInputError(f"--trackers {name}={folder}: folder not found")
    available = discover_sequences(gt_folder)
    if seqs:
        unknown = [s for s in seqs if s not in available]
        if unknown:
            raise CompareInputError(f"--seqs: {', '.join(unknown)} not in {gt_folder} (no <seq>/gt/gt.txt)")
        if len(set(seqs)) != len(seqs):
            raise CompareInputError("--seqs: a sequence is named twice")
    if images is not None:
        for seq in seqs or available:
            if not (Path(images) / seq).is_dir():
                raise CompareInputError(f"--images {images}: no folder for sequence {seq}")
    return list(seqs) if seqs else None


def _evaluate_with_matches(gt_folder: str, folder: str, seqmap: Optional[str], benchmark: Optional[str]):
    """tools/evaluate.py's results for one tracker, and CLEAR's matching of each sequence replayed."""
    matches: Dict[str, SequenceMatch] = {}

    def keep(seq: str, raw: dict, data: dict) -> None:
        matches[seq] = replay_clear(raw, data)

    results = evaluate(gt_folder, folder, seqmap, benchmark=benchmark, on_sequence=keep)
    for seq, row in results["per_sequence"].items():
        got = (matches[seq].count("switch"), matches[seq].count("fragment"))
        if got != (row["IDSW"], row["Frag"]):  # the replay must be CLEAR's matching, exactly
            raise RuntimeError(f"{folder}/{seq}.txt: replayed CLEAR matching gives IDSW/Frag {got}, "
                               f"TrackEval {row['IDSW']}/{row['Frag']}")
    return results, matches


def _cover_at(match: SequenceMatch, row: int, frame: int) -> Optional[int]:
    """The id covering gt ``row`` in ``frame`` (1-based), -1 if missed, None if the gt is absent."""
    value = int(match.cover[row, frame - 1])
    return None if value == ABSENT else value


def collect_events(matches: Dict[str, Dict[str, SequenceMatch]], window: int) -> List[dict]:
    """Every event of every tracker, cross-referenced: ``also_in`` names the other trackers with an
    event of the same kind on the same gt within ``window`` frames; ``others`` gives each other
    tracker's id on that gt in the frame before (the switching tracker's last match) and the event
    frame. Ordered: events some other tracker did not have first (fewest sharers first), then by
    sequence, frame, gt id, tracker."""
    names = list(matches)
    events = []
    for name in names:
        for seq, match in matches[name].items():
            rows = {int(g): i for i, g in enumerate(match.gt_ids)}
            for e in match.events:
                also_in, others = [], {}
                for other in names:
                    if other == name:
                        continue
                    om = matches[other][seq]
                    if any(o.kind == e.kind and o.gt_id == e.gt_id and abs(o.frame - e.frame) <= window
                           for o in om.events):
                        also_in.append(other)
                    others[other] = {"before": _cover_at(om, rows[e.gt_id], e.last_frame),
                                     "after": _cover_at(om, rows[e.gt_id], e.frame)}
                events.append({"sequence": seq, "frame": e.frame, "gt_id": e.gt_id, "tracker": name,
                               "old_id": e.old_id, "new_id": e.new_id, "kind": e.kind,
                               "last_frame": e.last_frame, "also_in": also_in,
                               "differential": len(also_in) < len(names) - 1, "others": others})
    events.sort(key=lambda ev: (not ev["differential"], len(ev["also_in"]), ev["sequence"], ev["frame"],
                                ev["gt_id"], names.index(ev["tracker"]), ev["kind"]))
    return events


def timelines(matches: Dict[str, Dict[str, SequenceMatch]]) -> Dict[str, dict]:
    """Per sequence: frame count and, per gt identity, each tracker's runs ``[first, last, id]``
    (id -1: missed) over the frames the gt is present in."""
    names = list(matches)
    out = {}
    for seq, first in matches[names[0]].items():
        for name in names[1:]:
            if not np.array_equal(matches[name][seq].gt_ids, first.gt_ids):
                raise RuntimeError(f"{seq}: the scored gt identities differ between trackers")
        out[seq] = {"frames": int(first.cover.shape[1]),
                    "identities": [{"gt_id": int(g),
                                    "tracks": {name: cover_runs(matches[name][seq].cover[i]) for name in names}}
                                   for i, g in enumerate(first.gt_ids)]}
    return out


def write_event_images(events: List[dict], matches: Dict[str, Dict[str, SequenceMatch]], split_dir: str,
                       out_dir: Path, max_images: int) -> int:
    """Crops before/after each differential event (the first ``max_images``) into out_dir/images;
    sets ``event["images"]``. Returns the number of events given images."""
    import cv2

    from datasets.sequences import read_sequence
    from tools.report.images import crop_with_boxes, event_boxes, write_jpeg

    frame_paths: Dict[str, Dict[int, str]] = {}
    done = 0
    for ev in events:
        if not ev["differential"] or done >= max_images:
            continue
        seq = ev["sequence"]
        if seq not in frame_paths:
            frame_paths[seq] = {n: os.path.join(split_dir, rel) for n, rel in read_sequence(split_dir, seq).frames}
        row = {int(g): i for i, g in enumerate(matches[ev["tracker"]][seq].gt_ids)}[ev["gt_id"]]
        ev["images"] = {}
        for when, frame in (("before", ev["last_frame"]), ("after", ev["frame"])):
            path = frame_paths[seq].get(frame)
            image = cv2.imread(path) if path else None
            if image is None:
                continue  # frame image missing or unreadable: the event keeps its other crop
            ref = matches[ev["tracker"]][seq]
            boxes = {name: (int(m[seq].cover[row, frame - 1]), m[seq].tracker_boxes[row, frame - 1])
                     for name, m in matches.items()}
            extra = None
            if when == "after":  # where the switching tracker's old id went, if it is still there
                ids, dets = ref.frame_tracks[frame - 1]
                hit = np.flatnonzero(ids == ev["old_id"])
                if hit.size and ev["old_id"] != ev["new_id"]:
                    extra = (ev["tracker"], ev["old_id"], dets[hit[0]])
            drawn = event_boxes(ref.gt_boxes[row, frame - 1], boxes, extra)
            if not drawn:
                continue
            rel = f"images/{seq}_f{frame:06d}_gt{ev['gt_id']}_{_slug(ev['tracker'])}_{ev['kind']}_{when}.jpg"
            write_jpeg(str(out_dir / rel), crop_with_boxes(image, drawn))
            ev["images"][when] = rel
        done += 1
    return done


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def compare(gt_folder: str, trackers: Dict[str, str], out_dir: str, benchmark: Optional[str] = None,
            seqs: Optional[Sequence[str]] = None, images: Optional[str] = None, window: int = DEFAULT_WINDOW,
            max_images: int = DEFAULT_MAX_IMAGES) -> dict:
    """Build the report (see the module docstring) into ``out_dir``; returns what report.json holds."""
    from tools.report.page import write_page

    if not trackers:
        raise CompareInputError("--trackers: name at least one NAME=DIR")
    if window < 0:
        raise CompareInputError(f"--window must be >= 0, got {window}")
    if max_images < 0:
        raise CompareInputError(f"--max_images must be >= 0, got {max_images}")
    seqs = _check_inputs(gt_folder, trackers, seqs, images)
    out = Path(out_dir)
    tables: dict = {"combined": {}, "per_sequence": {}}
    matches: Dict[str, Dict[str, SequenceMatch]] = {}
    scored_benchmark = None
    with tempfile.TemporaryDirectory() as tmp:
        seqmap = None
        if seqs:
            seqmap = os.path.join(tmp, "seqmap.txt")
            Path(seqmap).write_text("name\n" + "\n".join(seqs) + "\n")
        for name, folder in trackers.items():
            results, matches[name] = _evaluate_with_matches(gt_folder, folder, seqmap, benchmark)
            scored_benchmark = results["benchmark"]
            tables["combined"][name] = results["combined"]
            for seq, row in results["per_sequence"].items():
                tables["per_sequence"].setdefault(seq, {})[name] = row
    events = collect_events(matches, window)
    report = {
        "benchmark": scored_benchmark,
        "gt_folder": os.path.abspath(gt_folder),
        "trackers": {name: os.path.abspath(folder) for name, folder in trackers.items()},
        "metrics": list(TABLE_KEYS),
        "window": window,
        "tables": tables,
        "events": events,
        "timelines": timelines(matches),
    }
    out.mkdir(parents=True, exist_ok=True)
    if images is not None:
        write_event_images(events, matches, images, out, max_images)
    write_json_atomic(out / "report.json", report)
    write_atomic(out / "index.html", write_page(report))
    return report


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Compare trackers' identities against the ground truth: tables, per-identity timelines "
                    "and the id switches / fragmentations one tracker had and another did not, as a static "
                    "HTML report (index.html, report.json).")
    parser.add_argument("--gt_folder", required=True, help="split folder holding <seq>/gt/gt.txt and seqinfo.ini")
    parser.add_argument("--benchmark", required=True, choices=registry.NAMES,
                        help="scoring rules by name (datasets/registry.py), as tools/evaluate.py takes them")
    parser.add_argument("--trackers", nargs="+", required=True, metavar="NAME=DIR",
                        help="result folders (<seq>.txt each) and the names to show them under")
    parser.add_argument("--seqs", nargs="+", default=None, help="sequences to compare (default: every one)")
    parser.add_argument("--images", default=None, metavar="SPLIT_DIR",
                        help="folder of <seq>/img1 frames: crop the frames before/after each event one tracker "
                             "had and another did not")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                        help=f"frames within which two trackers' events on one gt count as the same "
                             f"(default {DEFAULT_WINDOW})")
    parser.add_argument("--max_images", type=int, default=DEFAULT_MAX_IMAGES,
                        help=f"events given crops, at most (default {DEFAULT_MAX_IMAGES})")
    parser.add_argument("-o", "--output", required=True, help="report folder (index.html, report.json, images/)")
    return parser


def summary(report: dict) -> str:
    """A few lines for the terminal: each tracker's IDSW / Frag and its events no other tracker had."""
    lines = []
    for name, row in report["tables"]["combined"].items():
        only = sum(ev["tracker"] == name and not ev["also_in"] for ev in report["events"])
        lines.append(f"{name}: HOTA {row['HOTA']:.2f} IDF1 {row['IDF1']:.2f} IDSW {row['IDSW']} Frag {row['Frag']}"
                     f" ({only} events no other tracker had)")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_arg_parser().parse_args(argv)
    try:
        trackers = parse_tracker_args(args.trackers)
        report = compare(args.gt_folder, trackers, args.output, benchmark=args.benchmark, seqs=args.seqs,
                         images=args.images, window=args.window, max_images=args.max_images)
    except (CompareInputError, EvaluationInputError) as err:
        print(f"error: {err}".replace("\n", " "), file=sys.stderr)
        return 2
    print(summary(report))
    print(f"wrote {Path(args.output) / 'index.html'} and report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
