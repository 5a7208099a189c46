"""The tracker: MOTRv2 (+ TF-SASM) per frame and per sequence around the network.

A `Tracker` owns one sequence's state (live tracks, id counter, memory) and one `TrackerConfig`,
the single source of every threshold; each frame is one `frame_step` (models/track_step.py,
docs/tracker.md). Several trackers may share one network (and one encoding per frame:
`track_frame`). `Tracker.update(dets, img)` is the streaming API; `Tracker.from_checkpoint` builds
the network of an `.args` file (`build_network`).
"""
from __future__ import annotations

import logging
import os
from typing import Any, List, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

import numpy as np
import torch

from util.device import autocast_context, check_amp, float32_if_half, resolve_device

from .backends import backend_network, check_backend
from .card import FALLBACK_CONFIG, settings_for
from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from .config import TrackerConfig
from .inputs import image_to_input, proposals_from_detections
from .memory import build_memory
from .motr import build
from .structures import Instances
from .track_step import (MOT_LINE, OUTPUT_ONLY_FIELDS, FrameTracks, RuntimeTrackerBase,  # noqa: F401
                         frame_step, mot_lines, pixel_boxes, select_output)

_log = logging.getLogger(__name__)


@runtime_checkable
class StreamingTracker(Protocol):
    """The streaming interface a tracker offers (boxmot's): `update` once per frame, `reset` per sequence.
    `Tracker` is one; type wrappers and other trackers against this."""

    def update(self, dets, img, embs=None) -> np.ndarray:
        """`dets` `(N, 5|6)` `[x1, y1, x2, y2, conf(, cls)]`, `img` `H x W x 3` uint8, `embs` `(N, D)` or
        None -> `(M, 8)` `[x1, y1, x2, y2, id, conf, cls, det_ind]`."""
        ...

    def reset(self) -> None:
        """Forget every track: the next `update` starts a new sequence."""
        ...


class Tracker:
    """MOTRv2 (+ TF-SASM) as a streaming tracker: `update(dets, img)` per frame, `reset()` per sequence.

        tracker = Tracker.from_checkpoint("motrv2_dancetrack.pth", config="tfsasm")
        for frame in video:                        # BGR uint8 H x W x 3 (rgb=True for RGB)
            tracks = tracker.update(dets, frame)   # dets [N, 5|6] x1, y1, x2, y2, conf(, cls)
            # tracks [M, 8]: x1, y1, x2, y2, id, conf, cls, det_ind

    `step(features, proposals, ori_size)` is the same frame on an encoding the caller computed
    (several trackers on one `network.encode`: `track_frame`)."""

    def __init__(self, network, config: Optional[TrackerConfig] = None, *,
                 device: Union[str, torch.device, None] = None, amp: str = "off",
                 input_size: Tuple[int, int] = (800, 1536), rgb: bool = False):
        self.network = network
        self.config = config or TrackerConfig()
        self.ids = RuntimeTrackerBase.from_config(self.config)
        self.memory = build_memory(self.config.memory, self.config.update_score_threshold)
        self.device = torch.device(device) if device is not None else network.query_embed.weight.device
        check_amp(self.device, amp)  # checks the value (a CPU without bf16 warns when it runs)
        self.amp = amp
        self.input_size = tuple(input_size)  # short side, long-side cap: submit_dance.py's resize
        self.rgb = rgb
        self.settings_source = "given config"  # from_checkpoint: the card, training args or config used
        self.reset()

    @classmethod
    def from_checkpoint(cls, checkpoint: Union[str, os.PathLike], config: Union[str, os.PathLike, None] = None,
                        device: Union[str, torch.device] = "auto", *, rgb: bool = False, **flags: Any) -> "Tracker":
        """Build the network for `checkpoint`, load it strictly, and take submit_dance.py's fast inference path.

        The settings (architecture, input size, thresholds) come from `config` when given (an `.args`
        file or the name of one in configs/: "motrv2", "tfsasm", "tfsasm_paper"; its training and data
        flags skipped); otherwise from the model card beside the checkpoint (`models.card`), else from
        the `args` a training checkpoint holds, else configs/motrv2.args (upstream's released weights).
        `flags` (any network, inference, tracker or memory flag by name: memory="sparse",
        score_threshold=0.5, amp="fp16", ...; an unknown or out-of-range one raises ValueError) win over
        all of them. `tracker.settings_source` (also logged) says where the settings came from."""
        for refused in ("resume", "demo", "variants"):
            if refused in flags:
                raise ValueError(f"flag {refused!r} is not for Tracker.from_checkpoint"
                                 + (" (the checkpoint is its first argument)" if refused == "resume" else ""))
        args, source, loaded = settings_for(checkpoint, config, {"device": str(device), **flags}, load=read_checkpoint)
        (_log.warning if source.startswith(f"config {FALLBACK_CONFIG} (") else _log.info)(
            "Tracker.from_checkpoint(%s): settings from %s", os.fspath(checkpoint), source)
        args.resume = os.fspath(checkpoint)
        network = build_network(args, loaded)
        tracker = cls.from_args(network, args, rgb=rgb)
        tracker.settings_source = source
        return tracker

    @classmethod
    def from_args(cls, network, args, *, rgb: bool = False) -> "Tracker":
        """A tracker with the settings of a parsed submit_dance.py command line."""
        return cls(network, TrackerConfig.from_args(args), device=network.query_embed.weight.device,
                   amp=args.amp, input_size=(args.val_width, args.val_max_size), rgb=rgb)

    def reset(self) -> None:
        """Start a new sequence: no tracks, ids from 0, memory empty, any frame size."""
        self.tracks: Optional[Instances] = None
        self.ids.clear()
        self.frame_size: Optional[Tuple[int, int]] = None

    # -- one frame ----------------------------------------------------------------------------------
    def step(self, features, proposals: Optional[torch.Tensor], ori_size: Tuple[int, int],
             proposal_classes: Optional[torch.Tensor] = None) -> FrameTracks:
        """Advance this tracker by one frame on `features` (the network's encoding of the frame);
        `proposal_classes` `[n]`: each proposal's class, kept by the track born from it."""
        self.tracks = frame_step(self.network, features, proposals, self.tracks, ori_size=ori_size, ids=self.ids,
                                 memory=self.memory, update_threshold=self.config.update_score_threshold,
                                 proposal_classes=proposal_classes)
        return select_output(self.tracks, self.config.score_threshold, self.config.area_threshold,
                             self.config.public_protocol)

    def track(self, image: torch.Tensor, proposals: Optional[torch.Tensor], ori_size: Tuple[int, int],
              proposal_classes: Optional[torch.Tensor] = None) -> FrameTracks:
        """One frame from the model input: `image` normalised `[1, 3, h, w]`, `proposals` `[n, 5]`
        normalised cx, cy, w, h, score, `ori_size` (h, w) of the original image."""
        return track_frame([self], image, proposals, ori_size, proposal_classes)[0]

    def update(self, dets, img, embs=None) -> np.ndarray:
        """Track one frame of a stream (boxmot's `update(dets, img, embs)`).

        `dets`: `(N, 5)` or `(N, 6)` `[x1, y1, x2, y2, conf(, cls)]` in pixels of `img` (the proposals;
        N may be 0), numpy or torch; `cls` integer class ids (0 when the column is absent).
        `img`: `H x W x 3` uint8, BGR (RGB with `rgb=True`). `embs`: `(N, D)` appearance embeddings,
        accepted for boxmot's signature and ignored (MOTRv2 carries identity in its track queries).
        Returns `(M, 8)` float `[x1, y1, x2, y2, id, conf, cls, det_ind]`: the boxes and ids
        submit_dance.py writes for this frame; `cls` is the class of the detection the track was born
        from (a track query is never re-matched to a detection; 0 for a track a learned query
        started); `det_ind` the row of `dets` the box's query came from this frame (-1: none)."""
        image = _check_image(img)
        h, w = image.shape[:2]
        if self.frame_size is not None and self.frame_size != (h, w):
            raise ValueError(f"img is {w}x{h} but this sequence's frames are {self.frame_size[1]}x"
                             f"{self.frame_size[0]}: call reset() before a new sequence")
        dets = _check_dets(dets)
        _check_embs(embs, len(dets))
        x = self.input_tensor(image)
        xywh = np.concatenate([dets[:, :2], dets[:, 2:4] - dets[:, :2], dets[:, 4:5]], axis=1)
        proposals = proposals_from_detections(xywh, w, h)
        out = self.track(x, proposals, (h, w), torch.from_numpy(dets[:, 5].astype(np.int64)))
        self.frame_size = (h, w)
        classes = out.classes if out.classes is not None else torch.zeros_like(out.ids)
        rows = torch.cat([out.boxes.float(), out.ids[:, None].float(), out.scores[:, None].float(),
                          classes[:, None].float(), out.det_index[:, None].float()], dim=1)
        return rows.cpu().numpy().astype(np.float64)

    def update_detections(self, detections, frame) -> "Any":
        """Track one frame in supervision's shape: `sv.Detections` in (the proposals: `xyxy` in pixels
        of `frame`, `confidence` (1 where None), `class_id` (0 where None)), `sv.Detections` out: the
        tracked boxes with `tracker_id`, `confidence`, `class_id` (the class of the detection the
        track was born from) and `data["det_index"]` (the row of `detections` the box's query came
        from this frame, -1: none). The boxes are the model's, as `update` returns them; `frame` as
        `update`'s `img` (BGR uint8, as cv2 and `sv.get_video_frames_generator` give it).
        Needs `pip install supervision` (an optional dependency: requirements-extras.txt)."""
        sv = _supervision()
        xyxy = np.asarray(detections.xyxy, dtype=np.float64).reshape(-1, 4)
        n = len(xyxy)
        conf = np.ones(n) if detections.confidence is None else np.asarray(detections.confidence, np.float64)
        cls = np.zeros(n) if detections.class_id is None else np.asarray(detections.class_id, np.float64)
        rows = self.update(np.concatenate([xyxy, conf.reshape(n, 1), cls.reshape(n, 1)], axis=1), frame)
        return sv.Detections(xyxy=rows[:, :4].astype(np.float32), confidence=rows[:, 5].astype(np.float32),
                             class_id=rows[:, 6].astype(int), tracker_id=rows[:, 4].astype(int),
                             data={"det_index": rows[:, 7].astype(int)})

    def input_tensor(self, img: np.ndarray) -> torch.Tensor:
        """An `H x W x 3` uint8 frame (BGR, or RGB with `rgb=True`) as the model input `[1, 3, h, w]`:
        submit_dance.py's resize (short side `input_size[0]`, long side at most `input_size[1]`)."""
        rgb = img if self.rgb else img[..., ::-1]
        return image_to_input(np.ascontiguousarray(rgb), *self.input_size)[None]

    def __repr__(self) -> str:
        return f"Tracker({self.config}, device={self.device}, amp={self.amp!r}, input_size={self.input_size})"


def track_frame(trackers: Sequence[Tracker], image: torch.Tensor, proposals: Optional[torch.Tensor],
                ori_size: Tuple[int, int], proposal_classes: Optional[torch.Tensor] = None) -> List[FrameTracks]:
    """One frame for every tracker: the image is encoded once (the trackers share one network),
    then each tracker decodes, gives ids and updates its memory on that encoding."""
    network = trackers[0].network
    if any(t.network is not network for t in trackers):
        raise ValueError("track_frame: the trackers must share one network")
    device, amp = trackers[0].device, trackers[0].amp
    if getattr(network, "precision_in_runtime", False):  # an exported backend does its own (models/backends.py)
        amp = "off"
    with torch.inference_mode():
        # Mixed precision covers the encoding only (backbone and encoder: nearly all of a frame's
        # arithmetic); the decoder, its heads, QIM and the memory run in float32, where a bf16/fp16
        # rounding would move boxes and track queries from frame to frame.
        with autocast_context(device, amp):
            features = network.encode(image.to(device))
        features.tokens = float32_if_half(features.tokens)
        proposals = None if proposals is None else proposals.to(device)
        return [t.step(features, proposals, ori_size, proposal_classes) for t in trackers]


# -- building ------------------------------------------------------------------------------------------
def build_network(args, checkpoint: Optional[dict] = None):
    """The network (no tracker policy) of a parsed command line with `args.resume` loaded strictly, in
    eval mode on `args.device`, with the inference speed-ups (`--compile` compiles the backbone).
    `checkpoint`: the contents of `args.resume` when the caller has read it already. With `--backend
    onnxruntime|openvino` its encode and decode run as exported graphs (`models/backends.py`; the
    rest, QIM and the queries, stays PyTorch on the CPU)."""
    if not args.resume:
        raise CheckpointError("no checkpoint given: pass --resume motrv2_dancetrack.pth (or run --demo)")
    backend = getattr(args, "backend", "torch")
    check_backend(backend)  # before any work: a missing runtime says what to install
    network, _, _ = build(args)
    load_checkpoint(network, checkpoint if checkpoint is not None else args.resume)
    device = resolve_device(args.device) if backend == "torch" else torch.device("cpu")
    network = network.eval().to(device).optimize_for_inference(compile_backbone=args.compile and backend == "torch")
    network = backend_network(network, args)
    if backend == "torch":
        _log.info("network on torch, %s, amp %s", device, getattr(args, "amp", "off"))
    return network


def _supervision():
    try:
        import supervision
    except ImportError:
        raise ImportError("Tracker.update_detections needs the supervision package: pip install supervision "
                          "(or pip install -r requirements-extras.txt)") from None
    return supervision


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
    """(N, 5|6) boxes -> float64 (N, 6) x1, y1, x2, y2, conf, cls (0 where not given), checked."""
    if dets is None:
        return np.zeros((0, 6))
    d = _as_numpy(dets, "dets")
    if d.size == 0 and d.ndim <= 2:
        return np.zeros((0, 6))
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
    if d.shape[1] == 5:
        return np.concatenate([d, np.zeros((len(d), 1))], axis=1)
    fractional = d[:, 5] != np.round(d[:, 5])
    if fractional.any():
        i = int(np.argmax(fractional))
        raise ValueError(f"dets: row {i} has class {d[i, 5]}: column 5 (cls) holds integer class ids")
    return d


def _check_embs(embs, n: int) -> None:
    """`embs` is ignored, but one of another length than `dets` is a caller's mistake worth naming."""
    if embs is None:
        return
    shape = getattr(embs, "shape", None)
    if shape is not None and len(shape) >= 1 and shape[0] != n:
        raise ValueError(f"embs: {shape[0]} embeddings for {n} detections (embs is ignored, but must match dets)")
