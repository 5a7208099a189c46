"""The tracker: everything MOTRv2 does per frame and per sequence around the network.

One frame step (`frame_step`), in this order, each once (docs/tracker.md):

    queries  = learned detect queries + one per proposal (+ empty memory fields) + the live tracks
    tgt      = memory.blend_decoder_input(queries)        # TF-SASM; the query itself without memory
    out      = network.decode(features, tgt, ref_pts)     # features = network.encode(image), shareable
    scores   = sigmoid(logits)                            # once
    ids      = RuntimeTrackerBase.update (+ track NMS)
    memory.after_forward (distance), memory.update (candidate, store; "detected" = the update threshold)
    live     = QIM(tracks with ids, update threshold)     # next frame's queries
    boxes    = pixel xyxy boxes of the live tracks

A `Tracker` owns one sequence's state (live tracks, id counter, memory settings) and one
`TrackerConfig`, the single source of every threshold. Several trackers may share one network
(and one encoding per frame: `track_frame`). `Tracker.update(dets, img)` is the streaming API.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torchvision

from util.device import autocast_context, resolve_device

from .inputs import image_to_input, proposals_from_detections
from .sparse_memory import SparseMemory
from .structures import Instances, box_cxcywh_to_xyxy

if TYPE_CHECKING:  # the network imports this module
    from .deformable_transformer import EncodedFeatures
    from .motr import MOTR

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

    def __init__(self, score_thresh: float = 0.6, filter_score_thresh: float = 0.5, miss_tolerance: int = 10,
                 nms_iou: Optional[float] = None):
        if nms_iou is not None and not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1] (or None for no suppression), got {nms_iou}")
        self.score_thresh = score_thresh
        self.filter_score_thresh = filter_score_thresh
        self.miss_tolerance = miss_tolerance
        self.nms_iou = nms_iou
        self.max_obj_id = 0

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


def frame_step(network: "MOTR", features: "EncodedFeatures", proposals: Optional[torch.Tensor],
               tracks: Optional[Instances], *, ori_size: Tuple[int, int], ids: RuntimeTrackerBase,
               memory: Optional[SparseMemory], update_threshold: float) -> Instances:
    """One frame of tracking on the network's encoding of the image; returns the live tracks (next
    frame's queries) with `boxes` in pixels (xyxy), `scores` and `obj_idxes`. `proposals`: `[n, 5]`
    normalised cx, cy, w, h, score (or None). Changes `ids` (the id counter), nothing in `network`."""
    queries = network._generate_empty_tracks(proposals)
    n_fresh = len(queries)
    device = queries.query_pos.device
    # Which proposal of this frame each query is (-1: a learned query or a carried track).
    queries.det_index = torch.cat([torch.full((network.num_queries,), -1, dtype=torch.long, device=device),
                                   torch.arange(n_fresh - network.num_queries, device=device)])
    # A track is born from a fresh query: it keeps that frame's proposal index (-1: a learned query).
    queries.birth_det_index = queries.det_index.clone()
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
    `ids` [M], `scores` [M], `det_index` [M] (the proposal each box's query came from this frame, -1 if none)."""
    boxes: torch.Tensor
    ids: torch.Tensor
    scores: torch.Tensor
    det_index: torch.Tensor

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
    return FrameTracks(boxes[big], tracks.obj_idxes[keep][big], tracks.scores[keep][big], det_index[big])


def mot_lines(output: FrameTracks, frame: int) -> List[str]:
    """MOTChallenge lines `frame,id,x,y,w,h,1,-1,-1,-1` of one frame's reported tracks."""
    return [MOT_LINE.format(frame=frame, id=track_id, x1=x1, y1=y1, w=x2 - x1, h=y2 - y1)
            for (x1, y1, x2, y2), track_id in zip(output.boxes.tolist(), output.ids.tolist())]


# -- the tracker -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrackerConfig:
    """Every setting of the tracker and its memory; names are `submit_dance.py`'s flags."""
    score_threshold: float = 0.5          # a new track, and a box to report
    update_score_threshold: float = 0.5   # QIM updates a track's query; the memory's "detected" test
    miss_tolerance: int = 20              # missed frames before a track ends
    track_nms_iou: Optional[float] = None  # NMS among reported boxes (None: off, as upstream)
    area_threshold: float = 100           # reported boxes must be larger (pixels)
    memory: str = "none"                  # none | sparse | dense (TF-SASM)
    memory_preset: str = "official"
    ofs: str = "min_iou"
    memory_size: int = 10
    memory_tau: float = 0.1
    memory_alpha: float = 0.5
    memory_max_frame_gap: int = 10
    memory_store_score: float = 0.8
    memory_delay_iou: float = 0.1
    memory_temporal_gap_reg: float = 0.0
    public_protocol: bool = False         # report only tracks born from a proposal (public detections)

    @classmethod
    def field_names(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_args(cls, args) -> "TrackerConfig":
        """The tracker settings of a parsed command line (flags of the same names)."""
        return cls(**{name: getattr(args, name) for name in cls.field_names() if hasattr(args, name)})


class Tracker:
    """MOTRv2 (+ TF-SASM) as a streaming tracker: `update(dets, img)` per frame, `reset()` per sequence.

        tracker = Tracker.from_checkpoint("motrv2_dancetrack.pth", config="tfsasm")
        for frame in video:                        # BGR uint8 H x W x 3 (rgb=True for RGB)
            tracks = tracker.update(dets, frame)   # dets [N, 5|6] x1, y1, x2, y2, conf(, cls)
            # tracks [M, 8]: x1, y1, x2, y2, id, conf, cls, det_ind

    `step(features, proposals, ori_size)` is the same frame on an encoding the caller computed
    (several trackers on one `network.encode`: `track_frame`)."""

    def __init__(self, network: "MOTR", config: Optional[TrackerConfig] = None, *,
                 device: Union[str, torch.device, None] = None, amp: str = "off",
                 input_size: Tuple[int, int] = (800, 1536), rgb: bool = False):
        self.network = network
        self.config = config or TrackerConfig()
        c = self.config
        self.ids = RuntimeTrackerBase(c.score_threshold, c.score_threshold, c.miss_tolerance, nms_iou=c.track_nms_iou)
        self.memory = SparseMemory.from_args(c)
        self.device = torch.device(device) if device is not None else network.query_embed.weight.device
        autocast_context(self.device, amp)  # checks the value
        self.amp = amp
        self.input_size = tuple(input_size)  # short side, long-side cap: submit_dance.py's resize
        self.rgb = rgb
        self.reset()

    @classmethod
    def from_checkpoint(cls, checkpoint: Union[str, os.PathLike], config: Union[str, os.PathLike, None] = "motrv2",
                        device: Union[str, torch.device] = "auto", *, rgb: bool = False, **flags: Any) -> "Tracker":
        """Build the network of `config` (an `.args` file or the name of one in configs/: "motrv2",
        "tfsasm", "tfsasm_paper") with `flags` (any submit_dance.py flag by name: memory="sparse",
        score_threshold=0.5, amp="fp16", ...), load `checkpoint` strictly, and take submit_dance.py's
        fast inference path."""
        from util.args import tracking_args
        for refused in ("resume", "demo", "variants"):
            if refused in flags:
                raise ValueError(f"flag {refused!r} is not for Tracker.from_checkpoint"
                                 + (" (the checkpoint is its first argument)" if refused == "resume" else ""))
        args = tracking_args(config, {"device": str(device), **flags})
        args.resume = os.fspath(checkpoint)
        network = build_network(args)
        return cls.from_args(network, args, rgb=rgb)

    @classmethod
    def from_args(cls, network: "MOTR", args, *, rgb: bool = False) -> "Tracker":
        """A tracker with the settings of a parsed submit_dance.py command line."""
        return cls(network, TrackerConfig.from_args(args), device=network.query_embed.weight.device,
                   amp=args.amp, input_size=(args.val_width, args.val_max_size), rgb=rgb)

    @staticmethod
    def check_config(config: TrackerConfig) -> None:
        """Raise ValueError for settings the tracker or the memory would refuse (before any work)."""
        RuntimeTrackerBase(config.score_threshold, config.score_threshold, config.miss_tolerance,
                           nms_iou=config.track_nms_iou)
        SparseMemory.from_args(config)

    def reset(self) -> None:
        """Start a new sequence: no tracks, ids from 0, memory empty, any frame size."""
        self.tracks: Optional[Instances] = None
        self.ids.clear()
        self.frame_size: Optional[Tuple[int, int]] = None

    # -- one frame ----------------------------------------------------------------------------------
    def step(self, features: "EncodedFeatures", proposals: Optional[torch.Tensor],
             ori_size: Tuple[int, int]) -> FrameTracks:
        """Advance this tracker by one frame on `features` (the network's encoding of the frame)."""
        self.tracks = frame_step(self.network, features, proposals, self.tracks, ori_size=ori_size, ids=self.ids,
                                 memory=self.memory, update_threshold=self.config.update_score_threshold)
        return select_output(self.tracks, self.config.score_threshold, self.config.area_threshold,
                             self.config.public_protocol)

    def track(self, image: torch.Tensor, proposals: Optional[torch.Tensor], ori_size: Tuple[int, int]) -> FrameTracks:
        """One frame from the model input: `image` normalised `[1, 3, h, w]`, `proposals` `[n, 5]`
        normalised cx, cy, w, h, score, `ori_size` (h, w) of the original image."""
        return track_frame([self], image, proposals, ori_size)[0]

    def update(self, dets, img) -> np.ndarray:
        """Track one frame of a stream.

        `dets`: `(N, 5)` or `(N, 6)` `[x1, y1, x2, y2, conf(, cls)]` in pixels of `img` (the proposals;
        N may be 0), numpy or torch. `img`: `H x W x 3` uint8, BGR (RGB with `rgb=True`).
        Returns `(M, 8)` float `[x1, y1, x2, y2, id, conf, cls, det_ind]`: the boxes and ids
        submit_dance.py writes for this frame (`det_ind` -1 where the box is not a proposal of it)."""
        image = _check_image(img)
        h, w = image.shape[:2]
        if self.frame_size is not None and self.frame_size != (h, w):
            raise ValueError(f"img is {w}x{h} but this sequence's frames are {self.frame_size[1]}x"
                             f"{self.frame_size[0]}: call reset() before a new sequence")
        dets = _check_dets(dets)
        x = self.input_tensor(image)
        xywh = np.concatenate([dets[:, :2], dets[:, 2:4] - dets[:, :2], dets[:, 4:5]], axis=1)
        proposals = proposals_from_detections(xywh, w, h)
        out = self.track(x, proposals, (h, w))
        self.frame_size = (h, w)
        rows = torch.cat([out.boxes.float(), out.ids[:, None].float(), out.scores[:, None].float(),
                          torch.zeros_like(out.scores)[:, None].float(), out.det_index[:, None].float()], dim=1)
        return rows.cpu().numpy().astype(np.float64)

    def input_tensor(self, img: np.ndarray) -> torch.Tensor:
        """An `H x W x 3` uint8 frame (BGR, or RGB with `rgb=True`) as the model input `[1, 3, h, w]`:
        submit_dance.py's resize (short side `input_size[0]`, long side at most `input_size[1]`)."""
        rgb = img if self.rgb else img[..., ::-1]
        return image_to_input(np.ascontiguousarray(rgb), *self.input_size)[None]

    def __repr__(self) -> str:
        return f"Tracker({self.config}, device={self.device}, amp={self.amp!r}, input_size={self.input_size})"


def track_frame(trackers: Sequence[Tracker], image: torch.Tensor, proposals: Optional[torch.Tensor],
                ori_size: Tuple[int, int]) -> List[FrameTracks]:
    """One frame for every tracker: the image is encoded once (the trackers share one network),
    then each tracker decodes, gives ids and updates its memory on that encoding."""
    network = trackers[0].network
    if any(t.network is not network for t in trackers):
        raise ValueError("track_frame: the trackers must share one network")
    device, amp = trackers[0].device, trackers[0].amp
    with torch.inference_mode(), autocast_context(device, amp):
        features = network.encode(image.to(device))
        proposals = None if proposals is None else proposals.to(device)
        return [t.step(features, proposals, ori_size) for t in trackers]


# -- building ------------------------------------------------------------------------------------------
def build_network(args) -> "MOTR":
    """The network of a parsed command line with `args.resume` loaded strictly, in eval mode on
    `args.device`, with the inference speed-ups (`--compile` compiles the backbone)."""
    from models import build_model
    from models.checkpoint import CheckpointError, load_checkpoint
    if not args.resume:
        raise CheckpointError("no checkpoint given: pass --resume motrv2_dancetrack.pth (or run --demo)")
    network, _, _ = build_model(args)
    load_checkpoint(network, args.resume)
    network.track_embed.score_thr = args.update_score_threshold
    network.track_base = RuntimeTrackerBase(args.score_threshold, args.score_threshold, args.miss_tolerance,
                                            nms_iou=args.track_nms_iou)
    device = resolve_device(args.device)
    return network.eval().to(device).optimize_for_inference(compile_backbone=args.compile)


# -- input checks of the streaming API --------------------------------------------------------------------
def _as_numpy(x, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except Exception as exc:  # noqa: BLE001  (any conversion failure is a bad input)
        raise ValueError(f"{what}: expected a numpy array or torch tensor, got {type(x).__name__}") from exc


def _check_image(img) -> np.ndarray:
    image = _as_numpy(img, "img")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"img: expected an H x W x 3 uint8 array, got shape {tuple(image.shape)} dtype {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"img: empty image of shape {tuple(image.shape)}")
    return image


def _check_dets(dets) -> np.ndarray:
    """(N, 5|6) boxes -> float64 (N, 5) x1, y1, x2, y2, conf, checked."""
    if dets is None:
        return np.zeros((0, 5))
    d = _as_numpy(dets, "dets")
    if d.size == 0 and d.ndim <= 2:
        return np.zeros((0, 5))
    if d.ndim != 2 or d.shape[1] not in (5, 6):
        raise ValueError(f"dets: expected an (N, 5) or (N, 6) array [x1, y1, x2, y2, conf(, cls)], "
                         f"got shape {tuple(d.shape)}")
    try:
        d = d.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"dets: expected numbers, got dtype {d.dtype}") from exc
    bad = ~np.isfinite(d).all(axis=1)
    if bad.any():
        raise ValueError(f"dets: row {int(np.argmax(bad))} holds NaN or inf: {d[bad][0].tolist()}")
    flipped = (d[:, 2] < d[:, 0]) | (d[:, 3] < d[:, 1])
    if flipped.any():
        i = int(np.argmax(flipped))
        raise ValueError(f"dets: row {i} has x2 < x1 or y2 < y1 (boxes are x1, y1, x2, y2): {d[i, :4].tolist()}")
    return d[:, :5]
