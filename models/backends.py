"""The network on an exported runtime: onnxruntime or OpenVINO running the `encode` / `decode`
graphs of `models/export.py`, behind the network's own interface.

`ExportedNetwork` is what `build_network` returns for `--backend onnxruntime|openvino`: `encode`
and `decode` run in the runtime; everything else the frame step uses (the learned queries,
`_generate_empty_tracks`, QIM as `track_embed`, `num_queries`) is the PyTorch network's, so
`models/track_step.py` (ids, memory, QIM policy, the output filter) is the same code for every
backend.

The graphs come from `--onnx_dir` (files written by `tools/export_onnx.py`) or from the export
cache: exported on first use into `$MOTR_EXPORT_CACHE` (default `~/.cache/motrv2_tfsasm/export`),
one folder per (checkpoint sha256, network configuration, input size rule, export format).

Precision: float32 by default; `--amp bf16` asks OpenVINO for bf16 inference
(INFERENCE_PRECISION_HINT) where the CPU has bf16 (`ov.Core` reports "BF16"), else runs float32
with a warning; onnxruntime's CPU provider has no bf16 path and warns the same way.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Dict, Mapping, Optional

import numpy as np
import torch

from util.device import bf16_fallback_warning

from .checkpoint import sha256_of
from .config import BACKENDS
from .deformable_transformer import EncodedFeatures, level_starts
from .export import (DECODE_OUTPUTS, BackendError, EXPORT_FORMAT, GRAPHS, OPSET, MissingRuntime, config_json, export_network,
                     read_metadata, require)

_log = logging.getLogger(__name__)
CACHE_ENV = "MOTR_EXPORT_CACHE"


def check_backend(backend: str) -> None:
    """Refuse an unknown backend, and a known one whose runtime is not installed (one line: what to install)."""
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r}: must be one of {', '.join(BACKENDS)}")
    if backend != "torch":
        require(backend, f"run --backend {backend}")  # the runtime's module is named as the backend
        require("onnx", f"run --backend {backend}")


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "motrv2_tfsasm" / "export")


def cache_key(checkpoint: str, args) -> str:
    """The export cache's folder name: checkpoint contents, network configuration, input size rule and
    export format (a change to any of them exports anew)."""
    parts = {"checkpoint_sha256": sha256_of(os.fspath(checkpoint)), "config": config_json(args),
             "size_rule": [getattr(args, "val_width", None), getattr(args, "val_max_size", None)],
             "export_format": EXPORT_FORMAT, "opset": OPSET}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def exported_graphs(network, args, onnx_dir: Optional[str] = None) -> Dict[str, Path]:
    """{graph: path} of `network`'s exported graphs: those in `onnx_dir` (checked against `args`'s
    network configuration), else the cache's for `args.resume`, exporting them on a miss."""
    if onnx_dir:
        paths = {g: Path(onnx_dir) / f"{g}.onnx" for g in GRAPHS}
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            raise BackendError(f"--onnx_dir {onnx_dir}: no {', '.join(missing)} (write them with "
                                    "tools/export_onnx.py)")
        for path in paths.values():
            made_from = read_metadata(path).get("config")
            if made_from is not None and json.loads(made_from) != json.loads(config_json(args)):
                raise BackendError(f"{path} was exported from another network configuration ({made_from}) than this "
                                 f"run's ({config_json(args)}): export it again with tools/export_onnx.py")
        return paths
    if not getattr(args, "resume", None):
        raise BackendError("the export cache is keyed by the checkpoint: give --resume (or --onnx_dir)")
    folder = cache_root() / cache_key(args.resume, args)
    paths = {g: folder / f"{g}.onnx" for g in GRAPHS}
    if all(p.is_file() for p in paths.values()):
        _log.info("exported graphs from the cache: %s", folder)
        return paths
    t0 = time.perf_counter()
    export_network(network, folder, metadata=graph_metadata(args))
    _log.info("exported the network to %s in %.1f s", folder, time.perf_counter() - t0)
    return paths


def graph_metadata(args) -> Dict[str, str]:
    """What an exported graph records about where it came from."""
    meta = {"config": config_json(args), "val_width": str(getattr(args, "val_width", "")),
            "val_max_size": str(getattr(args, "val_max_size", "")), "torch": torch.__version__}
    if getattr(args, "resume", None) and os.path.isfile(args.resume):
        meta["checkpoint"] = os.path.basename(args.resume)
        meta["checkpoint_sha256"] = sha256_of(os.fspath(args.resume))
    return meta


# -- runtimes ---------------------------------------------------------------------------------------------
class OnnxRuntimeGraph:
    """One graph in an onnxruntime session (all graph optimisations, `threads` intra-op threads; the
    CUDA / TensorRT providers when `device` is CUDA and they are installed)."""

    def __init__(self, path, threads: int, precision: str = "fp32", device: str = "cpu"):
        ort = require("onnxruntime", "run --backend onnxruntime")
        if precision == "bf16":
            bf16_fallback_warning("onnxruntime (its CPU provider has no bf16 path)")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        available = ort.get_available_providers()
        wanted = ["CPUExecutionProvider"]
        if str(device).startswith("cuda"):
            wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available] + wanted
        self.session = ort.InferenceSession(str(path), options, providers=wanted)
        self.providers = self.session.get_providers()
        self.precision = "fp32"

    def __call__(self, feeds: Mapping[str, np.ndarray]):
        return self.session.run(None, dict(feeds))


def openvino_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin reports bf16 on this CPU (it does not emulate it: without bf16
    instructions it runs float32 whatever the hint, so MOTR_BF16=emulate does not count here)."""
    ov = require("openvino", "run --backend openvino")
    try:
        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001
        return False


class OpenVinoGraph:
    """One graph compiled by OpenVINO's CPU plugin for latency, `threads` threads, f32 or bf16.

    `static`: inputs whose shape is fixed per compiled model (the image for `encode`, the token table
    for `decode`; a sequence has one frame size): OpenVINO runs a graph of static shapes faster
    than a dynamic one, so each new shape of these inputs compiles once (the last few are kept);
    the other inputs (the query count) stay dynamic."""

    KEEP = 2

    def __init__(self, path, threads: int, precision: str = "fp32", device: str = "cpu", static=()):
        ov = require("openvino", "run --backend openvino")
        if precision == "bf16" and not openvino_has_bf16():
            bf16_fallback_warning("openvino")
            precision = "fp32"
        self.core = ov.Core()
        self.path, self.static = str(path), tuple(static)
        self.config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads),
                       "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        self.precision = precision
        self.providers = ["openvino CPU " + precision]
        self._compiled: Dict[tuple, tuple] = {}
        if not self.static:
            self._compile(None)

    def _compile(self, feeds):
        model = self.core.read_model(self.path)
        if feeds is not None:
            model.reshape({inp.get_any_name(): (list(feeds[inp.get_any_name()].shape)
                                                if inp.get_any_name() in self.static else inp.get_partial_shape())
                           for inp in model.inputs})
        compiled = self.core.compile_model(model, "CPU", self.config)
        return compiled.create_infer_request(), [o.get_any_name() for o in compiled.outputs]

    def __call__(self, feeds: Mapping[str, np.ndarray]):
        key = tuple(tuple(feeds[n].shape) for n in self.static)
        if key not in self._compiled:
            if len(self._compiled) >= self.KEEP:
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[key] = self._compile(feeds if self.static else None)
        request, outputs = self._compiled[key]
        request.infer(dict(feeds))
        # The request's buffers are reused by the next call: copy.
        return [np.array(request.get_tensor(name).data) for name in outputs]


STATIC_INPUTS = {"encode": ("image",), "decode": ("tokens", "spatial_shapes")}
RUNTIMES = {"onnxruntime": OnnxRuntimeGraph, "openvino": OpenVinoGraph}


class ExportedNetwork:
    """A MOTR whose `encode` and `decode` run as exported graphs in `backend`; every other attribute
    is the PyTorch network's (queries, QIM, num_queries). `precision_in_runtime`: the runtime does
    its own mixed precision (no torch autocast around it)."""

    precision_in_runtime = True

    def __init__(self, network, paths: Mapping[str, Path], backend: str, *, threads: Optional[int] = None,
                 precision: str = "fp32", device: str = "cpu"):
        check_backend(backend)
        if backend == "torch":
            raise ValueError("ExportedNetwork runs exported graphs: use the PyTorch network for --backend torch")
        self.network = network
        self.backend = backend
        self.paths = dict(paths)
        threads = threads or torch.get_num_threads()
        runtime = RUNTIMES[backend]
        extra = {g: {"static": STATIC_INPUTS[g]} if backend == "openvino" else {} for g in GRAPHS}
        self.graphs = {g: runtime(self.paths[g], threads, precision, device, **extra[g]) for g in GRAPHS}
        self.precision = self.graphs["encode"].precision
        _log.info("network on %s (%s), %s, %d threads", backend, ", ".join(self.graphs["encode"].providers),
                  self.precision, threads)

    def __getattr__(self, name):
        if name in ("network", "graphs"):  # not yet set: no recursion
            raise AttributeError(name)
        return getattr(self.network, name)

    def describe(self) -> str:
        return f"{self.backend} {self.precision}"

    def encode(self, samples) -> EncodedFeatures:
        image = samples.tensors if hasattr(samples, "tensors") else samples
        if image.shape[0] != 1:
            raise ValueError(f"--backend {self.backend} encodes one image at a time, got a batch of {image.shape[0]}")
        tokens, shapes = self.graphs["encode"]({"image": _numpy(image)})
        spatial = [(int(h), int(w)) for h, w in shapes]
        device = self.network.query_embed.weight.device
        return EncodedFeatures(torch.from_numpy(tokens).to(device), spatial, level_starts(spatial),
                               torch.ones(1, len(spatial), 2, device=device), None)

    def decode(self, features: EncodedFeatures, tgt: torch.Tensor, ref_pts: torch.Tensor, attn_mask=None) -> Dict:
        if attn_mask is not None:
            raise ValueError("exported decode graphs take no attention mask (training's query denoising)")
        feeds = {"tokens": _numpy(features.tokens), "spatial_shapes": np.asarray(features.spatial_shapes, np.int64),
                 "tgt": _numpy(tgt), "ref_pts": _numpy(ref_pts)}
        outs = self.graphs["decode"](feeds)
        device = tgt.device
        return {name: torch.from_numpy(np.ascontiguousarray(v)).to(device) for name, v in zip(DECODE_OUTPUTS, outs)}

    def __repr__(self) -> str:
        return f"ExportedNetwork({self.backend}, {self.precision}, {self.paths['encode'].parent})"


def _numpy(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())


def backend_network(network, args):
    """`network` (loaded, eval) as `args.backend` runs it: itself for torch, else an ExportedNetwork
    on the graphs of `args.onnx_dir` or the export cache."""
    backend = getattr(args, "backend", "torch")  # checked by build_network, before the network was built
    if backend == "torch":
        return network
    paths = exported_graphs(network, args, getattr(args, "onnx_dir", None))
    return ExportedNetwork(network, paths, backend, precision="bf16" if getattr(args, "amp", "off") == "bf16" else "fp32",
                           device=str(getattr(args, "device", "cpu")))


__all__ = ["BackendError", "ExportedNetwork", "MissingRuntime", "backend_network", "cache_key", "cache_root", "check_backend",
           "exported_graphs", "openvino_has_bf16"]
