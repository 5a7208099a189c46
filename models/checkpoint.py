"""Loading MOTRv2 checkpoints strictly, with errors that say exactly what does not fit.

A checkpoint is refused before any weight reaches the model when it is damaged: a record of its
zip archive that fails its CRC (a flipped byte loads silently otherwise), a `<file>.sha256` beside
it that does not match, or weights that are not finite (NaN / inf, named).
"""
import hashlib
import os
import pickle
import zipfile
from typing import Dict, List, Mapping

import torch
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model."""


def sha256_of(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def checksum_path(path: str) -> str:
    """Where the checksum of `path` is kept: `<path>.sha256` (the shipped weights have one)."""
    return f"{path}.sha256"


def write_checksum(path: str) -> str:
    """Write `<path>.sha256` (`sha256sum`'s format) and return the digest."""
    digest = sha256_of(path)
    with open(checksum_path(path), "w") as f:
        f.write(f"{digest}  {os.path.basename(path)}\n")
    return digest


def verify_file(path: str) -> None:
    """Raise CheckpointError when the file is damaged: a zip record (torch.save's format) that fails
    its CRC, or a `<path>.sha256` beside it that does not match its bytes."""
    sidecar = checksum_path(path)
    if os.path.isfile(sidecar):
        with open(sidecar) as f:
            words = f.read().split()
        expected = words[0].lower() if words else ""
        actual = sha256_of(path)
        if actual != expected:
            raise CheckpointError(f"checkpoint {path} does not match its checksum {sidecar} "
                                  f"(sha256 {actual[:16]}..., expected {expected[:16]}...): the file is damaged; "
                                  "copy it again")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {exc}; the file is damaged, copy it again") from exc
        if bad is not None:
            raise CheckpointError(f"checkpoint {path} is damaged: record {bad!r} fails its CRC check; copy it again")


def non_finite_tensors(state: Mapping[str, torch.Tensor]) -> List[str]:
    """Names of the floating-point tensors of `state` holding NaN or inf."""
    return [k for k, v in state.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def read_checkpoint(path: str) -> Dict:
    """Read a checkpoint file; a missing, truncated, damaged or non-checkpoint file raises
    CheckpointError naming it."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    verify_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as exc:
        size = os.path.getsize(path)
        raise CheckpointError(
            f"cannot read checkpoint {path} ({size} bytes): {exc}. The file is truncated or is not a "
            "PyTorch checkpoint; download/copy it again.") from exc


def extract_state_dict(checkpoint) -> Dict[str, torch.Tensor]:
    """The model weights from `{'model': sd}`, `{'state_dict': sd}` or a bare state dict, without a
    DistributedDataParallel `module.` prefix."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("model"), Mapping):
        state = checkpoint["model"]
    elif isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        state = checkpoint["state_dict"]
    elif isinstance(checkpoint, Mapping) and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state = checkpoint
    else:
        raise CheckpointError("checkpoint holds neither {'model': state_dict} nor a state dict")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def drop_unused_bn_counters(model: nn.Module, state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """`state` without the `num_batches_tracked` counters the model has no buffer for: a backbone
    saved with regular BatchNorm2d carries them, our FrozenBatchNorm2d keeps none (and drops them
    on load), so strict key comparison must not report them as unexpected."""
    expected = model.state_dict().keys()
    return {k: v for k, v in state.items() if not (k.endswith(".num_batches_tracked") and k not in expected)}


def mismatched_keys(model: nn.Module, state: Mapping[str, torch.Tensor]):
    """(missing, unexpected, mis-shaped) keys of `state` against `model`; mis-shaped entries read
    'name: checkpoint (shape) vs model (shape)'. All three empty when the state fits exactly."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                 for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    return missing, unexpected, misshaped


def describe_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """'' when `state` fits `model` exactly, else a readable list of what differs."""
    missing, unexpected, misshaped = mismatched_keys(model, state)
    if not (missing or unexpected or misshaped):
        return ""

    def block(title, items):
        if not items:
            return ""
        shown = "\n".join(f"    {x}" for x in items[:50])
        more = f"\n    ... and {len(items) - 50} more" if len(items) > 50 else ""
        return f"  {title} ({len(items)}):\n{shown}{more}\n"

    return (block("missing from the checkpoint", missing) + block("unexpected in the checkpoint", unexpected)
            + block("shape mismatch", misshaped))


def load_checkpoint(model: nn.Module, path_or_state, strict: bool = True) -> Dict:
    """Load weights into `model`. Strict: any missing, unexpected or mis-shaped key raises
    CheckpointError listing them all. Returns the full checkpoint dict (epoch, optimizer, ...)."""
    source = path_or_state if isinstance(path_or_state, str) else "<state dict>"
    checkpoint = read_checkpoint(path_or_state) if isinstance(path_or_state, str) else path_or_state
    state = drop_unused_bn_counters(model, extract_state_dict(checkpoint))
    bad = non_finite_tensors(state)
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise CheckpointError(f"checkpoint {source} holds non-finite weights (NaN or inf) in {len(bad)} "
                              f"tensor(s): {shown}")
    problems = describe_mismatch(model, state)
    if problems and strict:
        raise CheckpointError(
            f"checkpoint {source} does not fit the model (check the architecture flags, e.g. "
            f"$(cat configs/motrv2.args), --backbone, --num_queries):\n{problems}")
    model.load_state_dict(state, strict=strict)
    return checkpoint if isinstance(checkpoint, dict) else {"model": state}
