"""Choosing the torch device from a `--device` flag."""
import warnings
from typing import Union

import torch


def resolve_device(name: Union[str, torch.device, None] = "auto") -> torch.device:
    """'auto' (or empty) -> cuda when available, else cpu; a CUDA device without a GPU falls back to the
    CPU with a warning, so scripts written for a GPU machine still run."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        warnings.warn(f"--device {name} asked for, but no CUDA device is available: running on the CPU")
        return torch.device("cpu")
    return device
