"""The TF-SASM memory: `MemoryConfig`, the interface (`MemoryStrategy`) and the strategies' registry."""
from .base import MEMORY_FIELDS, MemoryStrategy, max_overlap, overlap_with_higher_boxes
from .config import MemoryConfig
from .strategies import MODES, OFS_CHOICES, PRESETS, STRATEGIES, build_memory, strategy_class

__all__ = ["MEMORY_FIELDS", "MODES", "OFS_CHOICES", "PRESETS", "STRATEGIES", "MemoryConfig", "MemoryStrategy",
           "build_memory", "max_overlap", "overlap_with_higher_boxes", "strategy_class"]
