"""Draw a MOTChallenge result file over its frames and write an annotated video.

    python tools/visualize.py --frames data/DanceTrack/val/dancetrack0004/img1 \\
        --mot outputs/val/dancetrack0004.txt --out vis/dancetrack0004.mp4 [--trail 20]
"""
import argparse
import colorsys
import os
import sys
from collections import defaultdict, deque
from typing import Dict, Iterable, List, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm


from datasets.sequences import IMAGE_EXTENSIONS
from util.fileio import atomic_path

Box = Tuple[int, float, float, float, float]  # id, x, y, w, h


def id_color(track_id: int) -> Tuple[int, int, int]:
    """A stable, well-separated BGR colour per id (golden-ratio hue steps)."""
    hue = (track_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def read_mot_file(path: str) -> Dict[int, List[Box]]:
    """frame -> [(id, x, y, w, h)] from a MOTChallenge file; a bad line raises naming file and line."""
    per_frame: Dict[int, List[Box]] = defaultdict(list)
    with open(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.split(",")
            try:
                frame, tid = int(float(parts[0])), int(float(parts[1]))
                x, y, w, h = map(float, parts[2:6])
            except (ValueError, IndexError) as exc:
                raise ValueError(f"{path}:{lineno}: not a MOTChallenge line: {line.strip()!r}") from exc
            per_frame[frame].append((tid, x, y, w, h))
    return per_frame


def draw_tracks(img: np.ndarray, boxes: Iterable[Box], trails: Dict[int, deque] = None) -> np.ndarray:
    """Boxes, ids and (optionally) centre trails drawn on a copy of a BGR image."""
    out = img.copy()
    thickness = max(1, round(min(img.shape[:2]) / 300))
    scale = max(0.35, min(img.shape[:2]) / 900)
    for tid, x, y, w, h in boxes:
        color = id_color(tid)
        p1, p2 = (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h)))
        cv2.rectangle(out, p1, p2, color, thickness)
        label = str(tid)
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(out, (p1[0], p1[1] - th - 4), (p1[0] + tw + 2, p1[1]), color, -1)
        cv2.putText(out, label, (p1[0] + 1, p1[1] - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
        if trails is not None:
            pts = trails[tid]
            pts.append((int(x + w / 2), int(y + h)))
            if len(pts) > 1:
                cv2.polylines(out, [np.array(pts, dtype=np.int32)], False, color, thickness)
    return out


def frame_files(folder: str) -> List[Tuple[int, str]]:
    """(frame number, path) of the images in a folder, numbered by position (1-based)."""
    names = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise FileNotFoundError(f"no images in {folder}")
    return [(i + 1, os.path.join(folder, n)) for i, n in enumerate(names)]


def render_video(frames: Sequence[Tuple[int, str]], mot_path: str, out_path: str, fps: float = 20.0,
                 trail: int = 20, max_width: int = 1280, progress: bool = True) -> int:
    """Write the annotated video (mp4) atomically; returns the number of frames written."""
    per_frame = read_mot_file(mot_path)
    trails = defaultdict(lambda: deque(maxlen=max(trail, 1))) if trail > 0 else None
    writer, written = None, 0
    with atomic_path(out_path) as tmp:
        try:
            for frame, path in tqdm(frames, desc=os.path.basename(out_path), disable=not progress, leave=False):
                img = cv2.imread(path, cv2.IMREAD_COLOR)
                if img is None:
                    raise FileNotFoundError(f"cannot read image {path}")
                img = draw_tracks(img, per_frame.get(frame, []), trails)
                if img.shape[1] > max_width:
                    img = cv2.resize(img, (max_width, round(img.shape[0] * max_width / img.shape[1])))
                if writer is None:
                    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (img.shape[1], img.shape[0]))
                    if not writer.isOpened():
                        raise RuntimeError(f"OpenCV cannot write video {out_path}")
                writer.write(img)
                written += 1
            if writer is None:
                raise ValueError(f"no frames to write to {out_path}")
        finally:
            if writer is not None:
                writer.release()   # before the rename: the container is complete
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", required=True, help="folder of the sequence's images (img1)")
    parser.add_argument("--mot", required=True, help="MOTChallenge result (or gt) file")
    parser.add_argument("--out", required=True, help="output video (.mp4)")
    parser.add_argument("--fps", type=float, default=20.0)
    parser.add_argument("--trail", type=int, default=20, help="frames of centre trail (0: none)")
    args = parser.parse_args(argv)
    n = render_video(frame_files(args.frames), args.mot, args.out, args.fps, args.trail)
    print(f"wrote {args.out} ({n} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
