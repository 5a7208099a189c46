"""The tracker as its own object: the streaming API against submit_dance.py, reset, torch.hub, bad input,
and one source for every threshold (upstream's post-build settings reach the memory too)."""
import json
import warnings

import cv2
import numpy as np
import pytest
import torch

import submit_dance
from models.tracker import Tracker
from tests.helpers import PARITY, REPO, SMALL_MODEL_ARGV, build_parity_model, frame_input, standin_state_dict

SEQS = {"dancetrack0001": 5, "dancetrack0002": 4}
W, H = 160, 96
RUN = ["--val_width", "64", "--val_max_size", "128", "--device", "cpu", "--num_workers", "0",
       "--score_threshold", "0.3", "--update_score_threshold", "0.3", "--split", "val"]
FLAGS = dict(val_width=64, val_max_size=128, score_threshold=0.3, update_score_threshold=0.3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A generated DanceTrack-format split, its det_db and a small model with stand-in weights."""
    root = tmp_path_factory.mktemp("mot")
    rng = np.random.default_rng(3)
    det_db = {}
    for seq, n in SEQS.items():
        img_dir = root / "DanceTrack" / "val" / seq / "img1"
        img_dir.mkdir(parents=True)
        (img_dir.parent / "seqinfo.ini").write_text(
            f"[Sequence]\nname={seq}\nimDir=img1\nframeRate=20\nseqLength={n}\nimWidth={W}\nimHeight={H}\nimExt=.jpg\n")
        for f in range(1, n + 1):
            img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
            boxes = [(10 + 6 * f, 12, 30, 50, 0.9), (90 - 4 * f, 30, 24, 40, 0.7), (120, 8 + 3 * f, 20, 30, 0.45)]
            for x, y, w, h, _ in boxes:
                cv2.rectangle(img, (x, y), (x + w, y + h), (255, 255, 255), -1)
            cv2.imwrite(str(img_dir / f"{f:08d}.jpg"), img)
            det_db[f"DanceTrack/val/{seq}/img1/{f:08d}.txt"] = [f"{x},{y},{w},{h},{s}\n" for x, y, w, h, s in boxes]
    (root / "det_db.json").write_text(json.dumps(det_db))
    ckpt = root / "small.pth"
    torch.save({"model": standin_state_dict(SMALL_MODEL_ARGV)}, ckpt)
    return root, ckpt, det_db


def config_file(tmp_path):
    path = tmp_path / "small.args"
    path.write_text(" ".join((REPO / "configs" / "motrv2.args").read_text().split() + SMALL_MODEL_ARGV))
    return path


def submit_lines(root, ckpt, out, memory):
    argv = (REPO / "configs" / "motrv2.args").read_text().split() + SMALL_MODEL_ARGV + RUN + [
        "--resume", str(ckpt), "--mot_path", str(root), "--det_db", "det_db.json", "--output_dir", str(out),
        "--exp_name", "run", "--memory", memory]
    assert submit_dance.main(argv) == 0
    return {seq: (out / "run" / f"{seq}.txt").read_text().splitlines() for seq in SEQS}


def api_lines(tracker, root, det_db):
    """What Tracker.update returns, as MOTChallenge lines (boxes to 2 decimals, as submit writes them)."""
    result = {}
    for seq, n in SEQS.items():
        tracker.reset()
        lines = []
        for f in range(1, n + 1):
            img = cv2.imread(str(root / "DanceTrack" / "val" / seq / "img1" / f"{f:08d}.jpg"))
            xywh = np.array([[float(v) for v in line.split(",")] for line in
                             det_db[f"DanceTrack/val/{seq}/img1/{f:08d}.txt"]])
            dets = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:4], xywh[:, 4:]], axis=1)
            out = tracker.update(dets, img)
            assert out.shape[1] == 8 and out.dtype == np.float64
            assert set(out[:, 6].tolist()) <= {0.0}  # one class
            assert all(-1 <= d < len(dets) for d in out[:, 7].tolist())
            lines += [(f, int(r[4]), r[0], r[1], r[2] - r[0], r[3] - r[1]) for r in out]
        result[seq] = lines
    return result


def assert_same(api, submitted):
    for seq in SEQS:
        mine, theirs = api[seq], [line.split(",") for line in submitted[seq]]
        assert len(mine) == len(theirs), seq
        for (frame, track_id, *box), ref in zip(mine, theirs):
            assert (frame, track_id) == (int(ref[0]), int(ref[1]))
            assert all(abs(a - float(b)) <= 0.01 for a, b in zip(box, ref[2:6])), (box, ref)


@pytest.mark.slow
@pytest.mark.parametrize("memory", ["none", "sparse"])
def test_update_returns_what_submit_dance_writes_and_reset_repeats_it(data, tmp_path, memory):
    root, ckpt, det_db = data
    submitted = submit_lines(root, ckpt, tmp_path, memory)
    assert sum(len(v) for v in submitted.values()) > 10, "too few boxes for the comparison to mean much"
    tracker = Tracker.from_checkpoint(ckpt, config=config_file(tmp_path), device="cpu", memory=memory, **FLAGS)
    first = api_lines(tracker, root, det_db)
    assert_same(first, submitted)
    assert api_lines(tracker, root, det_db) == first  # reset() then a rerun: the same again


@pytest.mark.slow
def test_torch_hub_load_gives_the_same_tracker(data, tmp_path):
    root, ckpt, det_db = data
    hub = torch.hub.load(str(REPO), "motrv2", source="local", checkpoint=str(ckpt), config=str(config_file(tmp_path)),
                         device="cpu", memory="sparse", trust_repo=True, **FLAGS)
    assert isinstance(hub, Tracker) and hub.config.memory.mode == "sparse" and hub.memory is not None
    direct = Tracker.from_checkpoint(ckpt, config=config_file(tmp_path), device="cpu", memory="sparse", **FLAGS)
    assert api_lines(hub, root, det_db) == api_lines(direct, root, det_db)


def test_rgb_frames_with_rgb_true_track_like_bgr_frames(data, tmp_path):
    root, ckpt, det_db = data
    img = cv2.imread(str(root / "DanceTrack" / "val" / "dancetrack0001" / "img1" / "00000001.jpg"))
    dets = np.array([[16, 12, 46, 62, 0.9]])
    bgr = Tracker.from_checkpoint(ckpt, config=config_file(tmp_path), device="cpu", **FLAGS)
    rgb = Tracker.from_checkpoint(ckpt, config=config_file(tmp_path), device="cpu", rgb=True, **FLAGS)
    np.testing.assert_array_equal(bgr.update(dets, img), rgb.update(torch.from_numpy(dets), img[..., ::-1].copy()))


@pytest.fixture(scope="module")
def tracker(data, tmp_path_factory):
    _, ckpt, _ = data
    return Tracker.from_checkpoint(ckpt, config=config_file(tmp_path_factory.mktemp("cfg")), device="cpu", **FLAGS)


@pytest.mark.parametrize("dets, img, message", [
    (np.zeros((2, 4)), None, r"\(N, 5\) or \(N, 6\)"),
    (np.zeros((5,)), None, r"\(N, 5\) or \(N, 6\)"),
    (np.array([[30, 10, 20, 40, 0.9]]), None, "x2 < x1"),
    (np.array([[10, 40, 20, 30, 0.9]]), None, "y2 < y1"),
    (np.array([[10, 10, np.nan, 40, 0.9]]), None, "NaN"),
    (np.zeros((0, 5)), np.zeros((H, W, 3), dtype=np.float32), "uint8"),
    (np.zeros((0, 5)), np.zeros((H, W), dtype=np.uint8), r"H x W x 3"),
    (np.zeros((0, 5)), np.zeros((H, W, 4), dtype=np.uint8), r"H x W x 3"),
])
def test_bad_input_is_refused_naming_what_was_expected(tracker, dets, img, message):
    tracker.reset()
    with pytest.raises(ValueError, match=message):
        tracker.update(dets, np.zeros((H, W, 3), dtype=np.uint8) if img is None else img)


def test_a_frame_size_change_needs_reset(tracker):
    tracker.reset()
    tracker.update(np.zeros((0, 5)), np.zeros((H, W, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="reset"):
        tracker.update(np.zeros((0, 5)), np.zeros((H + 2, W, 3), dtype=np.uint8))
    tracker.reset()
    assert tracker.update(np.zeros((0, 6)), np.zeros((H + 2, W, 3), dtype=np.uint8)).shape[1] == 8


def test_from_checkpoint_refuses_unknown_flags_and_configs_by_name(data):
    _, ckpt, _ = data
    with pytest.raises(ValueError, match="memroy"):
        Tracker.from_checkpoint(ckpt, memroy="sparse")
    with pytest.raises(ValueError, match="no_such_config"):
        Tracker.from_checkpoint(ckpt, config="no_such_config")
    with pytest.raises(ValueError, match="resume"):
        Tracker.from_checkpoint(ckpt, resume=str(ckpt))


def test_upstream_post_build_thresholds_reach_the_paper_memory():
    """Upstream's submit_dance.py builds the model, then sets `track_embed.score_thr` and `track_base`.
    The paper preset's "detected" test must follow that threshold (here 0.35, built with 0.5): the run
    equals one built with 0.35 from the start, and differs from a memory that kept the 0.5 of the build
    (so the case discriminates)."""
    from models.motr import RuntimeTrackerBase
    ref = torch.load(PARITY / "motrv2_reference.pt", weights_only=False)

    def run(threshold_at_build, threshold_after_build, memory_keeps_build_value=False):
        model, _ = build_parity_model(["--memory", "sparse", "--memory_preset", "paper", "--memory_tau", "0.01"])
        model.memory.detect_score = threshold_at_build  # as --update_score_threshold gives it at build time
        if memory_keeps_build_value:  # the bug: a copy taken at build time
            update = model.memory.update
            model.memory.update = lambda instances, detect_score=None: update(instances)
        model.track_embed.score_thr = threshold_after_build
        model.track_base = RuntimeTrackerBase(0.3, 0.3, 20)
        tracks, fields = None, []
        for frame, proposals in list(zip(ref["frames_uint8"], ref["proposals"]))[:4]:
            tracks = model.inference_single_image(frame_input(frame), ref["ori_img_size"], tracks,
                                                  proposals)["track_instances"]
            fields.append((tracks.obj_idxes.clone(), tracks.mem_padding_mask.clone(), tracks.prev_center.clone()))
        return fields

    def same(a, b):
        return all(len(x[0]) == len(y[0]) and all(torch.equal(u, v) for u, v in zip(x, y)) for x, y in zip(a, b))
    upstream = run(0.5, 0.35)
    assert same(upstream, run(0.35, 0.35))
    assert not same(upstream, run(0.5, 0.35, memory_keeps_build_value=True)), \
        "0.35 and 0.5 store alike on these frames: the test proves nothing"


def test_demo_refuses_flags_it_does_not_use(capsys):
    assert submit_dance.main(["--demo", "--memory", "sparse"]) == 2
    assert "--memory" in capsys.readouterr().err


def test_inert_upstream_flags_warn_only_when_set():
    from main import get_tracking_parser, warn_inert_flags
    parser = get_tracking_parser()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_inert_flags(parser.parse_args((REPO / "configs" / "motrv2.args").read_text().split())) == []
    with pytest.warns(UserWarning, match="--crop"):
        assert warn_inert_flags(parser.parse_args(["--crop", "--meta_arch", "motr"])) == ["crop"]
    assert "accepted for compatibility" in parser.format_help()
