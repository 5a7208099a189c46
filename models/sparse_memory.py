"""Training-free sparse memory of TF-SASM (spatial-aware sparse memory + overlap-aware feature selector).

Each track keeps up to K past query features (`mem_bank`).  The decoder's input content query of a
track with a non-empty memory is blended with the mean of its stored features; the memory is filled
sparsely: a feature is stored only once the track has moved far enough since the last store, and the
stored feature is the one (since that last store) that overlapped least with other objects.

Two presets (see docs/sparse_memory.md):

``official`` (default) - bit-for-bit the authors' public code (zigonk/TF-SASM, ``memory_bank.py``):
  * distance = centre shift between the first and the last decoder layer of the same frame, added to
    ``accum_dist`` for every instance (`after_forward`);
  * every instance (tracked or not) takes part; ``o`` = max IoU with every other instance;
  * candidate: ``best_iou *= 1 + reg``; where ``o <= best_iou`` take ``best_iou = o`` and
    ``best_features = query_pos``.  ``best_iou`` starts at 0 (so a new instance only takes a candidate
    when it overlaps nothing) and is reset to 1 after a store;
  * store = ``(accum_dist > tau and score > store_score) or frame_idx - mem_frames_idx[:, -1] > max_frame_gap``;
  * store = shift slots left, write ``best_features`` into the last slot; then ``accum_dist = 0``,
    ``best_iou = 1``, ``best_features = 0``.

``paper`` - the algorithm as the paper states it:
  * only *detected* tracks (``obj_idxes >= 0`` and ``scores >= detect_score``) accumulate, select and store;
  * distance = centre shift since the last frame the track was detected (``prev_center``);
  * ``o`` = max IoU with the other detected tracks; ``best_iou`` starts at +inf and returns to +inf after
    each store; gate ``accum_dist >= tau``; no score gate, no forced store after a gap;
  * a track stores in the frame it is born.  "Born" is read as "detected while its memory is still empty"
    (a detected track always stores at once, so the first detected frame is the only such frame; this also
    covers a track that got its id with a score below ``detect_score``: it is born when first detected).

Variants (either preset):
  * ``mode='dense'``: the distance gate is always open (tau = 0; on ``official`` also a track whose
    accumulated distance is exactly 0 stores), so every eligible frame stores.  Eligible = detected
    (``paper``) or ``score > store_score`` (``official``; the forced gap store stays).  ``ofs`` still applies.
    On ``paper``, because the candidate resets to +inf at each store, dense memory stores each frame's own
    query, i.e. dense == ``tau=0, ofs='latest'``.
  * ``ofs='min_iou'``: the rule above (lowest overlap since the last store).
  * ``ofs='latest'``: the candidate is replaced every frame (the instance takes part), so the stored
    feature is the query of the storing frame; ``best_iou`` then holds that frame's overlap.
  * ``ofs='delay'`` (Table IV "Delaying", the alternative to OFS): there is no candidate at all -
    ``best_iou`` and ``best_features`` keep their initial values (``temporal_gap_reg`` has nothing to act
    on) and a store writes the storing frame's own ``query_pos``; a store that is due but blocked by overlap
    waits (``accum_dist`` keeps growing) until a frame with little overlap.  After a store only
    ``accum_dist`` is reset (0).
    ``paper``: store where ``detected and (born or (accum_dist >= tau and o <= delay_iou))``, ``o`` against
    the other detected tracks.
    ``official``: the authors' own delaying code (zigonk/TF-SASM commit e98d85a, ``_update_memory_bank``):
    ``store = (gap > max_frame_gap or accum_dist > tau) and not occluded and score > store_score`` (the gap
    store is delayed and score-gated too), where ``occluded`` = ``o_low > delay_iou`` and ``o_low`` is the
    largest IoU of the instance with the other instances whose box bottom is strictly higher in the image
    (``y2_j < y2_i``; equal ``y2`` never counts, either way).  So of two overlapping boxes only the one
    reaching lower in the image (larger ``y2``) is held back.  Every instance takes part.  With
    ``mode='dense'`` the distance part of the trigger is always open.
  * ``temporal_gap_reg``: ``best_iou *= 1 + reg`` once per frame before the candidate update
    (``paper``: for detected tracks only, so that a missed frame changes nothing).
  * ``alpha``: decoder input = ``alpha * tgt + (1 - alpha) * mean(memory)``; ``alpha == 0.5`` is computed
    as the authors write it, ``(tgt + mean) / 2``; ``alpha == 1`` returns ``tgt`` itself.

``--memory none`` means no memory module at all (`SparseMemory.from_args` returns None), i.e. MOTRv2.

Call order per frame (the model does this): `blend_decoder_input` on the decoder input, the decoder,
`after_forward` with the first/last decoder-layer boxes, the runtime tracker (ids), `update`, QIM.
New instances get their fields from `init_fields`.  All state lives in `Instances` fields, so indexing
and `Instances.cat` carry it; every step assigns new tensors (no in-place writes into shared views).
"""
from __future__ import annotations

import argparse
import math
from typing import Optional

import torch
import torchvision
from torch import Tensor, nn

from models.structures import Instances, box_cxcywh_to_xyxy

MODES = ("none", "dense", "sparse")
PRESETS = ("official", "paper")
OFS_CHOICES = ("min_iou", "latest", "delay")

# Fields this module adds to Instances (paper preset also adds `prev_center`).
MEMORY_FIELDS = ("frame_idx", "accum_dist", "mem_bank", "mem_padding_mask", "mem_frames_idx",
                 "best_iou", "best_features")


def add_memory_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the TF-SASM memory flags to `parser` (returns it)."""
    group = parser.add_argument_group("TF-SASM sparse memory")
    group.add_argument("--memory", choices=MODES, default="none",
                       help="none: plain MOTRv2; sparse: TF-SASM memory; dense: store every eligible frame (tau = 0)")
    group.add_argument("--memory_preset", choices=PRESETS, default="official",
                       help="official: the authors' public code bit for bit; paper: the algorithm as the paper states it")
    group.add_argument("--ofs", choices=OFS_CHOICES, default="min_iou",
                       help="feature to store: min_iou = lowest overlap since the last store (OFS); "
                            "latest = the storing frame's query; delay = wait until overlap <= --memory_delay_iou")
    group.add_argument("--memory_size", type=int, default=10, help="K: slots per track (oldest evicted first)")
    group.add_argument("--memory_tau", type=float, default=0.1,
                       help="moving-distance threshold, in normalised image units, that opens a store")
    group.add_argument("--memory_alpha", type=float, default=0.5,
                       help="decoder input = alpha * query + (1 - alpha) * mean(memory); 1 disables the blend")
    group.add_argument("--memory_max_frame_gap", type=int, default=10,
                       help="official preset: force a store when this many frames passed since the last one")
    group.add_argument("--memory_store_score", type=float, default=0.8,
                       help="official preset: a distance-triggered store needs score > this")
    group.add_argument("--memory_delay_iou", type=float, default=0.1,
                       help="--ofs delay: a due store waits while the overlap is above this (paper: with the other "
                            "detected tracks; official: with the boxes whose bottom edge is higher)")
    group.add_argument("--memory_temporal_gap_reg", type=float, default=0.0,
                       help="best_iou *= 1 + this each frame, so older candidates are replaced more easily")
    return parser


class SparseMemory(nn.Module):
    """TF-SASM memory; no parameters.  See the module docstring for the rules of each preset/variant."""

    def __init__(self, mode: str = "sparse", preset: str = "official", ofs: str = "min_iou", size: int = 10,
                 tau: float = 0.1, alpha: float = 0.5, max_frame_gap: int = 10, store_score: float = 0.8,
                 delay_iou: float = 0.1, temporal_gap_reg: float = 0.0, detect_score: float = 0.5):
        super().__init__()
        if mode not in ("dense", "sparse"):
            raise ValueError(f"SparseMemory: mode must be 'dense' or 'sparse', got {mode!r} "
                             "('none' means no memory module: use SparseMemory.from_args, which returns None)")
        if preset not in PRESETS:
            raise ValueError(f"SparseMemory: preset must be one of {PRESETS}, got {preset!r}")
        if ofs not in OFS_CHOICES:
            raise ValueError(f"SparseMemory: ofs must be one of {OFS_CHOICES}, got {ofs!r}")
        if int(size) < 1:
            raise ValueError(f"SparseMemory: memory size must be >= 1, got {size}")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"SparseMemory: alpha must lie in [0, 1], got {alpha}")
        self.mode = mode
        self.preset = preset
        self.ofs = ofs
        self.size = int(size)
        self.tau = float(tau)
        self.alpha = float(alpha)
        self.max_frame_gap = int(max_frame_gap)
        self.store_score = float(store_score)
        self.delay_iou = float(delay_iou)
        self.temporal_gap_reg = float(temporal_gap_reg)
        self.detect_score = float(detect_score)

    @classmethod
    def from_args(cls, args) -> Optional["SparseMemory"]:
        mode = getattr(args, "memory", "none")
        if mode == "none":
            return None
        return cls(mode=mode,
                   preset=getattr(args, "memory_preset", "official"),
                   ofs=getattr(args, "ofs", "min_iou"),
                   size=getattr(args, "memory_size", 10),
                   tau=getattr(args, "memory_tau", 0.1),
                   alpha=getattr(args, "memory_alpha", 0.5),
                   max_frame_gap=getattr(args, "memory_max_frame_gap", 10),
                   store_score=getattr(args, "memory_store_score", 0.8),
                   delay_iou=getattr(args, "memory_delay_iou", 0.1),
                   temporal_gap_reg=getattr(args, "memory_temporal_gap_reg", 0.0),
                   detect_score=getattr(args, "update_score_threshold", 0.5))

    def extra_repr(self) -> str:
        return (f"mode={self.mode}, preset={self.preset}, ofs={self.ofs}, size={self.size}, tau={self.tau}, "
                f"alpha={self.alpha}, max_frame_gap={self.max_frame_gap}, store_score={self.store_score}, "
                f"delay_iou={self.delay_iou}, temporal_gap_reg={self.temporal_gap_reg}, "
                f"detect_score={self.detect_score}")

    # -- helpers ----------------------------------------------------------------------------
    def _fields_needed(self):
        return MEMORY_FIELDS + (("prev_center",) if self.preset == "paper" else ())

    def _require(self, instances: Instances, names, where: str) -> None:
        missing = [n for n in names if not instances.has(n)]
        if missing:
            raise KeyError(f"SparseMemory.{where}: instances lack fields {missing}; "
                           "create new instances' memory fields with SparseMemory.init_fields")

    @staticmethod
    def _check_rows(t: Tensor, n: int, what: str, where: str) -> None:
        if t.dim() < 1 or t.shape[0] != n:
            raise ValueError(f"SparseMemory.{where}: {what} has shape {tuple(t.shape)}, expected {n} rows "
                             f"(one per instance)")

    @staticmethod
    def _max_overlap(boxes_cxcywh: Tensor, pair_ok: Optional[Tensor]) -> Tensor:
        """Largest IoU of each box with the other boxes (pairs where `pair_ok` is False count as 0).

        Mirrors the authors: torchvision box_iou on xyxy boxes, diagonal zeroed, max over each row.
        Needs at least one box."""
        xyxy = box_cxcywh_to_xyxy(boxes_cxcywh)
        ious = torchvision.ops.box_iou(xyxy, xyxy)
        n = ious.shape[0]
        self_pair = torch.eye(n, dtype=torch.bool, device=ious.device)
        ious = ious.masked_fill(self_pair, 0)
        if pair_ok is not None:
            ious = ious.masked_fill(~pair_ok, 0)
        return ious.max(dim=-1).values

    @staticmethod
    def _overlap_with_higher_boxes(boxes_cxcywh: Tensor) -> Tensor:
        """Largest IoU of each box i with the boxes j whose bottom edge is strictly higher (y2_j < y2_i).

        The authors' delaying rule (e98d85a): the IoU matrix is multiplied by that pair mask (so a NaN IoU
        of a degenerate box survives the mask, as there), the diagonal set to 0, max over each row."""
        xyxy = box_cxcywh_to_xyxy(boxes_cxcywh)
        ious = torchvision.ops.box_iou(xyxy, xyxy)
        bottom = xyxy[:, 3]
        lower_than_other = bottom[None, :] < bottom[:, None]  # [i, j]: y2_j < y2_i
        ious = ious * lower_than_other
        self_pair = torch.eye(ious.shape[0], dtype=torch.bool, device=ious.device)
        return ious.masked_fill(self_pair, 0).max(dim=-1).values

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

    # -- interface used by the model ---------------------------------------------------------
    def init_fields(self, instances: Instances, d_model: int) -> None:
        """Add empty-memory fields to freshly created instances (all of them new)."""
        n = len(instances)
        device = torch.device("cpu")
        feat_dtype = torch.float32
        for value in instances.get_fields().values():
            if isinstance(value, Tensor):
                device = value.device
                break
        if instances.has("query_pos") and instances.query_pos.is_floating_point():
            feat_dtype = instances.query_pos.dtype
        k = self.size
        instances.frame_idx = torch.zeros(n, dtype=torch.long, device=device)
        instances.accum_dist = torch.zeros(n, dtype=torch.float32, device=device)
        instances.mem_bank = torch.zeros(n, k, d_model, dtype=feat_dtype, device=device)
        instances.mem_padding_mask = torch.ones(n, k, dtype=torch.bool, device=device)
        instances.mem_frames_idx = torch.zeros(n, k, dtype=torch.long, device=device)
        # official: the authors start best_iou at 0; paper: any first candidate qualifies.
        start_iou = 0.0 if self.preset == "official" else math.inf
        instances.best_iou = torch.full((n,), start_iou, dtype=torch.float32, device=device)
        instances.best_features = torch.zeros(n, d_model, dtype=feat_dtype, device=device)
        if self.preset == "paper":
            instances.prev_center = torch.zeros(n, 2, dtype=torch.float32, device=device)

    def blend_decoder_input(self, tgt: Tensor, instances: Instances) -> Tensor:
        """Blend the decoder's input content query with the mean of each instance's filled slots.

        `tgt` is `[N', D]` or `[B, N', D]` with N' >= len(instances); rows beyond len(instances)
        (e.g. denoising queries) are returned unchanged."""
        if self.alpha == 1.0:
            return tgt
        self._require(instances, ("mem_bank", "mem_padding_mask"), "blend_decoder_input")
        n = len(instances)
        if tgt.shape[-2] < n or tgt.shape[-1] != instances.mem_bank.shape[-1]:
            raise ValueError(f"SparseMemory.blend_decoder_input: tgt has shape {tuple(tgt.shape)}, expected "
                             f"[..., >={n}, {instances.mem_bank.shape[-1]}] for {n} instances")
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
        """Count the frame; official preset: add the first->last decoder layer centre shift to accum_dist."""
        self._require(instances, ("frame_idx", "accum_dist"), "after_forward")
        n = len(instances)
        if self.preset == "official":
            self._check_rows(first_layer_boxes, n, "first_layer_boxes", "after_forward")
            self._check_rows(last_layer_boxes, n, "last_layer_boxes", "after_forward")
            mov_dist = torch.norm(last_layer_boxes.detach()[..., :2] - first_layer_boxes.detach()[..., :2], dim=-1)
            instances.accum_dist = instances.accum_dist + mov_dist
        instances.frame_idx = instances.frame_idx + 1

    @torch.no_grad()
    def update(self, instances: Instances, detect_score: Optional[float] = None) -> None:
        """Select the candidate feature and store it where the gate opens (after ids, before QIM).

        `detect_score`, when given, replaces ``self.detect_score`` for this call (paper preset: a track is
        detected when ``obj_idxes >= 0`` and ``scores >= detect_score``), so the caller can pass the
        tracker's update threshold as it stands at run time.  The official preset does not use it."""
        self._require(instances, self._fields_needed() + ("scores", "pred_boxes", "query_pos"), "update")
        if self.preset == "paper":
            self._require(instances, ("obj_idxes",), "update")
        n = len(instances)
        if n == 0:
            return
        for name in ("scores", "pred_boxes", "query_pos"):
            self._check_rows(instances.get(name), n, name, "update")
        if self.preset == "official":
            self._update_official(instances)
        else:
            self._update_paper(instances, self.detect_score if detect_score is None else float(detect_score))

    # -- the two presets ------------------------------------------------------------------
    def _update_official(self, inst: Instances) -> None:
        if self.ofs == "delay":
            self._update_official_delay(inst)
            return
        query = inst.query_pos.detach()
        boxes = inst.pred_boxes.detach()
        inst.best_iou = inst.best_iou * (1 + self.temporal_gap_reg)
        overlap = self._max_overlap(boxes, None)
        if self.ofs == "latest":
            take = torch.ones_like(overlap, dtype=torch.bool)
        else:
            take = overlap <= inst.best_iou
        inst.best_iou = torch.where(take, overlap, inst.best_iou)
        inst.best_features = torch.where(take[:, None], query.to(inst.best_features.dtype), inst.best_features)

        confident = inst.scores > self.store_score
        if self.mode == "dense":
            moved = confident
        else:
            moved = (inst.accum_dist > self.tau) & confident
        frame_gap = inst.frame_idx - inst.mem_frames_idx[:, -1]
        store = moved | (frame_gap > self.max_frame_gap)

        self._store(inst, store, inst.best_features)
        self._reset_after_store(inst, store, 1.0)

    def _update_official_delay(self, inst: Instances) -> None:
        """The authors' delaying code: no candidate; a due store waits while the box overlaps a higher one."""
        boxes = inst.pred_boxes.detach()
        frame_gap = inst.frame_idx - inst.mem_frames_idx[:, -1]
        if self.mode == "dense":
            trigger = torch.ones_like(frame_gap, dtype=torch.bool)
        else:
            trigger = (frame_gap > self.max_frame_gap) | (inst.accum_dist > self.tau)
        occluded = self._overlap_with_higher_boxes(boxes) > self.delay_iou
        store = trigger & ~occluded & (inst.scores > self.store_score)
        self._store(inst, store, inst.query_pos.detach())
        inst.accum_dist = inst.accum_dist.masked_fill(store, 0)

    def _update_paper(self, inst: Instances, detect_score: float) -> None:
        query = inst.query_pos.detach()
        boxes = inst.pred_boxes.detach()
        detected = (inst.obj_idxes >= 0) & (inst.scores >= detect_score)
        # A detected track always stores at once, so "memory still empty" marks its first detected frame.
        born = detected & inst.mem_padding_mask.all(dim=1)

        center = boxes[:, :2].to(inst.prev_center.dtype)
        step = torch.norm(center - inst.prev_center, dim=-1).to(inst.accum_dist.dtype)
        inst.accum_dist = torch.where(detected & ~born, inst.accum_dist + step, inst.accum_dist)
        inst.prev_center = torch.where(detected[:, None], center, inst.prev_center)

        pair_ok = detected[:, None] & detected[None, :]
        overlap = self._max_overlap(boxes, pair_ok)
        gate = torch.ones_like(detected) if self.mode == "dense" else inst.accum_dist >= self.tau

        if self.ofs == "delay":
            # No candidate: the store waits for a frame with overlap <= delay_iou and writes that frame's query.
            store = detected & (born | (gate & (overlap <= self.delay_iou)))
            self._store(inst, store, query)
            inst.accum_dist = inst.accum_dist.masked_fill(store, 0)
            return

        inst.best_iou = torch.where(detected, inst.best_iou * (1 + self.temporal_gap_reg), inst.best_iou)
        if self.ofs == "latest":
            take = detected
        else:
            take = detected & (overlap <= inst.best_iou)
        inst.best_iou = torch.where(take, overlap.to(inst.best_iou.dtype), inst.best_iou)
        inst.best_features = torch.where(take[:, None], query.to(inst.best_features.dtype), inst.best_features)

        store = detected & (born | gate)
        self._store(inst, store, inst.best_features)
        self._reset_after_store(inst, store, math.inf)
