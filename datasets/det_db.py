"""The det_db: YOLOX proposals per frame, in MOTRv2's JSON format.

A JSON object whose keys are image paths relative to the data root with `.jpg` replaced by
`.txt` (`DanceTrack/val/dancetrack0004/img1/00000001.txt`) and whose values are lists of lines
`"left,top,width,height,score"` in pixels.  Keys written on Windows (backslashes) are accepted.
"""
import json
import os
from typing import Dict, List, Sequence

import numpy as np
import torch


class DetDBError(ValueError):
    """A det_db file, key or line that cannot be used; the message names which."""


def det_db_key(image_relpath: str) -> str:
    """The det_db key of an image path relative to the data root."""
    stem, _ = os.path.splitext(image_relpath.replace("\\", "/"))
    return stem + ".txt"


def load_det_db(path: str) -> Dict[str, List[str]]:
    """Read a det_db JSON; keys are normalised to forward slashes."""
    if not os.path.isfile(path):
        raise DetDBError(f"det_db not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as exc:
        raise DetDBError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(raw, dict):
        raise DetDBError(f"{path}: expected a JSON object of image key -> detection lines, got {type(raw).__name__}")
    db = {}
    for key, lines in raw.items():
        if isinstance(lines, str):  # a single string with newlines is a common hand-made variant
            lines = lines.splitlines()
        if not isinstance(lines, list):
            raise DetDBError(f"{path}: key {key!r}: expected a list of 'x,y,w,h,score' lines")
        db[key.replace("\\", "/")] = lines
    return db


def parse_det_lines(lines: Sequence[str], key: str = "?") -> np.ndarray:
    """`["x,y,w,h,score\\n", ...]` -> float array [n, 5]; a malformed line raises DetDBError
    naming the key and the (1-based) line number."""
    rows = []
    for lineno, line in enumerate(lines, start=1):
        text = line.strip() if isinstance(line, str) else None
        if text == "":
            continue
        parts = text.split(",") if text is not None else []
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 5 or not all(np.isfinite(values)):
            raise DetDBError(f"det_db key {key!r}, line {lineno}: expected 'x,y,w,h,score' (5 numbers), got {line!r}")
        if values[2] < 0 or values[3] < 0:
            raise DetDBError(f"det_db key {key!r}, line {lineno}: negative box size in {line!r}")
        rows.append(values)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def lookup_detections(det_db: Dict[str, List[str]], key: str, missing: str = "error") -> np.ndarray:
    """The parsed detections of one frame. `missing`: 'error' (raise, naming the frame) or 'empty'."""
    if key not in det_db:
        if missing == "empty":
            return np.zeros((0, 5))
        raise DetDBError(f"det_db has no entry for frame {key!r} (use --missing_detections empty to track "
                         "such frames without proposals)")
    return parse_det_lines(det_db[key], key)


def proposals_from_detections(dets: np.ndarray, im_w: int, im_h: int) -> torch.Tensor:
    """Pixel `x, y, w, h, score` -> the model's proposals `[n, 5]`: normalised cx, cy, w, h, score."""
    d = torch.as_tensor(dets, dtype=torch.float64).reshape(-1, 5)
    out = torch.stack([(d[:, 0] + d[:, 2] / 2) / im_w, (d[:, 1] + d[:, 3] / 2) / im_h,
                       d[:, 2] / im_w, d[:, 3] / im_h, d[:, 4]], dim=1)
    return out.float()


def format_det_line(x: float, y: float, w: float, h: float, score: float) -> str:
    """One det_db line, as MOTRv2's make_detdb.py writes it."""
    return f"{x},{y},{w},{h},{score}\n"


def format_det_lines(dets: np.ndarray) -> List[str]:
    """[n, 5] x, y, w, h, score (already sorted) -> det_db lines, rounded as MOTRv2's det_db is
    (1 decimal, score 2), so tracking from a saved det_db repeats tracking from the detector."""
    return [f"{x:.1f},{y:.1f},{w:.1f},{h:.1f},{s:.2f}\n" for x, y, w, h, s in np.asarray(dets).tolist()]


def read_det_txt(path: str) -> Dict[int, np.ndarray]:
    """A MOTChallenge public-detection file (`det/det.txt`: `frame,-1,x,y,w,h,score[,...]`) ->
    {frame: [k, 5] x, y, w, h, score}. A malformed line raises DetDBError naming file and line."""
    per_frame: Dict[int, list] = {}
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise DetDBError(f"cannot read detections {path}: {exc}") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) > 7 and parts[-1] == "":
            parts.pop()
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) < 7 or not all(np.isfinite(values[:7])):
            raise DetDBError(f"{path}:{lineno}: expected 'frame,-1,x,y,w,h,score' (at least 7 numbers), "
                             f"got {line!r}")
        frame = values[0]
        if frame != int(frame) or frame < 1:
            raise DetDBError(f"{path}:{lineno}: frame {parts[0]!r} is not a positive integer")
        if values[4] < 0 or values[5] < 0:
            raise DetDBError(f"{path}:{lineno}: negative box size in {line!r}")
        per_frame.setdefault(int(frame), []).append(values[2:7])
    return {f: np.asarray(rows, dtype=np.float64).reshape(-1, 5) for f, rows in per_frame.items()}
