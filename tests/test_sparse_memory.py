"""Tests of models/sparse_memory.py on small hand-made Instances (no model needed)."""
import argparse
import math

import pytest
import torch
import torchvision
from hypothesis import given, settings, strategies as st, HealthCheck

from models.compat import memory_from_args
from models.memory import MEMORY_FIELDS, STRATEGIES, MemoryConfig, MemoryStrategy, build_memory, overlap_with_higher_boxes
from models.sparse_memory import add_memory_args
from models.structures import Instances, box_cxcywh_to_xyxy

D = 4


def make_memory(mode: str = "sparse", detect_score: float = 0.5, **fields) -> MemoryStrategy:
    """The strategy of a MemoryConfig (mode sparse unless told), as the tracker builds it."""
    return build_memory(MemoryConfig(mode=mode, **fields), detect_score)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def new_instances(memory: MemoryStrategy, n: int, d: int = D) -> Instances:
    inst = Instances((100, 100),
                     query_pos=torch.zeros(n, d),
                     pred_boxes=torch.full((n, 4), 0.1),
                     scores=torch.zeros(n),
                     obj_idxes=torch.full((n,), -1, dtype=torch.long))
    memory.init_fields(inst, d)
    return inst


def step(memory, inst, boxes, scores, queries, ids=None, first_boxes=None, **update_kwargs):
    """One frame: decoder boxes, after_forward, tracker ids, update."""
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    inst.pred_boxes = boxes
    inst.scores = torch.as_tensor(scores, dtype=torch.float32).reshape(-1)
    inst.query_pos = torch.as_tensor(queries, dtype=torch.float32).reshape(len(inst), -1)
    if ids is not None:
        inst.obj_idxes = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    first = boxes if first_boxes is None else torch.as_tensor(first_boxes, dtype=torch.float32).reshape(-1, 4)
    memory.after_forward(inst, first, boxes)
    memory.update(inst, **update_kwargs)


def filled(inst):
    return (~inst.mem_padding_mask).sum(1).tolist()


def q(value, d=D):
    return torch.full((d,), float(value))


# ----------------------------------------------------------------------------------- paper preset
def test_paper_still_object_stores_only_at_birth():
    mem = make_memory(preset="paper", size=4)
    inst = new_instances(mem, 1)
    assert inst.best_iou.item() == math.inf
    for t in range(1, 7):
        step(mem, inst, [[0.5, 0.5, 0.2, 0.2]], [0.9], q(t), ids=[0])
    assert filled(inst) == [1]
    assert inst.mem_frames_idx[0, -1].item() == 1
    assert torch.equal(inst.mem_bank[0, -1], q(1))
    assert inst.accum_dist.item() == 0.0
    assert inst.frame_idx.item() == 6


def test_paper_moving_object_stores_at_birth_and_after_third_move():
    mem = make_memory(preset="paper", size=4, tau=0.1)
    inst = new_instances(mem, 1)
    for t in range(1, 7):
        step(mem, inst, [[0.5 + 0.04 * (t - 1), 0.5, 0.2, 0.2]], [0.9], q(t), ids=[0])
        if t == 3:
            assert inst.accum_dist.item() == pytest.approx(0.08, abs=1e-6)  # two moves: below tau
            assert filled(inst) == [1]
    assert filled(inst) == [2]
    assert inst.mem_frames_idx[0, -2:].tolist() == [1, 4]
    # single track: overlap 0 every frame, ties go to the newest frame (<=), so frame 4's query
    assert torch.equal(inst.mem_bank[0, -1], q(4))
    assert torch.equal(inst.mem_bank[0, -2], q(1))
    assert inst.accum_dist.item() == pytest.approx(0.08, abs=1e-6)  # frames 5, 6 after the store
    assert inst.prev_center[0].tolist() == pytest.approx([0.7, 0.5])


def test_paper_oldest_slot_evicted_after_k_stores():
    mem = make_memory(preset="paper", size=3, tau=0.1)
    inst = new_instances(mem, 1)
    for t in range(1, 6):  # moves 0.15 each frame: every frame stores
        step(mem, inst, [[0.1 + 0.15 * (t - 1), 0.5, 0.1, 0.1]], [0.9], q(t), ids=[0])
    assert filled(inst) == [3]
    assert inst.mem_frames_idx[0].tolist() == [3, 4, 5]
    assert inst.mem_bank[0, :, 0].tolist() == [3.0, 4.0, 5.0]


def _pair_boxes(cx, dy):
    """Track A at (cx, 0.5) and B shifted down by dy; both 0.2 x 0.2."""
    return [[cx, 0.5, 0.2, 0.2], [cx, 0.5 + dy, 0.2, 0.2]]


def _iou_for_dy(dy):
    inter = 0.2 * max(0.2 - dy, 0.0)
    return inter / (0.08 - inter)


def test_paper_ofs_stores_lowest_overlap_feature_since_last_store():
    mem = make_memory(preset="paper", size=4, tau=0.1, ofs="min_iou")
    inst = new_instances(mem, 2)
    dys = [0.3, 0.1, 0.19, 0.15]  # A's overlap in frames 2..4: 1/3, ~0.026, ~0.143
    for t, dy in enumerate(dys, start=1):
        step(mem, inst, _pair_boxes(0.3 + 0.04 * (t - 1), dy), [0.9, 0.9],
             torch.stack([q(10 * t), q(10 * t + 1)]), ids=[0, 1])
        if t == 3:
            assert inst.best_iou[0].item() == pytest.approx(_iou_for_dy(0.19), rel=1e-4)
    # A moves 0.04 a frame: stores at birth and at frame 4, the frame-3 query (lowest overlap)
    assert filled(inst)[0] == 2
    assert inst.mem_frames_idx[0, -2:].tolist() == [1, 4]
    assert torch.equal(inst.mem_bank[0, -1], q(30))
    # B also moves in y: 0.204 by frame 2 (stores frame 2, its only candidate), then 0.098 + 0.057 by frame 4,
    # where the candidate is again frame 3's
    assert filled(inst)[1] == 3
    assert inst.mem_frames_idx[1, 1:].tolist() == [1, 2, 4]
    assert inst.mem_bank[1, 1:, 0].tolist() == [11.0, 21.0, 31.0]
    assert inst.best_iou.tolist() == [math.inf, math.inf]
    assert inst.best_features.abs().sum().item() == 0


def test_paper_latest_stores_the_storing_frames_query():
    mem = make_memory(preset="paper", size=4, tau=0.1, ofs="latest")
    inst = new_instances(mem, 2)
    for t, dy in enumerate([0.3, 0.1, 0.19, 0.15], start=1):
        step(mem, inst, _pair_boxes(0.3 + 0.04 * (t - 1), dy), [0.9, 0.9],
             torch.stack([q(10 * t), q(10 * t + 1)]), ids=[0, 1])
    assert torch.equal(inst.mem_bank[0, -1], q(40))


def test_paper_delay_waits_while_overlapped():
    mem = make_memory(preset="paper", size=4, tau=0.1, ofs="delay", delay_iou=0.1)
    inst = new_instances(mem, 2)
    dys = [0.3, 0.1, 0.1, 0.1, 0.1, 0.3]
    for t, dy in enumerate(dys, start=1):
        step(mem, inst, _pair_boxes(0.3 + 0.04 * (t - 1), dy), [0.9, 0.9],
             torch.stack([q(10 * t), q(10 * t + 1)]), ids=[0, 1])
        if t == 5:  # gate open since frame 4 (0.12) but overlap 1/3 > 0.1: still waiting
            assert filled(inst) == [1, 1]
            assert inst.accum_dist[0].item() == pytest.approx(0.16, abs=1e-6)
    assert filled(inst) == [2, 2]
    assert inst.mem_frames_idx[0, -2:].tolist() == [1, 6]
    assert torch.equal(inst.mem_bank[0, -1], q(60))  # frame 6 has overlap 0, the lowest
    assert inst.accum_dist[0].item() == 0.0
    # the same sequence without delay stores at frame 4
    mem2 = make_memory(preset="paper", size=4, tau=0.1, ofs="min_iou")
    inst2 = new_instances(mem2, 2)
    for t, dy in enumerate(dys, start=1):
        step(mem2, inst2, _pair_boxes(0.3 + 0.04 * (t - 1), dy), [0.9, 0.9],
             torch.stack([q(10 * t), q(10 * t + 1)]), ids=[0, 1])
    assert inst2.mem_frames_idx[0, -2:].tolist() == [1, 4]


def _run_pair(mem, dys, inst=None):
    """A at (0.3 + 0.06 (t-1), 0.5) and B shifted down by dys[t-1]; both detected, 0.2 x 0.2; queries 10t, 10t+1."""
    inst = new_instances(mem, 2) if inst is None else inst
    for t, dy in enumerate(dys, start=1):
        step(mem, inst, [[0.3 + 0.06 * (t - 1), 0.5, 0.2, 0.2], [0.3 + 0.06 * (t - 1), 0.5 + dy, 0.2, 0.2]],
             [0.9, 0.9], torch.stack([q(10 * t), q(10 * t + 1)]), ids=[0, 1])
        yield t, inst


def test_paper_delay_stores_the_storing_frames_own_query():
    # A and B overlap, by frame: 1/3 (born), 0.026, 1/3, 1/3, 1/7, 0.053
    dys = [0.1, 0.19, 0.1, 0.1, 0.15, 0.18]
    mem = make_memory(preset="paper", size=4, tau=0.1, ofs="delay", delay_iou=0.1, temporal_gap_reg=0.5)
    for t, inst in _run_pair(mem, dys):
        if t == 1:  # born: stores at once although the overlap (1/3) is above delay_iou
            assert filled(inst) == [1, 1] and inst.mem_bank[:, -1, 0].tolist() == [10.0, 11.0]
        if t == 2:  # A: overlap 0.026 is low but A has moved only 0.06 < tau
            assert filled(inst)[0] == 1 and inst.accum_dist[0].item() == pytest.approx(0.06, abs=1e-6)
        if t in (3, 4, 5):  # A: gate open (0.12, 0.18, 0.24) but overlap 1/3, 1/3, 1/7 > 0.1: waits, accumulates
            assert filled(inst)[0] == 1
            assert inst.accum_dist[0].item() == pytest.approx(0.06 * (t - 1), abs=1e-6)
        # no candidate with delay: best_iou / best_features keep their initial values (reg has nothing to act on)
        assert inst.best_iou.tolist() == [math.inf, math.inf]
        assert inst.best_features.abs().sum().item() == 0
    # A stores at frame 6 (overlap 0.053) frame 6's own query, not the lower-overlap frame 2's (q(20))
    assert filled(inst)[0] == 2
    assert inst.mem_frames_idx[0, -2:].tolist() == [1, 6]
    assert torch.equal(inst.mem_bank[0, -1], q(60))
    assert inst.accum_dist[0].item() == 0.0
    # B also moves in y: 0.108 by frame 2 with overlap 0.026 (stores frame 2), then its gate is open from
    # frame 3 on (0.108, 0.168, 0.246) while overlapped; stores at frame 6
    assert inst.mem_frames_idx[1, -3:].tolist() == [1, 2, 6]
    assert inst.mem_bank[1, -3:, 0].tolist() == [11.0, 21.0, 61.0]
    # OFS (min_iou) on the same frames stores A when the gate opens, at frames 3 (the frame-2 candidate) and 5
    for _, ofs_inst in _run_pair(make_memory(preset="paper", size=4, tau=0.1, ofs="min_iou"), dys):
        pass
    assert ofs_inst.mem_frames_idx[0, -3:].tolist() == [1, 3, 5]
    assert torch.equal(ofs_inst.mem_bank[0, -2], q(20))


def test_paper_delay_born_track_stores_at_birth_on_top_of_another():
    mem = make_memory(preset="paper", size=3, tau=0.1, ofs="delay", delay_iou=0.1)
    inst = new_instances(mem, 2)
    step(mem, inst, [[0.3, 0.5, 0.2, 0.2], [0.8, 0.5, 0.1, 0.1]], [0.9, 0.9], torch.stack([q(1), q(2)]), ids=[0, -1])
    assert filled(inst) == [1, 0]
    # the second query gets its id in frame 2 right on top of A (IoU 1): born, stores regardless
    step(mem, inst, [[0.3, 0.5, 0.2, 0.2], [0.3, 0.5, 0.2, 0.2]], [0.9, 0.9], torch.stack([q(3), q(4)]), ids=[0, 1])
    assert filled(inst) == [1, 1]
    assert inst.mem_frames_idx[:, -1].tolist() == [1, 2]
    assert torch.equal(inst.mem_bank[1, -1], q(4))
    assert inst.prev_center[1].tolist() == pytest.approx([0.3, 0.5])


def test_paper_delay_overlap_only_with_detected_tracks_and_detect_score_override():
    # A moves 0.15 in frame 2; C (score 0.6) lands on A.  Run X: detect_score 0.5 (C detected); run Y: the
    # caller passes detect_score=0.7 to update (C not detected), the module's own value is left as it was.
    frames = [([[0.2, 0.5, 0.2, 0.2], [0.8, 0.5, 0.2, 0.2]], [q(1), q(2)]),
              ([[0.35, 0.5, 0.2, 0.2], [0.35, 0.55, 0.2, 0.2]], [q(3), q(4)])]
    runs = {}
    for name, kwargs in (("X", {}), ("Y", {"detect_score": 0.7})):
        mem = make_memory(preset="paper", size=3, tau=0.1, ofs="delay", delay_iou=0.1, detect_score=0.5)
        inst = new_instances(mem, 2)
        for boxes, queries in frames:
            step(mem, inst, boxes, [0.9, 0.6], torch.stack(queries), ids=[0, 1], **kwargs)
        assert mem.detect_score == 0.5
        runs[name] = inst
    x, y = runs["X"], runs["Y"]
    # X: both born in frame 1; in frame 2 both gates are open but A and C overlap (IoU 0.6): nobody stores
    assert filled(x) == [1, 1] and x.mem_frames_idx[:, -1].tolist() == [1, 1]
    assert x.accum_dist.tolist() == pytest.approx([0.15, math.hypot(0.45, 0.05)], abs=1e-6)
    # Y: C is never detected (takes no part, does not count against A): A stores frame 2's query
    assert filled(y) == [2, 0]
    assert y.mem_frames_idx[0, -2:].tolist() == [1, 2] and torch.equal(y.mem_bank[0, -1], q(3))
    assert y.accum_dist.tolist() == [0.0, 0.0] and y.prev_center[1].tolist() == [0.0, 0.0]


def test_paper_detect_score_override_min_iou():
    mem = make_memory(preset="paper", size=3, detect_score=0.5)
    inst = new_instances(mem, 1)
    step(mem, inst, [[0.5, 0.5, 0.2, 0.2]], [0.6], q(1), ids=[0], detect_score=0.7)
    assert filled(inst) == [0] and inst.best_iou.item() == math.inf
    step(mem, inst, [[0.5, 0.5, 0.2, 0.2]], [0.6], q(2), ids=[0])  # the module's own 0.5
    assert filled(inst) == [1] and torch.equal(inst.mem_bank[0, -1], q(2))
    # the official preset has no detected test: the keyword changes nothing there
    off = make_memory(preset="official", size=3)
    a, b = new_instances(off, 1), new_instances(off, 1)
    first = [[0.3, 0.5, 0.2, 0.2]]
    step(off, a, [[0.5, 0.5, 0.2, 0.2]], [0.9], q(1), first_boxes=first, detect_score=0.95)
    step(off, b, [[0.5, 0.5, 0.2, 0.2]], [0.9], q(1), first_boxes=first)
    for k in off.state_fields():
        assert torch.equal(a.get(k), b.get(k)), k


def test_paper_missed_frame_changes_nothing():
    mem = make_memory(preset="paper", size=4, tau=0.1, detect_score=0.5)
    inst = new_instances(mem, 2)
    step(mem, inst, [[0.3, 0.5, 0.2, 0.2], [0.7, 0.5, 0.2, 0.2]], [0.9, 0.9], torch.stack([q(1), q(2)]), ids=[0, 1])
    before = {k: inst.get(k).clone() for k in mem.state_fields()}
    # B is missed (score below 0.5) and sits on top of A; A moves 0.05 (no store)
    step(mem, inst, [[0.35, 0.5, 0.2, 0.2], [0.35, 0.5, 0.2, 0.2]], [0.9, 0.3], torch.stack([q(3), q(4)]),
         ids=[0, 1])
    for k, v in before.items():
        if k == "frame_idx":
            assert inst.frame_idx[1].item() == v[1].item() + 1
        else:
            assert torch.equal(inst.get(k)[1], v[1]), k
    # A ignores the missed track's overlap
    assert inst.best_iou[0].item() == 0.0
    assert torch.equal(inst.best_features[0], q(3))
    assert inst.accum_dist[0].item() == pytest.approx(0.05, abs=1e-6)
    # an undetected new query (id -1) takes no part either
    inst3 = new_instances(mem, 1)
    step(mem, inst3, [[0.5, 0.5, 0.2, 0.2]], [0.9], q(1), ids=[-1])
    assert filled(inst3) == [0] and inst3.best_iou.item() == math.inf


def test_paper_state_follows_indexing_and_cat():
    mem = make_memory(preset="paper", size=3, tau=0.1)

    def boxes_a(t):
        return [0.2 + 0.06 * t, 0.2, 0.1, 0.1]

    def boxes_b(t):
        return [0.8, 0.3 + 0.07 * t, 0.1, 0.1]

    both = new_instances(mem, 2)
    only_b = new_instances(mem, 1)
    for t in range(1, 5):
        step(mem, both, [boxes_a(t), boxes_b(t)], [0.9, 0.9], torch.stack([q(t), q(-t)]), ids=[0, 1])
        step(mem, only_b, [boxes_b(t)], [0.9], q(-t), ids=[1])
    # QIM-like: keep B, add a fresh query
    kept = both[torch.tensor([False, True])]
    fresh = new_instances(mem, 1)
    merged = Instances.cat([kept, fresh])
    for k in mem.state_fields():
        assert torch.equal(merged.get(k)[0], only_b.get(k)[0]), k
    for t in range(5, 9):
        step(mem, merged, [boxes_b(t), [0.2, 0.8, 0.1, 0.1]], [0.9, 0.9], torch.stack([q(-t), q(100 + t)]),
             ids=[1, 2])
        step(mem, only_b, [boxes_b(t)], [0.9], q(-t), ids=[1])
    for k in mem.state_fields():
        assert torch.equal(merged.get(k)[0], only_b.get(k)[0]), k
    assert filled(only_b) == [3]
    # fresh still object: born at frame 1 of its own life (its frame_idx), stored once
    assert filled(merged)[1] == 1 and merged.mem_frames_idx[1, -1].item() == 1
    assert torch.equal(merged.mem_bank[1, -1], q(105))


@pytest.mark.parametrize("preset", ["paper", "official"])
def test_zero_tracks(preset):
    mem = make_memory(preset=preset, size=3)
    inst = new_instances(mem, 0)
    assert inst.mem_bank.shape == (0, 3, D) and inst.mem_padding_mask.shape == (0, 3)
    tgt = torch.randn(2, D)  # two non-instance rows (e.g. denoising queries) pass through
    assert torch.equal(mem.blend_decoder_input(tgt, inst), tgt)
    mem.after_forward(inst, torch.zeros(0, 4), torch.zeros(0, 4))
    mem.update(inst)
    assert len(inst) == 0 and inst.frame_idx.shape == (0,)
    merged = Instances.cat([inst, new_instances(mem, 2)])
    assert merged.mem_bank.shape == (2, 3, D)


# -------------------------------------------------------------------------------- official preset
def test_official_new_instance_takes_candidate_only_without_overlap():
    mem = make_memory(preset="official", size=3)
    inst = new_instances(mem, 3)
    assert inst.best_iou.tolist() == [0.0, 0.0, 0.0]
    boxes = [[0.2, 0.2, 0.2, 0.2], [0.3, 0.2, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1]]  # IoU(A, B) = 1/3
    step(mem, inst, boxes, [0.5, 0.5, 0.5], torch.stack([q(1), q(2), q(3)]))
    assert inst.best_iou.tolist() == [0.0, 0.0, 0.0]
    assert inst.best_features[:, 0].tolist() == [0.0, 0.0, 3.0]
    assert filled(inst) == [0, 0, 0]
    assert inst.frame_idx.tolist() == [1, 1, 1]


def test_official_store_gate_score_and_distance():
    mem = make_memory(preset="official", size=3, tau=0.1, store_score=0.8)
    inst = new_instances(mem, 4)
    last = torch.tensor([[0.1, 0.1, 0.05, 0.05], [0.3, 0.3, 0.05, 0.05],
                         [0.5, 0.5, 0.05, 0.05], [0.7, 0.7, 0.05, 0.05]])
    first = last.clone()
    first[:, 0] -= torch.tensor([0.15, 0.15, 0.05, 0.15])  # decoder-layer centre shifts
    step(mem, inst, last, [0.9, 0.7, 0.9, 0.8], torch.stack([q(1), q(2), q(3), q(4)]), first_boxes=first)
    # only track 0 has distance > 0.1 and score > 0.8 (0.8 itself is not enough)
    assert filled(inst) == [1, 0, 0, 0]
    assert inst.mem_frames_idx[0, -1].item() == 1
    assert torch.equal(inst.mem_bank[0, -1], q(1))  # no overlap: the candidate is this frame's query
    assert inst.best_iou.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert inst.best_features[:, 0].tolist() == [0.0, 2.0, 3.0, 4.0]
    assert inst.accum_dist.tolist() == pytest.approx([0.0, 0.15, 0.05, 0.15], abs=1e-6)
    # next frame: track 2 moves another 0.06 (0.11 > 0.1), track 1 still has score 0.7
    first = last.clone()
    first[2, 0] -= 0.06
    step(mem, inst, last, [0.9, 0.7, 0.9, 0.85], torch.stack([q(5), q(6), q(7), q(8)]), first_boxes=first)
    assert filled(inst) == [1, 0, 1, 1]
    assert inst.mem_frames_idx[:, -1].tolist() == [1, 0, 2, 2]
    assert inst.mem_bank[:, -1, 0].tolist() == [1.0, 0.0, 7.0, 8.0]
    # track 0 after its store: best_iou reset to 1, then o = 0 <= 1 takes the new query
    assert inst.best_iou[0].item() == 0.0 and inst.best_features[0, 0].item() == 5.0


def test_official_overlapped_new_instance_stores_zero_feature_and_forced_gap_store():
    mem = make_memory(preset="official", size=3, tau=0.1, max_frame_gap=10)
    inst = new_instances(mem, 2)
    boxes = [[0.2, 0.2, 0.2, 0.2], [0.3, 0.2, 0.2, 0.2]]  # IoU 1/3, still, low score
    for t in range(1, 11):
        step(mem, inst, boxes, [0.5, 0.5], torch.stack([q(t), q(-t)]))
    assert filled(inst) == [0, 0]  # frame gap 10 is not > 10
    step(mem, inst, boxes, [0.5, 0.5], torch.stack([q(11), q(-11)]))
    # forced store at frame 11; the candidate was never taken (o = 1/3 > best_iou = 0): zeros stored
    assert filled(inst) == [1, 1]
    assert inst.mem_frames_idx[:, -1].tolist() == [11, 11]
    assert inst.mem_bank[:, -1].abs().sum().item() == 0.0
    assert inst.best_iou.tolist() == [1.0, 1.0]
    step(mem, inst, boxes, [0.5, 0.5], torch.stack([q(12), q(-12)]))
    assert inst.best_iou.tolist() == pytest.approx([1 / 3, 1 / 3], rel=1e-5)
    assert inst.best_features[:, 0].tolist() == [12.0, -12.0]
    for t in range(13, 23):
        step(mem, inst, boxes, [0.5, 0.5], torch.stack([q(t), q(-t)]))
    assert inst.mem_frames_idx[:, -2:].tolist() == [[11, 22], [11, 22]]
    # equal overlap every frame and '<=': the newest frame's query wins
    assert inst.mem_bank[:, -1, 0].tolist() == [22.0, -22.0]


def test_official_temporal_gap_regularisation():
    mem = make_memory(preset="official", size=3, temporal_gap_reg=0.5, max_frame_gap=100)
    inst = new_instances(mem, 2)
    inst.best_iou = torch.tensor([0.2, 0.2])
    a = [0.2, 0.2, 0.2, 0.2]

    def b(dx):
        return [0.2 + dx, 0.2, 0.2, 0.2]
    # IoU for horizontal shift dx: (0.2 - dx) / (0.2 + dx); dx = 0.04 -> 0.6667 > 0.3, dx = 0.08 -> 0.4286
    step(mem, inst, [a, b(0.04)], [0.5, 0.5], torch.stack([q(1), q(2)]))
    assert inst.best_iou.tolist() == pytest.approx([0.3, 0.3])  # not taken, scaled by 1.5
    step(mem, inst, [a, b(0.08)], [0.5, 0.5], torch.stack([q(3), q(4)]))
    assert inst.best_iou.tolist() == pytest.approx([0.42857, 0.42857], rel=1e-4)  # 0.45 >= 0.4286: taken
    assert inst.best_features[:, 0].tolist() == [3.0, 4.0]


def test_official_delay_and_latest_variants():
    boxes = [[0.2, 0.2, 0.2, 0.2], [0.3, 0.2, 0.2, 0.2]]  # IoU 1/3
    first = torch.tensor(boxes)
    first[:, 0] -= 0.2
    results = {}
    for ofs in ("min_iou", "delay", "latest"):
        mem = make_memory(preset="official", size=3, ofs=ofs, delay_iou=0.1)
        inst = new_instances(mem, 2)
        step(mem, inst, boxes, [0.9, 0.9], torch.stack([q(1), q(2)]), first_boxes=first)
        results[ofs] = inst
    assert filled(results["min_iou"]) == [1, 1]
    assert results["min_iou"].mem_bank[:, -1].abs().sum().item() == 0.0  # authors' best_iou=0 start
    # the authors' delay only counts boxes whose bottom edge is strictly higher: equal y2 never blocks
    assert filled(results["delay"]) == [1, 1]
    assert results["delay"].mem_bank[:, -1, 0].tolist() == [1.0, 2.0]
    assert results["latest"].mem_bank[:, -1, 0].tolist() == [1.0, 2.0]


def test_official_delay_occlusion_counts_only_boxes_with_a_higher_bottom():
    # A: y 0.4..0.6; B below it, y 0.5..0.7 (IoU(A, B) = 1/3); C beside A with the same bottom, y 0.4..0.6
    # (IoU(A, C) = 1/3, IoU(B, C) = 1/7).  The authors' mask keeps (i, j) only where y2_j < y2_i, strictly:
    # B counts A and C against itself (occluded, 1/3 > 0.1); A and C count nothing (B is lower, the other
    # has the same y2).  All moved 0.2 between decoder layers (trigger open), scores 0.9.
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.5, 0.6, 0.2, 0.2], [0.6, 0.5, 0.2, 0.2]])
    first = boxes.clone()
    first[:, 0] -= 0.2
    mem = make_memory(preset="official", size=3, tau=0.1, ofs="delay", delay_iou=0.1, temporal_gap_reg=0.5)
    inst = new_instances(mem, 3)
    assert overlap_with_higher_boxes(boxes).tolist() == pytest.approx([0.0, 1 / 3, 0.0], rel=1e-5)
    step(mem, inst, boxes, [0.9, 0.9, 0.9], torch.stack([q(1), q(2), q(3)]), first_boxes=first)
    assert filled(inst) == [1, 0, 1]
    assert inst.mem_bank[:, -1, 0].tolist() == [1.0, 0.0, 3.0]  # the frame's own query_pos
    assert inst.mem_frames_idx[:, -1].tolist() == [1, 0, 1]
    assert inst.accum_dist.tolist() == pytest.approx([0.0, 0.2, 0.0], abs=1e-6)
    # frame 2: nobody moves between decoder layers; B drops to y 0.75..0.95, clear of A and C.  B's store
    # was due since frame 1 (accum 0.2 kept): it stores now, frame 2's query.  A and C: nothing due.
    boxes2 = boxes.clone()
    boxes2[1, 1] = 0.85
    step(mem, inst, boxes2, [0.9, 0.9, 0.9], torch.stack([q(4), q(5), q(6)]))
    assert filled(inst) == [1, 1, 1]
    assert inst.mem_bank[:, -1, 0].tolist() == [1.0, 5.0, 3.0]
    assert inst.mem_frames_idx[:, -1].tolist() == [1, 2, 1]
    assert inst.accum_dist.tolist() == [0.0, 0.0, 0.0]
    # no candidate with delay: best_iou / best_features keep the authors' initial 0
    assert inst.best_iou.tolist() == [0.0, 0.0, 0.0] and inst.best_features.abs().sum().item() == 0
    # swapping which box is lower swaps which one waits
    inst = new_instances(mem, 2)
    step(mem, inst, boxes[[1, 0]], [0.9, 0.9], torch.stack([q(1), q(2)]), first_boxes=first[[1, 0]])
    assert filled(inst) == [0, 1]


def test_official_delay_delays_the_forced_gap_store():
    # A above B (IoU 1/3), nothing moves between decoder layers, scores 0.9, max_frame_gap 3
    a, b_over, b_clear = [0.5, 0.5, 0.2, 0.2], [0.5, 0.6, 0.2, 0.2], [0.5, 0.9, 0.2, 0.2]
    mem = make_memory(preset="official", size=3, ofs="delay", delay_iou=0.1, max_frame_gap=3)
    inst = new_instances(mem, 2)
    for t in range(1, 8):
        step(mem, inst, [a, b_over if t < 7 else b_clear], [0.9, 0.9], torch.stack([q(t), q(-t)]))
        if t == 3:
            assert filled(inst) == [0, 0]  # gap 3 is not > 3
        if t in (4, 5, 6):  # gap 4, 5, 6 > 3: A stores at 4; B is occluded by A: waits
            assert filled(inst) == [1, 0]
    assert inst.mem_frames_idx[:, -1].tolist() == [4, 7]
    assert inst.mem_bank[:, -1, 0].tolist() == [4.0, -7.0]
    # without delay the forced gap store is not held back: both store at frame 4
    plain = make_memory(preset="official", size=3, ofs="min_iou", max_frame_gap=3)
    inst = new_instances(plain, 2)
    for t in range(1, 5):
        step(plain, inst, [a, b_over], [0.9, 0.9], torch.stack([q(t), q(-t)]))
    assert inst.mem_frames_idx[:, -1].tolist() == [4, 4]


def test_official_delay_score_gate_applies_to_gap_store_too():
    mem = make_memory(preset="official", size=3, ofs="delay", max_frame_gap=2, store_score=0.8)
    inst = new_instances(mem, 1)
    for t, score in enumerate([0.5, 0.5, 0.5, 0.5, 0.8, 0.85], start=1):  # still object, alone
        step(mem, inst, [[0.5, 0.5, 0.2, 0.2]], [score], q(t))
        if t == 5:  # gap 5 > 2 since frame 3, but score 0.5, then exactly 0.8 (not > 0.8): no store
            assert filled(inst) == [0]
    assert filled(inst) == [1]
    assert inst.mem_frames_idx[0, -1].item() == 6 and torch.equal(inst.mem_bank[0, -1], q(6))
    # without delay the gap store ignores the score: frame 3
    plain = make_memory(preset="official", size=3, max_frame_gap=2)
    inst = new_instances(plain, 1)
    for t in range(1, 4):
        step(plain, inst, [[0.5, 0.5, 0.2, 0.2]], [0.5], q(t))
    assert filled(inst) == [1] and inst.mem_frames_idx[0, -1].item() == 3


@pytest.mark.parametrize("preset", ["paper", "official"])
def test_delay_zero_tracks_and_dtype(preset):
    mem = make_memory(preset=preset, size=2, ofs="delay")
    inst = new_instances(mem, 0)
    mem.after_forward(inst, torch.zeros(0, 4), torch.zeros(0, 4))
    mem.update(inst, detect_score=0.3)
    assert len(inst) == 0
    # a float64 query is written into the float32 slot as float32
    inst = new_instances(mem, 1)
    first = [[0.2, 0.5, 0.2, 0.2]]
    step(mem, inst, [[0.5, 0.5, 0.2, 0.2]], [0.9], q(1), ids=[0], first_boxes=first)
    assert filled(inst) == [1]
    inst.query_pos = torch.full((1, D), 1 / 3, dtype=torch.float64)
    inst.pred_boxes = torch.tensor([[0.9, 0.5, 0.2, 0.2]])
    mem.after_forward(inst, torch.tensor([[0.5, 0.5, 0.2, 0.2]]), inst.pred_boxes)
    mem.update(inst)
    assert inst.mem_bank.dtype == torch.float32 and filled(inst) == [2]
    assert torch.equal(inst.mem_bank[0, -1], torch.full((D,), 1 / 3, dtype=torch.float32))


# ------------------------------------------------------------------------------------------ blend
def test_blend_hand_worked_and_rows_without_memory_unchanged():
    mem = make_memory(size=3)
    inst = new_instances(mem, 2, d=2)
    bank = torch.zeros(2, 3, 2)
    bank[0, 1] = torch.tensor([2.0, 6.0])
    bank[0, 2] = torch.tensor([4.0, 2.0])
    bank[1, 0] = torch.tensor([100.0, 100.0])  # padded slot: ignored
    inst.mem_bank = bank
    inst.mem_padding_mask = torch.tensor([[True, False, False], [True, True, True]])
    tgt = torch.tensor([[1.0, 0.0], [7.0, 8.0]])
    out = mem.blend_decoder_input(tgt, inst)
    assert out.tolist() == [[2.0, 2.0], [7.0, 8.0]]
    mem_a = make_memory(size=3, alpha=0.75)
    assert mem_a.blend_decoder_input(tgt, inst).tolist() == [[1.5, 1.0], [7.0, 8.0]]
    # extra rows (denoising queries) and a batch dimension pass through
    out3 = mem.blend_decoder_input(torch.cat([tgt, torch.ones(1, 2)])[None], inst)
    assert out3.tolist() == [[[2.0, 2.0], [7.0, 8.0], [1.0, 1.0]]]


def _memory_with_random_bank(seed, n, k, d):
    g = torch.Generator().manual_seed(seed)
    inst = Instances((10, 10), query_pos=torch.zeros(n, d))
    inst.mem_bank = torch.randn(n, k, d, generator=g) * 10
    inst.mem_padding_mask = torch.rand(n, k, generator=g) < 0.5
    tgt = torch.randn(n, d, generator=g) * 10
    return inst, tgt


@FAST
@given(seed=st.integers(0, 2 ** 31 - 1), n=st.integers(0, 5), k=st.integers(1, 4), d=st.integers(1, 6))
def test_blend_alpha_one_is_identity(seed, n, k, d):
    inst, tgt = _memory_with_random_bank(seed, n, k, d)
    out = make_memory(alpha=1.0, size=k).blend_decoder_input(tgt, inst)
    assert torch.equal(out, tgt)


@FAST
@given(seed=st.integers(0, 2 ** 31 - 1), n=st.integers(1, 5), k=st.integers(1, 4), d=st.integers(1, 6),
       alpha=st.floats(0.0, 1.0))
def test_blend_is_convex_combination(seed, n, k, d, alpha):
    inst, tgt = _memory_with_random_bank(seed, n, k, d)
    out = make_memory(alpha=alpha, size=k).blend_decoder_input(tgt, inst)
    has = (~inst.mem_padding_mask).any(1)
    assert torch.equal(out[~has], tgt[~has])
    filled_mask = (~inst.mem_padding_mask).unsqueeze(-1)
    mean = (inst.mem_bank * filled_mask).sum(1) / filled_mask.sum(1).clamp(min=1)
    lo, hi = torch.minimum(tgt, mean), torch.maximum(tgt, mean)
    tol = 1e-5 * (1 + tgt.abs() + mean.abs())
    assert bool(((out >= lo - tol) & (out <= hi + tol))[has].all())
    expected = alpha * tgt + (1 - alpha) * mean
    assert torch.allclose(out[has], expected[has], atol=1e-4)


# ------------------------------------------------------------------ reference rule, per track loop
def reference_update(cfg, inst):
    """The spec's rule written track by track with scalar tensors (independent of the vectorised code)."""
    n = len(inst)
    if n == 0:
        return
    paper = cfg["preset"] == "paper"
    boxes = inst.pred_boxes
    xyxy = box_cxcywh_to_xyxy(boxes)
    det = [(not paper) or (inst.obj_idxes[i].item() >= 0 and inst.scores[i].item() >= cfg["detect_score"])
           for i in range(n)]
    fields = {k: inst.get(k).clone() for k in inst.get_fields()}
    if cfg["ofs"] == "delay":
        reference_delay(cfg, inst, fields, det, xyxy)
        for k, v in fields.items():
            inst.set(k, v)
        return
    for i in range(n):
        if not det[i]:
            continue
        born = paper and bool(inst.mem_padding_mask[i].all())
        if paper:
            c = boxes[i, :2]
            if not born:
                fields["accum_dist"][i] = inst.accum_dist[i] + torch.norm(c - inst.prev_center[i], dim=-1)
            fields["prev_center"][i] = c
        o = torch.tensor(0.0)
        for j in range(n):
            if j != i and det[j]:
                o = torch.maximum(o, torchvision.ops.box_iou(xyxy[i:i + 1], xyxy[j:j + 1])[0, 0])
        best = inst.best_iou[i] * (1 + cfg["temporal_gap_reg"])
        feat = inst.best_features[i]
        if cfg["ofs"] == "latest" or o <= best:
            best, feat = o, inst.query_pos[i]
        if paper:
            gate = cfg["mode"] == "dense" or fields["accum_dist"][i] >= cfg["tau"]
        else:
            gate = (cfg["mode"] == "dense" or inst.accum_dist[i] > cfg["tau"]) and inst.scores[i] > cfg["store_score"]
        if cfg["ofs"] == "delay":
            gate = gate and o <= cfg["delay_iou"]
        if paper:
            store = born or gate
        else:
            store = gate or (inst.frame_idx[i] - inst.mem_frames_idx[i, -1]).item() > cfg["max_frame_gap"]
        if store:
            k = inst.mem_bank.shape[1]
            for s in range(k - 1):
                fields["mem_bank"][i, s] = inst.mem_bank[i, s + 1]
                fields["mem_padding_mask"][i, s] = inst.mem_padding_mask[i, s + 1]
                fields["mem_frames_idx"][i, s] = inst.mem_frames_idx[i, s + 1]
            fields["mem_bank"][i, k - 1] = feat
            fields["mem_padding_mask"][i, k - 1] = False
            fields["mem_frames_idx"][i, k - 1] = inst.frame_idx[i]
            fields["accum_dist"][i] = 0.0
            best = torch.tensor(math.inf if paper else 1.0)
            feat = torch.zeros_like(feat)
        fields["best_iou"][i] = best
        fields["best_features"][i] = feat
    for k, v in fields.items():
        inst.set(k, v)


def reference_shift_in(fields, inst, i, feat):
    k = inst.mem_bank.shape[1]
    for s in range(k - 1):
        fields["mem_bank"][i, s] = inst.mem_bank[i, s + 1]
        fields["mem_padding_mask"][i, s] = inst.mem_padding_mask[i, s + 1]
        fields["mem_frames_idx"][i, s] = inst.mem_frames_idx[i, s + 1]
    fields["mem_bank"][i, k - 1] = feat
    fields["mem_padding_mask"][i, k - 1] = False
    fields["mem_frames_idx"][i, k - 1] = inst.frame_idx[i]
    fields["accum_dist"][i] = 0.0


def reference_delay(cfg, inst, fields, det, xyxy):
    """--ofs delay, track by track: no candidate (best_* untouched), a store writes this frame's query.
    Comparisons on float32 scalar tensors, as in the module."""
    n = len(inst)
    paper = cfg["preset"] == "paper"
    for i in range(n):
        if not det[i]:
            continue
        o = torch.tensor(0.0)
        if paper:
            born = bool(inst.mem_padding_mask[i].all())
            if not born:
                fields["accum_dist"][i] = inst.accum_dist[i] + torch.norm(inst.pred_boxes[i, :2] - inst.prev_center[i])
            fields["prev_center"][i] = inst.pred_boxes[i, :2]
            for j in range(n):
                if j != i and det[j]:
                    o = torch.maximum(o, torchvision.ops.box_iou(xyxy[i:i + 1], xyxy[j:j + 1])[0, 0])
            gate = cfg["mode"] == "dense" or bool(fields["accum_dist"][i] >= cfg["tau"])
            store = born or (gate and bool(o <= cfg["delay_iou"]))
        else:
            # the authors' e98d85a: only boxes j with y2_j < y2_i (strictly) count against i
            for j in range(n):
                if j != i and bool(xyxy[j, 3] < xyxy[i, 3]):
                    o = torch.maximum(o, torchvision.ops.box_iou(xyxy[i:i + 1], xyxy[j:j + 1])[0, 0])
            gap = (inst.frame_idx[i] - inst.mem_frames_idx[i, -1]).item()
            trigger = cfg["mode"] == "dense" or gap > cfg["max_frame_gap"] or bool(inst.accum_dist[i] > cfg["tau"])
            store = trigger and not bool(o > cfg["delay_iou"]) and bool(inst.scores[i] > cfg["store_score"])
        if store:
            reference_shift_in(fields, inst, i, inst.query_pos[i])


def reference_after_forward(cfg, inst, first, last):
    if cfg["preset"] == "official" and len(inst):
        moves = torch.stack([torch.norm(last[i, :2] - first[i, :2], dim=-1) for i in range(len(inst))])
        inst.accum_dist = inst.accum_dist + moves
    inst.frame_idx = inst.frame_idx + 1


def random_frames(seed, n0, frames, grid=True, moving=False):
    """Random inputs: per frame boxes (on a coarse grid so ties, zero overlap and zero motion happen),
    scores, ids, queries, first-layer boxes, a keep mask and how many new queries join (QIM-like)."""
    g = torch.Generator().manual_seed(seed)
    out, n = [], n0
    for _ in range(frames):
        centers = torch.randint(2, 9, (n, 2), generator=g).float() / 10
        sizes = torch.randint(1, 4, (n, 2), generator=g).float() / 10
        boxes = torch.cat([centers, sizes], 1)
        first = boxes.clone()
        first[:, :2] -= torch.randint(0, 3, (n, 2), generator=g).float() / 20
        if moving:
            first[:, 0] -= 0.01
        scores = torch.tensor([0.3, 0.6, 0.85, 0.95])[torch.randint(0, 4, (n,), generator=g)]
        ids = torch.randint(-1, 3, (n,), generator=g)
        queries = torch.randn(n, D, generator=g)
        keep = torch.rand(n, generator=g) < 0.85
        joins = int(torch.randint(0, 2, (1,), generator=g))
        out.append((boxes, first, scores, ids, queries, keep, joins))
        n = int(keep.sum()) + joins
    return out


def run_sequence(mem, seq, n0, update_fn=None, after_fn=None):
    inst = new_instances(mem, n0)
    history = []
    for boxes, first, scores, ids, queries, keep, joins in seq:
        inst.pred_boxes, inst.scores, inst.obj_idxes, inst.query_pos = boxes, scores, ids, queries
        if after_fn is None:
            mem.after_forward(inst, first, boxes)
            mem.update(inst)
        else:
            after_fn(inst, first, boxes)
            update_fn(inst)
        history.append({k: inst.get(k).clone() for k in mem.state_fields()})
        inst = Instances.cat([inst[keep], new_instances(mem, joins)])
    return history


CONFIGS = st.fixed_dictionaries({
    "preset": st.sampled_from(["official", "paper"]),
    "mode": st.sampled_from(["sparse", "dense"]),
    "ofs": st.sampled_from(["min_iou", "latest", "delay"]),
    "size": st.integers(1, 3),
    "tau": st.sampled_from([0.0, 0.05, 0.1, 0.2]),
    "max_frame_gap": st.integers(1, 4),
    "store_score": st.sampled_from([0.5, 0.8]),
    "delay_iou": st.sampled_from([0.0, 0.1, 0.5]),
    "temporal_gap_reg": st.sampled_from([0.0, 0.25]),
    "detect_score": st.sampled_from([0.5, 0.8]),
})


def assert_histories_equal(h1, h2):
    assert len(h1) == len(h2)
    for t, (a, b) in enumerate(zip(h1, h2)):
        for k in a:
            assert a[k].shape == b[k].shape, (t, k)
            assert torch.equal(a[k], b[k]), f"frame {t + 1}, field {k}: {a[k]} vs {b[k]}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=CONFIGS, seed=st.integers(0, 2 ** 31 - 1), n0=st.integers(0, 4), frames=st.integers(1, 6))
def test_vectorised_update_matches_per_track_rule(cfg, seed, n0, frames):
    mem = make_memory(**cfg)
    seq = random_frames(seed, n0, frames)
    fast = run_sequence(mem, seq, n0)
    slow = run_sequence(mem, seq, n0, update_fn=lambda inst: reference_update(cfg, inst),
                        after_fn=lambda inst, f, b: reference_after_forward(cfg, inst, f, b))
    assert_histories_equal(fast, slow)
    # never more than K filled slots, filled slots packed at the end
    for state in fast:
        pad = state["mem_padding_mask"]
        assert pad.shape[1] == cfg["size"]
        assert bool((pad[:, 1:] <= pad[:, :-1]).all())  # True (empty) only before False (filled)


@FAST
@given(seed=st.integers(0, 2 ** 31 - 1), n0=st.integers(0, 4), frames=st.integers(1, 6),
       size=st.integers(1, 3))
def test_dense_equals_tau_zero_with_latest(seed, n0, frames, size):
    # paper preset: dense (default ofs) is exactly tau = 0 with ofs latest, for any inputs
    seq = random_frames(seed, n0, frames)
    dense = run_sequence(make_memory(preset="paper", mode="dense", size=size), seq, n0)
    tau0 = run_sequence(make_memory(preset="paper", mode="sparse", tau=0.0, ofs="latest", size=size), seq, n0)
    assert_histories_equal(dense, tau0)
    # official preset: same with ofs latest, whenever every instance moves between decoder layers
    seq = random_frames(seed, n0, frames, moving=True)
    dense = run_sequence(make_memory(preset="official", mode="dense", ofs="latest", size=size), seq, n0)
    tau0 = run_sequence(make_memory(preset="official", tau=0.0, ofs="latest", size=size), seq, n0)
    assert_histories_equal(dense, tau0)


@FAST
@given(seed=st.integers(0, 2 ** 31 - 1), n0=st.integers(0, 4), frames=st.integers(1, 6),
       preset=st.sampled_from(["paper", "official"]), mode=st.sampled_from(["sparse", "dense"]),
       tau=st.sampled_from([0.0, 0.1]), max_frame_gap=st.integers(1, 3))
def test_delay_with_delay_iou_one_stores_as_the_undelayed_gate(seed, n0, frames, preset, mode, tau, max_frame_gap):
    # IoU <= 1, so delay_iou = 1 never holds a store back: delay stores exactly where the undelayed gate
    # opens, the current query, i.e. as ofs='latest' (official: with every score above store_score, since
    # the authors' delayed gap store is score-gated and the undelayed one is not).  best_* never move.
    kw = dict(preset=preset, mode=mode, tau=tau, max_frame_gap=max_frame_gap, store_score=0.0, size=2)
    seq = random_frames(seed, n0, frames)
    delayed = run_sequence(make_memory(ofs="delay", delay_iou=1.0, **kw), seq, n0)
    latest = run_sequence(make_memory(ofs="latest", **kw), seq, n0)
    start = math.inf if preset == "paper" else 0.0
    for d, l in zip(delayed, latest):
        for k in d:
            if k in ("best_iou", "best_features"):
                assert bool((d["best_iou"] == start).all()) and bool((d["best_features"] == 0).all())
            else:
                assert torch.equal(d[k], l[k]), k


# -------------------------------------------------------------------------------------- config
def test_args_and_from_args():
    parser = add_memory_args(argparse.ArgumentParser())
    args = parser.parse_args([])
    assert args.memory == "none" and memory_from_args(args) is None
    assert (args.memory_preset, args.ofs, args.memory_size, args.memory_tau, args.memory_alpha,
            args.memory_max_frame_gap, args.memory_store_score, args.memory_delay_iou,
            args.memory_temporal_gap_reg) == ("official", "min_iou", 10, 0.1, 0.5, 10, 0.8, 0.1, 0.0)
    args = parser.parse_args(["--memory", "dense", "--memory_preset", "paper", "--ofs", "delay",
                              "--memory_size", "4", "--memory_tau", "0.05", "--memory_alpha", "0.7"])
    args.update_score_threshold = 0.33
    mem = memory_from_args(args)
    assert (mem.mode, mem.preset, mem.ofs, mem.size, mem.tau, mem.alpha, mem.detect_score) == \
        ("dense", "paper", "delay", 4, 0.05, 0.7, 0.33)
    assert list(mem.parameters()) == []
    assert make_memory(mode="none") is None
    with pytest.raises(ValueError, match="--memory: 'often'"):
        MemoryConfig(mode="often")
    with pytest.raises(ValueError, match="alpha"):
        make_memory(alpha=1.5)


@pytest.mark.parametrize("mode", ["sparse", "dense"])
@pytest.mark.parametrize("preset", ["official", "paper"])
@pytest.mark.parametrize("ofs", ["min_iou", "latest", "delay"])
def test_every_strategy_is_reachable_from_a_memory_config(mode, preset, ofs):
    mem = make_memory(mode=mode, preset=preset, ofs=ofs)
    assert type(mem) is STRATEGIES[(mode, preset, ofs)]
    assert (mem.mode, mem.preset, mem.ofs) == (mode, preset, ofs)


def test_the_registry_holds_one_class_per_strategy():
    assert len(set(STRATEGIES.values())) == len(STRATEGIES) == 12
    assert all((cls.mode, cls.preset, cls.ofs) == key for key, cls in STRATEGIES.items())


def test_missing_fields_error_names_them():
    mem = make_memory()
    inst = Instances((10, 10), query_pos=torch.zeros(2, D), scores=torch.zeros(2), pred_boxes=torch.zeros(2, 4))
    with pytest.raises(KeyError, match="init_fields"):
        mem.update(inst)
    assert set(MEMORY_FIELDS) <= set(new_instances(mem, 1).get_fields())


def test_distance_gate_boundary_paper_inclusive_official_strict():
    # a move of exactly tau (0.25 is exact in float32): the paper's gate is >=, the authors' is >
    paper = make_memory(preset="paper", size=3, tau=0.25)
    inst = new_instances(paper, 1)
    step(paper, inst, [[0.5, 0.5, 0.1, 0.1]], [0.9], q(1), ids=[0])
    step(paper, inst, [[0.75, 0.5, 0.1, 0.1]], [0.9], q(2), ids=[0])
    assert inst.mem_frames_idx[0, -2:].tolist() == [1, 2]

    official = make_memory(preset="official", size=3, tau=0.25)
    inst = new_instances(official, 1)
    step(official, inst, [[0.75, 0.5, 0.1, 0.1]], [0.9], q(1), first_boxes=[[0.5, 0.5, 0.1, 0.1]])
    assert inst.accum_dist.item() == 0.25 and filled(inst) == [0]
    step(official, inst, [[0.75, 0.5, 0.1, 0.1]], [0.9], q(2), first_boxes=[[0.74, 0.5, 0.1, 0.1]])
    assert filled(inst) == [1] and inst.mem_bank[0, -1, 0].item() == 2.0
