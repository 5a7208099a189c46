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

``--memory none`` means no memory at all (`build_memory` returns None), i.e. MOTRv2.

One class per preset x ofs rule below, and a dense subclass of each (`DenseGate`); the registry
`STRATEGIES` maps (mode, preset, ofs) to the class, and the allowed values of `--memory`,
`--memory_preset` and `--ofs` (`MODES`, `PRESETS`, `OFS_CHOICES`, read by `MemoryConfig`) are the
registry's keys. A new variant is one class here and one entry (docs/contributing.md).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple, Type

import torch
from torch import Tensor

from models.structures import Instances

from .base import INF, MemoryStrategy, max_overlap, overlap_with_higher_boxes


# -- official: the authors' public code (zigonk/TF-SASM memory_bank.py) -------------------------------------
class OfficialMemory(MemoryStrategy):
    """Every instance takes part; distance = first -> last decoder layer centre shift, every frame."""
    preset = "official"
    start_iou = 0.0  # the authors start best_iou at 0: a new instance takes a candidate only if it overlaps nothing

    def after_forward(self, instances: Instances, first_layer_boxes: Tensor, last_layer_boxes: Tensor) -> None:
        """Add the first->last decoder layer centre shift to accum_dist; count the frame."""
        self._require(instances, ("frame_idx", "accum_dist"), "after_forward")
        n = len(instances)
        self._check_rows(first_layer_boxes, n, "first_layer_boxes", "after_forward")
        self._check_rows(last_layer_boxes, n, "last_layer_boxes", "after_forward")
        shift = torch.norm(last_layer_boxes.detach()[..., :2] - first_layer_boxes.detach()[..., :2], dim=-1)
        instances.accum_dist = instances.accum_dist + shift
        instances.frame_idx = instances.frame_idx + 1

    def _distance_gate(self, inst: Instances) -> Tensor:
        return inst.accum_dist > self.tau

    def _frame_gap(self, inst: Instances) -> Tensor:
        return inst.frame_idx - inst.mem_frames_idx[:, -1]


class OfficialMinIou(OfficialMemory):
    """OFS: the candidate is the query of least overlap since the last store."""
    ofs = "min_iou"
    ofs_summary = "lowest overlap since the last store (OFS)"

    def _key(self, overlap: Tensor, inst: Instances) -> Tensor:
        """What a candidate minimises (kept in `best_iou`): the overlap."""
        return overlap

    def _take(self, key: Tensor, inst: Instances) -> Tensor:
        return key <= inst.best_iou

    def _update(self, inst: Instances, detect_score: float) -> None:
        query = inst.query_pos.detach()
        inst.best_iou = inst.best_iou * (1 + self.temporal_gap_reg)
        key = self._key(max_overlap(inst.pred_boxes.detach(), None), inst)
        take = self._take(key, inst)
        inst.best_iou = torch.where(take, key, inst.best_iou)
        inst.best_features = torch.where(take[:, None], query.to(inst.best_features.dtype), inst.best_features)
        moved = self._distance_gate(inst) & (inst.scores > self.store_score)
        store = moved | (self._frame_gap(inst) > self.max_frame_gap)
        self._store(inst, store, inst.best_features)
        self._reset_after_store(inst, store, 1.0)


class OfficialLatest(OfficialMinIou):
    """The candidate is replaced every frame: a store writes the storing frame's query."""
    ofs = "latest"
    ofs_summary = "the storing frame's query"

    def _take(self, key: Tensor, inst: Instances) -> Tensor:
        return torch.ones_like(key, dtype=torch.bool)


class OfficialDelay(OfficialMemory):
    """The authors' delaying code (e98d85a): no candidate; a due store (gap or distance) waits while the
    box overlaps a box whose bottom edge is higher by more than delay_iou."""
    ofs = "delay"
    ofs_summary = "wait until overlap <= --memory_delay_iou"

    def _update(self, inst: Instances, detect_score: float) -> None:
        trigger = (self._frame_gap(inst) > self.max_frame_gap) | self._distance_gate(inst)
        occluded = overlap_with_higher_boxes(inst.pred_boxes.detach()) > self.delay_iou
        store = trigger & ~occluded & (inst.scores > self.store_score)
        self._store(inst, store, inst.query_pos.detach())
        inst.accum_dist = inst.accum_dist.masked_fill(store, 0)


# -- paper: the algorithm as the paper states it ------------------------------------------------------------
class PaperMemory(MemoryStrategy):
    """Only detected tracks (id and score >= detect_score) take part; distance since the last detected frame."""
    preset = "paper"
    start_iou = INF  # any first candidate qualifies
    extra_fields = ("prev_center",)
    update_inputs = MemoryStrategy.update_inputs + ("obj_idxes",)

    def _init_extra_fields(self, instances: Instances, n: int, device) -> None:
        instances.prev_center = torch.zeros(n, 2, dtype=torch.float32, device=device)

    def _distance_gate(self, inst: Instances) -> Tensor:
        return inst.accum_dist >= self.tau

    def _update(self, inst: Instances, detect_score: float) -> None:
        boxes = inst.pred_boxes.detach()
        detected = (inst.obj_idxes >= 0) & (inst.scores >= detect_score)
        # A detected track always stores at once, so "memory still empty" marks its first detected frame.
        born = detected & inst.mem_padding_mask.all(dim=1)
        center = boxes[:, :2].to(inst.prev_center.dtype)
        step = torch.norm(center - inst.prev_center, dim=-1).to(inst.accum_dist.dtype)
        inst.accum_dist = torch.where(detected & ~born, inst.accum_dist + step, inst.accum_dist)
        inst.prev_center = torch.where(detected[:, None], center, inst.prev_center)
        overlap = max_overlap(boxes, detected[:, None] & detected[None, :])
        self._select_and_store(inst, detected, born, overlap, self._distance_gate(inst))

    def _select_and_store(self, inst: Instances, detected: Tensor, born: Tensor, overlap: Tensor,
                          gate: Tensor) -> None:
        raise NotImplementedError


class PaperMinIou(PaperMemory):
    """OFS: the candidate is the detected query of least overlap since the last store."""
    ofs = "min_iou"

    def _take(self, detected: Tensor, overlap: Tensor, inst: Instances) -> Tensor:
        return detected & (overlap <= inst.best_iou)

    def _select_and_store(self, inst, detected, born, overlap, gate) -> None:
        query = inst.query_pos.detach()
        inst.best_iou = torch.where(detected, inst.best_iou * (1 + self.temporal_gap_reg), inst.best_iou)
        take = self._take(detected, overlap, inst)
        inst.best_iou = torch.where(take, overlap.to(inst.best_iou.dtype), inst.best_iou)
        inst.best_features = torch.where(take[:, None], query.to(inst.best_features.dtype), inst.best_features)
        store = detected & (born | gate)
        self._store(inst, store, inst.best_features)
        self._reset_after_store(inst, store, INF)


class PaperLatest(PaperMinIou):
    """Every detected frame replaces the candidate."""
    ofs = "latest"

    def _take(self, detected: Tensor, overlap: Tensor, inst: Instances) -> Tensor:
        return detected


class PaperDelay(PaperMemory):
    """No candidate: a due store waits for a frame with overlap <= delay_iou and writes that frame's query."""
    ofs = "delay"

    def _select_and_store(self, inst, detected, born, overlap, gate) -> None:
        store = detected & (born | (gate & (overlap <= self.delay_iou)))
        self._store(inst, store, inst.query_pos.detach())
        inst.accum_dist = inst.accum_dist.masked_fill(store, 0)


# -- dense: the distance gate always open (tau = 0) ---------------------------------------------------------
class DenseGate:
    """Mixin: every eligible frame stores (the distance gate is open everywhere)."""
    mode = "dense"

    def _distance_gate(self, inst: Instances) -> Tensor:
        return torch.ones_like(inst.accum_dist, dtype=torch.bool)


class DenseOfficialMinIou(DenseGate, OfficialMinIou):
    pass


class DenseOfficialLatest(DenseGate, OfficialLatest):
    pass


class DenseOfficialDelay(DenseGate, OfficialDelay):
    pass


class DensePaperMinIou(DenseGate, PaperMinIou):
    pass


class DensePaperLatest(DenseGate, PaperLatest):
    pass


class DensePaperDelay(DenseGate, PaperDelay):
    pass


# -- the registry: (mode, preset, ofs) -> strategy ----------------------------------------------------------
STRATEGIES: Dict[Tuple[str, str, str], Type[MemoryStrategy]] = {
    (cls.mode, cls.preset, cls.ofs): cls for cls in (
        OfficialMinIou, OfficialLatest, OfficialDelay, PaperMinIou, PaperLatest, PaperDelay,
        DenseOfficialMinIou, DenseOfficialLatest, DenseOfficialDelay,
        DensePaperMinIou, DensePaperLatest, DensePaperDelay)
}
# The allowed values of the memory's flags, in registration order ("none": no strategy at all).
MODES: Tuple[str, ...] = ("none",) + tuple(sorted({mode for mode, _, _ in STRATEGIES}))
PRESETS: Tuple[str, ...] = tuple(dict.fromkeys(preset for _, preset, _ in STRATEGIES))
OFS_CHOICES: Tuple[str, ...] = tuple(dict.fromkeys(ofs for _, _, ofs in STRATEGIES))
# --ofs's help: each rule's summary (the first class registered for it says it).
OFS_HELP = "; ".join(next(f"{ofs} = {c.ofs_summary}" for c in STRATEGIES.values()
                          if c.ofs == ofs and getattr(c, "ofs_summary", "")) for ofs in OFS_CHOICES)


def strategy_class(config) -> Optional[Type[MemoryStrategy]]:
    """The strategy of `config` (None for --memory none)."""
    if config.mode == "none":
        return None
    key = (config.mode, config.preset, config.ofs)
    if key not in STRATEGIES:
        raise ValueError(f"no memory strategy for --memory {key[0]} --memory_preset {key[1]} --ofs {key[2]}")
    return STRATEGIES[key]


def build_memory(config, detect_score: float = 0.5) -> Optional[MemoryStrategy]:
    """The memory of `config`, or None for --memory none (then the frame step is plain MOTRv2).
    `detect_score`: the paper preset's "detected" score when `update` is not given one."""
    cls = strategy_class(config)
    return None if cls is None else cls(config, detect_score)
