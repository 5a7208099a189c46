"""`Instances`: a bag of per-object tensors that share their first dimension.

The tracker keeps every query (detect queries, proposal queries and live tracks) as one
`Instances`; selecting tracks, appending new queries and moving to a device are then one
operation over all fields at once.  The method names follow detectron2 / upstream MOTR so
that user scripts written against upstream keep working.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Tuple

import torch


class Instances:
    """Fields of equal length, indexed together.

    >>> inst = Instances((720, 1280), scores=torch.tensor([0.9, 0.2]))
    >>> len(inst[inst.scores > 0.5])
    1
    """

    def __init__(self, image_size: Tuple[int, int], **fields: Any):
        self._image_size = tuple(image_size)
        self._fields: Dict[str, Any] = {}
        for name, value in fields.items():
            self.set(name, value)

    @property
    def image_size(self) -> Tuple[int, int]:
        return self._image_size

    # -- field access ---------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            super().__setattr__(name, value)
        else:
            self.set(name, value)

    def __getattr__(self, name: str) -> Any:
        fields = self.__dict__.get("_fields", {})
        if name not in fields:
            raise AttributeError(f"Instances has no field '{name}' (fields: {sorted(fields)})")
        return fields[name]

    def set(self, name: str, value: Any) -> None:
        if self._fields and len(value) != len(self):
            raise ValueError(
                f"field '{name}' has length {len(value)}, but these Instances have length {len(self)}")
        self._fields[name] = value

    def get(self, name: str) -> Any:
        return self._fields[name]

    def has(self, name: str) -> bool:
        return name in self._fields

    def remove(self, name: str) -> None:
        del self._fields[name]

    def get_fields(self) -> Dict[str, Any]:
        """The live dict of fields (changing it changes these Instances)."""
        return self._fields

    def __contains__(self, name: str) -> bool:
        return name in self._fields

    # -- tensor-like behaviour --------------------------------------------------------------
    def __len__(self) -> int:
        for value in self._fields.values():
            return len(value)
        return 0

    def __iter__(self):
        raise NotImplementedError("Instances cannot be iterated; index it or read its fields")

    def __getitem__(self, item) -> "Instances":
        """Index every field with `item` (int, slice, bool mask or index tensor)."""
        if isinstance(item, int):
            n = len(self)
            if not -n <= item < n:
                raise IndexError(f"Instances index {item} out of range for length {n}")
            item = slice(item, item + 1) if item != -1 else slice(item, None)
        return Instances(self._image_size, **{k: v[item] for k, v in self._fields.items()})

    def to(self, *args: Any, **kwargs: Any) -> "Instances":
        """A new Instances with every field that has `.to` moved/cast."""
        return Instances(self._image_size, **{
            k: (v.to(*args, **kwargs) if hasattr(v, "to") else v) for k, v in self._fields.items()})

    def clone(self) -> "Instances":
        """A copy whose tensors can be changed in place without touching this one."""
        return Instances(self._image_size, **{
            k: (v.clone() if isinstance(v, torch.Tensor) else list(v)) for k, v in self._fields.items()})

    def numpy(self) -> "Instances":
        return Instances(self._image_size, **{
            k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in self._fields.items()})

    @staticmethod
    def cat(instance_lists: Iterable["Instances"]) -> "Instances":
        """Concatenate along the instance dimension; all parts must have the same fields."""
        parts: List[Instances] = list(instance_lists)
        if not parts:
            raise ValueError("Instances.cat needs at least one Instances")
        if len(parts) == 1:
            return parts[0]
        names = list(parts[0]._fields)
        for p in parts[1:]:
            if set(p._fields) != set(names):
                raise ValueError(
                    "Instances.cat: fields differ: "
                    f"{sorted(set(names) ^ set(p._fields))} are not in every part")
        out = Instances(parts[0]._image_size)
        for name in names:
            values = [p._fields[name] for p in parts]
            first = values[0]
            if isinstance(first, torch.Tensor):
                out.set(name, torch.cat(values, dim=0))
            elif isinstance(first, list):
                out.set(name, [x for v in values for x in v])
            elif hasattr(type(first), "cat"):
                out.set(name, type(first).cat(values))
            else:
                raise TypeError(f"Instances.cat: cannot concatenate field '{name}' of type {type(first)}")
        return out

    def __repr__(self) -> str:
        shapes = ", ".join(
            f"{k}: {tuple(v.shape) if hasattr(v, 'shape') else len(v)}" for k, v in self._fields.items())
        return f"Instances(num_instances={len(self)}, image_size={self._image_size}, fields=[{shapes}])"
