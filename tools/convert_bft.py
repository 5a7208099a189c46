"""Convert BFT (Bird Flock Tracking) as released into the MOTChallenge layout the trackers read.

Released (--bft_root)                        converted (--out, default: --bft_root itself)
  <split>/<seq>/000001.jpg ...                 <split>/<seq>/img1/000001.jpg ...
  annotations_mot/<split>/<seq>.txt            <split>/<seq>/gt/gt.txt
                                               <split>/<seq>/seqinfo.ini

    python tools/convert_bft.py --bft_root data/BFT            # in place: images move into img1/
    python tools/convert_bft.py --bft_root /dl/BFT --out data/BFT   # a copy (hard links where possible)

Then use `--mot_path data --dataset bft`. Image names are kept (det_db keys follow them:
`BFT/<split>/<seq>/img1/000001.txt`). gt lines keep frame, id and box and end `1,1,1` (consider,
class, visibility), as MOTIP's BFT conversion writes them: every released box is a target, for
training and for scoring (the released columns 7-10 are not a consider flag). Every split is
checked before anything is moved or written: a malformed or non-UTF-8 annotation line, a frame
beyond the images or an image that does not decode stops the conversion with the file (and line)
named. Sequences already converted (an img1/ folder and no loose images) are left as they are.
"""
from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from datasets.sequences import SequenceError, read_header
from util.cli import ArgumentParser, run_main
from util.fileio import write_atomic

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
ANNOTATIONS = "annotations_mot"


class ConversionError(ValueError):
    """Bad BFT input; the message names the file (and line)."""


def _loose_images(seq_dir: Path) -> List[Path]:
    return sorted(p for p in seq_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def convert_gt(path: Path) -> List[str]:
    """annotations_mot lines -> MOTChallenge gt lines (module docstring)."""
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConversionError(f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) > 6 and fields[-1] == "":
            fields.pop()
        try:
            values = [float(f) for f in fields]
        except ValueError:
            values = []
        if len(values) < 6:
            raise ConversionError(f"{path}:{lineno}: expected 'frame,id,x,y,w,h[,...]' numbers, got {line!r}")
        frame, track = values[0], values[1]
        if frame != int(frame) or frame < 1 or track != int(track) or track < 0:
            raise ConversionError(f"{path}:{lineno}: frame and id must be integers (frame >= 1, id >= 0): {line!r}")
        if values[4] < 0 or values[5] < 0:
            raise ConversionError(f"{path}:{lineno}: negative box size in {line!r}")
        out.append(f"{int(frame)},{int(track)},{fields[2]},{fields[3]},{fields[4]},{fields[5]},1,1,1\n")
    return out


def _place(src: Path, dst: Path, move: bool) -> None:
    if move:
        os.replace(src, dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def plan_split(bft_root: Path, split: str) -> List[tuple]:
    """Check one split without changing anything; returns what to convert:
    [(sequence folder, its images, gt lines or None, (width, height))]."""
    src_split = bft_root / split
    if not src_split.is_dir():
        raise ConversionError(f"{src_split}: BFT split folder not found")
    ann_dir = bft_root / ANNOTATIONS / split
    plan = []
    for seq_dir in sorted(p for p in src_split.iterdir() if p.is_dir()):
        images = _loose_images(seq_dir)
        if not images:
            if (seq_dir / "img1").is_dir():
                continue  # converted already
            raise ConversionError(f"{seq_dir}: no images")
        ann = ann_dir / f"{seq_dir.name}.txt"
        gt = convert_gt(ann) if ann.is_file() else None  # every check before anything moves
        if gt is not None:
            last = max(int(line.split(",", 1)[0]) for line in gt) if gt else 0
            if last > len(images):
                raise ConversionError(f"{ann}: frame {last} but {seq_dir} holds {len(images)} images")
        size = None
        for image in images:  # headers only: size, pixel type, a truncated end
            try:
                header = read_header(str(image))
            except SequenceError as exc:
                raise ConversionError(f"{image}: {str(exc).removesuffix(f': {image}')}") from None
            if size is None:
                size = (header.width, header.height)
            elif (header.width, header.height) != size:
                raise ConversionError(f"{image}: {header.width}x{header.height} but {images[0].name} is "
                                      f"{size[0]}x{size[1]} (one size per sequence)")
        plan.append((seq_dir, images, gt, size))
    if not plan and not any((p / "img1").is_dir() for p in src_split.iterdir() if p.is_dir()):
        raise ConversionError(f"{src_split}: no sequence folders")
    return plan


def convert_split(bft_root: Path, split: str, out: Path, plan: Optional[List[tuple]] = None) -> Dict[str, int]:
    """Convert one split (checked first unless `plan` is given); returns {sequence: number of frames}."""
    plan = plan_split(bft_root, split) if plan is None else plan
    in_place = os.path.abspath(out) == os.path.abspath(bft_root)
    done = {}
    for seq_dir, images, gt, (width, height) in plan:
        dst = out / split / seq_dir.name
        (dst / "img1").mkdir(parents=True, exist_ok=True)
        for image in images:
            _place(image, dst / "img1" / image.name, move=in_place)
        if gt is not None:
            (dst / "gt").mkdir(exist_ok=True)
            write_atomic(dst / "gt" / "gt.txt", gt)
        exts = {p.suffix for p in images}
        ini = ("[Sequence]\n" f"name={seq_dir.name}\n" "imDir=img1\n" f"seqLength={len(images)}\n"
               f"imWidth={width}\n" f"imHeight={height}\n")
        if len(exts) == 1:
            ini += f"imExt={exts.pop()}\n"
        write_atomic(dst / "seqinfo.ini", ini)
        done[seq_dir.name] = len(images)
    return done


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, int]]:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bft_root", type=Path, required=True, help="BFT as released (holds <split>/ and "
                                                                      f"{ANNOTATIONS}/)")
    parser.add_argument("--out", type=Path, default=None, help="converted BFT folder (default: in place)")
    parser.add_argument("--splits", nargs="+", default=None,
                        help="splits to convert (default: every folder of --bft_root but annotations_mot)")
    args = parser.parse_args(argv)
    if not args.bft_root.is_dir():
        raise SystemExit(f"error: --bft_root {args.bft_root} not found")
    out = args.out or args.bft_root
    splits = args.splits or sorted(p.name for p in args.bft_root.iterdir() if p.is_dir() and p.name != ANNOTATIONS)
    result = {}
    try:
        plans = {split: plan_split(args.bft_root, split) for split in splits}  # all checked before any change
        for split in splits:
            result[split] = convert_split(args.bft_root, split, out, plans[split])
            print(f"{split}: {len(result[split])} sequence(s) converted into {out / split}")
    except ConversionError as exc:
        raise SystemExit(f"error: {exc}") from None
    return result


if __name__ == "__main__":
    raise SystemExit(run_main(main))
