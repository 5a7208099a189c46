"""The memory interface the frame step calls, and the code every strategy shares.

Per frame, in this order (models/track_step.py `frame_step`):

    init_fields(queries, dim)                        # empty memory fields on the new queries
    blend_decoder_input(query_pos, queries) -> tgt   # the decoder input
    after_forward(queries, first_layer_boxes, boxes) # count the frame (official: the layer shift)
    update(queries, detect_score)                    # candidate selection and store

All state lives in `Instances` fields, so indexing and `Instances.cat` carry it; every step assigns
new tensors (no in-place writes into shared views). A strategy has no parameters.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from models.structures import Instances, box_cxcywh_to_xyxy

# Fields every strategy adds to Instances (a strategy may add more: `extra_fields`).
MEMORY_FIELDS = ("frame_idx", "accum_dist", "mem_bank", "mem_padding_mask", "mem_frames_idx",
                 "best_iou", "best_features")


class MemoryStrategy(nn.Module):
    """A TF-SASM memory rule built from a `MemoryConfig` (read by attribute: this module sits below
    the config, whose allowed values come from the strategies' registry); subclasses define `_update`
    (and may override `after_forward`, `_distance_gate`, `start_iou`, `extra_fields`)."""

    preset = ""                 # the --memory_preset this class implements
    ofs = ""                    # the --ofs rule
    mode = "sparse"             # --memory
    start_iou = 0.0             # best_iou of a new instance (and its candidate rule)
    extra_fields: Tuple[str, ...] = ()        # state fields beyond MEMORY_FIELDS
    update_inputs: Tuple[str, ...] = ("scores", "pred_boxes", "query_pos")  # what `update` reads

    def __init__(self, config, detect_score: float = 0.5):
        super().__init__()
        self.config = config
        self.size = config.size
        self.tau = config.tau
        self.alpha = config.alpha
        self.max_frame_gap = config.max_frame_gap
        self.store_score = config.store_score
        self.delay_iou = config.delay_iou
        self.temporal_gap_reg = config.temporal_gap_reg
        self.detect_score = float(detect_score)

    def extra_repr(self) -> str:
        return f"{self.config}, detect_score={self.detect_score}"

    def state_fields(self) -> Tuple[str, ...]:
        """The Instances fields that hold this memory's state."""
        return MEMORY_FIELDS + self.extra_fields

    # -- the interface ----------------------------------------------------------------------------
    def init_fields(self, instances: Instances, d_model: int) -> None:
        """Add empty-memory fields to freshly created instances (all of them new)."""
        n = len(instances)
        device = next((v.device for v in instances.get_fields().values() if isinstance(v, Tensor)),
                      torch.device("cpu"))
        feat_dtype = torch.float32
        if instances.has("query_pos") and instances.query_pos.is_floating_point():
            feat_dtype = instances.query_pos.dtype
        k = self.size
        instances.frame_idx = torch.zeros(n, dtype=torch.long, device=device)
        instances.accum_dist = torch.zeros(n, dtype=torch.float32, device=device)
        instances.mem_bank = torch.zeros(n, k, d_model, dtype=feat_dtype, device=device)
        instances.mem_padding_mask = torch.ones(n, k, dtype=torch.bool, device=device)
        instances.mem_frames_idx = torch.zeros(n, k, dtype=torch.long, device=device)
        instances.best_iou = torch.full((n,), self.start_iou, dtype=torch.float32, device=device)
        instances.best_features = torch.zeros(n, d_model, dtype=feat_dtype, device=device)
        self._init_extra_fields(instances, n, device)

    def _init_extra_fields(self, instances: Instances, n: int, device) -> None:
        pass

    def blend_decoder_input(self, tgt: Tensor, instances: Instances) -> Tensor:
        """Blend the decoder's input content query with the mean of each instance's filled slots.

        `tgt` is `[N', D]` or `[B, N', D]` with N' >= len(instances); rows beyond len(instances)
        (e.g. denoising queries) are returned unchanged."""
        if self.alpha == 1.0:
            return tgt
        self._require(instances, ("mem_bank", "mem_padding_mask"), "blend_decoder_input")
        n = len(instances)
        if tgt.shape[-2] < n or tgt.shape[-1] != instances.mem_bank.shape[-1]:
            raise ValueError(f"{type(self).__name__}.blend_decoder_input: tgt has shape {tuple(tgt.shape)}, "
                             f"expected [..., >={n}, {instances.mem_bank.shape[-1]}] for {n} instances")
        if n == 0:
            return tgt
        extra = tgt[..., n:, :]
        head = tgt[..., :n, :]
        bank, pad = instances.mem_bank, instances.mem_padding_mask
        filled = ~pad
        # The authors' float operation order: masked sum over slots / count (rows without memory give
        # 0/0 = nan, discarded by the where below).
        mean = (bank * filled.unsqueeze(-1)).sum(1) / filled.sum(1).unsqueeze(-1)
        if self.alpha == 0.5:
            blended = (head + mean) / 2
        else:
            blended = self.alpha * head + (1 - self.alpha) * mean
        out = torch.where(filled.any(1).unsqueeze(-1), blended, head)
        if extra.shape[-2] == 0:
            return out
        return torch.cat([out, extra], dim=-2)

    def after_forward(self, instances: Instances, first_layer_boxes: Tensor, last_layer_boxes: Tensor) -> None:
        """Count the frame (`frame_idx`)."""
        self._require(instances, ("frame_idx", "accum_dist"), "after_forward")
        instances.frame_idx = instances.frame_idx + 1

    @torch.no_grad()
    def update(self, instances: Instances, detect_score: Optional[float] = None) -> None:
        """Select the candidate feature and store it where the gate opens (after ids, before QIM).

        `detect_score`, when given, replaces ``self.detect_score`` for this call (the tracker's update
        threshold as it stands at run time; only the paper preset reads it)."""
        self._require(instances, self.state_fields() + self.update_inputs, "update")
        n = len(instances)
        if n == 0:
            return
        for name in ("scores", "pred_boxes", "query_pos"):
            self._check_rows(instances.get(name), n, name, "update")
        self._update(instances, self.detect_score if detect_score is None else float(detect_score))

    def _update(self, inst: Instances, detect_score: float) -> None:
        raise NotImplementedError

    def _distance_gate(self, inst: Instances) -> Tensor:
        """Where the accumulated distance opens a store (the dense mode opens it everywhere)."""
        raise NotImplementedError

    # -- shared helpers ---------------------------------------------------------------------------
    def _require(self, instances: Instances, names, where: str) -> None:
        missing = [n for n in names if not instances.has(n)]
        if missing:
            raise KeyError(f"{type(self).__name__}.{where}: instances lack fields {missing}; "
                           "create new instances' memory fields with init_fields")

    def _check_rows(self, t: Tensor, n: int, what: str, where: str) -> None:
        if t.dim() < 1 or t.shape[0] != n:
            raise ValueError(f"{type(self).__name__}.{where}: {what} has shape {tuple(t.shape)}, expected {n} "
                             "rows (one per instance)")

    def _store(self, instances: Instances, store: Tensor, features: Tensor) -> None:
        """Shift the slots of rows `store` left by one and write `features` ([N, D]) into the last slot."""
        bank, pad, dates = instances.mem_bank, instances.mem_padding_mask, instances.mem_frames_idx
        shifted_bank = torch.cat([bank[:, 1:], features.to(bank.dtype)[:, None]], dim=1)
        shifted_pad = torch.cat([pad[:, 1:], torch.zeros_like(pad[:, :1])], dim=1)
        shifted_dates = torch.cat([dates[:, 1:], instances.frame_idx.to(dates.dtype)[:, None]], dim=1)
        instances.mem_bank = torch.where(store[:, None, None], shifted_bank, bank)
        instances.mem_padding_mask = torch.where(store[:, None], shifted_pad, pad)
        instances.mem_frames_idx = torch.where(store[:, None], shifted_dates, dates)

    def _reset_after_store(self, instances: Instances, store: Tensor, best_iou_reset: float) -> None:
        instances.accum_dist = instances.accum_dist.masked_fill(store, 0)
        instances.best_iou = instances.best_iou.masked_fill(store, best_iou_reset)
        instances.best_features = instances.best_features.masked_fill(store[:, None], 0)


def max_overlap(boxes_cxcywh: Tensor, pair_ok: Optional[Tensor]) -> Tensor:
    """Largest IoU of each box with the other boxes (pairs where `pair_ok` is False count as 0).

    Mirrors the authors: torchvision box_iou on xyxy boxes, diagonal zeroed, max over each row.
    Needs at least one box."""
    from torchvision.ops import box_iou  # here: importing the memory's names stays torch-only (fast)
    xyxy = box_cxcywh_to_xyxy(boxes_cxcywh)
    ious = box_iou(xyxy, xyxy)
    self_pair = torch.eye(ious.shape[0], dtype=torch.bool, device=ious.device)
    ious = ious.masked_fill(self_pair, 0)
    if pair_ok is not None:
        ious = ious.masked_fill(~pair_ok, 0)
    return ious.max(dim=-1).values


def overlap_with_higher_boxes(boxes_cxcywh: Tensor) -> Tensor:
    """Largest IoU of each box i with the boxes j whose bottom edge is strictly higher (y2_j < y2_i).

    The authors' delaying rule (e98d85a): the IoU matrix is multiplied by that pair mask (so a NaN IoU
    of a degenerate box survives the mask, as there), the diagonal set to 0, max over each row."""
    from torchvision.ops import box_iou  # here: importing the memory's names stays torch-only (fast)
    xyxy = box_cxcywh_to_xyxy(boxes_cxcywh)
    ious = box_iou(xyxy, xyxy)
    bottom = xyxy[:, 3]
    lower_than_other = bottom[None, :] < bottom[:, None]  # [i, j]: y2_j < y2_i
    ious = ious * lower_than_other
    self_pair = torch.eye(ious.shape[0], dtype=torch.bool, device=ious.device)
    return ious.masked_fill(self_pair, 0).max(dim=-1).values


INF = math.inf
