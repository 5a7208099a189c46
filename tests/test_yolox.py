"""YOLOX-X detector: parity with the public yolox 0.3.0, checkpoint loading, pre/post-processing,
and the det_db maker (tools/make_detdb.py)."""
import argparse
import json
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy.optimize import linear_sum_assignment

REPO = Path(__file__).resolve().parents[1]
from tests.helpers import PARITY  # noqa: E402
sys.path.insert(0, str(REPO))

from models.yolox import (RGB_MEAN, RGB_STD, build_yolox, detect_frames, load_state_dict_strict,  # noqa: E402
                          load_yolox, postprocess, preproc)
from tools import make_detdb  # noqa: E402
from util.standin_weights import make_state_dict, make_tensor  # noqa: E402



def _manifest():
    with open(PARITY / "yolox_x_state_dict.json") as f:
        return json.load(f)["tensors"]


def _uninitialised(name):
    # Built on the meta device, then given storage: no random init (slow for YOLOX-X's 99M
    # parameters); every tensor is overwritten by the strict load that follows.
    with torch.device("meta"):
        model = build_yolox(name, num_classes=1)
    return model.to_empty(device="cpu")


@pytest.fixture(scope="module")
def yolox_x():
    """YOLOX-X with the parity fixtures' stand-in weights (make_tensor per name of the manifest)."""
    state = {e["name"]: make_tensor(e["name"], tuple(e["shape"]), e["dtype"]) for e in _manifest()}
    model = _uninitialised("yolox-x")
    load_state_dict_strict(model, {"model": state})
    return model.eval()


@pytest.fixture(scope="module")
def yolox_s_state():
    """make_tensor stand-in weights for YOLOX-S (same code, 1/10 the cost of X on the CPU)."""
    return make_state_dict(_uninitialised("yolox-s").state_dict())


@pytest.fixture(scope="module")
def yolox_s(yolox_s_state):
    model = _uninitialised("yolox-s")
    load_state_dict_strict(model, yolox_s_state)
    return model.eval()


# ----------------------------------------------------------------------------- architecture / parity

def test_state_dict_names_shapes_dtypes_match_official_yolox_x(yolox_x):
    ours = [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in yolox_x.state_dict().items()]
    official = [(e["name"], e["shape"], e["dtype"]) for e in _manifest()]
    assert ours == official
    bns = [m for m in yolox_x.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 and m.momentum == 0.03 for m in bns)


def test_parity_with_reference_raw_output_and_detections(yolox_x):
    ref = torch.load(PARITY / "yolox_x_reference.pt", weights_only=False)
    with torch.no_grad():
        raw = yolox_x(ref["input"])
    assert raw.shape == ref["raw"].shape
    # Per column (cx, cy, w, h, obj, cls): atol = 1e-3 of that column's largest magnitude.
    col_scale = ref["raw"].abs().amax(dim=(0, 1))
    col_err = (raw - ref["raw"]).abs().amax(dim=(0, 1))
    assert torch.all(col_err <= 1e-3 * col_scale), f"per-column max error {col_err} vs scale {col_scale}"

    dets = postprocess(raw, num_classes=1, conf_thre=0.1, nms_thre=0.7)[0]
    ref_dets = ref["dets"]
    assert dets.shape == ref_dets.shape
    # Survivors whose scores tie to float rounding may come in either order (the raw outputs differ
    # from the reference by ~1e-5), so each detection is paired with its nearest reference one.
    cost = torch.cdist(dets[:, :6].double(), ref_dets[:, :6].double())
    rows, cols = linear_sum_assignment(cost.numpy())
    ours_in_order, dets, ref_dets = dets, dets[rows], ref_dets[cols]
    box_scale = ref_dets[:, :4].abs().max()
    assert torch.allclose(dets[:, :4], ref_dets[:, :4], rtol=0, atol=1e-3 * box_scale)
    assert torch.allclose(dets[:, 4:6], ref_dets[:, 4:6], rtol=0, atol=1e-5)
    assert torch.equal(dets[:, 6], ref_dets[:, 6])
    # yolox returns NMS survivors in decreasing obj * cls_conf; so do we.
    scores = ours_in_order[:, 4] * ours_in_order[:, 5]
    assert torch.all(scores[:-1] >= scores[1:])


# ----------------------------------------------------------------------------- checkpoint loading

def test_mismatched_checkpoint_lists_missing_unexpected_and_misshaped_keys(yolox_x):
    # Only shapes matter: meta tensors have no storage, and the check runs before any copy.
    state = {e["name"]: torch.zeros(e["shape"], dtype=getattr(torch, e["dtype"]), device="meta")
             for e in _manifest()}
    before = yolox_x.head.reg_preds[0].bias.clone()
    del state["head.obj_preds.2.bias"]
    state["head.extra_conv.weight"] = torch.zeros(3)
    state["head.cls_preds.0.weight"] = torch.zeros(80, 320, 1, 1)  # an 80-class COCO head
    with pytest.raises(RuntimeError) as err:
        load_state_dict_strict(yolox_x, {"model": state}, source="coco.pth")
    message = str(err.value)
    assert "coco.pth" in message
    assert "1 missing" in message and "head.obj_preds.2.bias" in message
    assert "1 unexpected" in message and "head.extra_conv.weight" in message
    assert "1 mis-shaped" in message and "head.cls_preds.0.weight: checkpoint (80, 320, 1, 1) vs model (1, 320, 1, 1)" \
        in message
    assert torch.equal(yolox_x.head.reg_preds[0].bias, before), "a failed load must leave the model untouched"


def test_checkpoint_formats_load_the_same_weights(yolox_s_state):
    target = build_yolox("yolox-s")
    formats = {
        "bare": yolox_s_state,
        "yolox": {"model": yolox_s_state, "start_epoch": 10},
        "ddp": {"model": {"module." + k: v for k, v in yolox_s_state.items()}},
    }
    for name, checkpoint in formats.items():
        with torch.no_grad():
            for p in target.parameters():
                p.zero_()
        load_state_dict_strict(target, checkpoint)
        for k, v in target.state_dict().items():
            assert torch.equal(v, yolox_s_state[k]), f"{name}: {k}"


def test_load_yolox_from_file_needs_trust_for_pickled_objects(yolox_s_state, tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save({"model": yolox_s_state, "start_epoch": 3}, plain)
    loaded = load_yolox(plain, "cpu", name="yolox-s")
    assert not loaded.training
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, yolox_s_state[k]), k

    # Some training checkpoints also pickle Python objects (here: parsed arguments).
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": yolox_s_state, "args": argparse.Namespace(lr=0.1)}, pickled)
    with pytest.raises(RuntimeError, match="trust_checkpoint"):
        load_yolox(pickled, "cpu", name="yolox-s")
    loaded = load_yolox(pickled, "cpu", name="yolox-s", trust_checkpoint=True)
    assert torch.equal(loaded.head.stems[1].conv.weight, yolox_s_state["head.stems.1.conv.weight"])
    with pytest.raises(FileNotFoundError):
        load_yolox(tmp_path / "missing.pth", "cpu")


# ----------------------------------------------------------------------------- post-processing

def _iou(a, b):
    lt = np.maximum(a[:2], b[:2])
    rb = np.minimum(a[2:], b[2:])
    inter = np.prod(np.clip(rb - lt, 0, None))
    union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
    return inter / union


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 25), seed=st.integers(0, 2**31 - 1), conf=st.floats(0.0, 0.6),
       nms=st.floats(0.2, 0.9))
def test_postprocess_is_greedy_classwise_nms_over_confident_boxes(n, seed, conf, nms):
    rng = np.random.default_rng(seed)
    # Clustered boxes so that suppression actually happens.
    cxcy = rng.uniform(20, 60, (n, 2))
    wh = rng.uniform(5, 40, (n, 2))
    probs = rng.uniform(0, 1, (n, 3))  # obj, class 0, class 1
    pred = torch.tensor(np.concatenate([cxcy, wh, probs], 1)[None], dtype=torch.float32)
    pred_before = pred.clone()
    out = postprocess(pred, num_classes=2, conf_thre=conf, nms_thre=nms)[0].numpy()
    assert torch.equal(pred, pred_before), "input must not be modified"
    assert out.shape[1] == 7

    p = pred[0].numpy()
    boxes = np.concatenate([p[:, :2] - p[:, 2:4] / 2, p[:, :2] + p[:, 2:4] / 2], 1)
    cls = p[:, 5:7].argmax(1)
    cls_conf = p[:, 5:7].max(1)
    score = p[:, 4] * cls_conf
    candidates = np.flatnonzero(score >= conf)

    out_score = out[:, 4] * out[:, 5]
    assert np.all(out_score[:-1] >= out_score[1:]), "sorted by decreasing score"
    # Every output row is one candidate, unchanged (xyxy, obj, cls_conf, cls).
    kept = []
    for row in out:
        match = [i for i in candidates if np.allclose(row[:4], boxes[i], atol=1e-4)
                 and row[4] == p[i, 4] and row[5] == cls_conf[i] and row[6] == cls[i]]
        assert match, f"output row {row} is not a confident input box"
        kept.append(match[0])
    assert len(set(kept)) == len(kept)
    # Greedy NMS per class: survivors of one class overlap at most nms; each suppressed candidate
    # overlaps a survivor of its class with at least its score by more than nms.
    for a in range(len(kept)):
        for b in range(a + 1, len(kept)):
            if cls[kept[a]] == cls[kept[b]]:
                assert _iou(boxes[kept[a]], boxes[kept[b]]) <= nms + 1e-5
    for i in set(candidates) - set(kept):
        assert any(cls[k] == cls[i] and score[k] >= score[i] and _iou(boxes[k], boxes[i]) > nms - 1e-5
                   for k in kept), f"candidate {i} was dropped without a suppressor"


# ----------------------------------------------------------------------------- pre-processing

def _bytetrack_preproc(image, input_size, mean, std):
    """ByteTrack's recipe written out plainly in float64 (yolox/data/data_augment.py)."""
    padded = np.ones((input_size[0], input_size[1], 3)) * 114.0
    r = min(input_size[0] / image.shape[0], input_size[1] / image.shape[1])
    resized = cv2.resize(image, (int(image.shape[1] * r), int(image.shape[0] * r)),
                         interpolation=cv2.INTER_LINEAR).astype(np.float32)
    padded[:int(image.shape[0] * r), :int(image.shape[1] * r)] = resized
    padded = padded[:, :, ::-1] / 255.0
    padded = (padded - mean) / std
    return np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32), r


@settings(max_examples=25, deadline=None)
@given(h=st.integers(8, 120), w=st.integers(8, 120), th=st.sampled_from([32, 64, 96]),
       tw=st.sampled_from([32, 64, 160]), seed=st.integers(0, 1000))
def test_preproc_equals_bytetrack_recipe(h, w, th, tw, seed):
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ours, r = preproc(image, (th, tw))
    ref, ref_r = _bytetrack_preproc(image, (th, tw), RGB_MEAN, RGB_STD)
    assert r == ref_r
    assert ours.dtype == np.float32 and ours.shape == (3, th, tw)
    np.testing.assert_array_equal(ours, ref)


def test_preproc_swaps_to_rgb_and_pads_top_left_with_114():
    blue_bgr = np.zeros((50, 100, 3), dtype=np.uint8)
    blue_bgr[..., 0] = 255
    out, r = preproc(blue_bgr, (64, 96))
    assert r == pytest.approx(min(64 / 50, 96 / 100))
    content_h = int(50 * r)  # 48 rows of image, then 16 rows of padding
    expected_rgb = [(0 - RGB_MEAN[0]) / RGB_STD[0], (0 - RGB_MEAN[1]) / RGB_STD[1], (1 - RGB_MEAN[2]) / RGB_STD[2]]
    expected_pad = [(114 / 255 - m) / s for m, s in zip(RGB_MEAN, RGB_STD)]
    for c in range(3):
        np.testing.assert_allclose(out[c, :content_h], expected_rgb[c], atol=1e-6)
        np.testing.assert_allclose(out[c, content_h:], expected_pad[c], atol=1e-6)


# ----------------------------------------------------------------------------- det_db maker

TEST_SIZE = (128, 224)
LINE = re.compile(r"^-?\d+\.\d,-?\d+\.\d,-?\d+\.\d,-?\d+\.\d,\d\.\d\d\n$")


class CountingDetector(torch.nn.Module):
    """Wraps the detector, counting images seen; optionally interrupts after `stop_after` calls."""

    def __init__(self, model, stop_after=None):
        super().__init__()
        self.model, self.num_classes = model, model.num_classes
        self.images_seen, self.calls, self.stop_after = 0, 0, stop_after

    def forward(self, images):
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        self.images_seen += images.shape[0]
        return self.model(images)


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("mot")
    rng = np.random.default_rng(7)
    for s, (h, w) in enumerate([(72, 128), (90, 100)]):  # two aspect ratios: width- and height-limited
        img_dir = root / "DanceTrack" / "val" / f"dancetrack{s + 1:04d}" / "img1"
        img_dir.mkdir(parents=True)
        for f in range(3):
            image = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 0)
            cv2.imwrite(str(img_dir / f"{f + 1:08d}.jpg"), image)
    return root


def _run(root, model, out, *extra):
    argv = ["--mot_path", str(root), "--split", "val", "--output", str(out), "--checkpoint", "stand_in.pth",
            "--test_size", *map(str, TEST_SIZE), "--batch_size", "2", "--device", "cpu", *extra]
    return make_detdb.main(argv, model=model)


def test_make_detdb_writes_motrv2_det_db_and_resumes(yolox_s, tiny_split, tmp_path):
    counting = CountingDetector(yolox_s)
    out = tmp_path / "det_db.json"
    returned = _run(tiny_split, counting, out)
    with open(out) as f:
        det_db = json.load(f)
    assert det_db == returned
    assert counting.images_seen == 6
    assert not out.with_name(out.name + ".partial.jsonl").exists()
    expected_keys = {f"DanceTrack/val/dancetrack{s:04d}/img1/{f:08d}.txt" for s in (1, 2) for f in (1, 2, 3)}
    assert set(det_db) == expected_keys
    for key, lines in det_db.items():
        assert lines, f"{key}: stand-in weights give confident boxes everywhere"
        assert all(LINE.match(line) for line in lines), lines[:3]
        scores = [float(line.split(",")[4]) for line in lines]
        assert scores == sorted(scores, reverse=True) and min(scores) >= 0.05

    # One frame against a plain re-computation: network boxes / resize ratio, xyxy -> xywh.
    key = "DanceTrack/val/dancetrack0002/img1/00000003.txt"
    image = cv2.imread(str(tiny_split / key.replace(".txt", ".jpg")))
    tensor, ratio = preproc(image, TEST_SIZE)
    with torch.no_grad():
        dets = postprocess(yolox_s(torch.from_numpy(tensor)[None]), 1, 0.05, 0.7)[0]
    # As ByteTrackInference's save_dets, in float32: xyxy / r, then width = x2 - x1.
    boxes = dets[:, :4] / ratio
    boxes[:, 2:] -= boxes[:, :2]
    scores = dets[:, 4] * dets[:, 5]
    expected = [f"{x:.1f},{y:.1f},{w:.1f},{h:.1f},{s:.2f}\n"
                for (x, y, w, h), s in zip(boxes.tolist(), scores.tolist())]
    assert det_db[key] == expected

    # detect_frames (the video tool's entry point) gives the same numbers from in-memory frames.
    direct = detect_frames(yolox_s, [image], test_size=TEST_SIZE)[0]
    assert make_detdb.format_det_lines(direct) == expected

    # Interrupt during the second sequence, tear the partial file's tail, and rerun.
    resumed_out = tmp_path / "resumed.json"
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_split, CountingDetector(yolox_s, stop_after=2), resumed_out)  # seq 1 = 2 batches
    partial = resumed_out.with_name(resumed_out.name + ".partial.jsonl")
    assert partial.exists() and not resumed_out.exists()
    with open(partial, "a") as f:
        f.write('{"sequence": "DanceTrack/val/dancetrack0002", "det_db": {"Dan')
    counting = CountingDetector(yolox_s)
    resumed = _run(tiny_split, counting, resumed_out)
    assert counting.images_seen == 3, "only the unfinished sequence is detected again"
    with open(resumed_out) as f:
        assert json.load(f) == det_db == resumed
    assert not partial.exists()


def test_make_detdb_frames_mode_keeps_empty_frames_and_rejects_other_settings(yolox_s, tiny_split, tmp_path):
    seq = tiny_split / "DanceTrack" / "val" / "dancetrack0001" / "img1"
    out = tmp_path / "frames.json"
    argv = ["--frames", str(seq), "--output", str(out), "--checkpoint", "x.pth",
            "--test_size", *map(str, TEST_SIZE), "--score_floor", "0.99", "--device", "cpu"]
    det_db = make_detdb.main(argv, model=yolox_s)
    # Keys relative to the folder's parent; every frame present, none above the 0.99 floor.
    assert det_db == {f"dancetrack0001/img1/{f:08d}.txt": [] for f in (1, 2, 3)}

    # A partial file from a run with another score floor must not be mixed in.
    partial = out.with_name(out.name + ".partial.jsonl")
    partial.write_text(json.dumps({"settings": {"score_floor": 0.5}}) + "\n")
    with pytest.raises(SystemExit, match="^error: .*other settings"):
        make_detdb.main(argv, model=yolox_s)
