"""`MemoryConfig`: every setting of the TF-SASM memory, its default, allowed values and flag."""
from __future__ import annotations

from dataclasses import dataclass

from util.flags import check_fields, non_negative, option, positive, probability

from .strategies import MODES, OFS_CHOICES, OFS_HELP, PRESETS  # the registry's keys


@dataclass(frozen=True)
class MemoryConfig:
    """The memory's settings (flags of submit_dance.py and main.py; docs/sparse_memory.md)."""
    mode: str = option("none", "none: plain MOTRv2; sparse: TF-SASM memory; dense: store every eligible frame "
                       "(tau = 0)", flag="--memory", choices=MODES)
    preset: str = option("official", "official: the authors' public code bit for bit; paper: the algorithm as "
                         "the paper states it", flag="--memory_preset", choices=PRESETS)
    ofs: str = option("min_iou", f"feature to store: {OFS_HELP}", flag="--ofs", choices=OFS_CHOICES)
    size: int = option(10, "K: slots per track (oldest evicted first)", flag="--memory_size", check=positive)
    tau: float = option(0.1, "moving-distance threshold, in normalised image units, that opens a store",
                        flag="--memory_tau", check=non_negative)
    alpha: float = option(0.5, "decoder input = alpha * query + (1 - alpha) * mean(memory); 1 disables the blend",
                          flag="--memory_alpha", check=probability)
    max_frame_gap: int = option(10, "official preset: force a store when this many frames passed since the last one",
                                flag="--memory_max_frame_gap", check=non_negative)
    store_score: float = option(0.8, "official preset: a distance-triggered store needs score > this",
                                flag="--memory_store_score", check=probability)
    delay_iou: float = option(0.1, "--ofs delay: a due store waits while the overlap is above this (paper: with "
                              "the other detected tracks; official: with the boxes whose bottom edge is higher)",
                              flag="--memory_delay_iou", check=probability)
    temporal_gap_reg: float = option(0.0, "best_iou *= 1 + this each frame, so older candidates are replaced "
                                     "more easily", flag="--memory_temporal_gap_reg", check=non_negative)

    def __post_init__(self):
        check_fields(self)
