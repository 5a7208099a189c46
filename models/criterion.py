"""Training loss of MOTRv2: the per-clip criterion `ClipMatcher`.

MOTR trains on clips.  For every frame the model calls `match_for_single_frame`, which

1. keeps each live track on the ground truth with the same object id (tracks are never
   re-matched: that is what teaches the track queries to follow their object),
2. matches the ground truths no track holds ("new objects") to the fresh queries (detect and
   proposal queries, `obj_idxes == -1`) with the Hungarian matcher,
3. writes the assignment into the track Instances (`obj_idxes`, `matched_gt_idxes`, `iou`),
4. adds this frame's losses to `losses_dict`: sigmoid focal loss on the class logits, L1 and
   GIoU on the boxes, the same for every auxiliary decoder layer (re-matched per layer, tracks
   kept), and L1 + GIoU for the query-denoising outputs (`ps_outputs`, one per decoder layer).

`forward` finally divides every entry by the number of ground-truth boxes of the clip.
Key names (`frame_{i}_loss_ce`, `frame_{i}_aux{j}_loss_bbox`, `frame_{i}_ps{j}_loss_giou`, ...)
are upstream's, so upstream weight dicts and logs read the same.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from models.matcher import HungarianMatcher, build_matcher
from models.structures import Instances, box_cxcywh_to_xyxy, matched_box_iou

Indices = List[Tuple[torch.Tensor, torch.Tensor]]

def sigmoid_focal_loss(inputs: torch.Tensor, targets: torch.Tensor, num_boxes: float,
                       alpha: float = 0.25, gamma: float = 2, mean_in_dim1: bool = True) -> torch.Tensor:
    """Focal loss of RetinaNet (https://arxiv.org/abs/1708.02002) on logits.

    Per element: `alpha_t * (1 - p_t)^gamma * BCE(inputs, targets)`, with `p_t` the probability
    given to the true label and `alpha_t = alpha` for positives, `1 - alpha` for negatives
    (no weighting when `alpha < 0`).  Reduced as upstream: `mean over dim 1, sum, / num_boxes`
    when `mean_in_dim1`, otherwise `sum / num_boxes`.
    """
    prob = inputs.sigmoid()
    bce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = bce * (1 - p_t).pow(gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if mean_in_dim1:
        return loss.mean(1).sum() / num_boxes
    return loss.sum() / num_boxes


def _matched_giou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """GIoU of row i of `boxes1` with row i of `boxes2` (xyxy): the diagonal of the pairwise
    GIoU matrix without building the matrix."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    inter_wh = (torch.min(boxes1[:, 2:], boxes2[:, 2:]) - torch.max(boxes1[:, :2], boxes2[:, :2])).clamp(min=0)
    inter = inter_wh[:, 0] * inter_wh[:, 1]
    union = area1 + area2 - inter
    hull_wh = (torch.max(boxes1[:, 2:], boxes2[:, 2:]) - torch.min(boxes1[:, :2], boxes2[:, :2])).clamp(min=0)
    hull = hull_wh[:, 0] * hull_wh[:, 1]
    return inter / union - (hull - union) / hull


def _src_permutation_idx(indices: Indices) -> Tuple[torch.Tensor, torch.Tensor]:
    """(batch index, query index) of every matched query, for advanced indexing."""
    batch_idx = torch.cat([torch.full_like(src, b) for b, (src, _) in enumerate(indices)])
    src_idx = torch.cat([src for src, _ in indices])
    return batch_idx, src_idx


class ClipMatcher(nn.Module):
    """Per-clip matching and loss of MOTR / MOTRv2 (see the module docstring).

    Use per clip: `initialize_for_single_clip(gt_instances)`, then once per frame
    `match_for_single_frame(frame_res)` (in frame order), then `forward(outputs, data)`.
    """

    def __init__(self, num_classes: int, matcher: HungarianMatcher, weight_dict: Dict[str, float],
                 losses: Sequence[str] = ("labels", "boxes"), focal_alpha: float = 0.25,
                 focal_gamma: float = 2):
        super().__init__()
        unknown = set(losses) - {"labels", "boxes"}
        if unknown:
            raise ValueError(f"ClipMatcher: unknown losses {sorted(unknown)} (known: labels, boxes)")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = weight_dict
        self.losses = list(losses)
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.gt_instances: List[Instances] = []
        self.losses_dict: Dict[str, torch.Tensor] = {}
        self.num_samples = 0
        self.sample_device = None
        self._current_frame_idx = 0

    # -- clip bookkeeping ---------------------------------------------------------------------
    def initialize_for_single_clip(self, gt_instances: List[Instances]) -> None:
        self.gt_instances = gt_instances
        self.num_samples = 0
        self.sample_device = None
        self._current_frame_idx = 0
        self.losses_dict = {}

    def _step(self) -> None:
        self._current_frame_idx += 1

    def get_num_boxes(self, num_samples: int) -> float:
        """Ground-truth count used to normalise the losses, averaged over distributed workers."""
        num_boxes = torch.as_tensor(num_samples, dtype=torch.float, device=self.sample_device)
        world_size = 1
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(num_boxes)
            world_size = dist.get_world_size()
        return torch.clamp(num_boxes / world_size, min=1).item()

    # -- losses ------------------------------------------------------------------------------
    def get_loss(self, loss: str, outputs: dict, gt_instances: List[Instances], indices: Indices,
                 num_boxes: float) -> Dict[str, torch.Tensor]:
        if loss == "labels":
            return self.loss_labels(outputs, gt_instances, indices, num_boxes)
        if loss == "boxes":
            return self.loss_boxes(outputs, gt_instances, indices, num_boxes)
        raise ValueError(f"ClipMatcher: unknown loss '{loss}'")

    def loss_labels(self, outputs: dict, gt_instances: List[Instances], indices: Indices,
                    num_boxes: float) -> Dict[str, torch.Tensor]:
        """Sigmoid focal loss over all queries; queries matched to `-1` (their object left the
        frame) and unmatched queries are background."""
        logits = outputs["pred_logits"]
        background = self.num_classes
        target_classes = torch.full(logits.shape[:2], background, dtype=torch.int64, device=logits.device)
        matched_classes = []
        for gt, (_, tgt) in zip(gt_instances, indices):
            tgt = tgt.to(logits.device)
            classes = torch.full_like(tgt, background)
            if len(gt) > 0:
                present = tgt != -1
                classes[present] = gt.labels.to(logits.device)[tgt[present]].long()
            matched_classes.append(classes)
        batch_idx, src_idx = _src_permutation_idx(indices)
        target_classes[batch_idx.to(logits.device), src_idx.to(logits.device)] = torch.cat(matched_classes)
        # One-hot with an extra background column that is dropped: background = all zeros.
        onehot = F.one_hot(target_classes, num_classes=self.num_classes + 1)[..., :-1].to(logits)
        loss_ce = sigmoid_focal_loss(logits.flatten(1), onehot.flatten(1), num_boxes=num_boxes,
                                     alpha=self.focal_alpha, gamma=self.focal_gamma, mean_in_dim1=False)
        return {"loss_ce": loss_ce.sum()}

    def loss_boxes(self, outputs: dict, gt_instances: List[Instances], indices: Indices,
                   num_boxes: float) -> Dict[str, torch.Tensor]:
        """L1 (normalised cxcywh) and 1 - GIoU (xyxy) over matched pairs; pairs whose target is
        `-1` (object gone) or whose gt has `obj_ids == -1` (padding) carry no box loss."""
        pred = outputs["pred_boxes"]
        device = pred.device
        kept = []
        for src, tgt in indices:
            src, tgt = src.to(device), tgt.to(device)
            keep = tgt != -1
            kept.append((src[keep], tgt[keep]))
        batch_idx, src_idx = _src_permutation_idx(kept)
        src_boxes = pred[batch_idx, src_idx]
        tgt_boxes = torch.cat([gt.boxes.to(device)[tgt] for gt, (_, tgt) in zip(gt_instances, kept)])
        tgt_ids = torch.cat([gt.obj_ids.to(device)[tgt] for gt, (_, tgt) in zip(gt_instances, kept)])
        real = tgt_ids != -1
        src_boxes, tgt_boxes = src_boxes[real], tgt_boxes[real].to(src_boxes)
        loss_bbox = F.l1_loss(src_boxes, tgt_boxes, reduction="none")
        loss_giou = 1 - _matched_giou(box_cxcywh_to_xyxy(src_boxes), box_cxcywh_to_xyxy(tgt_boxes))
        return {"loss_bbox": loss_bbox.sum() / num_boxes, "loss_giou": loss_giou.sum() / num_boxes}

    def calc_loss_for_track_scores(self, track_instances: Instances) -> None:
        """Focal loss on `track_scores` (only with upstream's memory bank; key
        `frame_{i}_track_loss_ce`).  Call after `match_for_single_frame` of that frame."""
        frame_id = self._current_frame_idx - 1
        scores = track_instances.track_scores
        src = torch.arange(len(track_instances), dtype=torch.long, device=scores.device)
        losses = self.loss_labels({"pred_logits": scores[None]}, [self.gt_instances[frame_id]],
                                  [(src, track_instances.matched_gt_idxes)], num_boxes=1)
        self.losses_dict.update({f"frame_{frame_id}_track_{k}": v for k, v in losses.items()})

    # -- matching ----------------------------------------------------------------------------
    def match_for_single_frame(self, outputs: dict) -> Instances:
        """Assign this frame's ground truth to the queries and record its losses.

        outputs: `track_instances` (with `pred_logits`, `pred_boxes`, `obj_idxes`,
        `matched_gt_idxes`, `iou`), optionally `aux_outputs` (list of dicts with
        `pred_logits` `[1, N, C]`, `pred_boxes` `[1, N, 4]` for the earlier decoder layers) and
        `ps_outputs` (denoising outputs per decoder layer, query k built from gt box k).
        Returns `track_instances`, updated in place.
        """
        frame = self._current_frame_idx
        if frame >= len(self.gt_instances):
            raise IndexError(f"ClipMatcher: frame {frame} asked for, but the clip has "
                             f"{len(self.gt_instances)} frames of ground truth")
        gt = self.gt_instances[frame]
        tracks: Instances = outputs["track_instances"]
        device = tracks.pred_logits.device
        gt_obj_ids = gt.obj_ids.to(device)
        num_gt = len(gt)

        # 1. Live tracks keep the gt with their object id (-1 when the object left the frame).
        tracks.matched_gt_idxes[:] = -1
        track_i, gt_j = torch.where(tracks.obj_idxes[:, None] == gt_obj_ids[None, :])
        tracks.matched_gt_idxes[track_i] = gt_j
        all_tracks = torch.arange(len(tracks), dtype=torch.long, device=device)
        tracked = tracks.obj_idxes >= 0
        prev_matched = torch.stack([all_tracks[tracked], tracks.matched_gt_idxes[tracked]], dim=1)

        # 2. Fresh queries (obj_idxes == -1); false-positive tracks (-2) are never matched.
        free_queries = all_tracks[tracks.obj_idxes == -1]

        # 3. Ground truths no track holds: the new objects.
        held = torch.zeros(num_gt, dtype=torch.bool, device=device)
        held[tracks.matched_gt_idxes[tracks.matched_gt_idxes != -1]] = True
        new_gt_idx = torch.arange(num_gt, device=device)[~held]
        new_gt = gt[new_gt_idx.to(gt.boxes.device)]

        def match_new(layer_logits: torch.Tensor, layer_boxes: torch.Tensor) -> torch.Tensor:
            """[K, 2] (query index, gt index) pairs for the new objects, for one decoder layer."""
            query_pos, gt_pos = self.matcher({"pred_logits": layer_logits[free_queries][None],
                                              "pred_boxes": layer_boxes[free_queries][None]}, [new_gt])[0]
            return torch.stack([free_queries[query_pos.to(device)], new_gt_idx[gt_pos.to(device)]], dim=1)

        # 4-5. Hungarian for the new objects; they become tracks of their object id.
        new_matched = match_new(tracks.pred_logits, tracks.pred_boxes)
        tracks.obj_idxes[new_matched[:, 0]] = gt_obj_ids[new_matched[:, 1]].long()
        tracks.matched_gt_idxes[new_matched[:, 0]] = new_matched[:, 1]

        # 6. IoU of each matched track with its gt (the query interaction layer keeps tracks
        # with IoU > 0.5); a decision input only, so no gradient.
        active = (tracks.obj_idxes >= 0) & (tracks.matched_gt_idxes >= 0)
        if active.any():
            with torch.no_grad():
                pred_xyxy = box_cxcywh_to_xyxy(tracks.pred_boxes[active])
                gt_xyxy = box_cxcywh_to_xyxy(gt.boxes.to(device)[tracks.matched_gt_idxes[active]])
                tracks.iou[active] = matched_box_iou(pred_xyxy, gt_xyxy).to(tracks.iou.dtype)

        # 7-8. Losses of the last layer, over new + kept pairs.
        matched = torch.cat([new_matched, prev_matched], dim=0)
        self.num_samples += num_gt
        self.sample_device = device
        final_outputs = {"pred_logits": tracks.pred_logits[None], "pred_boxes": tracks.pred_boxes[None]}
        for loss in self.losses:
            values = self.get_loss(loss, final_outputs, [gt], [(matched[:, 0], matched[:, 1])], num_boxes=1)
            self.losses_dict.update({f"frame_{frame}_{k}": v for k, v in values.items()})

        # Earlier decoder layers: new objects re-matched per layer, tracks kept.
        for layer, aux in enumerate(outputs.get("aux_outputs", [])):
            layer_new = match_new(aux["pred_logits"][0], aux["pred_boxes"][0])
            layer_matched = torch.cat([layer_new, prev_matched], dim=0)
            for loss in self.losses:
                values = self.get_loss(loss, aux, [gt], [(layer_matched[:, 0], layer_matched[:, 1])],
                                       num_boxes=1)
                self.losses_dict.update({f"frame_{frame}_aux{layer}_{k}": v for k, v in values.items()})

        # Denoising queries: query k was built from gt box k, so the pairing is the identity.
        identity = torch.arange(num_gt, device=device)
        for layer, ps in enumerate(outputs.get("ps_outputs", [])):
            values = self.get_loss("boxes", ps, [gt], [(identity, identity)], num_boxes=1)
            self.losses_dict.update({f"frame_{frame}_ps{layer}_{k}": v for k, v in values.items()})

        self._step()
        return tracks

    def forward(self, outputs: dict, input_data: dict = None) -> Dict[str, torch.Tensor]:
        """The clip's losses (`outputs['losses_dict']`, popped), each divided by the number of
        ground-truth boxes seen in the clip (at least 1)."""
        losses = outputs.pop("losses_dict")
        num_boxes = self.get_num_boxes(self.num_samples)
        return {name: value / num_boxes for name, value in losses.items()}


def build_weight_dict(args) -> Dict[str, float]:
    """Loss weights by key, as upstream's `build`: per frame of the longest clip, the final
    layer, `dec_layers - 1` auxiliary layers and `dec_layers` denoising outputs (the latter two
    only with `aux_loss`), plus `frame_{i}_track_loss_ce` with a memory bank."""
    weights = {"loss_ce": args.cls_loss_coef, "loss_bbox": args.bbox_loss_coef, "loss_giou": args.giou_loss_coef}
    if not args.sampler_lengths:
        raise ValueError("--sampler_lengths is required (frames per training clip, e.g. 5)")
    num_frames = max(args.sampler_lengths)
    weight_dict: Dict[str, float] = {}
    for i in range(num_frames):
        weight_dict.update({f"frame_{i}_{k}": w for k, w in weights.items()})
    if args.aux_loss:
        for i in range(num_frames):
            for j in range(args.dec_layers - 1):
                weight_dict.update({f"frame_{i}_aux{j}_{k}": w for k, w in weights.items()})
            for j in range(args.dec_layers):
                weight_dict.update({f"frame_{i}_ps{j}_{k}": w for k, w in weights.items()})
    if getattr(args, "memory_bank_type", None):
        for i in range(num_frames):
            weight_dict[f"frame_{i}_track_loss_ce"] = args.cls_loss_coef
    return weight_dict


def build_criterion(args, num_classes: int = None) -> Tuple[ClipMatcher, Dict[str, float]]:
    """`(ClipMatcher, weight_dict)` from the training arguments (upstream's `build`);
    `num_classes` defaults to `args.num_classes` (set from the dataset registry by the training
    runner), else 1.  The weights are also on `criterion.weight_dict`."""
    if num_classes is None:
        num_classes = int(getattr(args, "num_classes", None) or 1)
    weight_dict = build_weight_dict(args)
    criterion = ClipMatcher(num_classes, matcher=build_matcher(args), weight_dict=weight_dict,
                            losses=["labels", "boxes"], focal_alpha=0.25, focal_gamma=2)
    return criterion, weight_dict
