"""Choosing the torch device from a `--device` flag, the rank of a distributed run, mixed precision."""
import contextlib
import os
import warnings
from typing import Tuple, Union

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


class AmpError(ValueError):
    """An `--amp` value this device cannot run; the message says which and what to use."""


def check_amp(device: torch.device, amp: str) -> None:
    """Refuse what would be ignored: fp16 autocast is CUDA-only (the CPU has no fp16 kernels worth it)."""
    if amp not in ("off", "fp16", "bf16"):
        raise AmpError(f"amp must be 'off', 'fp16' or 'bf16', got {amp!r}")
    if amp == "fp16" and torch.device(device).type != "cuda":
        raise AmpError(f"--amp fp16 needs a CUDA device, but this run is on {torch.device(device).type} "
                       "(use --amp off there)")


# `MOTR_BF16=emulate`: run bf16 on a CPU without bf16 instructions anyway (emulated by PyTorch /
# oneDNN; for measuring bf16's quality on any machine, not for speed).
BF16_ENV = "MOTR_BF16"


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX), or `MOTR_BF16=emulate` is set."""
    if os.environ.get(BF16_ENV, "") == "emulate":
        return True
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        if any(p is not None and p() for p in probes):
            return True
    except Exception:  # noqa: BLE001  (a private probe that moved: fall back to /proc/cpuinfo)
        pass
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


_warned_bf16 = set()


def bf16_fallback_warning(what: str, emulable: bool = False) -> None:
    """Say once per `what` that bf16 was asked for on a CPU without it and float32 runs instead
    (`emulable`: PyTorch, which `MOTR_BF16=emulate` can force to emulate it)."""
    if what not in _warned_bf16:
        _warned_bf16.add(what)
        hint = f" ({BF16_ENV}=emulate forces emulated bf16)" if emulable else ""
        warnings.warn(f"--amp bf16: this CPU has no bf16 instructions (AVX512-BF16 / AMX); {what} runs in float32 "
                      f"instead{hint}", stacklevel=3)


def cpu_bf16(what: str = "the network") -> bool:
    """Whether `--amp bf16` on the CPU runs in bf16 here; warns once (float32 fallback) when not."""
    if cpu_bf16_supported():
        return True
    bf16_fallback_warning(what, emulable=True)
    return False


HALF_DTYPES = (torch.float16, torch.bfloat16)


def float32_if_half(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` in float32 where autocast left it in fp16/bf16 (float32 and float64 as they are): the
    input of a layer kept in full precision under mixed precision."""
    return tensor.float() if tensor.dtype in HALF_DTYPES else tensor


def autocast_context(device: torch.device, amp: str):
    """Mixed precision for `--amp fp16|bf16` on CUDA and `--amp bf16` on a CPU that has bf16 (else
    float32, with a one-time warning); a no-op for `off`."""
    check_amp(device, amp)
    device = torch.device(device)
    if amp == "off":
        return contextlib.nullcontext()
    if device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16) if cpu_bf16() else contextlib.nullcontext()
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.float16 if amp == "fp16" else torch.bfloat16)


def dist_rank_world() -> Tuple[int, int]:
    """(rank, world size) of this process, the one rank helper: the process group's once one is joined
    (training), else torchrun's RANK/WORLD_SIZE or upstream's RLAUNCH_* variables (tracking splits
    the sequences by rank without a process group)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    rank = int(os.environ.get("RANK", os.environ.get("RLAUNCH_REPLICA", 0)))
    world = int(os.environ.get("WORLD_SIZE", os.environ.get("RLAUNCH_REPLICA_TOTAL", 1)))
    return rank, world


def rank_device(device: torch.device, rank: int, world: int) -> torch.device:
    """This rank's GPU when several processes share a machine (LOCAL_RANK, else the global rank)."""
    if device.type == "cuda" and world > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    return device
