"""The tracker as tracker users call it: model cards (the shipped weights, own-trained checkpoints,
explicit settings winning), boxmot's `update(dets, img, embs)` with each track's class, and
supervision's `sv.Detections` in and out."""
import argparse
import json
import logging
import shutil
import sys

import cv2
import numpy as np
import pytest
import torch

import engine
import submit_dance
from main import get_args_parser, get_tracking_parser
from models.card import (CardError, ModelCard, apply_card_defaults, card_path, given_dests, network_flag_names,
                         read_card, settings_for, write_card)
from models.config import model_args
from models.tracker import StreamingTracker, Tracker
from tests.helpers import REPO, SMALL_MODEL_ARGV, motrv2_argv, standin_state_dict
from tools import track_video

SHIPPED = REPO / "weights" / "synthetic_small.pth"
W, H = 160, 96
# What the demo tracks with (tools/demo.py before the card; weights/README.md).
DEMO_INPUT = (192, 320)
DEMO_THRESHOLDS = dict(miss_tolerance=5, update_score_threshold=0.4, track_nms_iou=0.9)


def network_values(args):
    return {name: getattr(args, name) for name in network_flag_names()}


# -- the shipped model's card ---------------------------------------------------------------------------
def test_shipped_card_holds_the_demo_settings_and_the_files_checksum():
    card = read_card(SHIPPED)  # verifies the sha256 against the file
    assert card is not None and card.name == "synthetic_small"
    assert (card.val_width, card.val_max_size) == DEMO_INPUT
    assert card.tracker == DEMO_THRESHOLDS
    assert card.sha256 == (REPO / "weights" / "synthetic_small.pth.sha256").read_text().split()[0]
    # the architecture is configs/synthetic_small.args' network, flag for flag
    assert network_values(model_args(None, card.flags())) == network_values(model_args("synthetic_small"))
    assert "synthetic" in card.trained_on


@pytest.fixture(scope="module")
def shipped():
    return Tracker.from_checkpoint(SHIPPED, device="cpu")


def test_from_checkpoint_with_no_config_uses_the_card(shipped, caplog):
    assert shipped.input_size == DEMO_INPUT
    assert {k: getattr(shipped.config, k) for k in DEMO_THRESHOLDS} == DEMO_THRESHOLDS
    assert shipped.settings_source == f"model card {card_path(SHIPPED)}"
    assert shipped.network.num_queries == 10  # the card's architecture was built (and loaded strictly)


def test_explicit_flags_and_config_win_over_the_card():
    flagged = Tracker.from_checkpoint(SHIPPED, device="cpu", miss_tolerance=9, val_width=160)
    assert flagged.config.miss_tolerance == 9 and flagged.input_size == (160, 320)
    assert flagged.config.update_score_threshold == 0.4  # the rest still from the card
    configured = Tracker.from_checkpoint(SHIPPED, config="synthetic_small", device="cpu")
    assert configured.settings_source == "config synthetic_small"
    assert configured.input_size == (800, 1536) and configured.config.miss_tolerance == 20


def test_command_lines_take_the_card_for_flags_not_given_even_at_their_default_value():
    argv = ["clip.mp4", "--resume", str(SHIPPED), "--miss_tolerance", "20", "--val_width", "256"]
    parser = track_video.get_parser()
    args = parser.parse_args(argv)
    given = given_dests(parser, argv)
    assert {"resume", "miss_tolerance", "val_width", "video"} <= given and "val_max_size" not in given
    card, changed = apply_card_defaults(args, given, SHIPPED)
    assert card is not None and "miss_tolerance" not in changed and "hidden_dim" in changed
    assert (args.miss_tolerance, args.val_width, args.val_max_size) == (20, 256, 320)  # given, given, card
    assert (args.update_score_threshold, args.track_nms_iou, args.hidden_dim) == (0.4, 0.9, 128)
    # the parser itself is unchanged (defaults restored after finding the given flags)
    assert parser.parse_args(["clip.mp4"]).miss_tolerance == 20
    sub = get_tracking_parser()
    sub_args = sub.parse_args(["--resume", str(SHIPPED), "--update_score_threshold", "0.6"])
    apply_card_defaults(sub_args, given_dests(sub, ["--resume", str(SHIPPED), "--update_score_threshold", "0.6"]),
                        SHIPPED)
    assert (sub_args.update_score_threshold, sub_args.miss_tolerance, sub_args.val_width) == (0.6, 5, 192)


# -- cards that are wrong -------------------------------------------------------------------------------
def test_a_bad_card_is_refused_naming_its_file_and_field(tmp_path):
    ckpt = tmp_path / "m.pth"
    shutil.copy(SHIPPED, ckpt)
    good = json.loads(card_path(SHIPPED).read_text())
    cases = [({"architecture": {**good["architecture"], "hidden_dimm": 64}}, "'hidden_dimm' is not a network flag"),
             ({"tracker": {"miss_tolerance": -1}}, "miss_tolerance"),
             ({"tracker": {"hidden_dim": 64}}, "'hidden_dim' is not a tracker or memory flag"),
             ({"val_width": 0}, "'val_width' must be a positive integer"),
             ({"sha256": "0" * 64}, "describes another file"),
             ({"colour": "red"}, "unknown card field 'colour'")]
    for change, expected in cases:
        card_path(ckpt).write_text(json.dumps({**good, **change}))
        with pytest.raises(CardError, match=expected) as info:
            read_card(ckpt)
        assert str(card_path(ckpt)) in str(info.value)
    card_path(ckpt).write_text("{not json")
    with pytest.raises(CardError, match="cannot read model card"):
        Tracker.from_checkpoint(ckpt, device="cpu")


# -- own-trained checkpoints --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A training checkpoint as engine.train saves it (model, epoch, args), of a small architecture."""
    root = tmp_path_factory.mktemp("trained")
    args = get_args_parser().parse_args(motrv2_argv(SMALL_MODEL_ARGV + ["--val_width", "64", "--num_queries", "7"]))
    ckpt = root / "checkpoint.pth"
    torch.save({"model": standin_state_dict(SMALL_MODEL_ARGV + ["--num_queries", "7"]), "epoch": 3,
                "args": engine._args_dict(args)}, ckpt)
    return ckpt, args


def test_an_own_trained_checkpoint_without_a_card_takes_its_training_args(trained):
    ckpt, args = trained
    tracker = Tracker.from_checkpoint(ckpt, device="cpu", val_max_size=128)
    assert tracker.settings_source == f"training args in {ckpt}"
    assert tracker.network.num_queries == 7 and tracker.input_size == (64, 128)
    assert tracker.config.miss_tolerance == 20  # not tuned: the defaults


def test_training_card_and_export_round_trip_the_settings(trained, tmp_path):
    ckpt, args = trained
    args = argparse.Namespace(**{**vars(args), "output_dir": str(tmp_path), "mot_path": "DATA"})
    engine.write_training_card(ckpt, args, epoch=3)
    card = read_card(ckpt)
    assert card.val_width == 64 and card.architecture["num_queries"] == 7 and card.tracker == {}
    assert network_values(model_args(None, card.flags())) == network_values(args)
    assert "mot_path DATA" in card.trained_on
    try:
        assert Tracker.from_checkpoint(ckpt, device="cpu").settings_source == f"model card {card_path(ckpt)}"
        # an export carries the card, re-hashed; tuned settings of a card already there are kept
        out = tmp_path / "export" / "small.pth"
        out.parent.mkdir()
        write_card(ModelCard(**{**card.to_json(), "tracker": {"miss_tolerance": 4}}), out)
        engine.export_model_weights(str(ckpt), str(out))
        exported = read_card(out)  # verifies its sha256 against the exported file
        assert exported.tracker == {"miss_tolerance": 4} and exported.name == "small"
        tracker = Tracker.from_checkpoint(out, device="cpu")
        assert tracker.config.miss_tolerance == 4 and tracker.input_size == (64, 1536)
    finally:
        card_path(ckpt).unlink()


def test_a_checkpoint_without_card_or_args_is_built_as_motrv2_and_says_so(tmp_path, caplog):
    ckpt = tmp_path / "motrv2_dancetrack.pth"
    ckpt.write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        args, source, loaded = settings_for(ckpt, None, {"score_threshold": 0.4}, load=lambda p: {"model": {}})
    assert source.startswith("config motrv2 (no model card motrv2_dancetrack.card.json")
    assert network_values(args) == network_values(model_args("motrv2")) and args.score_threshold == 0.4
    with pytest.raises(ValueError, match="memroy"):  # a misspelt flag before any file is read
        settings_for(tmp_path / "absent.pth", None, {"memroy": "sparse"}, load=None)


# -- boxmot's shape: embs ignored, cls of the detection a track was born from -----------------------------------
@pytest.fixture(scope="module")
def scene():
    """Frames with three moving white boxes, their detections with classes 2, 5, 7."""
    rng = np.random.default_rng(5)
    frames, dets = [], []
    for f in range(1, 6):
        img = rng.integers(0, 80, (H, W, 3), dtype=np.uint8)
        boxes = [(10 + 6 * f, 12, 30, 50, 0.9, 2), (90 - 4 * f, 30, 24, 40, 0.8, 5), (120, 8 + 3 * f, 20, 30, 0.7, 7)]
        for x, y, w, h, _, _ in boxes:
            cv2.rectangle(img, (x, y), (x + w, y + h), (255, 255, 255), -1)
        frames.append(img)
        dets.append(np.array([[x, y, x + w, y + h, s, c] for x, y, w, h, s, c in boxes], dtype=np.float64))
    return frames, dets


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("small") / "small.pth"
    torch.save({"model": standin_state_dict(SMALL_MODEL_ARGV)}, ckpt)
    config = ckpt.with_suffix(".args")
    config.write_text(" ".join(motrv2_argv(SMALL_MODEL_ARGV)))
    return Tracker.from_checkpoint(ckpt, config=config, device="cpu", val_width=64, val_max_size=128,
                                   score_threshold=0.3, update_score_threshold=0.3)


def run(tracker, frames, dets, **kw):
    tracker.reset()
    return [tracker.update(d, img, **kw) for img, d in zip(frames, dets)]


def test_update_takes_boxmots_embs_and_ignores_them(small, scene):
    frames, dets = scene
    plain = run(small, frames, dets)
    embedded = run(small, frames, dets, embs=np.random.default_rng(0).normal(size=(3, 16)))
    assert all(np.array_equal(a, b) for a, b in zip(plain, embedded))
    with pytest.raises(ValueError, match="embs: 2 embeddings for 3 detections"):
        run(small, frames, dets, embs=np.zeros((2, 16)))
    assert isinstance(small, StreamingTracker)


def test_each_track_keeps_the_class_of_the_detection_it_was_born_from(small, scene):
    frames, dets = scene
    outputs = run(small, frames, dets)
    born = {}  # id -> class of the detection at the track's first box
    for frame_dets, rows in zip(dets, outputs):
        for row in rows:
            track_id, cls, det_ind = int(row[4]), row[6], int(row[7])
            if det_ind >= 0:  # a box from a proposal of this frame: that detection's class
                assert cls == frame_dets[det_ind, 5]
            born.setdefault(track_id, cls)
            assert cls == born[track_id]  # kept for the track's life
    assert len({c for c in born.values() if c != 0}) >= 2, "the scene should start tracks from several classes"
    # without a class column every track is class 0, and nothing else changes
    five = [d[:, :5] for d in dets]
    unclassed = run(small, frames, five)
    for a, b in zip(outputs, unclassed):
        assert np.array_equal(np.delete(a, 6, axis=1), np.delete(b, 6, axis=1)) and not b[:, 6].any()
    with pytest.raises(ValueError, match="row 0 has class 2.5"):
        small.update(np.array([[1, 1, 20, 20, 0.9, 2.5]]), frames[0])


# -- supervision --------------------------------------------------------------------------------------------
def test_update_detections_gives_the_ids_and_boxes_of_update(small, scene):
    sv = pytest.importorskip("supervision")
    frames, dets = scene
    expected = run(small, frames, dets)
    small.reset()
    for img, d, rows in zip(frames, dets, expected):
        got = small.update_detections(sv.Detections(xyxy=d[:, :4], confidence=d[:, 4], class_id=d[:, 5].astype(int)),
                                      img)
        assert isinstance(got, sv.Detections) and len(got) == len(rows)
        assert np.array_equal(got.tracker_id, rows[:, 4].astype(int))
        assert np.allclose(got.xyxy, rows[:, :4], atol=1e-4) and np.allclose(got.confidence, rows[:, 5], atol=1e-6)
        assert np.array_equal(got.class_id, rows[:, 6].astype(int))
        assert np.array_equal(got.data["det_index"], rows[:, 7].astype(int))
    small.reset()
    empty = small.update_detections(sv.Detections.empty(), frames[0])  # no confidence / class_id: allowed
    assert empty.tracker_id is not None and len(empty.tracker_id) == len(empty)


def test_update_detections_without_supervision_says_what_to_install(small, scene, monkeypatch):
    monkeypatch.setitem(sys.modules, "supervision", None)  # import supervision now raises ImportError
    with pytest.raises(ImportError, match="pip install supervision"):
        small.update_detections(object(), scene[0][0])


def test_submit_dance_resume_takes_the_architecture_and_settings_from_the_card(shipped, scene, tmp_path, capsys):
    frames, dets = scene
    seq_dir = tmp_path / "DanceTrack" / "val" / "dancetrack0001"
    (seq_dir / "img1").mkdir(parents=True)
    (seq_dir / "seqinfo.ini").write_text(f"[Sequence]\nname=dancetrack0001\nimDir=img1\nframeRate=20\n"
                                         f"seqLength={len(frames)}\nimWidth={W}\nimHeight={H}\nimExt=.png\n")
    det_db = {}
    for f, (img, d) in enumerate(zip(frames, dets), start=1):
        cv2.imwrite(str(seq_dir / "img1" / f"{f:08d}.png"), img)
        det_db[f"DanceTrack/val/dancetrack0001/img1/{f:08d}.txt"] = [
            f"{x1},{y1},{x2 - x1},{y2 - y1},{s}\n" for x1, y1, x2, y2, s, _ in d.tolist()]
    (tmp_path / "det_db.json").write_text(json.dumps(det_db))
    # no architecture flags at all: the card has them
    assert submit_dance.main(["--resume", str(SHIPPED), "--mot_path", str(tmp_path), "--det_db", "det_db.json",
                              "--output_dir", str(tmp_path / "out"), "--device", "cpu", "--num_workers", "0"]) == 0
    assert "from the model card" in capsys.readouterr().err
    written = (tmp_path / "out" / "submit" / "dancetrack0001.txt").read_text().splitlines()
    expected = [f"{f},{int(r[4])},{r[0]:.2f},{r[1]:.2f},{r[2] - r[0]:.2f},{r[3] - r[1]:.2f},1,-1,-1,-1"
                for f, rows in enumerate(run(shipped, frames, [d[:, :5] for d in dets]), start=1) for r in rows]
    assert len(written) > 5 and written == expected
