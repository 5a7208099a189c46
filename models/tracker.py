"""The tracker: MOTRv2 (+ TF-SASM) per frame and per sequence around the network.

A `Tracker` owns one sequence's state (live tracks, id counter, memory) and one `TrackerConfig`,
the single source of every threshold; each frame is one `frame_step` (models/track_step.py,
docs/tracker.md). Several trackers may share one network (and one encoding per frame:
`track_frame`). `Tracker.update(dets, img)` is the streaming API; `Tracker.from_checkpoint` builds
the network of an `.args` file (`build_network`).
"""
from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from util.device import autocast_context, resolve_device

from .checkpoint import CheckpointError, load_checkpoint
from .config import TrackerConfig, model_args
from .inputs import image_to_input, proposals_from_detections
from .memory import build_memory
from .motr import build
from .structures import Instances
from .track_step import (MOT_LINE, OUTPUT_ONLY_FIELDS, FrameTracks, RuntimeTrackerBase,  # noqa: F401
                         frame_step, mot_lines, pixel_boxes, select_output)


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
        autocast_context(self.device, amp)  # checks the value
        self.amp = amp
        self.input_size = tuple(input_size)  # short side, long-side cap: submit_dance.py's resize
        self.rgb = rgb
        self.reset()

    @classmethod
    def from_checkpoint(cls, checkpoint: Union[str, os.PathLike], config: Union[str, os.PathLike, None] = "motrv2",
                        device: Union[str, torch.device] = "auto", *, rgb: bool = False, **flags: Any) -> "Tracker":
        """Build the network of `config` (an `.args` file or the name of one in configs/: "motrv2",
        "tfsasm", "tfsasm_paper"; its training and data flags are skipped) with `flags` (any network,
        inference, tracker or memory flag by name: memory="sparse", score_threshold=0.5, amp="fp16",
        ...; an unknown or out-of-range one raises ValueError), load `checkpoint` strictly, and take
        submit_dance.py's fast inference path."""
        for refused in ("resume", "demo", "variants"):
            if refused in flags:
                raise ValueError(f"flag {refused!r} is not for Tracker.from_checkpoint"
                                 + (" (the checkpoint is its first argument)" if refused == "resume" else ""))
        args = model_args(config, {"device": str(device), **flags})
        args.resume = os.fspath(checkpoint)
        network = build_network(args)
        return cls.from_args(network, args, rgb=rgb)

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
    def step(self, features, proposals: Optional[torch.Tensor],
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
def build_network(args):
    """The network (no tracker policy) of a parsed command line with `args.resume` loaded strictly, in
    eval mode on `args.device`, with the inference speed-ups (`--compile` compiles the backbone)."""
    if not args.resume:
        raise CheckpointError("no checkpoint given: pass --resume motrv2_dancetrack.pth (or run --demo)")
    network, _, _ = build(args)
    load_checkpoint(network, args.resume)
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
