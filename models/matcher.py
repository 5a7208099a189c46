"""Hungarian matching between queries and ground-truth boxes (DETR style, focal class cost).

The cost of giving query q the ground truth g is

    cost_class * C_cls(q, g) + cost_bbox * |box_q - box_g|_1 + cost_giou * (-GIoU(box_q, box_g))

with boxes in normalised cxcywh for the L1 term and in xyxy for GIoU.  With `focal_loss=True`
the class term is the focal loss of calling q positive minus the focal loss of calling it
negative (as MOTRv2 trains with a sigmoid focal loss), otherwise `-softmax prob`.
`scipy.optimize.linear_sum_assignment` then picks the one-to-one assignment of least total cost.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from models.structures import Instances, box_cxcywh_to_xyxy, generalized_box_iou


def _target_field(target, name: str) -> torch.Tensor:
    """`labels` / `boxes` of one image's targets, given as Instances or as a dict."""
    if isinstance(target, Instances):
        return target.get(name)
    return target[name]


class HungarianMatcher(nn.Module):
    """One-to-one assignment of predictions to targets, per image of the batch.

    Targets do not include a "no object" entry, so usually there are more queries than
    targets; unassigned queries count as background in the loss.
    """

    def __init__(self, cost_class: float = 2, cost_bbox: float = 5, cost_giou: float = 2,
                 focal_loss: bool = True, focal_alpha: float = 0.25, focal_gamma: float = 2):
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("HungarianMatcher: cost_class, cost_bbox and cost_giou cannot all be 0")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.focal_loss = focal_loss
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    @torch.no_grad()
    def cost_matrix(self, pred_logits: torch.Tensor, pred_boxes: torch.Tensor,
                    tgt_labels: torch.Tensor, tgt_boxes: torch.Tensor) -> torch.Tensor:
        """Cost of every (query, target) pair: `[N, M]` for `N` queries and `M` targets."""
        if self.focal_loss:
            prob = pred_logits.sigmoid()
            alpha, gamma = self.focal_alpha, self.focal_gamma
            # 1e-8 keeps the log finite for saturated logits (same epsilon as upstream).
            neg = (1 - alpha) * prob.pow(gamma) * -(1 - prob + 1e-8).log()
            pos = alpha * (1 - prob).pow(gamma) * -(prob + 1e-8).log()
            class_cost = pos[:, tgt_labels] - neg[:, tgt_labels]
        else:
            class_cost = -pred_logits.softmax(-1)[:, tgt_labels]
        l1_cost = torch.cdist(pred_boxes, tgt_boxes, p=1)
        giou_cost = -generalized_box_iou(box_cxcywh_to_xyxy(pred_boxes), box_cxcywh_to_xyxy(tgt_boxes))
        return self.cost_bbox * l1_cost + self.cost_class * class_cost + self.cost_giou * giou_cost

    @torch.no_grad()
    def forward(self, outputs: Dict[str, torch.Tensor], targets: Sequence
                ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Match each image's queries to its targets.

        outputs: `pred_logits` `[B, Q, C]` and `pred_boxes` `[B, Q, 4]` (normalised cxcywh).
        targets: `B` Instances (or dicts) with `labels` `[M_b]` and `boxes` `[M_b, 4]`.
        Returns `B` pairs `(query_idx, target_idx)` of int64 tensors of length `min(Q, M_b)`;
        `query_idx` is increasing.
        """
        batch_size, num_queries = outputs["pred_logits"].shape[:2]
        if len(targets) != batch_size:
            raise ValueError(f"HungarianMatcher: {len(targets)} targets for a batch of {batch_size}")
        tgt_labels = torch.cat([_target_field(t, "labels") for t in targets]).long()
        tgt_boxes = torch.cat([_target_field(t, "boxes") for t in targets])
        sizes = [len(_target_field(t, "boxes")) for t in targets]

        # One cost matrix for the whole batch (queries of all images x targets of all images),
        # then each image solves its own diagonal block.
        cost = self.cost_matrix(outputs["pred_logits"].flatten(0, 1), outputs["pred_boxes"].flatten(0, 1),
                                tgt_labels.to(outputs["pred_logits"].device), tgt_boxes.to(outputs["pred_boxes"]))
        cost = cost.view(batch_size, num_queries, len(tgt_labels)).cpu()
        if not torch.isfinite(cost).all():
            raise ValueError("HungarianMatcher: the cost matrix has NaN/inf entries "
                             "(non-finite predicted logits or boxes, or degenerate target boxes)")

        indices = []
        for b, block in enumerate(cost.split(sizes, dim=-1)):
            rows, cols = linear_sum_assignment(block[b].numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices


def build_matcher(args) -> HungarianMatcher:
    """The matcher MOTRv2 trains with; weights from `--set_cost_class/bbox/giou`."""
    return HungarianMatcher(cost_class=args.set_cost_class, cost_bbox=args.set_cost_bbox,
                            cost_giou=args.set_cost_giou, focal_loss=True,
                            focal_alpha=getattr(args, "focal_alpha", 0.25), focal_gamma=2)
