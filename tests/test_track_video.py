"""tools/track_video.py end to end on a generated video, with stand-in YOLOX-S and a small MOTR."""
import os
import subprocess
import sys
from collections import defaultdict, deque

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from datasets.det_db import load_det_db, parse_det_lines
from tests.helpers import REPO, SMALL_MODEL_ARGV, motrv2_argv
from util.standin_weights import make_state_dict
from tools.make_detdb import format_det_lines
from tools.track_video import main, read_chunks
from tools.visualize import draw_tracks, read_mot_file

W, H, N_FRAMES, FPS = 96, 64, 6, 12.0
DET_SIZE = ("32", "64")  # detector input (H, W), multiples of 32; small: few proposals, fast
SMALL_MOTR = SMALL_MODEL_ARGV


def input_frames():
    frames = []
    for f in range(N_FRAMES):
        img = np.full((H, W, 3), 30, np.uint8)
        cv2.rectangle(img, (8 + 4 * f, 10), (30 + 4 * f, 55), (255, 255, 255), -1)
        cv2.rectangle(img, (80 - 3 * f, 20), (92 - 3 * f, 60), (255, 255, 255), -1)
        frames.append(img)
    return frames


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """The video, a YOLOX-S detector with make_tensor stand-in weights, a small MOTR checkpoint."""
    root = tmp_path_factory.mktemp("video")
    video = root / "dance clip.mp4"  # a space in the name: keys and outputs must keep the stem as is
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    for img in input_frames():
        writer.write(img)
    writer.release()

    from models.yolox import build_yolox, load_state_dict_strict
    detector = build_yolox("yolox-s")
    load_state_dict_strict(detector, make_state_dict(detector.state_dict()))
    detector.eval()

    from main import get_args_parser
    from models import build_model
    torch.manual_seed(0)
    motr, _, _ = build_model(get_args_parser().parse_args(motrv2_argv(SMALL_MOTR)))
    torch.save({"model": motr.state_dict()}, root / "motr_small.pth")
    # The stand-in YOLOX weights make denormal activations, 3-4x slower on the CPU: flush them here.
    torch.set_flush_denormal(True)
    yield root, video, detector
    torch.set_flush_denormal(False)


def track_argv(assets, out, *extra):
    root, video, _ = assets
    return [str(video), *motrv2_argv(SMALL_MOTR), "--resume", str(root / "motr_small.pth"),
            "--output_dir", str(out), "--device", "cpu", "--val_width", "64", "--val_max_size", "128",
            "--score_threshold", "0.0", "--update_score_threshold", "0.0", "--area_threshold", "1",
            "--det_test_size", *DET_SIZE, "--det_batch_size", "4", "--quiet", *extra]


def read_mot(path):
    return [line.split(",") for line in path.read_text().splitlines()]


def read_video(path):
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot open {path}"
    fps, frames = cap.get(cv2.CAP_PROP_FPS), []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    return fps, frames


@pytest.fixture(scope="module")
def detected_run(assets, tmp_path_factory):
    """One run with the detector and --save_det_db."""
    out = tmp_path_factory.mktemp("out_detect")
    rc = main(track_argv(assets, out, "--save_det_db", "--det_score_floor", "0.01"), detector=assets[2])
    assert rc == 0
    return out


def test_writes_mot_file_video_and_det_db_and_no_temporaries(detected_run):
    assert sorted(os.listdir(detected_run)) == ["dance clip.txt", "dance clip_det_db.json",
                                                "dance clip_tracked.mp4"]


def test_mot_file_is_well_formed(detected_run):
    rows = read_mot(detected_run / "dance clip.txt")
    assert len(rows) > 0
    frames = [int(r[0]) for r in rows]
    assert frames == sorted(frames) and set(frames) <= set(range(1, N_FRAMES + 1))
    for r in rows:
        assert len(r) == 10 and r[6:] == ["1", "-1", "-1", "-1"]
        assert int(r[1]) >= 0
        x, y, w, h = map(float, r[2:6])
        assert np.isfinite([x, y, w, h]).all() and w > 0 and h > 0 and w * h > 1
    for f in set(frames):
        ids = [r[1] for r in rows if int(r[0]) == f]
        assert len(ids) == len(set(ids)), f"duplicate ids in frame {f}"


def test_annotated_video_keeps_size_count_fps_and_shows_the_boxes(assets, detected_run):
    _, video, _ = assets
    _, originals = read_video(video)  # the decoded input, as the tool saw it
    fps, frames = read_video(detected_run / "dance clip_tracked.mp4")
    assert len(frames) == N_FRAMES and abs(fps - FPS) < 1e-3
    assert all(img.shape == (H, W, 3) for img in frames)
    # Redraw the MOT file's boxes (ids, trails) on the input: the output video is that picture up
    # to codec noise, much nearer to it than to the undrawn input.
    per_frame = read_mot_file(str(detected_run / "dance clip.txt"))
    trails = defaultdict(lambda: deque(maxlen=20))
    for f, (out_img, in_img) in enumerate(zip(frames, originals), start=1):
        expected = draw_tracks(in_img, per_frame.get(f, []), trails).astype(float)
        assert np.abs(expected - in_img).mean() > 5, "too little drawn to tell"
        assert np.abs(out_img - expected).mean() < 0.5 * np.abs(out_img - in_img.astype(float)).mean(), f"frame {f}"


def test_det_db_round_trips_and_equals_the_detector_output(assets, detected_run):
    _, video, detector = assets
    db = load_det_db(str(detected_run / "dance clip_det_db.json"))
    assert sorted(db) == [f"dance clip/img1/{f:08d}.txt" for f in range(1, N_FRAMES + 1)]
    from models.yolox import detect_frames
    _, frames = read_video(video)
    direct = detect_frames(detector, frames, tuple(map(int, DET_SIZE)), score_floor=0.01, batch_size=4)
    assert sum(len(d) for d in direct) > 0
    for f, dets in enumerate(direct, start=1):
        key = f"dance clip/img1/{f:08d}.txt"
        parsed = parse_det_lines(db[key], key)
        np.testing.assert_array_equal(parsed, parse_det_lines(format_det_lines(dets)))
        np.testing.assert_allclose(parsed, dets, atol=0.051)


def test_tracking_from_the_saved_det_db_gives_the_same_result(assets, detected_run, tmp_path):
    # No detector at all: the proposals come from the det_db, which must be the ones used before.
    rc = main(track_argv(assets, tmp_path, "--det_db", str(detected_run / "dance clip_det_db.json"),
                         "--no_video", "--det_batch_size", "5"))
    assert rc == 0
    assert sorted(os.listdir(tmp_path)) == ["dance clip.txt"]
    assert (tmp_path / "dance clip.txt").read_text() == (detected_run / "dance clip.txt").read_text()


@pytest.mark.parametrize("backend", ["onnxruntime", pytest.param("openvino", marks=pytest.mark.slow)])
def test_an_exported_backend_tracks_the_video_as_torch_does(assets, detected_run, backend, tmp_path, monkeypatch):
    """--backend onnxruntime|openvino: the network exported on first use into the cache, then the
    same frames and ids as --backend torch, boxes within 0.05 px."""
    pytest.importorskip(backend, reason=f"{backend} is not installed (pip install -r requirements-extras.txt)")
    pytest.importorskip("onnx", reason="onnx is not installed")
    monkeypatch.setenv("MOTR_EXPORT_CACHE", str(tmp_path / "cache"))
    det_db = str(detected_run / "dance clip_det_db.json")
    rc = main(track_argv(assets, tmp_path / "on", "--det_db", det_db, "--no_video", "--backend", backend))
    assert rc == 0
    assert len(list((tmp_path / "cache").glob("*/manifest.json"))) == 1  # exported once, finished
    mine, ref = read_mot(tmp_path / "on" / "dance clip.txt"), read_mot(detected_run / "dance clip.txt")
    assert len(ref) > N_FRAMES and len(mine) == len(ref)
    for m, e in zip(mine, ref):
        assert m[:2] == e[:2] and all(abs(float(a) - float(b)) <= 0.05 for a, b in zip(m[2:6], e[2:6])), (m, e)


def test_det_db_without_this_video_and_no_detector_is_a_clear_error(assets, tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text('{"DanceTrack/val/dancetrack0004/img1/00000001.txt": []}')
    rc = main(track_argv(assets, tmp_path / "out", "--det_db", str(other)))
    err = capsys.readouterr().err
    assert rc == 2 and str(other) in err and "dance clip/img1/00000001.txt" in err
    missing_ckpt = tmp_path / "no_yolox.pth"
    assert main(track_argv(assets, tmp_path / "out", "--det_db", str(other), "--detector", str(missing_ckpt))) == 2
    assert str(missing_ckpt) in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_or_unreadable_video_fails_naming_the_file(assets, tmp_path):
    missing = tmp_path / "nope.mp4"
    cmd = [sys.executable, str(REPO / "tools" / "track_video.py"), *track_argv(assets, tmp_path / "out")[1:],
           str(missing)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO), timeout=120)
    assert proc.returncode != 0 and "not found" in proc.stderr and str(missing) in proc.stderr
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 10)
    argv = track_argv(assets, tmp_path / "out")
    argv[0] = str(garbage)
    assert main(argv) == 2
    assert not (tmp_path / "out").exists()


class FakeCapture:
    def __init__(self, n):
        self.frames = list(range(n))

    def read(self):
        return (True, self.frames.pop(0)) if self.frames else (False, None)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 40), size=st.integers(1, 10))
def test_read_chunks_streams_every_frame_once_in_order(n, size):
    chunks = list(read_chunks(FakeCapture(n), size))
    assert [f for c in chunks for f in c] == list(range(n))
    assert all(1 <= len(c) <= size for c in chunks) and all(len(c) == size for c in chunks[:-1])
