"""Deterministic stand-in weights: a full state dict without a checkpoint.

The parity fixtures (tests/data/parity) were made by the public MOTRv2, TF-SASM and YOLOX code
loaded with exactly these tensors, so a model of ours that loads them (same names, same shapes)
must reproduce the fixtures' outputs. Benchmarks and tools use them too, wherever the numbers a
model computes do not matter but must be the same from run to run and machine to machine.

The rule, per tensor (independent of the other tensors and of their order):

* a tensor whose dtype is not a float type is all zeros;
* otherwise ``u`` ~ U(-1, 1), drawn in float64 as ``torch.rand(shape) * 2 - 1`` from a fresh
  ``torch.Generator`` seeded with ``zlib.crc32(name)``, then scaled by what the tensor is, the
  first match winning:

  ====================================  =========================================================
  name / shape                          value
  ====================================  =========================================================
  ``*.running_var``                     ``0.75 + 0.25 u``, in (0.5, 1): batch-norm variances
  ``*.running_mean``                    ``0.1 u``
  ends with ``position.weight``         ``0.5 + 0.45 u``: anchor boxes (cx, cy, w, h) in (0.05, 0.95)
  a ``class_embed`` module, >= 2 dims   ``10 u sqrt(3 / fan_in)``: wide, so scores spread from 0.5
  any other tensor of >= 2 dims         ``u sqrt(3 / fan_in)``: unit-variance-preserving
  1 dim (or 0), leaf ``weight``         ``1 + 0.1 u``: norm scales
  anything else                         ``0.1 u``: biases
  ====================================  =========================================================

  where ``fan_in`` is the product of all dimensions but the first; the float64 values are then
  cast to the tensor's dtype.

Usage::

    from util.standin_weights import load_manifest, make_state_dict
    model.load_state_dict(make_state_dict(load_manifest("tests/data/parity/motrv2_state_dict.json")))
    model.load_state_dict(make_state_dict(model.state_dict()))   # any model: its own names
"""
import json
import math
import os
import zlib
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple, Union

import torch

ManifestEntry = Tuple[str, Tuple[int, ...], str]
Manifest = Union[Iterable[Tuple[str, Sequence[int], str]], Mapping[str, torch.Tensor]]


def _dtype_name(dtype: Union[str, torch.dtype]) -> str:
    return dtype if isinstance(dtype, str) else str(dtype).replace("torch.", "")


def _values(name: str, shape: Tuple[int, ...], u: torch.Tensor) -> torch.Tensor:
    """Scale the float64 U(-1, 1) draw `u` for the tensor called `name` (rule in the module docstring)."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return 0.75 + 0.25 * u
    if leaf == "running_mean":
        return 0.1 * u
    if name.endswith("position.weight"):
        return 0.5 + 0.45 * u
    if len(shape) >= 2:
        gain = 10.0 if ".class_embed." in "." + name else 1.0  # u * 1.0 is u, bit for bit
        return u * gain * math.sqrt(3.0 / math.prod(shape[1:]))
    if leaf == "weight":
        return 1.0 + 0.1 * u
    return 0.1 * u


def make_tensor(name: str, shape: Sequence[int], dtype: Union[str, torch.dtype] = "float32") -> torch.Tensor:
    """The stand-in value of the tensor `name` of `shape` and `dtype` (a name such as "float32",
    or a torch.dtype)."""
    shape = tuple(int(s) for s in shape)
    dtype_name = _dtype_name(dtype)
    torch_dtype = getattr(torch, dtype_name)
    if not dtype_name.startswith("float"):
        return torch.zeros(shape, dtype=torch_dtype)
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    u = torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1
    return _values(name, shape, u).to(torch_dtype)


def _entries(manifest: Manifest) -> List[ManifestEntry]:
    if isinstance(manifest, Mapping):
        return [(name, tuple(t.shape), _dtype_name(t.dtype)) for name, t in manifest.items()]
    return [(name, tuple(shape), _dtype_name(dtype)) for name, shape, dtype in manifest]


def make_state_dict(manifest: Manifest) -> Dict[str, torch.Tensor]:
    """{name: make_tensor(name, shape, dtype)} in the manifest's order. `manifest` is a list of
    (name, shape, dtype name) as `load_manifest` gives, or a state dict to take them from."""
    return {name: make_tensor(name, shape, dtype) for name, shape, dtype in _entries(manifest)}


def load_manifest(path: Union[str, os.PathLike]) -> List[ManifestEntry]:
    """[(name, shape, dtype name), ...] from a manifest JSON (a "tensors" list of {name, shape,
    dtype}, as tests/data/parity/*_state_dict.json), in its order."""
    with open(path) as f:
        return [(e["name"], tuple(e["shape"]), e["dtype"]) for e in json.load(f)["tensors"]]
