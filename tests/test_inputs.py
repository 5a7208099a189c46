"""Model input rules: the resize, det_db keys and lines, proposals."""
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from datasets.det_db import (EXACT, DetDBError, det_db_key, format_det_lines, load_det_db, lookup_detections,
                             parse_det_lines)
from models.inputs import image_to_input, proposals_from_detections, resized_shape


@pytest.mark.parametrize("hw, expected", [
    ((1080, 1920), (800, 1422)),   # DanceTrack: short side 800
    ((720, 1280), (800, 1422)),
    ((540, 960), (800, 1422)),
    ((500, 2000), (384, 1536)),    # long side would be 3200 > 1536: capped
    ((1920, 1080), (1422, 800)),   # portrait
    ((800, 800), (800, 800)),
])
def test_resize_rule(hw, expected):
    assert resized_shape(*hw) == expected


@settings(max_examples=100, deadline=None)
@given(st.integers(16, 4000), st.integers(16, 4000))
def test_resize_rule_holds_for_all_sizes(h, w):
    th, tw = resized_shape(h, w)
    assert max(th, tw) <= 1536
    assert min(th, tw) <= 800
    # either the short side is 800 (to int truncation) or the long side hit its cap
    assert min(th, tw) >= 799 or max(th, tw) >= 1535


def test_image_to_input_normalises_with_imagenet_statistics():
    img = np.full((8, 16, 3), 255, dtype=np.uint8)
    x = image_to_input(img, short=8, long_max=100)
    assert x.shape == (3, 8, 16)
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(x[:, 0, 0], expected)


def test_det_db_key():
    assert det_db_key("DanceTrack/val/dancetrack0004/img1/00000001.jpg") == \
        "DanceTrack/val/dancetrack0004/img1/00000001.txt"
    assert det_db_key("DanceTrack\\val\\s\\img1\\00000002.jpg") == "DanceTrack/val/s/img1/00000002.txt"


def test_parse_lines_values_and_blank_lines():
    dets = parse_det_lines(["10,20,30,40,0.9\n", "\n", "1.5,2.5,3,4,0.25"], "k")
    assert dets.tolist() == [[10, 20, 30, 40, 0.9], [1.5, 2.5, 3, 4, 0.25]]
    assert parse_det_lines([], "k").shape == (0, 5)


@pytest.mark.parametrize("line", ["1,2,3,4", "1,2,3,4,5,6", "a,2,3,4,0.5", "1,2,nan,4,0.5", "1,2,-3,4,0.5"])
def test_malformed_line_names_key_and_line_number(line):
    with pytest.raises(DetDBError, match=r"'seq/img1/00000007.txt', line 2"):
        parse_det_lines(["1,2,3,4,0.5\n", line], "seq/img1/00000007.txt")


def test_load_det_db_accepts_windows_keys_and_names_bad_files(tmp_path):
    path = tmp_path / "db.json"
    path.write_text(json.dumps({"DanceTrack\\val\\s\\img1\\00000001.txt": ["1,2,3,4,0.5\n"]}))
    db = load_det_db(str(path))
    assert list(db) == ["DanceTrack/val/s/img1/00000001.txt"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": [\n"1,2,3,4,5"\n')
    with pytest.raises(DetDBError, match="bad.json:"):
        load_det_db(str(bad))
    with pytest.raises(DetDBError, match="not found"):
        load_det_db(str(tmp_path / "none.json"))


def test_missing_frame_key():
    with pytest.raises(DetDBError, match="no entry for frame 'a/img1/00000003.txt'"):
        lookup_detections({}, "a/img1/00000003.txt")
    assert lookup_detections({}, "a/img1/00000003.txt", missing="empty").shape == (0, 5)


def test_proposals_are_normalised_centres():
    p = proposals_from_detections(np.array([[100.0, 50.0, 20.0, 40.0, 0.8]]), im_w=200, im_h=100)
    assert torch.allclose(p, torch.tensor([[0.55, 0.7, 0.1, 0.4, 0.8]]))


finite = st.floats(0, 4000, allow_nan=False, width=32)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(finite, finite, finite, finite, st.floats(0, 1, width=32)), max_size=20))
def test_any_well_formed_lines_parse_to_their_boxes(rows):
    lines = format_det_lines(rows, EXACT)
    parsed = parse_det_lines(lines, "k")
    assert parsed.shape == (len(rows), 5)
    assert np.allclose(parsed, np.array(rows, dtype=np.float64).reshape(-1, 5))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(finite, finite, finite, finite, finite), min_size=1, max_size=10),
       st.data(), st.sampled_from(["", "x", "1,2", "1,2,3,4,5,6", "1;2;3;4;5", "inf,1,1,1,1"]))
def test_any_malformed_line_raises_naming_its_line(rows, data, bad):
    lines = format_det_lines(rows, EXACT)
    if bad == "":
        return  # blank lines are allowed
    at = data.draw(st.integers(0, len(lines)))
    lines.insert(at, bad + "\n")
    with pytest.raises(DetDBError, match=rf"key 'k', line {at + 1}:"):
        parse_det_lines(lines, "k")
