"""Fault injection: each bad input gives a one-line error naming what is at fault, before any work,
and leaves no result file written or changed."""
import shutil
from pathlib import Path

import pytest

from tools import convert_bft

DATA = Path(__file__).resolve().parent / "data"
FRAME = DATA / "mot17_mini" / "train" / "MOT17-02-FRCNN" / "img1" / "000001.jpg"


# -- tools/convert_bft.py: every split checked before anything moves ---------------------------------------
def released_bft(root: Path, splits=("train", "val"), frames: int = 2) -> Path:
    for split in splits:
        seq = root / "BFT" / split / f"{split}_seq"
        seq.mkdir(parents=True)
        for i in range(1, frames + 1):
            shutil.copy(FRAME, seq / f"{i:06d}.jpg")
        ann = root / "BFT" / "annotations_mot" / split / f"{split}_seq.txt"
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text("1,1,10,10,5,5,1,-1,-1,-1\n2,1,11,10,5,5,1,-1,-1,-1\n")
    return root / "BFT"


def tree(root: Path):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


@pytest.mark.parametrize("fault, message", [
    ("line", r"val_seq\.txt:2: expected 'frame,id,x,y,w,h"),
    ("utf8", r"val_seq\.txt:2: not UTF-8 text"),
    ("frame", r"val_seq\.txt: frame 9 but .* holds 2 images"),
    ("image", r"val_seq/000001\.jpg: cannot decode image"),
])
def test_convert_bft_checks_every_split_before_moving_anything(tmp_path, fault, message):
    bft = released_bft(tmp_path)
    ann = bft / "annotations_mot" / "val" / "val_seq.txt"
    if fault == "line":
        ann.write_text("1,1,10,10,5,5\n2,1,10,x,5,5\n")
    elif fault == "utf8":
        ann.write_bytes(b"1,1,10,10,5,5\n2,1,10,10,5,5 \xff\xfe\n")
    elif fault == "frame":
        ann.write_text("9,1,10,10,5,5\n")
    else:
        (bft / "val" / "val_seq" / "000001.jpg").write_bytes(b"not a jpeg")
    before = tree(bft)
    with pytest.raises(SystemExit, match=message) as info:
        convert_bft.main(["--bft_root", str(bft)])
    assert str(info.value).startswith("error: ") and "\n" not in str(info.value)
    assert tree(bft) == before, "train was converted before val's fault was found"


def test_convert_bft_keeps_every_box_as_a_target(tmp_path):
    bft = released_bft(tmp_path, splits=("train",))
    ann = bft / "annotations_mot" / "train" / "train_seq.txt"
    ann.write_text("1,3,100,200,20,15,0.9,-1,-1,-1\n2,3,101,200,20,15,0,-1,-1,-1\n")
    convert_bft.main(["--bft_root", str(bft)])
    gt = (bft / "train" / "train_seq" / "gt" / "gt.txt").read_text().splitlines()
    assert gt == ["1,3,100,200,20,15,1,1,1", "2,3,101,200,20,15,1,1,1"]
