"""One tracking step around the network, and the id policy and output filter it uses.

The frame step (docs/tracker.md), in this order, each once:

    queries  = learned detect queries + one per proposal (+ empty memory fields) + the live tracks
    tgt      = memory.blend_decoder_input(queries)        # TF-SASM; the query itself without memory
    out      = network.decode(features, tgt, ref_pts)     # features = network.encode(image), shareable
    scores   = sigmoid(logits)                            # once
    ids      = RuntimeTrackerBase.update (+ track NMS)
    memory.after_forward (distance), memory.update (candidate, store; "detected" = the update threshold)
    live     = QIM(tracks with ids, update threshold)     # next frame's queries
    boxes    = pixel xyxy boxes of the live tracks

The network is duck-typed (this module does not import it): both the network's upstream API
(`models.compat`) and `models.tracker.Tracker` step through here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torchvision

from .memory import MemoryStrategy
from .structures import Instances, box_cxcywh_to_xyxy

# Fields only the output carries; dropped before the tracks become next frame's queries.
OUTPUT_ONLY_FIELDS = ("boxes", "labels")
MOT_LINE = "{frame},{id},{x1:.2f},{y1:.2f},{w:.2f},{h:.2f},1,-1,-1,-1\n"


class RuntimeTrackerBase:
    """Track ids at inference: a new id for a new query scoring >= `score_thresh`; a track scoring
    below `filter_score_thresh` for `miss_tolerance` consecutive frames loses its id.

    `nms_iou` (None: off, as upstream) adds non-maximum suppression among the boxes this frame
    would report (tracks with an id scoring >= `filter_score_thresh`, and new queries scoring >=
    `score_thresh`): of two such boxes overlapping by more than `nms_iou`, the lower-scoring one is
    treated as missed this frame (its score is set to 0: no box written, no new id, no QIM update,
    and its miss count goes up). It stops a track that has lost its object from riding on an
    object another track already follows, which a small, briefly trained model does often.
    """

    # The positional signature and its defaults are upstream's (code written against upstream calls
    # `RuntimeTrackerBase()` or `RuntimeTrackerBase(thr, thr, miss)`); the project's trackers are built
    # with `from_config`, whose values are `TrackerConfig`'s (miss_tolerance 20).
    def __init__(self, score_thresh: float = 0.6, filter_score_thresh: float = 0.5, miss_tolerance: int = 10,
                 nms_iou: Optional[float] = None):
        if nms_iou is not None and not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1] (or None for no suppression), got {nms_iou}")
        self.score_thresh = score_thresh
        self.filter_score_thresh = filter_score_thresh
        self.miss_tolerance = miss_tolerance
        self.nms_iou = nms_iou
        self.max_obj_id = 0

    @classmethod
    def from_config(cls, config) -> "RuntimeTrackerBase":
        """The id policy of a `TrackerConfig` (new and kept tracks both at `score_threshold`, as upstream's
        submit_dance.py sets it)."""
        return cls(config.score_threshold, config.score_threshold, config.miss_tolerance, nms_iou=config.track_nms_iou)

    def clear(self):
        self.max_obj_id = 0

    def suppress_overlaps(self, tracks: Instances) -> None:
        """Zero the score of every reported box that a higher-scoring reported box overlaps by more
        than `nms_iou` (greedy NMS, as torchvision.ops.nms)."""
        reported = ((tracks.obj_idxes >= 0) & (tracks.scores >= self.filter_score_thresh)) | (
            (tracks.obj_idxes < 0) & (tracks.scores >= self.score_thresh))
        candidates = torch.nonzero(reported).flatten()
        if len(candidates) < 2:
            return
        boxes = box_cxcywh_to_xyxy(tracks.pred_boxes[candidates]).float()
        kept = torchvision.ops.nms(boxes, tracks.scores[candidates].float(), self.nms_iou)
        suppressed = torch.ones(len(candidates), dtype=torch.bool, device=candidates.device)
        suppressed[kept] = False
        tracks.scores[candidates[suppressed]] = 0.0

    def update(self, tracks: Instances) -> None:
        if self.nms_iou is not None:
            self.suppress_overlaps(tracks)
        tracks.disappear_time[tracks.scores >= self.score_thresh] = 0
        new_obj = (tracks.obj_idxes == -1) & (tracks.scores >= self.score_thresh)
        missing = (tracks.obj_idxes >= 0) & (tracks.scores < self.filter_score_thresh)
        num_new = int(new_obj.sum())
        tracks.obj_idxes[new_obj] = self.max_obj_id + torch.arange(num_new, device=tracks.obj_idxes.device)
        self.max_obj_id += num_new
        tracks.disappear_time[missing] += 1
        tracks.obj_idxes[missing & (tracks.disappear_time >= self.miss_tolerance)] = -1


# -- the frame step --------------------------------------------------------------------------------
def pixel_boxes(tracks: Instances, ori_size: Tuple[int, int]) -> torch.Tensor:
    """`pred_boxes` (normalised cx, cy, w, h) as pixel x1, y1, x2, y2 of an image of `ori_size` (h, w)."""
    img_h, img_w = ori_size
    scale = torch.tensor([img_w, img_h, img_w, img_h], dtype=tracks.pred_boxes.dtype, device=tracks.pred_boxes.device)
    return box_cxcywh_to_xyxy(tracks.pred_boxes) * scale[None, :]


def frame_step(network, features, proposals: Optional[torch.Tensor], tracks: Optional[Instances], *,
               ori_size: Tuple[int, int], ids: RuntimeTrackerBase, memory: Optional[MemoryStrategy],
               update_threshold: float, proposal_classes: Optional[torch.Tensor] = None) -> Instances:
    """One frame of tracking on the network's encoding of the image; returns the live tracks (next
    frame's queries) with `boxes` in pixels (xyxy), `scores` and `obj_idxes`. `proposals`: `[n, 5]`
    normalised cx, cy, w, h, score (or None). Changes `ids` (the id counter), nothing in `network`.

    `network` is anything with MOTR's `_generate_empty_tracks(proposals)`, `num_queries`,
    `decode(features, tgt, ref_pts)` and `track_embed` (QIM); `features` is its `encode(image)`.
    `memory` None: no memory calls at all (plain MOTRv2). `proposal_classes` `[n]` (long): the class of
    each proposal; a track keeps the class of the proposal it was born from (`det_class`; 0 for the
    learned queries and when not given)."""
    queries = network._generate_empty_tracks(proposals)
    n_fresh = len(queries)
    device = queries.query_pos.device
    # Which proposal of this frame each query is (-1: a learned query or a carried track).
    queries.det_index = torch.cat([torch.full((network.num_queries,), -1, dtype=torch.long, device=device),
                                   torch.arange(n_fresh - network.num_queries, device=device)])
    # A track is born from a fresh query: it keeps that frame's proposal index (-1: a learned query).
    queries.birth_det_index = queries.det_index.clone()
    queries.det_class = torch.zeros(n_fresh, dtype=torch.long, device=device)
    if proposal_classes is not None:
        queries.det_class[network.num_queries:] = proposal_classes.to(device=device, dtype=torch.long)
    if memory is not None:
        memory.init_fields(queries, queries.query_pos.shape[-1])
    if tracks is not None:
        carried = Instances(tracks.image_size, **{k: v for k, v in tracks.get_fields().items()
                                                  if k not in OUTPUT_ONLY_FIELDS})
        carried.det_index = torch.full((len(carried),), -1, dtype=torch.long, device=device)
        queries = Instances.cat([queries, carried])
    tgt = queries.query_pos if memory is None else memory.blend_decoder_input(queries.query_pos, queries)
    out = network.decode(features, tgt, queries.ref_pts)
    queries.pred_logits = out["pred_logits"][0]
    queries.pred_boxes = out["pred_boxes"][0]
    queries.output_embedding = out["hs"][0]
    queries.scores = queries.pred_logits[:, 0].sigmoid()
    if memory is not None:
        memory.after_forward(queries, out["first_layer_boxes"][0], queries.pred_boxes)
    ids.update(queries)
    if memory is not None:
        memory.update(queries, detect_score=update_threshold)
    live = network.track_embed({"track_instances": queries}, score_thr=update_threshold)
    live.boxes = pixel_boxes(live, ori_size)
    live.labels = torch.zeros_like(live.scores)
    return live


# -- what a frame reports ----------------------------------------------------------------------------
@dataclass
class FrameTracks:
    """The tracks a frame reports (after the output filter): `boxes` [M, 4] pixel x1, y1, x2, y2,
    `ids` [M], `scores` [M], `det_index` [M] (the proposal each box's query came from this frame, -1 if none),
    `classes` [M] (the class of the proposal each track was born from; 0 when unknown)."""
    boxes: torch.Tensor
    ids: torch.Tensor
    scores: torch.Tensor
    det_index: torch.Tensor
    classes: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.ids)


def select_output(tracks: Instances, score_threshold: float, area_threshold: float = 100,
                  public_protocol: bool = False) -> FrameTracks:
    """The output filter: tracks with an id, score > `score_threshold`, box area > `area_threshold` px;
    with `public_protocol` only tracks born from a proposal (a public detection of their first frame)."""
    keep = (tracks.scores > score_threshold) & (tracks.obj_idxes >= 0)
    if public_protocol:
        keep &= tracks.birth_det_index >= 0
    boxes = tracks.boxes[keep]
    wh = boxes[:, 2:4] - boxes[:, 0:2]
    big = wh[:, 0] * wh[:, 1] > area_threshold
    det_index = tracks.det_index[keep] if tracks.has("det_index") else torch.full_like(tracks.obj_idxes[keep], -1)
    classes = tracks.det_class[keep] if tracks.has("det_class") else torch.zeros_like(tracks.obj_idxes[keep])
    return FrameTracks(boxes[big], tracks.obj_idxes[keep][big], tracks.scores[keep][big], det_index[big],
                       classes[big])


def mot_lines(output: FrameTracks, frame: int) -> List[str]:
    """MOTChallenge lines `frame,id,x,y,w,h,1,-1,-1,-1` of one frame's reported tracks."""
    return [MOT_LINE.format(frame=frame, id=track_id, x1=x1, y1=y1, w=x2 - x1, h=y2 - y1)
            for (x1, y1, x2, y2), track_id in zip(output.boxes.tolist(), output.ids.tolist())]
