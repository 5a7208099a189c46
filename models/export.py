"""The network as two ONNX graphs, `encode` and `decode`, with dynamic image size and query count.

    encode:  image [1, 3, H, W]  ->  tokens [1, S, C], spatial_shapes [L, 2] int64 (H_l, W_l per level)
    decode:  tokens, spatial_shapes, tgt [Q, C], ref_pts [Q, 4]
             ->  pred_logits [1, Q, K], pred_boxes [1, Q, 4], hs [1, Q, C], first_layer_boxes [1, Q, 4]

`encode` is the backbone (frozen batch norms folded into the convolutions), the input projections
and the encoder; `decode` the decoder and its last class head (the auxiliary heads are not
needed to track). Everything around them (queries, ids, memory, QIM, the output filter) stays the
Python of `models/track_step.py`, the same for every backend (`models/backends.py`). QIM is not
exported: it runs on a few dozen tracks, well under 1% of a frame.

The deformable attention is traced as `models/ms_deform_attn_export.py` (the encoder's as GridSample,
opset 16+, the decoder's as gathers of table rows), with every size computed from tensors, so one
pair of graphs serves any frame size. Each graph carries its opset and the network configuration it
was made from in its metadata (`read_metadata`). Needs the `onnx` package (requirements.txt) for the
checker and the metadata; `torch.onnx.export` (the TorchScript exporter, `dynamo=False`) writes the graphs.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

import torch
from torch import nn

from .ms_deform_attn import MSDeformAttn, sampling_table
from .position_encoding import pos2posemb
from .structures import NestedTensor, inverse_sigmoid

OPSET = 17
# Bumped when the graphs change: part of the export cache key (models/backends.py).
# 3: the decoder projects its samples rather than a value table of every token (MSDeformAttn).
# 4: the decoder gathers its samples' rows (ms_deform_attn_export_rows) rather than GridSample them.
EXPORT_FORMAT = 4
GRAPHS = ("encode", "decode")
ENCODE_INPUTS, ENCODE_OUTPUTS = ("image",), ("tokens", "spatial_shapes")
DECODE_INPUTS = ("tokens", "spatial_shapes", "tgt", "ref_pts")
DECODE_OUTPUTS = ("pred_logits", "pred_boxes", "hs", "first_layer_boxes")
# The network flags a graph depends on (what its metadata records).
NETWORK_FLAGS = ("backbone", "dilation", "position_embedding", "num_feature_levels", "enc_layers", "dec_layers",
                 "dim_feedforward", "hidden_dim", "nheads", "num_queries", "dec_n_points", "enc_n_points",
                 "decoder_cross_self", "sigmoid_attn", "with_box_refine", "query_interaction_layer")


def stem(net, image: torch.Tensor):
    """Backbone, input projections and position encodings of one unpadded image [1, 3, H, W]:
    tokens [1, S, C], pos [1, S, C] (level embeddings added) and spatial_shapes [L, 2] int64."""
    body, position = net.backbone[0].body, net.backbone[1]
    feats = [f for _, f in sorted(body(image).items())]
    srcs = [net.input_proj[lvl](f) for lvl, f in enumerate(feats)]
    for lvl in range(len(feats), net.num_feature_levels):
        srcs.append(net.input_proj[lvl](feats[-1] if lvl == len(feats) else srcs[-1]))
    # The sine encoding of an unpadded map depends on its size alone (masks all False).
    pos = [position(NestedTensor(s, torch.zeros_like(s[:, 0], dtype=torch.bool))).to(s.dtype) for s in srcs]
    shapes = torch.stack([torch._shape_as_tensor(s)[-2:] for s in srcs])  # [L, 2] int64
    tokens = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
    pos_flat = torch.cat([p.flatten(2).transpose(1, 2) + net.transformer.level_embed[lvl].view(1, 1, -1)
                          for lvl, p in enumerate(pos)], 1)
    return tokens, pos_flat, shapes


class EncodeGraph(nn.Module):
    """image -> (tokens, spatial_shapes): `MOTR.encode` for one unpadded image, sizes as tensors."""

    def __init__(self, network):
        super().__init__()
        self.net = network

    def forward(self, image: torch.Tensor):
        tokens, pos, shapes = stem(self.net, image)
        reference = encoder_reference_points(shapes, shapes.shape[0], tokens.dtype)
        for layer in self.net.transformer.encoder.layers:
            tokens = layer(tokens, pos, reference, shapes, None, None)
        return tokens, shapes


# -- the encoder in stages, for the CPU backends ----------------------------------------------------------
# On a CPU the runtimes' deformable sampling (GridSample, then a weighted sum) takes ~4x the time of
# a fused kernel, so the CPU backends run the encoder as n_layers + 1 graphs with the sampling
# (`models/ms_deform_attn_numba.py`) between them: stage 0 is the stem and layer 0's projections;
# stage k the rest of layer k - 1 (output projection, norms, feed-forward) and layer k's
# projections; the last stage the rest of the last layer. `encode` stays whole for other runtimes.
# A stage's tokens out are `encoded` (ONNX names are unique: `tokens` is a stage's input).
STAGE_OUTPUTS = ("encoded", "value", "offsets", "logits")
STEM_INPUTS, STEM_OUTPUTS = ("image",), ("encoded", "pos", "spatial_shapes", "reference_points", "value", "offsets",
                                         "logits")
STEP_INPUTS = ("tokens", "attended", "pos")


# The ONNX names of the backbone's layer1 ops in encode_stage0 (torch.onnx names an op by its module
# path): under bf16 OpenVINO runs the stem up to there in float32 (models/backends.py).
STEM_FP32_UNTIL = "/body/layer1/"


def stage_names(n_layers: int) -> Tuple[str, ...]:
    return tuple(f"encode_stage{k}" for k in range(n_layers + 1))


def _projections(layer, tokens, pos):
    return layer.self_attn.sampling_inputs(tokens + pos, tokens)


class EncodeStem(nn.Module):
    """image -> tokens, pos, spatial_shapes, reference_points [1, S, L, 2] and layer 0's value
    [1, S, M, D], offsets [1, S, M, L, P, 2] and attention logits [1, S, M, L*P]."""

    def __init__(self, network):
        super().__init__()
        self.net = network

    def forward(self, image):
        tokens, pos, shapes = stem(self.net, image)
        reference = encoder_reference_points(shapes, shapes.shape[0], tokens.dtype)
        return (tokens, pos, shapes, reference) + tuple(_projections(self.net.transformer.encoder.layers[0], tokens, pos))


class EncodeStep(nn.Module):
    """(tokens, attended [1, S, C]: layer k-1's sampled values, pos) -> layer k-1's output tokens and
    layer k's value, offsets and logits; the last stage (k = n_layers) takes no pos and returns the
    tokens alone."""

    def __init__(self, network, k: int):
        super().__init__()
        layers = network.transformer.encoder.layers
        self.done, self.next = layers[k - 1], (layers[k] if k < len(layers) else None)

    def forward(self, tokens, attended, pos=None):
        tokens = self.done.after_attention(tokens, self.done.self_attn.output_proj(attended))
        if self.next is None:
            return tokens
        return (tokens,) + tuple(_projections(self.next, tokens, pos))


def encoder_reference_points(shapes: torch.Tensor, n_levels: int, dtype) -> torch.Tensor:
    """`DeformableTransformerEncoder.reference_points` of an unpadded image (valid ratios 1), sizes
    as tensors: pixel centres (i + 0.5) / size of every level, [1, S, L, 2] (x, y)."""
    points = []
    for lvl in range(n_levels):
        h, w = shapes[lvl, 0], shapes[lvl, 1]
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h.to(torch.float32)
        xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w.to(torch.float32)
        ref_y = ys[:, None].expand(-1, xs.shape[0]).reshape(-1)
        ref_x = xs[None, :].expand(ys.shape[0], -1).reshape(-1)
        points.append(torch.stack((ref_x, ref_y), -1))
    return torch.cat(points, 0)[None, :, None].expand(-1, -1, n_levels, -1).to(dtype)


class DecodeGraph(nn.Module):
    """(tokens, spatial_shapes, tgt, ref_pts) -> the last layer's logits, boxes, hidden states and
    the first layer's boxes: `MOTR.decode` without the auxiliary heads."""

    def __init__(self, network):
        super().__init__()
        self.net = network

    def forward(self, tokens, spatial_shapes, tgt, ref_pts):
        net = self.net
        decoder = net.transformer.decoder
        n_levels = net.num_feature_levels
        ratios4 = torch.ones(1, 1, n_levels, 4, dtype=tgt.dtype)
        table = sampling_table(tokens, None)
        output = tgt.unsqueeze(0)
        reference_points = ref_pts.unsqueeze(0)
        first = None
        for lid, layer in enumerate(decoder.layers):
            query_pos = pos2posemb(reference_points, output.shape[-1] // 4)
            output = layer(output, query_pos, reference_points[:, :, None] * ratios4, tokens, spatial_shapes,
                           None, None, None, table=table)
            reference_points = (decoder.bbox_embed[lid](output) + inverse_sigmoid(reference_points)).sigmoid()
            if first is None:
                first = reference_points
        logits = net.class_embed[len(decoder.layers) - 1](output)
        return logits, reference_points, output, first


@contextlib.contextmanager
def export_attention():
    """MSDeformAttn on its export formulation (sizes as tensors) while the block runs."""
    previous = MSDeformAttn.implementation
    MSDeformAttn.implementation = "export"
    try:
        yield
    finally:
        MSDeformAttn.implementation = previous


def example_inputs(network, image_hw: Tuple[int, int] = (160, 288), n_queries: int = 12):
    """Inputs to trace the graphs with (any size works: the graphs are dynamic)."""
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, *image_hw, generator=g)
    with torch.no_grad(), export_attention():
        tokens, shapes = EncodeGraph(network)(image)
    c = network.query_embed.weight.shape[1]
    tgt = torch.randn(n_queries, c, generator=g)
    ref = torch.cat([torch.rand(n_queries, 2, generator=g) * 0.8 + 0.1, torch.rand(n_queries, 2, generator=g) * 0.2
                     + 0.02], 1)
    return image, tokens, shapes, tgt, ref


def export_network(network, out_dir, metadata: Optional[Mapping[str, str]] = None,
                   image_hw: Tuple[int, int] = (160, 288)) -> Dict[str, Path]:
    """Write `encode.onnx`, `decode.onnx`, the encoder's stages (`encode_stage{k}.onnx`) and `encode_step`
    of `network` (an eval-mode MOTR on the CPU, weights loaded) into `out_dir`, check them with
    `onnx.checker` and stamp `metadata` (plus the opset and the export format) into each.
    Returns {graph: path}."""
    onnx = require("onnx", "export the network")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    network = network.eval().cpu()
    image, tokens, shapes, tgt, ref = example_inputs(network, image_hw)
    per_query = {name: {1: "queries"} for name in DECODE_OUTPUTS}
    specs = {
        "encode": (EncodeGraph(network), (image,), ENCODE_INPUTS, ENCODE_OUTPUTS,
                   {"image": {2: "height", 3: "width"}, "tokens": {1: "tokens"}}),
        "decode": (DecodeGraph(network), (tokens, shapes, tgt, ref), DECODE_INPUTS, DECODE_OUTPUTS,
                   {"tokens": {1: "tokens"}, "tgt": {0: "queries"}, "ref_pts": {0: "queries"}, **per_query}),
    }
    specs.update(_stage_specs(network, image))
    paths = {}
    stamp = {"opset": str(OPSET), "export_format": str(EXPORT_FORMAT), **{k: str(v) for k, v in (metadata or {}).items()}}
    for name, (module, inputs, in_names, out_names, axes) in specs.items():
        path = out / f"{name}.onnx"
        tmp = out / f".{name}.{os.getpid()}.onnx.tmp"  # one per process: two exports into one folder do not collide
        with torch.no_grad(), export_attention(), _quiet_tracer():
            torch.onnx.export(module, inputs, str(tmp), input_names=list(in_names), output_names=list(out_names),
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
        model = onnx.load(str(tmp))
        model.doc_string = f"MOTRv2 {name} graph (models/export.py)"
        _stamp(model, {**stamp, "graph": name})
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        os.replace(tmp, path)
        paths[name] = path
    step = step_graph(paths, stamp)
    if step is not None:
        tmp = out / f".{STEP_GRAPH}.{os.getpid()}.onnx.tmp"
        onnx.save(step, str(tmp))
        os.replace(tmp, out / f"{STEP_GRAPH}.onnx")
        paths[STEP_GRAPH] = out / f"{STEP_GRAPH}.onnx"
    return paths


# The middle stages of the encoder (1 .. n_layers - 1) are one graph with different weights. OpenVINO
# keeps ~350 MB of buffers per compiled graph at 800x1422, so it runs them all as one compiled
# `encode_step`: stage 1's graph with its weights made inputs, fed each stage's own (read from its
# file: `step_weights`).
STEP_GRAPH = "encode_step"


def step_graph(paths: Mapping[str, Path], stamp: Mapping[str, str]):
    """The `encode_step` graph of the stage files in `paths` (an onnx ModelProto), or None when there
    are fewer than two middle stages or they are not one graph (then nothing is shared)."""
    onnx = require("onnx", "export the network")
    middle = [paths[g] for g in middle_stages(paths)]
    if len(middle) < 2:
        return None
    models = [onnx.load(str(p)) for p in middle]

    def structure(m):
        return ([(n.op_type, list(n.input), list(n.output), [a.SerializeToString() for a in n.attribute]) for n in m.graph.node],
                [(t.name, tuple(t.dims), t.data_type) for t in m.graph.initializer])
    if any(structure(m) != structure(models[0]) for m in models[1:]):
        return None
    arrays = [{t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer} for m in models]
    weights = {name for name in arrays[0] if any(not (a[name] == arrays[0][name]).all() for a in arrays[1:])}
    step = models[0]
    kept = [t for t in step.graph.initializer if t.name not in weights]
    made_inputs = [t for t in step.graph.initializer if t.name in weights]
    del step.graph.initializer[:]
    step.graph.initializer.extend(kept)
    for t in made_inputs:
        step.graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    del step.metadata_props[:]
    _stamp(step, {**stamp, "graph": STEP_GRAPH, "weights": json.dumps(sorted(weights))})
    step.doc_string = f"MOTRv2 {STEP_GRAPH} graph: a middle encoder stage, weights as inputs (models/export.py)"
    onnx.checker.check_model(step)
    return step


def middle_stages(graphs) -> Tuple[str, ...]:
    """The middle encoder stages among the graph names `graphs`, in layer order (encode_stage1 ..
    encode_stage{n-1}; a name sort would put encode_stage10 before encode_stage2)."""
    n_stages = sum(1 for g in graphs if g.startswith("encode_stage"))
    return stage_names(n_stages - 1)[1:-1] if n_stages else ()


def _stamp(model, metadata: Mapping[str, str]) -> None:
    """Add `metadata` to an onnx model's metadata_props."""
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def step_weights(stage_path, names) -> Dict[str, object]:
    """{name: numpy array} of the weights `names` (the step graph's `weights` metadata) in a middle
    stage's file: what that stage feeds `encode_step`."""
    onnx = require("onnx", "read an exported graph")
    found = {t.name: t for t in onnx.load(str(stage_path)).graph.initializer}
    missing = [n for n in names if n not in found]
    if missing:
        raise BackendError(f"{stage_path} lacks the weights {', '.join(missing[:3])} that {STEP_GRAPH}.onnx takes: "
                           "export the folder again with tools/export_onnx.py")
    return {n: onnx.numpy_helper.to_array(found[n]) for n in names}


def _stage_specs(network, image):
    """export_network's specs of the encoder's stages, traced on `image`."""
    n_layers = len(network.transformer.encoder.layers)
    names = stage_names(n_layers)
    per_token = {1: "tokens"}
    with torch.no_grad():
        tokens, pos, shapes, reference, *_ = EncodeStem(network)(image)
    attended = torch.randn(tokens.shape, generator=torch.Generator().manual_seed(1))
    specs = {names[0]: (EncodeStem(network), (image,), STEM_INPUTS, STEM_OUTPUTS,
                        {"image": {2: "height", 3: "width"},
                         **{o: per_token for o in STEM_OUTPUTS if o != "spatial_shapes"}})}
    for k in range(1, n_layers + 1):
        last = k == n_layers
        inputs, in_names = ((tokens, attended), STEP_INPUTS[:2]) if last else ((tokens, attended, pos), STEP_INPUTS)
        out_names = STAGE_OUTPUTS[:1] if last else STAGE_OUTPUTS
        specs[names[k]] = (EncodeStep(network, k), inputs, in_names, out_names,
                           {n: per_token for n in in_names + out_names})
    return specs


def read_metadata(path) -> Dict[str, str]:
    """The metadata an exported graph carries (opset, export_format, graph, config, checkpoint, ...)."""
    onnx = require("onnx", "read an exported graph")
    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    meta.setdefault("opset_import", str(max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))))
    return meta


def network_config(args) -> Dict[str, object]:
    """The network flags of a parsed command line that a graph depends on (JSON-able)."""
    return {name: getattr(args, name) for name in NETWORK_FLAGS if hasattr(args, name)}


def config_json(args) -> str:
    return json.dumps(network_config(args), sort_keys=True)


@contextlib.contextmanager
def _quiet_tracer():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        yield


class BackendError(ValueError):
    """Exported graphs that cannot serve this run (missing files, made from another configuration)."""


class MissingRuntime(ImportError, ValueError):
    """An export or runtime package that is not installed; the message says what to install."""


def require(module: str, purpose: str):
    """Import `module` or raise MissingRuntime: one line naming the pip package (named as the module)."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingRuntime(f"to {purpose} the {module} package is needed: pip install {module} "
                             "(pinned in requirements.txt)") from None
