"""RuntimeTrackerBase: id birth / miss counting as upstream, and the optional track NMS."""
import pytest
import torch
import torchvision
from hypothesis import given, settings, strategies as st

from models.motr import RuntimeTrackerBase
from models.tracker import pixel_boxes, select_output
from models.structures import Instances, box_cxcywh_to_xyxy


def make_tracks(boxes, scores, obj_idxes):
    tracks = Instances((1, 1))
    tracks.pred_boxes = torch.tensor(boxes, dtype=torch.float32).view(-1, 4)
    tracks.scores = torch.tensor(scores, dtype=torch.float32)
    tracks.pred_logits = torch.logit(tracks.scores.clamp(1e-4, 1 - 1e-4))[:, None]
    tracks.obj_idxes = torch.tensor(obj_idxes, dtype=torch.long)
    tracks.disappear_time = torch.zeros(len(scores), dtype=torch.long)
    return tracks


def reported(base, tracks):
    return ((tracks.obj_idxes >= 0) & (tracks.scores >= base.filter_score_thresh)) | (
        (tracks.obj_idxes < 0) & (tracks.scores >= base.score_thresh))


BOX = st.tuples(st.floats(0.1, 0.9), st.floats(0.1, 0.9), st.floats(0.05, 0.4), st.floats(0.05, 0.4))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(BOX, st.floats(0.0, 1.0), st.integers(-1, 5)), min_size=1, max_size=12),
       st.floats(0.1, 0.9))
def test_nms_leaves_no_overlapping_pair_and_keeps_the_best(items, nms_iou):
    boxes = [list(b) for b, _, _ in items]
    scores = [s for _, s, _ in items]
    ids = [i for _, _, i in items]
    base = RuntimeTrackerBase(0.5, 0.5, 5, nms_iou=nms_iou)
    tracks = make_tracks(boxes, scores, ids)
    before = reported(base, tracks)
    base.suppress_overlaps(tracks)
    after = reported(base, tracks)
    # Only reported boxes can be suppressed, and suppression only lowers scores to 0.
    assert not (after & ~before).any()
    changed = tracks.scores != torch.tensor(scores)
    assert bool((tracks.scores[changed] == 0).all())
    # No two boxes still reported overlap by more than nms_iou.
    xyxy = box_cxcywh_to_xyxy(tracks.pred_boxes[after])
    iou = torchvision.ops.box_iou(xyxy, xyxy)
    iou.fill_diagonal_(0)
    assert (float(iou.max()) if iou.numel() else 0.0) <= nms_iou + 1e-6
    # The highest-scoring reported box always stays.
    if before.any():
        best = torch.nonzero(before).flatten()[torch.tensor(scores)[before].argmax()]
        assert bool(after[best])
    # Every suppressed box overlaps a kept box by more than nms_iou (nothing is dropped for free).
    for i in torch.nonzero(before & ~after).flatten().tolist():
        overlap = torchvision.ops.box_iou(box_cxcywh_to_xyxy(tracks.pred_boxes[i:i + 1]), xyxy)
        assert float(overlap.max()) > nms_iou - 1e-6


def test_suppressed_track_counts_a_miss_and_a_suppressed_query_gets_no_id():
    # Track 0 (score 0.9) and track 1 (0.7) sit on the same object; query 2 (0.8, no id) too;
    # track 3 is elsewhere.
    same = [0.5, 0.5, 0.2, 0.4]
    tracks = make_tracks([same, same, [0.52, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1]],
                         [0.9, 0.7, 0.8, 0.6], [0, 1, -1, 3])
    base = RuntimeTrackerBase(0.5, 0.5, 2, nms_iou=0.5)
    base.max_obj_id = 4
    base.update(tracks)
    assert tracks.obj_idxes.tolist() == [0, 1, -1, 3]  # the duplicate query is not born
    assert tracks.disappear_time.tolist() == [0, 1, 0, 0]
    assert tracks.scores.tolist()[1] == 0.0 and base.max_obj_id == 4
    # The output filter (scores are computed once, before the ids) drops the suppressed box.
    tracks.boxes = pixel_boxes(tracks, (10, 10))
    assert select_output(tracks, 0.5, area_threshold=0).ids.tolist() == [0, 3]
    tracks.scores = torch.tensor([0.9, 0.7, 0.1, 0.6])
    base.update(tracks)  # second suppressed frame: the miss tolerance (2) ends track 1
    assert tracks.obj_idxes.tolist() == [0, -1, -1, 3]


def test_without_nms_update_is_upstreams():
    same = [0.5, 0.5, 0.2, 0.4]
    tracks = make_tracks([same, same, same], [0.9, 0.7, 0.8], [0, 1, -1])
    base = RuntimeTrackerBase(0.5, 0.5, 2)
    base.max_obj_id = 2
    base.update(tracks)
    assert tracks.obj_idxes.tolist() == [0, 1, 2]  # duplicates are kept, the query is born
    assert tracks.scores.tolist() == pytest.approx([0.9, 0.7, 0.8])


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_bad_nms_iou_is_refused(bad):
    with pytest.raises(ValueError, match="nms_iou"):
        RuntimeTrackerBase(0.5, 0.5, 5, nms_iou=bad)


@pytest.mark.parametrize("bad", ["0", "1.5", "-0.2"])
def test_bad_track_nms_iou_is_refused_at_the_command_line(bad, capsys):
    from main import get_tracking_parser as get_submit_parser
    with pytest.raises(SystemExit):
        get_submit_parser().parse_args(["--track_nms_iou", bad])
    assert "--track_nms_iou" in capsys.readouterr().err
    assert get_submit_parser().parse_args(["--track_nms_iou", "0.9"]).track_nms_iou == 0.9
