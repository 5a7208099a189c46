"""The det_db: YOLOX proposals per frame, in MOTRv2's JSON format.

A JSON object whose keys are image paths relative to the data root with `.jpg` replaced by
`.txt` (`DanceTrack/val/dancetrack0004/img1/00000001.txt`) and whose values are lists of lines
`"left,top,width,height,score"` in pixels.  Keys written on Windows (backslashes) are accepted.

The key rule, for every reader (submit_dance.py, training, tools/track_video.py): a frame's entry
is the one under its exact key; when there is none, it is the one key that names the same
sequence folder and frame number, i.e. ends `<seq>/<image dir>/<number>.txt` (`find_key`). So a
det_db made from one root (`make_detdb.py --frames my_video/img1` writes `my_video/img1/...`;
`track_video.py --save_det_db` writes `<stem>/img1/00000001.txt`) serves `--split_dir DIR` runs
(`DIR/my_video/img1/...`) and the video of that name, whatever the digits of the frame names.
"""
import json
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from util.fileio import NotUTF8Error, read_text


class DetDBError(ValueError):
    """A det_db file, key or line that cannot be used; the message names which."""


def det_db_key(image_relpath: str) -> str:
    """The det_db key of an image path relative to the data root."""
    stem, _ = os.path.splitext(image_relpath.replace("\\", "/"))
    return stem + ".txt"


def frame_identity(key: str) -> Optional[Tuple[str, object]]:
    """(sequence folder, frame number) a key names: `.../<seq>/<image dir>/<number>.txt`; the file
    stem stands for the number when it is not all digits. None for a key of fewer than 3 parts."""
    parts = key.replace("\\", "/").split("/")
    if len(parts) < 3:
        return None
    stem = os.path.splitext(parts[-1])[0]
    return parts[-3], int(stem) if stem.isdigit() else stem


class DetDB(dict):
    """A det_db as read: key -> lines, with `find_key` (the key rule of the module docstring).
    The (sequence, frame) index is built at the first miss: fill the dict before looking up."""

    _by_frame: Optional[Dict[Tuple[str, object], List[str]]] = None

    def find_key(self, key: str) -> Optional[str]:
        if key in self:
            return key
        if self._by_frame is None:
            self._by_frame = {}
            for k in self:
                ident = frame_identity(k)
                if ident is not None:
                    self._by_frame.setdefault(ident, []).append(k)
        same = self._by_frame.get(frame_identity(key), [])
        if len(same) > 1:
            raise DetDBError(f"det_db has no key {key!r} and {len(same)} keys for that sequence and frame "
                             f"({same[0]!r}, {same[1]!r}): keep one root's keys per file")
        return same[0] if same else None


def find_key(det_db: Dict[str, List[str]], key: str) -> Optional[str]:
    """The det_db key holding frame `key`'s entry (exact, else the same sequence folder and frame
    number), None when it has none."""
    if key in det_db:
        return key
    return (det_db if isinstance(det_db, DetDB) else DetDB(det_db)).find_key(key)


def load_det_db(path: str) -> "DetDB":
    """Read a det_db JSON; keys are normalised to forward slashes."""
    if not os.path.isfile(path):
        raise DetDBError(f"det_db not found: {path}")
    try:
        raw = json.loads(read_text(path))
    except NotUTF8Error as exc:
        raise DetDBError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise DetDBError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(raw, dict):
        raise DetDBError(f"{path}: expected a JSON object of image key -> detection lines, got {type(raw).__name__}")
    db = DetDB()
    for key, lines in raw.items():
        if isinstance(lines, str):  # a single string with newlines is a common hand-made variant
            lines = lines.splitlines()
        if not isinstance(lines, list):
            raise DetDBError(f"{path}: key {key!r}: expected a list of 'x,y,w,h,score' lines")
        db[key.replace("\\", "/")] = lines
    return db


def parse_det_lines(lines: Sequence[str], key: str = "?", source: str = "") -> np.ndarray:
    """`["x,y,w,h,score\\n", ...]` -> float array [n, 5]; a malformed line (not 5 finite numbers, a
    negative width or height) raises DetDBError naming the file (`source`), the key and the (1-based)
    line number."""
    where = f"{source}: " if source else ""
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
            raise DetDBError(f"{where}det_db key {key!r}, line {lineno}: expected 'x,y,w,h,score' (5 numbers), got {line!r}")
        if values[2] < 0 or values[3] < 0:
            raise DetDBError(f"{where}det_db key {key!r}, line {lineno}: negative box size in {line!r}")
        rows.append(values)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def parse_det_db_frames(det_db: Dict[str, List[str]], keys: Iterable[str], source: str = "") -> Dict[str, np.ndarray]:
    """Every line of the entries of `keys` (those the det_db has) parsed and range-checked up front:
    {key: [n, 5] array}, the form `lookup_detections` takes too. The first bad line raises DetDBError
    naming the file, the key and the line."""
    return {k: parse_det_lines(det_db[k], k, source) for k in keys if k in det_db}


def lookup_detections(det_db: Dict[str, Union[List[str], np.ndarray]], key: str, missing: str = "error") -> np.ndarray:
    """The parsed detections of one frame (entries are det_db lines, or arrays `parse_det_db_frames`
    made). `missing`: 'error' (raise, naming the frame) or 'empty'."""
    found = find_key(det_db, key)
    if found is None:
        if missing == "empty":
            return np.zeros((0, 5))
        raise DetDBError(f"det_db has no entry for frame {key!r} (use --missing_detections empty to track "
                         "such frames without proposals)")
    entry = det_db[found]
    return entry if isinstance(entry, np.ndarray) else parse_det_lines(entry, found)


# How a det_db's numbers are rounded (box format, score format), by who writes it.
MOTRV2_ROUNDING = (".1f", ".2f")      # MOTRv2's released det_db: our YOLOX, tools/track_video.py
SYNTHETIC_ROUNDING = (".2f", ".4f")   # the synthetic detector (the demo's figures are measured on it)
AS_READ = (".10g", ".10g")            # public det.txt numbers, kept as the file has them
EXACT = ("r", "r")                    # shortest text that reads back to the same float


def _fmt(value: float, spec: str) -> str:
    return repr(value) if spec == "r" else format(value, spec)


def format_det_lines(dets: np.ndarray, rounding=MOTRV2_ROUNDING, sort: bool = False) -> List[str]:
    """[n, 5] pixel x, y, w, h, score -> det_db lines `"x,y,w,h,score\n"`: the one det_db writer.
    `rounding` is one of the (box, score) formats above; `sort` orders the lines by decreasing
    score (stable), else they keep the order given (the detector's, already sorted)."""
    rows = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
    if sort:
        rows = rows[np.argsort(-rows[:, 4], kind="stable")]
    box, score = rounding
    return [f"{_fmt(x, box)},{_fmt(y, box)},{_fmt(w, box)},{_fmt(h, box)},{_fmt(s, score)}\n"
            for x, y, w, h, s in rows.tolist()]


def read_det_txt(path: str) -> Dict[int, np.ndarray]:
    """A MOTChallenge public-detection file (`det/det.txt`: `frame,-1,x,y,w,h,score[,...]`) ->
    {frame: [k, 5] x, y, w, h, score}. A malformed line raises DetDBError naming file and line."""
    per_frame: Dict[int, list] = {}
    try:
        text = read_text(path)
    except NotUTF8Error as exc:
        raise DetDBError(str(exc)) from None
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
