"""Pack tracker results into the zip a benchmark's test server takes, checked before it is written.

    python tools/pack_submission.py --benchmark dancetrack outputs/test -o dancetrack_test.zip \
        --test_folder data/DanceTrack/test

What each server takes (from the owners' instructions):

* dancetrack: `tracker/<seq>.txt` (DanceTrack README, Competition: "archive tracker folder ... the
  folder name must be tracker"), one file per test sequence.
* sportsmot: `<seq>.txt` at the zip's root (SportsMOT competition.md: "Submission should be put
  directly in the root folder of your zip").
* mot17: the 21 files `MOT17-NN-{DPM,FRCNN,SDP}.txt` at the root. A video tracked once (results
  `MOT17-NN-<copy>.txt` for one copy, or `MOT17-NN.txt`) is copied to the three names; a video
  tracked per copy keeps each copy's file.
* mot20: `MOT20-NN.txt` at the root, one per test sequence.

The test sequences and their lengths are read from `--test_folder` (the released test split:
`<seq>/seqinfo.ini`). Checked: every test sequence has a result, every line is
`frame,id,x,y,w,h,conf,-1,-1,-1` with frames within seqLength (tools/evaluate.py's reader), and the
written zip is read back and checked again. An incomplete or malformed pack is refused with a
one-line error (exit 2) and nothing is written.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from datasets import registry
from tools.evaluate import EvaluationInputError, load_mot_file, read_seq_length
from util.fileio import write_atomic

# Folder inside the zip that each server wants the files in ('' = the zip's root).
ZIP_FOLDER = {"dancetrack": "tracker/", "sportsmot": "", "mot17": "", "mot20": ""}
SERVERS = tuple(ZIP_FOLDER)


class PackError(ValueError):
    """A pack that cannot be made or does not pass its server's check; the message names what."""


def test_sequences(test_folder: Path) -> Dict[str, int]:
    """{sequence: seqLength} of the released test split folder."""
    if not test_folder.is_dir():
        raise PackError(f"--test_folder {test_folder}: folder not found")
    seqs = {}
    for seq in sorted(p for p in test_folder.iterdir() if (p / "seqinfo.ini").is_file()):
        try:
            seqs[seq.name] = read_seq_length(seq)
        except EvaluationInputError as err:
            raise PackError(str(err)) from None
    if not seqs:
        raise PackError(f"--test_folder {test_folder}: no <seq>/seqinfo.ini")
    return seqs


def _source_file(benchmark: str, results: Path, seq: str) -> Optional[Path]:
    """The result file that goes under `seq`'s name; MOT17: one copy's (or the video's) file stands
    for the three copies of its video."""
    own = results / f"{seq}.txt"
    if own.is_file():
        return own
    entry = registry.get(benchmark)
    video = registry.video_of(entry, seq)
    if video is None:
        return None
    candidates = [results / f"{video}.txt"] + [results / f"{video}-{c}.txt" for c in entry.copies]
    found = [c for c in candidates if c.is_file()]
    return found[0] if len(found) == 1 else None


def plan_pack(benchmark: str, results: Path, test_folder: Path) -> Dict[str, Path]:
    """{name in the zip: result file}; PackError naming the missing sequences."""
    if benchmark not in ZIP_FOLDER:
        raise PackError(f"--benchmark {benchmark}: no test server known (servers: {', '.join(SERVERS)})")
    if not results.is_dir():
        raise PackError(f"results folder not found: {results}")
    lengths = test_sequences(test_folder)
    files, missing = {}, []
    for seq in lengths:
        src = _source_file(benchmark, results, seq)
        if src is None:
            missing.append(seq)
        else:
            files[f"{ZIP_FOLDER[benchmark]}{seq}.txt"] = src
    if missing:
        raise PackError(f"{results}: no result for {len(missing)} of {len(lengths)} test sequences: "
                        f"{', '.join(missing)}")
    return files


def check_pack(zip_bytes: bytes, benchmark: str, test_folder: Path) -> None:
    """The server's checks on a pack: exactly one file per test sequence where the server reads it,
    each line well formed with frames within the sequence's seqLength."""
    lengths = test_sequences(test_folder)
    folder = ZIP_FOLDER[benchmark]
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        expected = {f"{folder}{seq}.txt": seq for seq in lengths}
        extra = sorted(set(names) - set(expected))
        absent = sorted(set(expected) - set(names))
        if extra or absent:
            raise PackError(f"pack for {benchmark}: missing {absent or 'none'}, unexpected {extra or 'none'}")
        with tempfile.TemporaryDirectory() as tmp:
            for name, seq in expected.items():
                path = Path(tmp) / f"{seq}.txt"
                path.write_bytes(zf.read(name))
                try:
                    load_mot_file(path, lengths[seq], is_gt=False, seqinfo_path=test_folder / seq / "seqinfo.ini")
                except EvaluationInputError as err:
                    raise PackError(str(err).replace(str(path), f"{name} (in the pack)")) from None


def build_pack(benchmark: str, results: Path, test_folder: Path) -> bytes:
    """The zip's bytes, checked (PackError otherwise)."""
    files = plan_pack(benchmark, results, test_folder)
    lengths = test_sequences(test_folder)
    for name, src in files.items():  # name the result file itself when its lines are wrong
        seq = Path(name).stem
        try:
            load_mot_file(src, lengths[seq], is_gt=False, seqinfo_path=test_folder / seq / "seqinfo.ini")
        except EvaluationInputError as err:
            raise PackError(str(err)) from None
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, src in sorted(files.items()):
            zf.writestr(name, src.read_bytes())
    data = buf.getvalue()
    check_pack(data, benchmark, test_folder)
    return data


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Pack tracker results as a benchmark's test server takes them.")
    parser.add_argument("results", help="folder of <seq>.txt tracker results on the test split")
    parser.add_argument("--benchmark", required=True, type=str.lower, choices=SERVERS)
    parser.add_argument("-o", "--output", required=True, help="the zip to write (FILE.zip)")
    parser.add_argument("--test_folder", required=True,
                        help="the released test split (<seq>/seqinfo.ini), e.g. data/DanceTrack/test")
    args = parser.parse_args(argv)
    try:
        if not args.output.endswith(".zip"):
            raise PackError(f"-o {args.output}: the servers take a .zip")
        data = build_pack(args.benchmark, Path(args.results), Path(args.test_folder))
        write_atomic(args.output, data)
    except PackError as err:
        print(f"pack_submission.py: error: {err}".replace("\n", " "), file=sys.stderr)
        return 2
    except OSError as err:
        print(f"pack_submission.py: error: cannot write {args.output}: {err.strerror}", file=sys.stderr)
        return 2
    with zipfile.ZipFile(args.output) as zf:
        count = len(zf.namelist())
    print(f"wrote {args.output}: {count} files for {args.benchmark} ({os.path.getsize(args.output)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
