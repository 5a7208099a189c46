"""ClipMatcher (per-clip matching + losses), the focal loss and the loss weights."""
import math
import types

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from models.criterion import ClipMatcher, build_criterion, build_weight_dict, sigmoid_focal_loss
from models.matcher import HungarianMatcher
from models.structures import Instances

LN2 = math.log(2)
POS_AT_EVEN_ODDS = 0.25 * 0.25 * LN2  # focal loss of logit 0 on a positive: alpha * (1/2)^2 * ln 2
NEG_AT_EVEN_ODDS = 0.75 * 0.25 * LN2  # ... on a negative: (1 - alpha) * (1/2)^2 * ln 2


# -- sigmoid_focal_loss -------------------------------------------------------------------------
def test_focal_loss_hand_worked_values():
    loss = sigmoid_focal_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), num_boxes=1, mean_in_dim1=False)
    assert loss.item() == pytest.approx(POS_AT_EVEN_ODDS + NEG_AT_EVEN_ODDS, rel=1e-6)
    # mean over dim 1, then / num_boxes
    loss = sigmoid_focal_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), num_boxes=2, mean_in_dim1=True)
    assert loss.item() == pytest.approx((POS_AT_EVEN_ODDS + NEG_AT_EVEN_ODDS) / 2 / 2, rel=1e-6)
    # p = 3/4 on a positive: 0.25 * (1/4)^2 * -ln(3/4)
    loss = sigmoid_focal_loss(torch.tensor([[math.log(3)]]), torch.ones(1, 1), num_boxes=1, mean_in_dim1=False)
    assert loss.item() == pytest.approx(0.25 * 0.0625 * -math.log(0.75), rel=1e-6)
    # no alpha weighting when alpha < 0: (1/4)^2 * -ln(1/4) for p = 3/4 on a negative
    loss = sigmoid_focal_loss(torch.tensor([[math.log(3)]]), torch.zeros(1, 1), num_boxes=1, alpha=-1,
                              mean_in_dim1=False)
    assert loss.item() == pytest.approx(0.5625 * -math.log(0.25), rel=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(-8, 8), st.sampled_from([0.0, 1.0])), min_size=1, max_size=6))
def test_focal_loss_without_focusing_or_weighting_is_bce(pairs):
    logits = torch.tensor([[p[0] for p in pairs]], dtype=torch.float64)
    targets = torch.tensor([[p[1] for p in pairs]], dtype=torch.float64)
    ours = sigmoid_focal_loss(logits, targets, num_boxes=1, alpha=-1, gamma=0, mean_in_dim1=False)
    assert ours.item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, targets, reduction="sum").item(),
                                        rel=1e-9, abs=1e-12)


# -- ClipMatcher on hand-made frames ----------------------------------------------------------
def gt_frame(boxes, ids):
    return Instances((1, 1), boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                     labels=torch.zeros(len(ids), dtype=torch.long), obj_ids=torch.tensor(ids, dtype=torch.float64))


def tracks(obj_idxes, boxes, logits=None):
    n = len(obj_idxes)
    return Instances((1, 1), obj_idxes=torch.tensor(obj_idxes, dtype=torch.long),
                     matched_gt_idxes=torch.full((n,), -1, dtype=torch.long), iou=torch.ones(n),
                     pred_logits=torch.zeros(n, 1) if logits is None else torch.tensor(logits).reshape(n, 1),
                     pred_boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))


A = [0.25, 0.25, 0.1, 0.1]       # gt of object 7
B = [0.70, 0.60, 0.2, 0.2]       # gt of object 9
NEXT_TO_A = [0.35, 0.25, 0.1, 0.1]  # touches A: L1 0.1, IoU 0, GIoU 0
FAR = [0.8, 0.1, 0.05, 0.05]


def criterion():
    return ClipMatcher(1, HungarianMatcher(2, 5, 2), weight_dict={}, losses=["labels", "boxes"])


def test_tracked_gt_stays_with_its_track_and_new_gt_goes_to_the_cheapest_free_query():
    crit = criterion()
    crit.initialize_for_single_clip([gt_frame([A, B], [7, 9])])
    # q0 free & far, q1 free & exactly on B, q2 tracks object 7 (beside A, not on it),
    # q3 a false-positive track (-2) sitting on B: it must not be matched.
    frame_tracks = tracks([-1, -1, 7, -2], [FAR, B, NEXT_TO_A, B])
    aux = {"pred_logits": torch.zeros(1, 4, 1),  # in this layer q0 is the one on B
           "pred_boxes": torch.tensor([[B, FAR, NEXT_TO_A, B]])}
    ps_boxes = torch.tensor([[[0.25, 0.25, 0.1, 0.1], [0.75, 0.6, 0.2, 0.2]]])  # 2nd is 0.05 off in cx
    out = crit.match_for_single_frame({"track_instances": frame_tracks, "aux_outputs": [aux],
                                       "ps_outputs": [{"pred_logits": torch.zeros(1, 2, 1), "pred_boxes": ps_boxes}]})

    assert out.obj_idxes.tolist() == [-1, 9, 7, -2]
    assert out.matched_gt_idxes.tolist() == [-1, 1, 0, -1]
    assert out.iou.tolist() == pytest.approx([1.0, 1.0, 0.0, 1.0], abs=1e-6)  # q1 exact, q2 touching; others untouched

    losses = crit.losses_dict
    assert sorted(losses) == sorted(["frame_0_loss_ce", "frame_0_loss_bbox", "frame_0_loss_giou",
                                     "frame_0_aux0_loss_ce", "frame_0_aux0_loss_bbox", "frame_0_aux0_loss_giou",
                                     "frame_0_ps0_loss_bbox", "frame_0_ps0_loss_giou"])
    # all logits 0: two positives (q1, q2) and two background queries
    assert losses["frame_0_loss_ce"].item() == pytest.approx(2 * POS_AT_EVEN_ODDS + 2 * NEG_AT_EVEN_ODDS, rel=1e-5)
    assert losses["frame_0_loss_bbox"].item() == pytest.approx(0.1, abs=1e-6)   # q2 vs A; q1 exact
    assert losses["frame_0_loss_giou"].item() == pytest.approx(1.0, abs=1e-6)
    # aux layer: q0 matched to B this time (per-layer matching), q2 still on A
    assert losses["frame_0_aux0_loss_bbox"].item() == pytest.approx(0.1, abs=1e-6)
    assert losses["frame_0_ps0_loss_bbox"].item() == pytest.approx(0.05, abs=1e-6)
    # ps query 1: [0.65,0.5,0.85,0.7] vs B = [0.6,0.5,0.8,0.7]: inter 0.03, union 0.05 = hull
    assert losses["frame_0_ps0_loss_giou"].item() == pytest.approx(1 - 0.03 / 0.05, abs=1e-5)

    # forward divides by the number of gt boxes of the clip (2)
    normalised = crit({"losses_dict": dict(losses)}, None)
    assert normalised["frame_0_loss_bbox"].item() == pytest.approx(0.05, abs=1e-6)
    assert set(normalised) == set(losses)


def test_second_frame_keeps_tracks_and_gone_objects_become_background():
    crit = criterion()
    crit.initialize_for_single_clip([gt_frame([A, B], [7, 9]), gt_frame([B, A], [9, 11])])
    crit.match_for_single_frame({"track_instances": tracks([-1, -1], [A, B])})
    # frame 1: object 7 left, object 9 stays (now gt index 0), object 11 is new at A.
    frame1 = tracks([-1, 7, 9], [A, NEXT_TO_A, FAR])
    out = crit.match_for_single_frame({"track_instances": frame1})
    assert out.obj_idxes.tolist() == [11, 7, 9]
    assert out.matched_gt_idxes.tolist() == [1, -1, 0]
    assert crit.num_samples == 4
    loss = crit.losses_dict
    assert {k for k in loss if k.startswith("frame_1_")} == {"frame_1_loss_ce", "frame_1_loss_bbox", "frame_1_loss_giou"}
    # the gone track (q1) is a negative and has no box loss; q2 (FAR vs B) carries the box loss
    assert loss["frame_1_loss_ce"].item() == pytest.approx(2 * POS_AT_EVEN_ODDS + NEG_AT_EVEN_ODDS, rel=1e-5)
    far_vs_b = sum(abs(a - b) for a, b in zip(FAR, B))
    assert loss["frame_1_loss_bbox"].item() == pytest.approx(far_vs_b, abs=1e-5)
    with pytest.raises(IndexError, match="frame 2"):
        crit.match_for_single_frame({"track_instances": tracks([-1], [A])})


def test_padding_gt_has_no_box_loss_and_losses_have_gradients():
    crit = criterion()
    crit.initialize_for_single_clip([gt_frame([A, B], [7, -1])])  # obj_id -1: padding
    frame_tracks = tracks([-1, -1], [NEXT_TO_A, FAR])
    frame_tracks.pred_boxes.requires_grad_(True)
    frame_tracks.pred_logits.requires_grad_(True)
    crit.match_for_single_frame({"track_instances": frame_tracks})
    loss = crit.losses_dict
    assert loss["frame_0_loss_bbox"].item() == pytest.approx(0.1, abs=1e-6)  # only object 7
    sum(loss.values()).backward()
    assert frame_tracks.pred_boxes.grad.abs().sum() > 0 and frame_tracks.pred_logits.grad.abs().sum() > 0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_gt=st.integers(0, 5), n_free=st.integers(0, 5), n_tracked=st.integers(0, 4))
def test_matching_rules_hold_for_random_frames(seed, n_gt, n_free, n_tracked):
    gen = torch.Generator().manual_seed(seed)
    ids = (torch.randperm(8, generator=gen)[:n_gt] + 100).tolist()
    gt_boxes = torch.cat([torch.rand(n_gt, 2, generator=gen) * 0.6 + 0.2, torch.full((n_gt, 2), 0.1)], 1)
    # tracked queries follow ids from a pool that may or may not be in this frame
    pool = torch.randperm(12, generator=gen)[:n_tracked] + 100
    obj_idxes = [-1] * n_free + pool.tolist() + [-2]
    n = len(obj_idxes)
    boxes = torch.cat([torch.rand(n, 2, generator=gen) * 0.6 + 0.2, torch.full((n, 2), 0.1)], 1)
    crit = criterion()
    crit.initialize_for_single_clip([gt_frame(gt_boxes.tolist(), ids)])
    before = torch.tensor(obj_idxes)
    out = crit.match_for_single_frame({"track_instances": tracks(obj_idxes, boxes.tolist(),
                                                                 torch.randn(n, generator=gen).tolist())})
    matched = out.matched_gt_idxes
    # every gt is held by at most one query
    held = matched[matched >= 0].tolist()
    assert len(held) == len(set(held))
    # tracked queries keep their object (or -1 when it is not in the frame); FP tracks stay out
    for q in range(n):
        if before[q] >= 0:
            assert out.obj_idxes[q] == before[q]
            assert matched[q].item() == (ids.index(int(before[q])) if int(before[q]) in ids else -1)
    assert out.obj_idxes[-1] == -2 and matched[-1] == -1
    # new objects: as many as free queries and untracked gts allow, each query takes its gt's id
    untracked = n_gt - sum(int(i) in ids for i in pool.tolist())
    newly = [q for q in range(n_free) if matched[q] >= 0]
    assert len(newly) == min(n_free, untracked)
    for q in newly:
        assert out.obj_idxes[q].item() == ids[matched[q].item()]
    assert crit.num_samples == n_gt


# -- weights and builder ------------------------------------------------------------------------
def make_args(**over):
    args = dict(sampler_lengths=[5], dec_layers=6, aux_loss=True, cls_loss_coef=2.0, bbox_loss_coef=5.0,
                giou_loss_coef=2.0, set_cost_class=2.0, set_cost_bbox=5.0, set_cost_giou=2.0, focal_alpha=0.25,
                memory_bank_type=None, dataset_file="e2e_dance")
    args.update(over)
    return types.SimpleNamespace(**args)


def test_weight_dict_as_upstream_builds_it():
    weights = build_weight_dict(make_args())
    # per frame: 3 final + 5 aux layers x 3 + 6 denoising layers x 3
    assert len(weights) == 5 * (3 + 5 * 3 + 6 * 3)
    assert weights["frame_4_loss_ce"] == 2.0 and weights["frame_0_aux4_loss_bbox"] == 5.0
    assert weights["frame_2_ps5_loss_giou"] == 2.0 and "frame_0_aux5_loss_ce" not in weights
    assert len(build_weight_dict(make_args(aux_loss=False, sampler_lengths=[2, 3]))) == 3 * 3
    with_bank = build_weight_dict(make_args(memory_bank_type="MemoryBank", sampler_lengths=[2]))
    assert with_bank["frame_1_track_loss_ce"] == 2.0 and len(with_bank) == 2 * 37


def test_build_criterion():
    crit, weights = build_criterion(make_args())
    assert isinstance(crit, ClipMatcher) and crit.weight_dict is weights and crit.num_classes == 1
    assert (crit.matcher.cost_class, crit.matcher.cost_bbox, crit.matcher.cost_giou) == (2.0, 5.0, 2.0)
    # the class count comes from args.num_classes (engine.train sets it from the dataset registry)
    assert build_criterion(make_args(num_classes=3))[0].num_classes == 3


def test_weight_dict_needs_clip_lengths():
    with pytest.raises(ValueError, match="sampler_lengths"):
        build_weight_dict(make_args(sampler_lengths=None))
