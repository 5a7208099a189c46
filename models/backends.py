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

On the CPU the encoder runs in stages with the deformable sampling between them; OpenVINO in
float32 runs the middle stages as one compiled `encode_step` fed each stage's weights (`SharedStep`:
its buffers are held once, not per stage).

Precision: float32 by default; `--amp bf16` asks OpenVINO for bf16 inference
(INFERENCE_PRECISION_HINT) of the encoder's layers and the backbone after its layer1 where the CPU
has bf16 (`ov.Core` reports "BF16"; the backbone's start and the decoder stay float32), else runs
float32 with a warning;
onnxruntime's CPU provider has no bf16 path and warns the same way.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, Mapping, Optional

import numpy as np
import torch

from util.device import bf16_fallback_warning

from .checkpoint import sha256_of
from .config import BACKENDS
from .deformable_transformer import EncodedFeatures, level_starts
from .export import (DECODE_OUTPUTS, GRAPHS, OPSET, STAGE_OUTPUTS, STEP_GRAPH, STEM_FP32_UNTIL, STEM_OUTPUTS,
                     EXPORT_FORMAT, BackendError, MissingRuntime, config_json, export_network, read_metadata, require,
                     stage_names, step_weights)
from . import ms_deform_attn_numba
from .ms_deform_attn_ops import ms_deform_attn_gather

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


# The modules whose code the graphs are traced from: an edit to any of them exports anew (a graph
# cached by an older checkout would otherwise run stale code).
TRACED_SOURCES = ("export.py", "ms_deform_attn.py", "ms_deform_attn_export.py", "deformable_transformer.py",
                  "motr.py", "backbone.py", "position_encoding.py")


def traced_code_sha256() -> str:
    digest = hashlib.sha256()
    for name in TRACED_SOURCES:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()


def cache_key(checkpoint: str, args) -> str:
    """The export cache's folder name: checkpoint contents, network configuration, input size rule,
    export format and the traced code (a change to any of them exports anew)."""
    parts = {"checkpoint_sha256": sha256_of(os.fspath(checkpoint)), "config": config_json(args),
             "size_rule": [getattr(args, "val_width", None), getattr(args, "val_max_size", None)],
             "export_format": EXPORT_FORMAT, "opset": OPSET, "code": traced_code_sha256()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def exported_graphs(network, args, onnx_dir: Optional[str] = None) -> Dict[str, Path]:
    """{graph: path} of `network`'s exported graphs: those in `onnx_dir` (each checked: readable,
    the graph its name says, this code's export format, `args`'s network configuration, all from one
    checkpoint; the encoder's stages are optional there), else the cache's
    for `args.resume`, exporting them on a miss. Each fault is a BackendError naming the file."""
    names = GRAPHS + stage_names(len(network.transformer.encoder.layers))
    if onnx_dir:
        paths = {g: Path(onnx_dir) / f"{g}.onnx" for g in names + (STEP_GRAPH,)}
        missing = [str(paths[g]) for g in GRAPHS if not paths[g].is_file()]
        if missing:
            raise BackendError(f"--onnx_dir {onnx_dir}: no {', '.join(missing)} (write them with "
                               "tools/export_onnx.py)")
        paths = {g: p for g, p in paths.items() if p.is_file()}
        made_from = {name: check_graph_file(path, name, args).get("checkpoint_sha256") for name, path in paths.items()}
        for name, sha in made_from.items():  # e.g. a new decode.onnx copied over an older folder's
            if sha and made_from["decode"] and sha != made_from["decode"]:
                raise BackendError(f"{paths[name]} was exported from another checkpoint (sha256 {sha[:12]}...) than "
                                   f"{paths['decode']} ({made_from['decode'][:12]}...): export the folder again "
                                   "with tools/export_onnx.py")
        return paths
    if not getattr(args, "resume", None):
        raise BackendError("the export cache is keyed by the checkpoint: give --resume (or --onnx_dir)")
    folder = cache_root() / cache_key(args.resume, args)
    unfinished = unfinished_export(folder, names)
    if unfinished is not None:
        if folder.exists():
            _log.warning("the export cache %s is incomplete (%s): exporting again", folder, unfinished)
        export_into_cache(network, args, folder, names)
    else:
        _log.info("exported graphs from the cache: %s", folder)
    return {g: folder / f"{g}.onnx" for g in read_manifest(folder)}


def check_graph_file(path: Path, name: str, args) -> Dict[str, str]:
    """Refuse a graph file that cannot serve as `name` for `args`'s network (BackendError naming it);
    its metadata."""
    again = "copy it again or write it with tools/export_onnx.py"
    try:
        meta = read_metadata(path)
    except MissingRuntime:
        raise
    except Exception as exc:  # noqa: BLE001  (protobuf's DecodeError, an OSError: a truncated or foreign file)
        raise BackendError(f"{path} is not a readable ONNX graph ({type(exc).__name__}: {exc}): {again}") from None
    if "graph" not in meta or "export_format" not in meta:
        raise BackendError(f"{path} does not say which graph it is (no 'graph' / 'export_format' metadata): it was "
                           "not written by tools/export_onnx.py; write it with that")
    if meta["graph"] != name:
        raise BackendError(f"{path} holds the {meta['graph']!r} graph, not {name!r}: {again}")
    made_as = meta["export_format"]
    if made_as != str(EXPORT_FORMAT):
        raise BackendError(f"{path} is in export format {made_as}; this code runs format {EXPORT_FORMAT}: "
                           "export it again with tools/export_onnx.py")
    made_from = meta.get("config")
    if made_from is not None and json.loads(made_from) != json.loads(config_json(args)):
        raise BackendError(f"{path} was exported from another network configuration ({made_from}) than this "
                           f"run's ({config_json(args)}): export it again with tools/export_onnx.py")
    return meta


# Written last into a cache folder, with each graph's size: a folder without it (an export cut short,
# or one another process is still writing) is not used.
MANIFEST = "manifest.json"
STALE_EXPORT_S = 24 * 3600  # a private export folder this old was left by a killed process


def read_manifest(folder: Path) -> Dict[str, int]:
    """{graph: bytes} of a cache folder's finished export."""
    return dict(json.loads((folder / MANIFEST).read_text())["bytes"])


def unfinished_export(folder: Path, names) -> Optional[str]:
    """None when `folder` holds a finished export with (at least) the graphs `names`, else what is
    missing."""
    try:
        sizes = read_manifest(folder)
        for g in set(names) | set(sizes):
            if (folder / f"{g}.onnx").stat().st_size != sizes[g]:
                return f"{g}.onnx is not the size it was written at"
    except FileNotFoundError as exc:
        return f"no {Path(exc.filename).name}"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{MANIFEST} unreadable or incomplete ({type(exc).__name__}: {exc})"
    return None


def export_into_cache(network, args, folder: Path, names) -> None:
    """Export into a private folder beside `folder`, then move each graph into place (an atomic
    rename each) and the manifest last: a process reading the cache meanwhile, or one exporting the
    same key at once (shards of one run), never sees a partial file. An export stopped by an
    exception or Ctrl-C removes its folder; one killed outright leaves it, and the next export of
    the key removes it once it is a day old (younger ones may be another process's, at work)."""
    root = folder.parent
    hint = f"set {CACHE_ENV} to a writable folder or pass --onnx_dir"
    for stale in root.glob(f".{folder.name}-*"):
        try:
            if time.time() - stale.stat().st_mtime > STALE_EXPORT_S:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass  # gone meanwhile
    try:
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder.name}-"))
    except OSError as exc:
        raise BackendError(f"cannot write the export cache {root} ({exc.strerror or exc}): {hint}") from None
    try:
        t0 = time.perf_counter()
        export_network(network, work, metadata=graph_metadata(args))
        sizes = {p.stem: p.stat().st_size for p in work.glob("*.onnx")}
        missing = sorted(set(names) - set(sizes))
        if missing:
            raise BackendError(f"the export into {work} wrote no {', '.join(missing)}")
        (work / MANIFEST).write_text(json.dumps({"bytes": sizes}, sort_keys=True))
        folder.mkdir(exist_ok=True)
        for g in sizes:
            os.replace(work / f"{g}.onnx", folder / f"{g}.onnx")
        os.replace(work / MANIFEST, folder / MANIFEST)
    except OSError as exc:
        raise BackendError(f"exporting into the cache {folder} failed ({exc.strerror or exc}): {hint}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _log.info("exported the network to %s in %.1f s", folder, time.perf_counter() - t0)


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
        self.name = Path(path).stem
        if precision == "bf16":
            bf16_fallback_warning("onnxruntime (its CPU provider has no bf16 path)")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # No spin-waiting after a run: between the encoder's stages the sampling kernel needs the cores
        # (measured: the sampling took 1.7x longer beside spinning onnxruntime threads).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if shared_cpu_arena():
            # One arena for every session of the process: the encoder's stages run one after another,
            # each with its own arena they held 4.7 GB at 800x1422, sharing one 1.9 GB, no slower.
            options.add_session_config_entry("session.use_env_allocators", "1")
        available = ort.get_available_providers()
        wanted = ["CPUExecutionProvider"]
        if str(device).startswith("cuda"):
            wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available] + wanted
        self.session = ort.InferenceSession(str(path), options, providers=wanted)
        self.providers = self.session.get_providers()
        self.precision = "fp32"

    def __call__(self, feeds: Mapping[str, np.ndarray], copy: bool = True):
        return self.session.run(None, dict(feeds))  # fresh arrays every call


@functools.lru_cache(maxsize=None)  # once per process: the environment is onnxruntime's, process-wide
def shared_cpu_arena() -> bool:
    """Register one CPU arena allocator with onnxruntime's process-wide environment; whether
    sessions can use it."""
    ort = require("onnxruntime", "run --backend onnxruntime")
    try:
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))
        return True
    except Exception as exc:  # noqa: BLE001  (an older onnxruntime, or one registered elsewhere)
        _log.debug("onnxruntime: no shared CPU arena (%s); one arena per session", exc)
        return False


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
    the other inputs (the query count) stay dynamic.

    `bf16_io`: inputs and outputs that cross the graph's boundary as bf16 (numpy uint16 arrays of bf16
    bits) under --amp bf16 on a CPU with bf16: between the encoder's stages, where the runtime would
    otherwise convert every tensor to float32 on the way out and back on the way in (a quarter of a
    stage's time at 800x1422); the stem rounds its outputs once, as the next stage would.

    `fp32_prefix` (under bf16): the ops up to the last one whose name starts with it run float32, as a
    graph of their own (`split_model`: OpenVINO's CPU plugin takes one precision per compiled graph):
    the backbone up to its layer1 (`STEM_FP32_UNTIL`), which kept float32 brings the demo's +OFS row
    back within the bf16 quality test's bound (README). A graph without such ops runs float32 whole."""

    KEEP = 2

    def __init__(self, path, threads: int, precision: str = "fp32", device: str = "cpu", static=(), bf16_io=(),
                 fp32_prefix: str = ""):
        self.ov = ov = require("openvino", "run --backend openvino")
        has_bf16 = (precision == "bf16" or bool(bf16_io)) and openvino_has_bf16()
        if precision == "bf16" and not has_bf16:
            bf16_fallback_warning("openvino")
            precision = "fp32"
        self.core = ov.Core()
        self.path, self.name, self.static = str(path), Path(path).stem, tuple(static)
        # Given only under --amp bf16 (the stem then hands over bf16 too); empty without bf16.
        self.bf16_io = frozenset(bf16_io) if has_bf16 else frozenset()
        self.config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads),
                       "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        self.precision = precision
        self.fp32_prefix = fp32_prefix if precision == "bf16" else ""
        self.providers = ["openvino CPU " + precision]
        self._compiled: Dict[tuple, tuple] = {}
        # Read now, so that a file OpenVINO cannot read is refused before the first frame; compiled
        # (for the frame's size) at the first call, which takes it.
        self._read = self.core.read_model(self.path)

    def _compile(self, feeds):
        ov = self.ov
        model = self._read if self._read is not None else self.core.read_model(self.path)
        self._read = None
        if self.static:
            model.reshape({inp.get_any_name(): (list(feeds[inp.get_any_name()].shape)
                                                if inp.get_any_name() in self.static and inp.get_any_name() in feeds
                                                else inp.get_partial_shape())
                           for inp in model.inputs})
        if self.bf16_io:
            from openvino.preprocess import PrePostProcessor
            ppp = PrePostProcessor(model)
            for inp in model.inputs:
                if inp.get_any_name() in self.bf16_io:
                    ppp.input(inp.get_any_name()).tensor().set_element_type(ov.Type.bf16)
            for out in model.outputs:
                if out.get_any_name() in self.bf16_io:
                    ppp.output(out.get_any_name()).tensor().set_element_type(ov.Type.bf16)
            model = ppp.build()
        f32 = {**self.config, "INFERENCE_PRECISION_HINT": "f32"}
        split = split_model(model, self.fp32_prefix) if self.fp32_prefix else None
        if self.fp32_prefix and split is None:
            _log.warning("openvino: %s has no op named %s*, so it runs float32 whole under bf16", self.path,
                         self.fp32_prefix)
        if split is None:
            compiled = self.core.compile_model(model, "CPU", f32 if self.fp32_prefix else self.config)
            return compiled.create_infer_request(), [o.get_any_name() for o in compiled.outputs]
        head_model, rest_model = split
        head = self.core.compile_model(head_model, "CPU", f32)
        compiled = self.core.compile_model(rest_model, "CPU", self.config)
        request = HeadThenRest(head.create_infer_request(), compiled.create_infer_request())
        return request, [o.get_any_name() for o in compiled.outputs]

    def __call__(self, feeds: Mapping[str, np.ndarray], copy: bool = True):
        """The outputs in graph order; `copy=False` returns views of the request's buffers, valid until
        this graph runs again (the encoder's stages, consumed within the frame)."""
        key = tuple(tuple(feeds[n].shape) for n in self.static if n in feeds)
        if key not in self._compiled:
            if len(self._compiled) >= self.KEEP:
                self._compiled.pop(next(iter(self._compiled)))
            try:
                self._compiled[key] = self._compile(feeds)
            except Exception as exc:  # noqa: BLE001  (OpenVINO raises RuntimeError and its own types)
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
                raise BackendError(f"{self.path}: openvino cannot compile it for inputs of shape {list(key)} "
                                   f"({reason})") from exc
        request, outputs = self._compiled[key]
        inputs = {name: (self.ov.Tensor(np.ascontiguousarray(a), list(a.shape), self.ov.Type.bf16)
                         if name in self.bf16_io else a) for name, a in feeds.items()}
        # share_outputs: the outputs are read from the request's tensors below, not copied out first.
        request.infer(inputs, share_inputs=True, share_outputs=True)
        views = [request.get_tensor(name).data for name in outputs]
        views = [v.view(np.uint16) if name in self.bf16_io else v for name, v in zip(outputs, views)]
        return [np.array(v) for v in views] if copy else views


SPLIT_INPUT = "head_features"


def split_model(model, prefix: str):
    """(head, rest) of an OpenVINO model: `head` computes the output of the last op (in topological
    order) whose name starts with `prefix` from the model's inputs; `rest` is the model with that
    output as a new input, `SPLIT_INPUT` (the model's own inputs stay, for shapes computed from them:
    with static shapes, as the stem is compiled, those fold to constants). None when no op has such a
    name (another backbone)."""
    import openvino as ov
    cut = [op for op in model.get_ordered_ops() if op.get_friendly_name().startswith(prefix)]
    if not cut:
        return None
    rest = model.clone()  # rewired below; the head keeps the original graph
    out = cut[-1].output(0)
    head = ov.Model([ov.opset13.result(out)], model.get_parameters(), "head")
    node = next(op for op in rest.get_ordered_ops() if op.get_friendly_name() == cut[-1].get_friendly_name())
    param = ov.opset13.parameter(out.get_partial_shape(), out.get_element_type(), name=SPLIT_INPUT)
    for target in list(node.output(0).get_target_inputs()):
        target.replace_source_output(param.output(0))
    rest = ov.Model(rest.get_results(), [param] + list(rest.get_parameters()), "rest")
    return head, rest


class HeadThenRest:
    """Two infer requests run as one: the head's output is the rest's `SPLIT_INPUT`."""

    def __init__(self, head, rest):
        self.head, self.rest = head, rest
        self.rest_inputs = {i.get_any_name() for i in rest.model_inputs}

    def infer(self, inputs, share_inputs=True, share_outputs=True):
        self.head.infer(inputs, share_inputs=share_inputs, share_outputs=True)
        feeds = {SPLIT_INPUT: self.head.get_output_tensor(0).data}  # the head's buffer, zero-copy
        feeds.update({k: v for k, v in inputs.items() if k in self.rest_inputs})
        self.rest.infer(feeds, share_inputs=True, share_outputs=share_outputs)

    def get_tensor(self, name):
        return self.rest.get_tensor(name)


# Inputs whose shape is fixed for a frame size (OpenVINO compiles a static graph per frame size).
STATIC_INPUTS = {"encode": ("image",), "decode": ("tokens", "spatial_shapes"), "encode_stage0": ("image",)}
STAGE_STATIC = ("tokens", "attended", "pos")
# What crosses between the encoder's stages as bf16 under --amp bf16 (OpenVINO): what the runtime
# computes or consumes in bf16 anyway (position encodings, value table, offsets and attention logits,
# the sampled values), so nothing is lost and no conversion is paid. The tokens, the residual stream,
# stay float32: rounding them at every stage moved the demo's HOTA by up to 0.6.
STEM_BF16_IO = ("pos", "value", "offsets", "logits")
STEP_BF16_IO = ("attended", "pos", "value", "offsets", "logits")
LAST_STEP_BF16_IO = ("attended",)
RUNTIMES = {"onnxruntime": OnnxRuntimeGraph, "openvino": OpenVinoGraph}


class ExportedNetwork:
    """A MOTR whose `encode` and `decode` run as exported graphs in `backend`; every other attribute
    is the PyTorch network's (queries, QIM, num_queries). `precision_in_runtime`: the runtime does
    its own mixed precision (no torch autocast around it).

    On the CPU, when the encoder's stages were exported, `encode` runs them with the deformable
    sampling between them in float32 (`models/ms_deform_attn_numba.py`, else the gather path);
    otherwise (CUDA providers, older exports) the whole `encode` graph."""

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
        stages = stage_names(len(network.transformer.encoder.layers))
        self.staged = not str(device).startswith("cuda") and all(g in self.paths for g in stages)
        # OpenVINO in float32 runs the middle stages as one compiled encode_step (its buffers once, not
        # per stage: 1.25 GB less at 800x1422, no slower). Not under bf16, where it cost 3-6% of the
        # encoding (the weights packed at every run): there the user chose speed.
        shared_step = self.staged and backend == "openvino" and STEP_GRAPH in self.paths and precision != "bf16"
        middle = stages[1:-1] if shared_step else ()
        names = (tuple(g for g in stages if g not in middle) + ((STEP_GRAPH,) if middle else ()) + ("decode",)
                 if self.staged else GRAPHS)

        bf16_io = {stages[0]: STEM_BF16_IO, stages[-1]: LAST_STEP_BF16_IO}

        def extra(g):
            if backend != "openvino":
                return {}
            in_encoder = g in stages or g == STEP_GRAPH
            return {"static": STATIC_INPUTS.get(g, STAGE_STATIC),
                    "bf16_io": bf16_io.get(g, STEP_BF16_IO) if in_encoder and precision == "bf16" else (),
                    "fp32_prefix": STEM_FP32_UNTIL if g in (stages[0], "encode") else ""}
        # bf16 covers the encoder's layers and, on OpenVINO, the backbone from its layer2 on: the
        # backbone's highest-resolution start (stem convolution, layer1: STEM_FP32_UNTIL) and the decoder's
        # graph run float32. On an AVX512-BF16 CPU a backbone wholly in bf16 moved the demo's +OFS row
        # by +0.64 HOTA (-0.00 on AMX); with layer1 in float32 by -0.01 (the memory rows +0.31 / -0.01),
        # 0.19 s a frame faster than a float32 stem at 800x1422. bf16 rounding in the decoder would
        # move boxes from frame to frame. (onnxruntime runs float32 whatever the precision.)
        full = {"decode"} | ({stages[0]} if self.staged and backend != "openvino" else set())

        def load(g):
            try:
                return runtime(self.paths[g], threads, "fp32" if g in full else precision, device, **extra(g))
            except MissingRuntime:
                raise
            except Exception as exc:  # noqa: BLE001  (each runtime has its own error types)
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
                raise BackendError(f"{self.paths[g]}: {backend} cannot load it ({reason}): export it again "
                                   f"(tools/export_onnx.py, or delete the file from the export cache)") from exc
        self.graphs = {g: load(g) for g in names}
        if middle:
            weights = json.loads(read_metadata(self.paths[STEP_GRAPH])["weights"])
            step = {g: SharedStep(self.graphs[STEP_GRAPH], step_weights(self.paths[g], weights)) for g in middle}
        self.stages = [step[g] if g in middle else self.graphs[g] for g in stages] if self.staged else []
        encoder = self.stages[-1] if self.staged else self.graphs["encode"]
        self.precision = encoder.precision
        self.sigmoid_attn = bool(network.transformer.encoder.layers[0].self_attn.sigmoid_attn)
        self.bf16_between_stages = self.staged and bool(getattr(self.stages[0], "bf16_io", ()))
        _log.info("network on %s (%s), %s, %d threads%s", backend, ", ".join(encoder.providers), self.precision,
                  threads, ", encoder in stages" + (" (backbone up to layer1 float32)" if self.precision == "bf16" else "")
                  if self.staged else "")

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
        if self.staged:
            tokens, shapes = self._encode_in_stages(_numpy(image))
        else:
            tokens, shapes = self.graphs["encode"]({"image": _numpy(image)})
        spatial = [(int(h), int(w)) for h, w in shapes]
        device = self.network.query_embed.weight.device
        return EncodedFeatures(torch.from_numpy(tokens).to(device), spatial, level_starts(spatial),
                               torch.ones(1, len(spatial), 2, device=device), None)

    def _encode_in_stages(self, image: np.ndarray):
        """The stem, then per layer: sample (float32, here), run the next stage. Intermediate
        outputs are the runtime's buffers (no copy); the last tokens are copied."""
        out = dict(zip(STEM_OUTPUTS, self.stages[0]({"image": image}, copy=False)))
        shapes, pos, reference = np.array(out["spatial_shapes"]), out["pos"], out["reference_points"]
        spatial = [(int(h), int(w)) for h, w in shapes]
        for k, stage in enumerate(self.stages[1:], 1):
            attended = sample_from_projections(out["value"], spatial, reference, out["offsets"], out["logits"],
                                               self.sigmoid_attn, bf16=self.bf16_between_stages)
            feeds = {"tokens": out["encoded"], "attended": attended}
            if k < len(self.stages) - 1:
                feeds["pos"] = pos
            out = dict(zip(STAGE_OUTPUTS, stage(feeds, copy=k == len(self.stages) - 1)))
        return out["encoded"], shapes

    def decode(self, features: EncodedFeatures, tgt: torch.Tensor, ref_pts: torch.Tensor, attn_mask=None) -> Dict:
        if attn_mask is not None:
            raise ValueError("exported decode graphs take no attention mask (training's query denoising)")
        shapes = np.asarray(features.spatial_shapes, np.int64)
        feeds = {"spatial_shapes": shapes, "tgt": _numpy(tgt), "ref_pts": _numpy(ref_pts)}
        outs = self.graphs["decode"]({"tokens": _numpy(features.tokens), **feeds})
        device = tgt.device
        return {name: torch.from_numpy(np.ascontiguousarray(v)).to(device) for name, v in zip(DECODE_OUTPUTS, outs)}

    def __repr__(self) -> str:
        return f"ExportedNetwork({self.backend}, {self.precision}, {self.paths['encode'].parent})"


class SharedStep:
    """A middle encoder stage run by the one `encode_step` graph with this stage's weights."""

    def __init__(self, graph, weights: Mapping[str, np.ndarray]):
        self.graph, self.weights = graph, dict(weights)
        self.precision, self.providers = graph.precision, graph.providers
        self.bf16_io = getattr(graph, "bf16_io", frozenset())

    def __call__(self, feeds: Mapping[str, np.ndarray], copy: bool = True):
        # The previous stage's tokens may be a view of this very graph's output buffer, which the
        # run overwrites: they are copied in (24 MB at 800x1422).
        return self.graph({**feeds, "tokens": np.array(feeds["tokens"]), **self.weights}, copy=copy)


def sample_from_projections(value, spatial_shapes, reference, offsets, logits, sigmoid: bool,
                            bf16: bool = False) -> np.ndarray:
    """An encoder layer's deformable sampling from its projections (numpy): value [1, S, M, D],
    reference [1, S, L, 2], offsets [1, S, M, L, P, 2], logits [1, S, M, L*P] -> [1, S, M*D], float32
    or, `bf16`, bf16 bits (uint16; value, offsets and logits may be bf16 bits too). Computes in float32."""
    n, lq, m = offsets.shape[:3]
    if ms_deform_attn_numba.available():
        out = ms_deform_attn_numba.sample_from_offsets(value, spatial_shapes, reference, offsets, logits, sigmoid,
                                                       bf16_out=bf16)
        return out.reshape(n, lq, -1)
    value, reference, offsets, logits = (_bf16_bits_to_float(a) if a.dtype == np.uint16 else torch.from_numpy(np.asarray(a))
                                         for a in (value, reference, offsets, logits))
    n_levels, n_points = offsets.shape[3:5]
    size = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=torch.float32)
    locations = reference[:, :, None, :, None, :] + offsets / size[None, None, None, :, None, :]
    weights = (logits.sigmoid() if sigmoid else logits.softmax(-1)).view(n, lq, m, n_levels, n_points)
    out = ms_deform_attn_gather(value, spatial_shapes, None, locations, weights)
    return out.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16) if bf16 else out.numpy()


def _bf16_bits_to_float(bits: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(bits).view(np.int16)).view(torch.bfloat16).float()


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
