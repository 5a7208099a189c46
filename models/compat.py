"""Upstream MOTRv2's Python API, in one place above what it wraps.

    model, criterion, _ = models.build_model(args)     # an UpstreamMOTR
    model.track_embed.score_thr = 0.5                  # QIM's (and the memory's) update threshold
    model.track_base = RuntimeTrackerBase(0.5, 0.5, 20)
    model.clear()                                      # a new sequence
    out = model.inference_single_image(img, ori_img_size, track_instances, proposals)

`models.motr.RuntimeTrackerBase` is the frame step's id policy (models/track_step.py), under
upstream's import path. The project's own API is `models.tracker.Tracker`.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch

from .config import TrackerConfig
from .memory import MemoryStrategy, build_memory
from .motr import MOTR, build
from .structures import Instances
from .track_step import RuntimeTrackerBase, frame_step


class UpstreamMOTR(MOTR):
    """The network with upstream's per-frame tracking state: `track_base` (ids), `memory` (None: no
    memory) and `track_embed.score_thr` (the update threshold). The state dict is the network's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.track_base = RuntimeTrackerBase.from_config(TrackerConfig())
        self.memory: Optional[MemoryStrategy] = None

    def clear(self):
        """Start a new sequence on upstream's API: ids from 0 again."""
        self.track_base.clear()

    @torch.no_grad()
    def inference_single_image(self, img, ori_img_size, track_instances: Optional[Instances] = None,
                               proposals: Optional[torch.Tensor] = None) -> Dict:
        """Track one frame. `img`: normalised `[1, 3, H, W]` (or a NestedTensor); `ori_img_size`: (h, w)
        of the original image, for pixel boxes; `proposals`: `[n, 5]` normalised cx, cy, w, h, score.
        Ids come from `self.track_base`, QIM's and the memory's update threshold is
        `self.track_embed.score_thr` (read now), the memory is `self.memory`.
        Returns {'track_instances': the live tracks with `boxes` (pixels, xyxy), `scores`, `obj_idxes`}."""
        tracks = frame_step(self, self.encode(img), proposals, track_instances, ori_size=ori_img_size,
                            ids=self.track_base, memory=self.memory, update_threshold=self.track_embed.score_thr)
        return {"track_instances": tracks}


def memory_from_args(args) -> Optional[MemoryStrategy]:
    """The memory of a parsed command line (None for --memory none); what `SparseMemory.from_args` was."""
    config = TrackerConfig.from_args(args)
    return build_memory(config.memory, config.update_score_threshold)


def build_model(args):
    """(model, criterion, postprocessors) as upstream: the model carries `track_base` and `memory`
    built from the flags in `args`."""
    model, criterion, postprocessors = build(args, network_class=UpstreamMOTR)
    config = TrackerConfig.from_args(args)
    model.track_base = RuntimeTrackerBase.from_config(config)
    model.memory = build_memory(config.memory, config.update_score_threshold)
    return model, criterion, postprocessors
