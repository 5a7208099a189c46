"""Loading MOTRv2 checkpoints strictly, with errors that say exactly what does not fit."""
import os
import pickle
import zipfile
from typing import Dict, Mapping

import torch
from torch import nn

class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model."""


def read_checkpoint(path: str) -> Dict:
    """Read a checkpoint file; a truncated or non-checkpoint file raises CheckpointError naming it."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
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
    problems = describe_mismatch(model, state)
    if problems and strict:
        raise CheckpointError(
            f"checkpoint {source} does not fit the model (check the architecture flags, e.g. "
            f"$(cat configs/motrv2.args), --backbone, --num_queries):\n{problems}")
    model.load_state_dict(state, strict=strict)
    return checkpoint if isinstance(checkpoint, dict) else {"model": state}
