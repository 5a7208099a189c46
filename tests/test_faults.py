"""Fault injection: each bad input gives a one-line error naming what is at fault, before any work,
and leaves no result file written or changed."""
import os
import re
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


# -- submit_dance.py: everything checked before the first frame ------------------------------------------
# The small random-weight model and generated split of tests/test_robustness.py (fixtures imported).
import json  # noqa: E402
import warnings  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import submit_dance  # noqa: E402
from tests.test_robustness import (BASE, H, W, assert_failed_cleanly, base, ckpt, clone, key,  # noqa: E402,F401
                                   one_thread, read_det_db, seq_dir, snapshot, state_dict, submit, write_det_db,
                                   write_seqinfo)


def results(out: Path):
    folder = out / "run"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


@pytest.mark.parametrize("line, why", [
    ("1,2,3,x,0.5", "expected 'x,y,w,h,score' (5 numbers)"),
    ("1,2,nan,4,0.5", "expected 'x,y,w,h,score' (5 numbers)"),
    ("1,2,-3,4,0.5", "negative box size"),
    ("1,2,3,4", "expected 'x,y,w,h,score' (5 numbers)"),
    ("1,2,3,4,0.5,6", "expected 'x,y,w,h,score' (5 numbers)"),
])
def test_malformed_det_db_line_in_the_last_frame_stops_before_the_first(clone, ckpt, tmp_path, line, why):
    det_db = read_det_db(clone)
    last = key("dancetrack0003", BASE["dancetrack0003"])
    det_db[last] = ["5,5,10,10,0.9\n", line + "\n"]
    write_det_db(clone, det_db)
    out = tmp_path / "out"
    res = submit(clone, out, ckpt)
    assert_failed_cleanly(res, out, {}, f"{clone / 'det_db.json'}: det_db key {last!r}, line 2:", why)
    assert results(out) == []  # not even the first sequence was tracked


def test_image_size_change_inside_a_sequence_names_the_frame(clone, ckpt, tmp_path):
    frame = seq_dir(clone, "dancetrack0002") / "img1" / "00000003.jpg"
    cv2.imwrite(str(frame), np.zeros((2 * H, 2 * W, 3), np.uint8))
    out = tmp_path / "out"
    res = submit(clone, out, ckpt)
    assert_failed_cleanly(res, out, {}, f"{frame}: frame 3 is {2 * W}x{2 * H}", f"is {W}x{H}")
    assert results(out) == []


def test_seqinfo_size_that_disagrees_with_the_images_warns(clone, ckpt, tmp_path):
    ini = seq_dir(clone, "dancetrack0001") / "seqinfo.ini"
    ini.write_text(ini.read_text().replace(f"imWidth={W}", "imWidth=1920"))
    res = submit(clone, tmp_path / "out", ckpt, "--seqs", "dancetrack0001")
    assert res.code == 0, res.stderr
    assert any(f"{ini} says 1920x{H} but the images are {W}x{H}" in w for w in res.warnings), res.warnings


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def test_truncated_jpeg_is_an_error_naming_it_or_skipped_with_a_warning(clone, ckpt, tmp_path):
    frame = seq_dir(clone, "dancetrack0003") / "img1" / "00000002.jpg"
    truncate(frame)
    assert cv2.imread(str(frame)) is not None  # OpenCV decodes it (grey-filled): only stderr would tell
    out = tmp_path / "out"
    res = submit(clone, out, ckpt)
    assert_failed_cleanly(res, out, {}, f"cannot decode image (truncated JPEG: no end-of-image marker): {frame}")
    assert results(out) == []
    res = submit(clone, out, ckpt, "--seqs", "dancetrack0003", "--corrupt_frames", "skip")
    assert res.code == 0, res.stderr
    assert any(str(frame) in w and "frame 2 left out" in w for w in res.warnings), res.warnings
    frames = {int(line.split(",")[0]) for line in (out / "run" / "dancetrack0003.txt").read_text().splitlines()}
    assert frames == {1, 3, 4}


def test_output_folder_that_cannot_be_written_is_found_before_any_work(clone, ckpt, tmp_path):
    blocked = tmp_path / "out"
    blocked.write_text("a file where the output folder should be")
    res = submit(clone, blocked, ckpt)
    assert res.code == 2 and res.stderr.strip().startswith("error: output folder") and str(blocked) in res.stderr
    assert res.stderr.strip().count("\n") == 0 and blocked.read_text().startswith("a file")


def test_det_db_without_matching_keys_warns_and_sequences_without_boxes_are_reported(clone, ckpt, tmp_path):
    # keys of another sequence: no frame of dancetrack0001 has an entry, not even by the key rule's
    # fallback (the same sequence folder and frame number under another root)
    write_det_db(clone, {k.replace("dancetrack0001", "other_sequence"): v for k, v in read_det_db(clone).items()})
    res = submit(clone, tmp_path / "out", ckpt, "--seqs", "dancetrack0001", "--missing_detections", "empty",
                 "--score_threshold", "1.0")
    assert res.code == 0, res.stderr
    text = "\n".join(res.warnings)
    assert "none of the keys of" in text and repr(key("dancetrack0001", 1)) in text
    assert "has no entry for 2 of the 2 frames of DanceTrack/val/dancetrack0001" in text
    assert "1 sequence(s) got no box at all" in text and "dancetrack0001" in text
    assert (tmp_path / "out" / "run" / "dancetrack0001.txt").read_text() == ""


def test_more_than_half_of_the_frames_without_an_entry_warns_with_the_count(clone, ckpt, tmp_path):
    det_db = read_det_db(clone)
    for f in (1, 2, 3):
        del det_db[key("dancetrack0003", f)]
    write_det_db(clone, det_db)
    res = submit(clone, tmp_path / "out", ckpt, "--seqs", "dancetrack0003", "--missing_detections", "empty")
    assert res.code == 0, res.stderr
    assert any("no entry for 3 of the 4 frames of DanceTrack/val/dancetrack0003" in w for w in res.warnings)


def test_checkpoint_of_nan_weights_is_refused_and_writes_nothing(clone, state_dict, tmp_path):
    nan = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state_dict.items()}
    bad = tmp_path / "nan.pth"
    torch.save({"model": nan}, bad)
    out = tmp_path / "out"
    res = submit(clone, out, bad)
    assert_failed_cleanly(res, out, {}, str(bad), "non-finite")
    assert results(out) == []  # a rerun would not skip anything


# -- numeric flags: refused at parse time, one message on the command line, in a variants file, in the API
@pytest.mark.parametrize("flag, value, expected", [
    ("--score_threshold", "nan", "argument --score_threshold: nan: must be a number in [0, 1]"),
    ("--score_threshold", "5", "argument --score_threshold: 5.0: must be a number in [0, 1]"),
    ("--memory_size", "0", "argument --memory_size: 0: must be a number > 0"),
    ("--memory_alpha", "2", "argument --memory_alpha: 2.0: must be a number in [0, 1]"),
    ("--val_width", "0", "argument --val_width: 0: must be a number > 0"),
    ("--val_width", "-5", "argument --val_width: -5: must be a number > 0"),
    ("--val_max_size", "0", "argument --val_max_size: 0: must be a number > 0"),
    ("--num_workers", "-1", "argument --num_workers: -1: must be a number >= 0"),
    ("--hidden_dim", "0", "argument --hidden_dim: 0: must be a number > 0"),
    ("--lr", "inf", "argument --lr: inf: must be a number >= 0"),
])
def test_numeric_flags_are_refused_alike_everywhere(flag, value, expected, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        submit_dance.main(["--resume", "x.pth", flag, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {expected}") and err.count("\n") == 1 and "usage:" not in err

    variants = tmp_path / "variants.txt"
    variants.write_text(f"ok --memory sparse\nbad {flag} {value}\n")
    from main import get_tracking_parser
    from inference import VariantError, read_variants
    parser = get_tracking_parser()
    with pytest.raises(VariantError, match=r"^" + re.escape(f"{variants}:2: {expected}")):
        read_variants(str(variants), parser.parse_args([]), parser)

    from models.config import model_args
    if flag not in ("--num_workers", "--lr"):  # training / run flags: not the tracker's
        with pytest.raises(ValueError, match="^" + re.escape(expected) + "$"):
            model_args("motrv2", {flag.lstrip("-"): float(value) if "." in value or value.isalpha() else int(value)})
    assert capsys.readouterr() == ("", "")


def test_variants_line_asking_for_help_is_refused(tmp_path):
    variants = tmp_path / "variants.txt"
    variants.write_text("a -h\n")
    from main import get_tracking_parser
    from inference import VariantError, read_variants
    parser = get_tracking_parser()
    with pytest.raises(VariantError, match=rf"^{re.escape(str(variants))}:1: -h is not a tracker or memory flag"):
        read_variants(str(variants), parser.parse_args([]), parser)


def test_api_value_error_prints_no_usage(capsys):
    from models.tracker import Tracker
    with pytest.raises(ValueError, match=r"^argument --score_threshold: 'abc': must be a number$"):
        Tracker.from_checkpoint(DATA.parent.parent / "weights" / "synthetic_small.pth", score_threshold="abc")
    assert capsys.readouterr() == ("", "")


# -- text that is not UTF-8: one line naming file and line ------------------------------------------------
def test_non_utf8_bytes_are_named_by_file_and_line(tmp_path):
    from datasets.det_db import DetDBError, load_det_db, read_det_txt
    from inference import VariantError, read_variants
    from main import get_tracking_parser
    from tools.evaluate import EvaluationInputError, load_mot_file

    bad = b"1,1,10,10,5,5,1,-1,-1,-1\n2,1,10,10,5,5,1,-1,-1,-1 \xff\n"
    variants = tmp_path / "variants.txt"
    variants.write_bytes(b"a --memory sparse\nb --memory dense \xe9\n")
    parser = get_tracking_parser()
    with pytest.raises(VariantError, match=rf"^{re.escape(str(variants))}:2: not UTF-8 text \(byte 0xe9"):
        read_variants(str(variants), parser.parse_args([]), parser)
    det_txt = tmp_path / "det.txt"
    det_txt.write_bytes(bad)
    with pytest.raises(DetDBError, match=rf"^{re.escape(str(det_txt))}:2: not UTF-8 text"):
        read_det_txt(str(det_txt))
    det_db = tmp_path / "det_db.json"
    det_db.write_bytes(b'{"a/img1/1.txt": ["1,2,3,4,0.5"],\n "\xff": []}')
    with pytest.raises(DetDBError, match=rf"^{re.escape(str(det_db))}:2: not UTF-8 text"):
        load_det_db(str(det_db))
    for is_gt in (False, True):
        result = tmp_path / f"{is_gt}.txt"
        result.write_bytes(bad)
        with pytest.raises(EvaluationInputError, match=rf"^{re.escape(str(result))}:2: not UTF-8 text"):
            load_mot_file(result, 10, is_gt)


# -- make_detdb.py, evaluate.py, every entry point: one line and exit code 2 -------------------------------
@pytest.mark.parametrize("kind", ["truncated", "random", "wrong"])
def test_make_detdb_bad_checkpoint_is_one_line(tmp_path, kind):
    from tools import make_detdb
    frames = tmp_path / "seq" / "img1"
    frames.mkdir(parents=True)
    shutil.copy(FRAME, frames / "000001.jpg")
    ckpt_path = tmp_path / "yolox.pth"
    if kind == "truncated":
        torch.save({"model": {"w": torch.zeros(1000)}}, ckpt_path)
        ckpt_path.write_bytes(ckpt_path.read_bytes()[:300])
    elif kind == "random":
        ckpt_path.write_bytes(np.random.default_rng(0).bytes(2000))
    else:
        torch.save({"model": {"not.yolox": torch.zeros(3)}}, ckpt_path)
    out = tmp_path / "out" / "det_db.json"
    with pytest.raises(SystemExit) as info:
        make_detdb.main(["--frames", str(frames), "--checkpoint", str(ckpt_path), "--output", str(out),
                         "--device", "cpu"])
    message = str(info.value.code)
    assert message.startswith("error: ") and str(ckpt_path) in message and "\n" not in message
    assert not out.parent.exists() or os.listdir(out.parent) == []


def test_make_detdb_truncated_frame_is_named_before_the_detector_loads(tmp_path):
    from tools import make_detdb
    frames = tmp_path / "seq" / "img1"
    frames.mkdir(parents=True)
    for i in (1, 2):
        shutil.copy(FRAME, frames / f"00000{i}.jpg")
    truncate(frames / "000002.jpg")
    with pytest.raises(SystemExit, match=r"^error: cannot decode image \(truncated JPEG.*000002\.jpg$"):
        make_detdb.main(["--frames", str(frames), "--checkpoint", str(tmp_path / "never_read.pth"),
                         "--output", str(tmp_path / "det_db.json")])


def test_run_main_gives_one_line_and_the_exit_code(capsys):
    from util.cli import run_main

    def fails(exc):
        def main():
            raise exc
        return main
    assert run_main(fails(SystemExit("--split needs --mot_path"))) == 2
    assert capsys.readouterr().err == "error: --split needs --mot_path\n"
    assert run_main(fails(OSError(28, "No space left on device", "/full/det_db.json"))) == 2
    assert capsys.readouterr().err == "error: /full/det_db.json: No space left on device\n"
    assert run_main(fails(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "error: interrupted\n"
    assert run_main(lambda: {"a": 1}) == 0 and run_main(lambda: 3) == 3


def test_evaluate_error_is_one_line_and_exit_2(tmp_path, capsys):
    from tools.evaluate import main as evaluate_main
    assert evaluate_main(["--gt_folder", str(tmp_path / "none"), "--tracker_folder", str(tmp_path),
                          "--benchmark", "dancetrack"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and str(tmp_path / "none") in err


def test_convert_bft_truncated_image_after_the_first_is_refused(tmp_path):
    bft = released_bft(tmp_path, frames=3)
    truncate(bft / "val" / "val_seq" / "000003.jpg")
    before = tree(bft)
    with pytest.raises(SystemExit, match=r"val_seq/000003\.jpg: cannot decode image \(truncated JPEG"):
        convert_bft.main(["--bft_root", str(bft)])
    assert tree(bft) == before


# -- tools/track_video.py: the det_db checked for every frame before the first -----------------------------
def small_video(path: Path, frames: int = 6) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 48))
    for _ in range(frames):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    return path


@pytest.mark.parametrize("fault, message", [
    ("missing", r"has no entry for 2 of the 6 frames of v, first 'v/img1/00000005\.txt'"),
    ("malformed", r"det_db key 'v/img1/00000006\.txt', line 1: expected 'x,y,w,h,score'"),
])
def test_track_video_det_db_checked_for_every_frame_before_any_work(tmp_path, capsys, monkeypatch, fault, message):
    from tools import track_video
    video = small_video(tmp_path / "v.mp4")
    entries = {f"v/img1/{f:08d}.txt": ["1,1,10,10,0.9\n"] for f in range(1, 7)}
    if fault == "missing":
        del entries["v/img1/00000005.txt"], entries["v/img1/00000006.txt"]
    else:
        entries["v/img1/00000006.txt"] = ["1,1,10,x,0.9\n"]
    det_db = tmp_path / "det_db.json"
    det_db.write_text(json.dumps(entries))
    built = []
    monkeypatch.setattr(track_video, "build_network", lambda args: built.append(args))
    out = tmp_path / "out"
    rc = track_video.main([str(video), "--output_dir", str(out), "--det_db", str(det_db), "--device", "cpu",
                           "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and re.search(message, err) and str(det_db) in err and "\n" not in err
    assert built == [] and not out.exists()


def test_track_video_flags_refused_at_parse_time(tmp_path, capsys):
    from tools import track_video
    with pytest.raises(SystemExit) as info:
        track_video.main([str(tmp_path / "v.mp4"), "--det_batch_size", "0"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("error: argument --det_batch_size: 0: must be a number > 0")
    assert err.count("\n") == 1


# -- image headers -----------------------------------------------------------------------------------------
def test_header_reading_finds_truncation_and_allows_padding(tmp_path):
    from datasets.sequences import CorruptImageError, read_header, read_image
    jpg = tmp_path / "a.jpg"
    png = tmp_path / "a.png"
    img = np.random.default_rng(1).integers(0, 255, (40, 30, 3), dtype=np.uint8)
    cv2.imwrite(str(jpg), img)
    cv2.imwrite(str(png), img)
    assert read_header(str(jpg)) == read_header(str(png)) and read_header(str(png)).width == 30
    jpg.write_bytes(jpg.read_bytes() + b"\x00" * 100)  # padded by a camera: complete
    assert read_image(str(jpg)).shape == (40, 30, 3)
    for path in (jpg, png):
        truncate(path)
        for read in (read_header, read_image):
            with pytest.raises(CorruptImageError, match=rf"cannot decode image \(truncated .*: {re.escape(str(path))}$"):
                read(str(path))
