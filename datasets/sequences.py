"""Reading DanceTrack/MOTChallenge-format sequences for tracking.

A split is `<mot_path>/DanceTrack/<split>/<seq>/img1/00000001.jpg ...` with an optional
`seqinfo.ini`.  Frames are decoded by `read_image` (training reads its frames through it too) and
prepared for the model by models/inputs.py.
"""
import configparser
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from torch.utils.data import Dataset

from models.inputs import image_to_input, proposals_from_detections

from .det_db import det_db_key, lookup_detections

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class SequenceError(ValueError):
    """A sequence folder or image that cannot be used; the message names the path."""


class ImageError(SequenceError, FileNotFoundError):
    """An image that is missing or cannot be decoded (a FileNotFoundError too, as training raised)."""


class CorruptImageError(ImageError):
    """An image file that is there but does not decode completely (truncated, damaged, not an image)."""


CORRUPT_FRAME_POLICIES = ("error", "skip")


@dataclass
class TrackingSequence:
    name: str
    relpath: str                     # relative to mot_path, e.g. DanceTrack/val/dancetrack0004
    frames: List[Tuple[int, str]]    # (frame number, image path relative to mot_path)
    width: Optional[int] = None
    height: Optional[int] = None
    info: Dict[str, str] = field(default_factory=dict)
    root: Optional[str] = None       # folder the frame paths are relative to, when not mot_path
    image_size: Optional[Tuple[int, int]] = None  # (width, height) every image has, once check_images ran


def list_sequences(split_dir: str, names: Optional[Sequence[str]] = None) -> List[str]:
    """Sequence folder names of a split (those with an img1 folder), sorted; or `names`, checked."""
    if not os.path.isdir(split_dir):
        raise SequenceError(f"split folder not found: {split_dir}")
    found = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d, "img1")))
    if names:
        unknown = [n for n in names if n not in found]
        if unknown:
            raise SequenceError(f"sequences not found in {split_dir}: {', '.join(unknown)}")
        return list(names)
    return found


def _frame_number(filename: str) -> Optional[int]:
    match = re.fullmatch(r"(\d+)", os.path.splitext(filename)[0])
    return int(match.group(1)) if match else None


def _read_seqinfo(ini: str) -> Dict[str, str]:
    parser = configparser.ConfigParser()
    try:
        parser.read(ini)
        return dict(parser["Sequence"])
    except (configparser.Error, KeyError) as exc:
        raise SequenceError(f"{ini}: not a valid seqinfo.ini ([Sequence] section): {exc}") from exc


def read_sequence(mot_path: str, relpath: str) -> TrackingSequence:
    """Frames and seqinfo of one sequence. Frames are the images of `imDir` (img1) with the
    suffix `imExt` when seqinfo.ini gives one, in frame-number order whatever the number of
    digits. Missing seqinfo.ini is inferred from the images (with a warning); gaps in frame
    numbering are kept (with a warning) so outputs stay aligned with the ground truth's frame
    numbers."""
    seq_dir = os.path.join(mot_path, relpath)
    ini = os.path.join(seq_dir, "seqinfo.ini")
    info = _read_seqinfo(ini) if os.path.isfile(ini) else None
    im_dir = (info or {}).get("imdir", "img1").strip() or "img1"
    img_dir = os.path.join(seq_dir, im_dir)
    if not os.path.isdir(img_dir):
        raise SequenceError(f"no {im_dir} folder in sequence {seq_dir}")
    im_ext = (info or {}).get("imext", "").strip().lower()
    if im_ext and not im_ext.startswith("."):
        im_ext = "." + im_ext
    files = [f for f in os.listdir(img_dir)
             if (f.lower().endswith(im_ext) if im_ext else f.lower().endswith(IMAGE_EXTENSIONS))]
    if not files:
        what = f"*{im_ext} images (imExt in {ini})" if im_ext else "images"
        raise SequenceError(f"sequence {seq_dir} has no {what} in {im_dir}/")
    numbers = [_frame_number(f) for f in files]
    if any(n is None for n in numbers):  # non-numeric names: number by position, as upstream does
        files.sort()
        numbers = list(range(1, len(files) + 1))
    else:
        order = sorted(range(len(files)), key=lambda i: (numbers[i], files[i]))
        files, numbers = [files[i] for i in order], [numbers[i] for i in order]
        if len(set(numbers)) != len(numbers):
            dup = next(n for n in numbers if numbers.count(n) > 1)
            names = [f for f, n in zip(files, numbers) if n == dup]
            raise SequenceError(f"{img_dir}: two images for frame {dup} ({', '.join(names)})")
    frames = [(n, os.path.join(relpath, im_dir, f).replace("\\", "/")) for n, f in zip(numbers, files)]
    expected = list(range(numbers[0], numbers[0] + len(numbers)))
    if numbers != expected:
        missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        warnings.warn(f"{img_dir}: frame numbers have gaps (missing {missing[:10]}"
                      f"{'...' if len(missing) > 10 else ''}); results keep the file numbers")
    seq = TrackingSequence(name=os.path.basename(relpath.rstrip("/")), relpath=relpath, frames=frames)
    if info is not None:
        seq.info = info
        try:
            seq.width = int(seq.info["imwidth"]) if "imwidth" in seq.info else None
            seq.height = int(seq.info["imheight"]) if "imheight" in seq.info else None
        except ValueError as exc:
            raise SequenceError(f"{ini}: imWidth/imHeight must be integers ({exc})") from None
        declared = seq.info.get("seqlength", "")
        if declared.isdigit() and int(declared) != len(frames):  # e.g. images lost in a copy
            warnings.warn(f"{ini} declares seqLength={declared} but {img_dir} holds {len(frames)} images "
                          f"(frames {numbers[0]}..{numbers[-1]}); tracking the images found")
    else:
        first = read_image(os.path.join(mot_path, frames[0][1]))
        seq.height, seq.width = first.shape[:2]
        seq.info = {"name": seq.name, "imdir": im_dir, "seqlength": str(len(frames)),
                    "imwidth": str(seq.width), "imheight": str(seq.height),
                    "imext": os.path.splitext(files[0])[1]}
        warnings.warn(f"{seq_dir}: no seqinfo.ini; inferred {len(frames)} frames of {seq.width}x{seq.height} "
                      "from the images")
    return seq


# The last bytes of a complete file: JPEG's end-of-image marker, PNG's IEND chunk. A truncated JPEG
# decodes with a grey-filled bottom and only a libjpeg warning on stderr; this test catches it.
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_PNG_START, _PNG_END = b"\x89PNG", b"IEND\xaeB`\x82"
_TAIL = 4096  # bytes read from the end: room for padding


def truncation(head: bytes, tail: bytes) -> Optional[str]:
    """Why a file with these first and last bytes is incomplete (None: it is not, or the format is not
    one whose end is marked). Trailing zero bytes (padding some cameras write) are allowed."""
    tail = tail.rstrip(b"\x00")
    if not tail:  # nothing but padding in reach: cannot tell, do not refuse
        return None
    if head.startswith(_JPEG_START) and not tail.endswith(_JPEG_END):
        return "truncated JPEG: no end-of-image marker"
    if head.startswith(_PNG_START) and not tail.endswith(_PNG_END):
        return "truncated PNG: no IEND chunk"
    return None


@dataclass(frozen=True)
class ImageHeader:
    width: int
    height: int
    channels: int


# PIL modes read_image turns into RGB uint8 (others, e.g. 32-bit int or float images, it refuses).
_DECODABLE_MODES = {"1": 1, "L": 1, "P": 3, "LA": 2, "PA": 2, "RGB": 3, "RGBA": 4, "RGBX": 4, "CMYK": 3,
                    "YCbCr": 3, "I;16": 1, "I;16B": 1, "I;16L": 1}


def read_header(path: str) -> ImageHeader:
    """Size and channels of an image from its header and last bytes, without decoding it; raises
    ImageError (missing) or CorruptImageError (truncated, not an image, a pixel type read_image refuses),
    naming the file."""
    from PIL import Image, UnidentifiedImageError  # header parsing only
    path = str(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _TAIL))
            why = truncation(head, f.read())
            f.seek(0)
            try:
                with Image.open(f) as im:
                    width, height, mode = im.width, im.height, im.mode
            except (UnidentifiedImageError, SyntaxError, ValueError, OSError):
                why = "corrupt or unsupported"
    except FileNotFoundError:
        raise ImageError(f"image not found: {path}") from None
    if why:
        raise CorruptImageError(f"cannot decode image ({why}): {path}")
    if mode not in _DECODABLE_MODES or width < 1 or height < 1:
        raise CorruptImageError(f"unsupported image type {mode} {width}x{height}: {path}")
    return ImageHeader(width, height, _DECODABLE_MODES[mode])


def check_images(root: str, seq: TrackingSequence, corrupt_frames: str = "error") -> List[int]:
    """Read every frame's header before tracking (cheap: no decoding). All frames must have one size
    (a change is a SequenceError naming the frame); a seqinfo.ini size that disagrees warns, and the
    images' size is used. A frame that does not decode completely is an error, or with
    `corrupt_frames="skip"` it is left out of `seq.frames` with a warning. Sets `seq.image_size`;
    returns the frame numbers left out."""
    size, kept, skipped = None, [], []
    for number, rel in seq.frames:
        path = os.path.join(root, rel)
        try:
            header = read_header(path)
        except CorruptImageError as exc:
            if corrupt_frames != "skip":
                raise
            warnings.warn(f"{exc}; frame {number} left out (--corrupt_frames skip)")
            skipped.append(number)
            continue
        if size is None:
            size, first = (header.width, header.height), path
        elif (header.width, header.height) != size:
            raise SequenceError(f"{path}: frame {number} is {header.width}x{header.height} but the sequence's "
                                f"first frame {first} is {size[0]}x{size[1]} (one size per sequence)")
        kept.append((number, rel))
    if size is None:
        raise SequenceError(f"sequence {os.path.join(root, seq.relpath)}: no frame decodes "
                            f"({len(skipped)} left out)")
    declared = (seq.width, seq.height)
    if seq.width is not None and seq.height is not None and declared != size:
        warnings.warn(f"{os.path.join(root, seq.relpath, 'seqinfo.ini')} says {seq.width}x{seq.height} but the "
                      f"images are {size[0]}x{size[1]}; tracking at the images' size")
    seq.width, seq.height = size
    seq.frames, seq.image_size = kept, size
    return skipped


def read_image(path: str) -> np.ndarray:
    """An image as RGB uint8 HxWx3, the one decoder of training and tracking; grayscale, RGBA and
    16-bit images are converted. Raises ImageError naming the file when it is missing, and
    CorruptImageError when it cannot be decoded completely (a truncated JPEG or PNG too)."""
    path = str(path)
    if not os.path.isfile(path):
        raise ImageError(f"image not found: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    why = truncation(data[:8].tobytes(), data[-_TAIL:].tobytes())
    if why:  # checked first: libjpeg would print a warning of its own while decoding it
        raise CorruptImageError(f"cannot decode image ({why}): {path}")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None or img.size == 0:
        raise CorruptImageError(f"cannot decode image (corrupt or unsupported): {path}")
    if img.dtype == np.uint16:
        img = (img / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise CorruptImageError(f"unsupported image type {img.dtype}: {path}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class SequenceFrames(Dataset):
    """Decodes, resizes and pairs each frame with its proposals (for a DataLoader with workers)."""

    def __init__(self, mot_path: str, seq: TrackingSequence, det_db: Dict[str, List[str]],
                 missing_detections: str = "error", short: int = 800, long_max: int = 1536):
        self.mot_path, self.seq, self.det_db = mot_path, seq, det_db
        self.missing_detections = missing_detections
        self.short, self.long_max = short, long_max

    def __len__(self) -> int:
        return len(self.seq.frames)

    def __getitem__(self, index: int):
        frame_number, relpath = self.seq.frames[index]
        img = read_image(os.path.join(self.seq.root or self.mot_path, relpath))
        h, w = img.shape[:2]
        if self.seq.image_size is not None and (w, h) != self.seq.image_size:  # changed since check_images
            raise SequenceError(f"{os.path.join(self.seq.root or self.mot_path, relpath)}: frame {frame_number} is "
                                f"{w}x{h} but the sequence's frames are {self.seq.image_size[0]}x{self.seq.image_size[1]}")
        dets = lookup_detections(self.det_db, det_db_key(relpath), self.missing_detections)
        proposals = proposals_from_detections(dets, w, h)
        return {"image": image_to_input(img, self.short, self.long_max), "ori_size": (h, w),
                "proposals": proposals, "frame": frame_number, "path": relpath}


def collate_single(batch):
    """DataLoader collate for batch size 1: the item itself."""
    assert len(batch) == 1
    return batch[0]
