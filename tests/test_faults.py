"""Fault injection: each bad input gives a one-line error naming what is at fault, before any work,
and leaves no result file written or changed."""
import os
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


# -- tools/track_video.py: temporaries of killed runs, read-only output, Ctrl-C --------------------------
def test_every_atomic_writer_removes_what_a_killed_writer_left(tmp_path):
    """A killed run's temporary file (its writer's pid gone) is removed by the next write of the same
    target, a video's as well as a result file's; another running writer's is kept."""
    import subprocess
    import sys

    from util.fileio import atomic_path, write_atomic
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    video = tmp_path / "clip_tracked.mp4"
    left = tmp_path / f".tmp_clip_tracked.mp4.{dead.pid}.k2j4.part.mp4"
    running = tmp_path / f".tmp_clip_tracked.mp4.{os.getppid()}.x9q1.part.mp4"
    other = tmp_path / f".tmp_other_tracked.mp4.{dead.pid}.a1b2.part.mp4"
    for p in (left, running, other):
        p.write_bytes(b"half a video")
    with atomic_path(video) as tmp:
        Path(tmp).write_bytes(b"a video")
    assert video.read_bytes() == b"a video"
    assert not left.exists() and running.exists() and other.exists()
    write_atomic(tmp_path / "other_tracked.mp4", b"x")
    assert not other.exists()


def test_track_video_output_folder_not_writable_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    from tools import track_video
    video = tmp_path / "v.mp4"
    import cv2
    import numpy as np
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 48))
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    blocked = tmp_path / "file_not_folder"
    blocked.write_text("x")
    built = []
    monkeypatch.setattr(track_video, "build_network", lambda args: built.append(args))
    rc = track_video.main([str(video), "--output_dir", str(blocked / "out"), "--det_db", "",
                           "--detector", "none.pth", "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: output folder") and str(blocked) in err
    assert "\n" not in err and built == []


def test_track_video_ctrl_c_is_exit_130_and_one_line(tmp_path, capsys, monkeypatch):
    from tools import track_video

    def interrupted(args, detector=None):
        raise KeyboardInterrupt
    monkeypatch.setattr(track_video, "run", interrupted)
    rc = track_video.main([str(tmp_path / "v.mp4"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 130 and err.startswith("error: interrupted") and "\n" not in err
