"""HungarianMatcher: optimal assignment and the cost it minimises."""
import itertools
import math
import types

import pytest
import torch
from hypothesis import given, settings, strategies as st

from models.matcher import HungarianMatcher, build_matcher
from models.structures import Instances


def naive_pair_cost(logit, box_q, box_g, w_class=2.0, w_bbox=5.0, w_giou=2.0, alpha=0.25, gamma=2.0):
    """The matching cost of one (query, target) pair, written out with Python floats."""
    p = 1 / (1 + math.exp(-logit))
    pos = alpha * (1 - p) ** gamma * -math.log(p + 1e-8)
    neg = (1 - alpha) * p ** gamma * -math.log(1 - p + 1e-8)
    l1 = sum(abs(a - b) for a, b in zip(box_q, box_g))

    def xyxy(b):
        return b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2

    a, b = xyxy(box_q), xyxy(box_g)
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    giou = inter / union - (hull - union) / hull
    return w_class * (pos - neg) + w_bbox * l1 + w_giou * -giou


def brute_force_min(cost):
    """Least total cost over all one-to-one assignments of min(Q, M) pairs."""
    n_q, n_g = len(cost), len(cost[0]) if cost else 0
    if n_g == 0 or n_q == 0:
        return 0.0
    if n_q >= n_g:
        return min(sum(cost[q][g] for g, q in enumerate(perm)) for perm in itertools.permutations(range(n_q), n_g))
    return min(sum(cost[q][g] for q, g in enumerate(perm)) for perm in itertools.permutations(range(n_g), n_q))


def random_boxes(gen, n):
    centre = torch.rand(n, 2, generator=gen) * 0.6 + 0.2
    size = torch.rand(n, 2, generator=gen) * 0.3 + 0.02
    return torch.cat([centre, size], dim=1).double()


@settings(max_examples=40, deadline=None)
@given(n_q=st.integers(1, 5), n_g=st.integers(0, 5), seed=st.integers(0, 2**31 - 1))
def test_assignment_is_optimal_and_cost_is_the_formula(n_q, n_g, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(1, n_q, 1, generator=gen) * 3).double()
    boxes = random_boxes(gen, n_q)[None]
    target = Instances((1, 1), labels=torch.zeros(n_g, dtype=torch.long), boxes=random_boxes(gen, n_g))
    matcher = HungarianMatcher()

    (rows, cols), = matcher({"pred_logits": logits, "pred_boxes": boxes}, [target])

    cost = [[naive_pair_cost(logits[0, q, 0].item(), boxes[0, q].tolist(), target.boxes[g].tolist())
             for g in range(n_g)] for q in range(n_q)]
    vectorised = matcher.cost_matrix(logits[0], boxes[0], target.labels, target.boxes)
    assert torch.allclose(vectorised, torch.tensor(cost, dtype=torch.float64).reshape(n_q, n_g), atol=1e-9)

    assert rows.dtype == cols.dtype == torch.int64
    assert len(rows) == len(cols) == min(n_q, n_g)
    assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
    assert rows.tolist() == sorted(rows.tolist())
    total = sum(cost[q][g] for q, g in zip(rows.tolist(), cols.tolist()))
    assert total == pytest.approx(brute_force_min(cost), abs=1e-9)


def test_batch_is_matched_image_by_image():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 1, generator=gen)
    boxes = torch.stack([random_boxes(gen, 4), random_boxes(gen, 4)]).float()
    targets = [{"labels": torch.zeros(3, dtype=torch.long), "boxes": random_boxes(gen, 3).float()},
               {"labels": torch.zeros(1, dtype=torch.long), "boxes": random_boxes(gen, 1).float()}]
    matcher = HungarianMatcher()
    batched = matcher({"pred_logits": logits, "pred_boxes": boxes}, targets)
    for b in range(2):
        alone = matcher({"pred_logits": logits[b:b + 1], "pred_boxes": boxes[b:b + 1]}, [targets[b]])[0]
        assert torch.equal(batched[b][0], alone[0]) and torch.equal(batched[b][1], alone[1])
    assert [len(r) for r, _ in batched] == [3, 1]


def test_hand_worked_cost_of_a_perfect_box_at_even_odds():
    # logit 0: p = 1/2, pos = 0.25 * 0.25 * ln2, neg = 0.75 * 0.25 * ln2, so the class cost is
    # -0.125 ln2; identical boxes: L1 0, GIoU 1.  Total 2 * (-0.125 ln2) + 2 * (-1).
    matcher = HungarianMatcher(cost_class=2, cost_bbox=5, cost_giou=2)
    box = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    cost = matcher.cost_matrix(torch.zeros(1, 1), box, torch.zeros(1, dtype=torch.long), box)
    assert cost.item() == pytest.approx(-0.25 * math.log(2) - 2, abs=1e-6)


def test_the_cheaper_query_wins():
    target = Instances((1, 1), labels=torch.zeros(1, dtype=torch.long), boxes=torch.tensor([[0.3, 0.3, 0.1, 0.1]]))
    boxes = torch.tensor([[[0.7, 0.7, 0.1, 0.1], [0.31, 0.3, 0.1, 0.1], [0.3, 0.3, 0.1, 0.1]]])
    # Query 2 sits on the target but is scored very unlikely; query 1 is 0.01 off but confident.
    logits = torch.tensor([[[0.0], [4.0], [-6.0]]])
    (rows, cols), = HungarianMatcher()({"pred_logits": logits, "pred_boxes": boxes}, [target])
    assert rows.tolist() == [1] and cols.tolist() == [0]
    (rows, _), = HungarianMatcher(cost_class=0)({"pred_logits": logits, "pred_boxes": boxes}, [target])
    assert rows.tolist() == [2]


def test_no_queries_or_no_targets_give_empty_matches():
    matcher = HungarianMatcher()
    empty_q = {"pred_logits": torch.zeros(1, 0, 1), "pred_boxes": torch.zeros(1, 0, 4)}
    target = Instances((1, 1), labels=torch.zeros(2, dtype=torch.long), boxes=torch.full((2, 4), 0.3))
    (rows, cols), = matcher(empty_q, [target])
    assert rows.numel() == 0 and cols.numel() == 0
    no_t = Instances((1, 1), labels=torch.zeros(0, dtype=torch.long), boxes=torch.zeros(0, 4))
    (rows, cols), = matcher({"pred_logits": torch.zeros(1, 3, 1), "pred_boxes": torch.full((1, 3, 4), 0.3)}, [no_t])
    assert rows.numel() == 0 and cols.numel() == 0


def test_non_finite_predictions_are_reported():
    target = Instances((1, 1), labels=torch.zeros(1, dtype=torch.long), boxes=torch.full((1, 4), 0.3))
    with pytest.raises(ValueError, match="NaN"):
        HungarianMatcher()({"pred_logits": torch.full((1, 2, 1), float("nan")),
                            "pred_boxes": torch.full((1, 2, 4), 0.3)}, [target])


def test_build_matcher_reads_the_cost_weights():
    args = types.SimpleNamespace(set_cost_class=1.5, set_cost_bbox=4.0, set_cost_giou=3.0, focal_alpha=0.25)
    matcher = build_matcher(args)
    assert (matcher.cost_class, matcher.cost_bbox, matcher.cost_giou) == (1.5, 4.0, 3.0)
    assert matcher.focal_loss and matcher.focal_alpha == 0.25 and matcher.focal_gamma == 2
    with pytest.raises(ValueError):
        HungarianMatcher(0, 0, 0)
