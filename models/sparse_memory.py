"""The memory's former import path (docs and user code name it): everything now lives in `models/memory/`."""
import argparse

from util.flags import add_flags

from .memory import (MEMORY_FIELDS, MODES, OFS_CHOICES, PRESETS, STRATEGIES, MemoryConfig,  # noqa: F401
                     MemoryStrategy, build_memory, max_overlap, overlap_with_higher_boxes, strategy_class)

SparseMemory = MemoryStrategy  # the type of every memory (isinstance checks, annotations)


def add_memory_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the memory's flags (generated from `MemoryConfig`) to `parser`; returns it."""
    add_flags(parser, MemoryConfig, "TF-SASM sparse memory")
    return parser
