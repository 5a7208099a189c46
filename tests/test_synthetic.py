"""Tests for the synthetic DanceTrack generator (datasets/synthetic.py, tools/make_synthetic.py)."""
from __future__ import annotations

import configparser
import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets import synthetic
from datasets.det_db import SYNTHETIC_ROUNDING, format_det_lines
from datasets.synthetic import (det_key, make_dataset, make_split,
                                simulate_sequence)

TINY = dict(num_frames=15, width=160, height=96, num_dancers=(3, 4))


def _make_tiny(root: Path, seed: int = 0) -> dict:
    return make_dataset(root, splits={"train": 2, "val": 1}, seed=seed, **TINY)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    return _make_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def default_seqs() -> list:
    """In-memory sequences of the default size (320x192, 60-80 frames, 5-8 dancers)."""
    return [simulate_sequence(seed, 60 + 10 * (seed % 3), 320, 192, 5 + seed % 4) for seed in range(3)]


def _read_gt(seq_dir: Path) -> np.ndarray:
    rows = [list(map(float, line.split(","))) for line in (seq_dir / "gt" / "gt.txt").read_text().splitlines()]
    return np.array(rows).reshape(-1, 9)


def _parse_dets(lines: list) -> np.ndarray:
    return np.array([list(map(float, line.split(","))) for line in lines]).reshape(-1, 5)


def _xywh_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.concatenate([a[:, :2], a[:, :2] + a[:, 2:4]], axis=1)
    b = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:4]], axis=1)
    return synthetic._pairwise_iou_xyxy(a, b)


def _seq_dirs(info: dict):
    for split_info in info["splits"].values():
        for name in split_info["sequences"]:
            yield Path(split_info["split_dir"]) / name


def _all_files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- layout


def test_det_db_keys_match_images_one_to_one(tiny):
    root = Path(tiny["mot_path"])
    det_db = json.loads(Path(tiny["det_db_path"]).read_text())
    image_keys = {p.relative_to(root).with_suffix(".txt").as_posix()
                  for p in root.glob("DanceTrack/*/*/img1/*.jpg")}
    assert len(image_keys) == 2 * 15 + 15
    assert set(det_db) == image_keys
    assert det_key("val", "val0001", 1) in det_db
    # The merged det_db is the union of the per-split ones.
    per_split = {}
    for split_info in tiny["splits"].values():
        per_split.update(json.loads(Path(split_info["det_db"]).read_text()))
    assert per_split == det_db


def test_seqinfo_and_seqmap_match_images(tiny):
    for split, split_info in tiny["splits"].items():
        seqmap = Path(split_info["seqmap"]).read_text().splitlines()
        assert seqmap[0] == "name"
        assert seqmap[1:] == sorted(os.listdir(split_info["split_dir"])) == split_info["sequences"]
    for seq_dir in _seq_dirs(tiny):
        ini = configparser.ConfigParser()
        ini.read(seq_dir / "seqinfo.ini")
        info = ini["Sequence"]
        images = sorted((seq_dir / "img1").iterdir())
        assert info["name"] == seq_dir.name
        assert info["imDir"] == "img1" and info["imExt"] == ".jpg"
        assert int(info["seqLength"]) == len(images) == 15
        assert [p.name for p in images] == [f"{t:08d}.jpg" for t in range(1, 16)]
        img = cv2.imread(str(images[0]))
        assert img.shape == (int(info["imHeight"]), int(info["imWidth"]), 3) == (96, 160, 3)


def test_gt_rows_well_formed_inside_image_unique_ids(tiny):
    for seq_dir in _seq_dirs(tiny):
        gt = _read_gt(seq_dir)
        assert len(gt) > 0
        frame, ident, x, y, w, h = gt[:, :6].T
        assert (gt[:, 6:] == 1).all()
        assert frame.min() >= 1 and frame.max() <= 15 and ident.min() >= 1
        assert (x >= 0).all() and (y >= 0).all() and (w >= 1).all() and (h >= 1).all()
        assert (x + w <= 160).all() and (y + h <= 96).all()
        pairs = set(zip(frame.tolist(), ident.tolist()))
        assert len(pairs) == len(gt), f"duplicate id in a frame of {seq_dir}"


def test_det_db_lines_format_sorted_and_scored(tiny):
    det_db = json.loads(Path(tiny["det_db_path"]).read_text())
    for key, lines in det_db.items():
        assert all(line.endswith("\n") and line.count(",") == 4 for line in lines), key
        dets = _parse_dets(lines)
        assert (np.diff(dets[:, 4]) <= 0).all(), f"{key} not sorted by descending score"
        assert ((dets[:, 4] >= 0.05) & (dets[:, 4] <= 0.99)).all()
        assert (dets[:, :2] >= 0).all() and (dets[:, 2:4] >= 2).all()
        assert (dets[:, 0] + dets[:, 2] <= 160 + 0.01).all() and (dets[:, 1] + dets[:, 3] <= 96 + 0.01).all()


def test_format_det_line_round_trips():
    line, = format_det_lines([12.345, 6.0, 30.5, 41.25, 0.87654], SYNTHETIC_ROUNDING)
    assert line == "12.35,6.00,30.50,41.25,0.8765\n"
    assert np.allclose(_parse_dets([line]), [[12.35, 6.0, 30.5, 41.25, 0.8765]])


# --------------------------------------------------------------------------- reproducibility


def test_same_seed_same_bytes_different_seed_differs(tiny, tmp_path):
    first = _all_files(Path(tiny["mot_path"]))
    again = _all_files(Path(_make_tiny(tmp_path / "again")["mot_path"]))
    assert set(first) == set(again)
    for name in ("DanceTrack/train/train0001/gt/gt.txt", "det_db_synthetic.json",
                 "DanceTrack/val/val0001/img1/00000007.jpg"):
        assert first[name] == again[name], name
    assert first == again

    other = _all_files(Path(_make_tiny(tmp_path / "other", seed=1)["mot_path"]))
    for name in ("DanceTrack/train/train0001/gt/gt.txt", "det_db_synthetic.json",
                 "DanceTrack/val/val0001/img1/00000007.jpg"):
        assert first[name] != other[name], name


def test_adding_sequences_keeps_earlier_ones(tmp_path):
    one = make_split(tmp_path / "a", "val", num_seqs=1, seed=3, **TINY)
    two = make_split(tmp_path / "b", "val", num_seqs=2, seed=3, **TINY)
    gt_one = (Path(one["split_dir"]) / "val0001" / "gt" / "gt.txt").read_bytes()
    gt_two = (Path(two["split_dir"]) / "val0001" / "gt" / "gt.txt").read_bytes()
    assert gt_one == gt_two


# --------------------------------------------------------------------------- skip / atomic


def test_skip_when_parameters_match_regenerate_when_they_differ(tmp_path):
    first = make_split(tmp_path, "val", num_seqs=1, seed=0, **TINY)
    gt_path = Path(first["split_dir"]) / "val0001" / "gt" / "gt.txt"
    mtime = gt_path.stat().st_mtime_ns
    second = make_split(tmp_path, "val", num_seqs=1, seed=0, **TINY)
    assert not first["skipped"] and second["skipped"]
    assert gt_path.stat().st_mtime_ns == mtime

    third = make_split(tmp_path, "val", num_seqs=1, seed=0, **{**TINY, "num_frames": 9})
    assert not third["skipped"]
    assert len(list((Path(third["split_dir"]) / "val0001" / "img1").iterdir())) == 9
    manifest = json.loads((tmp_path / "DanceTrack" / "val_synthetic.json").read_text())
    assert manifest["num_frames"] == [9, 9]
    assert not [p for p in (tmp_path / "DanceTrack").iterdir() if p.name.startswith(".")]


def test_interrupted_run_leaves_previous_split_intact(tmp_path, monkeypatch):
    make_split(tmp_path, "val", num_seqs=2, seed=0, **TINY)
    before = _all_files(tmp_path)
    calls = {"n": 0}
    real = synthetic._write_sequence

    def failing_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated interrupt")
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "_write_sequence", failing_write)
    with pytest.raises(KeyboardInterrupt):
        make_split(tmp_path, "val", num_seqs=2, seed=5, **TINY)
    assert calls["n"] == 2
    assert _all_files(tmp_path) == before
    assert not [p for p in (tmp_path / "DanceTrack").iterdir() if p.name.startswith(".")]


def test_refuses_to_replace_foreign_split(tmp_path):
    foreign = tmp_path / "DanceTrack" / "val" / "real0001"
    foreign.mkdir(parents=True)
    with pytest.raises(FileExistsError, match="manifest"):
        make_split(tmp_path, "val", num_seqs=1, **TINY)
    assert foreign.exists()
    make_split(tmp_path, "val", num_seqs=1, overwrite=True, **TINY)
    assert not foreign.exists()
    assert (tmp_path / "DanceTrack" / "val" / "val0001" / "gt" / "gt.txt").exists()


# --------------------------------------------------------------------------- content


def test_detections_overlap_gt_with_misses_and_false_positives(tiny):
    root = Path(tiny["mot_path"])
    det_db = json.loads(Path(tiny["det_db_path"]).read_text())
    matched = total = false_pos = 0
    true_scores, fp_scores = [], []
    for seq_dir in _seq_dirs(tiny):
        gt = _read_gt(seq_dir)
        split = seq_dir.parent.name
        for t in range(1, 16):
            boxes = gt[gt[:, 0] == t, 2:6]
            dets = _parse_dets(det_db[det_key(split, seq_dir.name, t)])
            iou = _xywh_iou(boxes, dets[:, :4]) if len(boxes) and len(dets) else np.zeros((len(boxes), len(dets)))
            total += len(boxes)
            matched += int((iou.max(axis=1, initial=0) > 0.5).sum())
            best = iou.max(axis=0, initial=0)
            false_pos += int((best < 0.3).sum())
            fp_scores += dets[best < 0.3, 4].tolist()
            true_scores += dets[best > 0.5, 4].tolist()
    assert total > 100
    assert 0.75 < matched / total < 0.995, (matched, total)  # most found, some missed
    assert false_pos >= 3
    assert 0.5 < np.median(true_scores) < 0.95
    assert np.median(fp_scores) < 0.4
    assert root.exists()


def test_occluded_dancers_are_missed_more_often(default_seqs):
    hit, vis = [], []
    for seq in default_seqs:
        for t in range(1, len(seq.frames) + 1):
            rows = seq.gt[:, 0] == t
            iou = _xywh_iou(seq.gt[rows, 2:6].astype(float), seq.dets[t - 1][:, :4])
            hit += (iou.max(axis=1, initial=0) > 0.5).tolist()
            vis += seq.visibility[rows].tolist()
    hit, vis = np.array(hit), np.array(vis)
    assert (vis < 0.4).sum() >= 10 and (vis > 0.9).sum() >= 100
    assert hit[vis > 0.9].mean() > 0.9
    assert hit[vis < 0.4].mean() < hit[vis > 0.9].mean() - 0.3


def test_some_dancers_leave_and_come_back(default_seqs):
    for seq in default_seqs:
        gaps = [ident for ident in np.unique(seq.gt[:, 1])
                if (np.diff(seq.gt[seq.gt[:, 1] == ident, 0]) > 1).any()]
        assert gaps, "no dancer left the frame and came back"


def test_dancers_occlude_each_other(default_seqs):
    for seq in default_seqs:
        best = 0.0
        for t in range(1, len(seq.frames) + 1):
            boxes = seq.gt[seq.gt[:, 0] == t, 2:6].astype(float)
            iou = _xywh_iou(boxes, boxes)
            np.fill_diagonal(iou, 0.0)
            best = max(best, float(iou.max(initial=0)))
        assert best > 0.3
        assert seq.visibility.min() < 0.5


def test_motion_is_not_linear(default_seqs):
    # Constant-velocity prediction from the two previous centres must miss noticeably.
    errors = []
    for seq in default_seqs:
        for ident in np.unique(seq.gt[:, 1]):
            rows = seq.gt[seq.gt[:, 1] == ident]
            rows = rows[(rows[:, 2] > 0) & (rows[:, 2] + rows[:, 4] < seq.width)]  # skip edge-clipped
            frames = rows[:, 0]
            centre = rows[:, 2:4] + rows[:, 4:6] / 2
            ok = (frames[2:] - frames[:-2]) == 2
            pred = 2 * centre[1:-1] - centre[:-2]
            errors += np.linalg.norm(pred - centre[2:], axis=1)[ok].tolist()
    assert np.mean(errors) > 1.0


def test_turning_changes_width_and_look():
    palette = synthetic._make_palettes(np.random.default_rng(0), 1)[0]
    front, front_mask, _ = synthetic._draw_dancer(40.0, 0.0, 0.0, 0.0, palette)
    side, side_mask, _ = synthetic._draw_dancer(40.0, math.pi / 2, 0.0, 0.0, palette)
    back, back_mask, _ = synthetic._draw_dancer(40.0, math.pi, 0.0, 0.0, palette)
    assert side.shape[1] < front.shape[1] - 3
    assert front_mask.sum() > side_mask.sum()
    assert front.shape == back.shape and (front_mask == back_mask).all()
    assert np.abs(front.astype(int) - back.astype(int)).sum() > 1000  # band and face hidden from behind


def test_cli_writes_dataset(tmp_path, capsys):
    from tools.make_synthetic import main

    info = main(["--out", str(tmp_path), "--num_train", "1", "--num_val", "1", "--frames", "6",
                 "--width", "128", "--height", "64", "--dancers", "2", "3", "--seed", "4"])
    det_db = json.loads((tmp_path / "det_db_synthetic.json").read_text())
    assert len(det_db) == 12
    assert set(info["splits"]) == {"train", "val"}
    assert info["splits"]["train"]["params"]["num_dancers"] == [2, 3]
    assert "det_db_synthetic.json" in capsys.readouterr().out


# --------------------------------------------------------------------------- properties


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), num_frames=st.integers(1, 5), width=st.integers(48, 200),
       height=st.integers(40, 160), num_dancers=st.integers(1, 6))
def test_any_seed_gives_well_formed_gt_and_dets(seed, num_frames, width, height, num_dancers):
    seq = simulate_sequence(seed, num_frames, width, height, num_dancers)
    assert len(seq.frames) == num_frames
    assert all(f.shape == (height, width, 3) and f.dtype == np.uint8 for f in seq.frames)
    gt = seq.gt
    assert gt.shape[1] == 6 and len(seq.visibility) == len(gt)
    frame, ident, x, y, w, h = gt.T
    assert ((frame >= 1) & (frame <= num_frames)).all()
    assert ((ident >= 1) & (ident <= num_dancers)).all()
    assert (x >= 0).all() and (y >= 0).all() and (w >= 1).all() and (h >= 1).all()
    assert (x + w <= width).all() and (y + h <= height).all()
    assert len(set(zip(frame.tolist(), ident.tolist()))) == len(gt)
    assert ((seq.visibility >= 0) & (seq.visibility <= 1)).all()
    for det in seq.dets:
        assert (np.diff(det[:, 4]) <= 0).all()
        assert (det[:, :2] >= 0).all() and (det[:, 0] + det[:, 2] <= width + 1e-9).all()
        assert (det[:, 1] + det[:, 3] <= height + 1e-9).all()
