"""Instances and box conversions: values asserted."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.structures import (Instances, box_cxcywh_to_xyxy, box_iou, box_xywh_to_cxcywh, box_xyxy_to_cxcywh,
                               box_xyxy_to_xywh, generalized_box_iou, inverse_sigmoid, matched_box_iou)


def make(n=4):
    return Instances((1, 1), scores=torch.arange(n, dtype=torch.float), ids=torch.arange(n) * 10,
                     boxes=torch.arange(n * 4, dtype=torch.float).view(n, 4))


def test_indexing_by_mask_index_slice_and_int():
    inst = make()
    assert inst[inst.scores > 1.5].ids.tolist() == [20, 30]
    assert inst[torch.tensor([3, 0])].ids.tolist() == [30, 0]
    assert inst[1:3].scores.tolist() == [1.0, 2.0]
    assert inst[2].ids.tolist() == [20] and len(inst[2]) == 1
    assert inst[-1].ids.tolist() == [30]
    assert inst[-2].ids.tolist() == [20]
    with pytest.raises(IndexError):
        inst[4]


def test_get_set_has_remove_and_length_check():
    inst = make()
    assert inst.has("ids") and inst.get("ids") is inst.ids
    inst.set("extra", torch.zeros(4))
    assert "extra" in inst and len(inst) == 4
    inst.remove("extra")
    assert not inst.has("extra")
    with pytest.raises(ValueError, match="length 3"):
        inst.bad = torch.zeros(3)
    with pytest.raises(AttributeError, match="no field 'nope'"):
        inst.nope


def test_cat_concatenates_every_field_in_order():
    a, b = make(2), make(3)
    b.ids = b.ids + 100
    c = Instances.cat([a, b])
    assert len(c) == 5
    assert c.ids.tolist() == [0, 10, 100, 110, 120]
    assert torch.equal(c.boxes[2:], b.boxes)


def test_cat_with_differing_fields_names_them():
    a, b = make(2), make(2)
    b.remove("scores")
    with pytest.raises(ValueError, match="scores"):
        Instances.cat([a, b])


def test_to_moves_and_casts_without_touching_the_original():
    inst = make()
    doubled = inst.to(torch.float64)
    assert doubled.scores.dtype == torch.float64 and inst.scores.dtype == torch.float32
    assert doubled.ids.dtype == torch.float64  # .to(dtype) casts every tensor field
    moved = inst.to("cpu")
    assert moved.ids.device.type == "cpu" and torch.equal(moved.ids, inst.ids)
    if torch.cuda.is_available():
        assert inst.to("cuda").ids.device.type == "cuda"


def test_clone_is_independent():
    inst = make()
    copy = inst.clone()
    copy.scores[0] = 99
    assert inst.scores[0] == 0


def test_empty_instances():
    empty = make()[torch.zeros(4, dtype=torch.bool)]
    assert len(empty) == 0
    assert len(Instances.cat([empty, make(2)])) == 2


def test_box_conversions_known_values():
    cxcywh = torch.tensor([[10.0, 20.0, 4.0, 6.0]])
    xyxy = torch.tensor([[8.0, 17.0, 12.0, 23.0]])
    assert torch.equal(box_cxcywh_to_xyxy(cxcywh), xyxy)
    assert torch.equal(box_xyxy_to_cxcywh(xyxy), cxcywh)
    assert torch.equal(box_xyxy_to_xywh(xyxy), torch.tensor([[8.0, 17.0, 4.0, 6.0]]))
    assert torch.equal(box_xywh_to_cxcywh(torch.tensor([[8.0, 17.0, 4.0, 6.0]])), cxcywh)


def test_iou_known_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    iou, union = box_iou(a, b)
    assert torch.allclose(iou, torch.tensor([[1 / 7, 1.0, 0.0]]))
    assert torch.allclose(union, torch.tensor([[7.0, 4.0, 5.0]]))
    assert torch.allclose(matched_box_iou(a.expand(3, 4), b), torch.tensor([1 / 7, 1.0, 0.0]))
    # GIoU of disjoint boxes: 0 - (enclosing - union) / enclosing = -(36 - 5) / 36
    assert torch.allclose(generalized_box_iou(a, b)[0, 2], torch.tensor(-31 / 36))


def test_inverse_sigmoid_inverts_and_stays_finite():
    x = torch.tensor([0.0, 0.25, 0.5, 0.9, 1.0])
    y = inverse_sigmoid(x)
    assert torch.isfinite(y).all()
    assert torch.allclose(y[1:4].sigmoid(), x[1:4], atol=1e-6)


boxes = st.tuples(st.floats(-100, 100), st.floats(-100, 100), st.floats(0.1, 50), st.floats(0.1, 50))


@settings(max_examples=50, deadline=None)
@given(st.lists(boxes, min_size=1, max_size=8))
def test_conversions_round_trip(rows):
    cxcywh = torch.tensor(rows, dtype=torch.float64)
    assert torch.allclose(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(cxcywh)), cxcywh, atol=1e-9)
    iou, _ = box_iou(box_cxcywh_to_xyxy(cxcywh), box_cxcywh_to_xyxy(cxcywh))
    assert torch.allclose(iou.diagonal(), torch.ones(len(rows), dtype=torch.float64))
    assert (iou >= 0).all() and (iou <= 1 + 1e-9).all()
