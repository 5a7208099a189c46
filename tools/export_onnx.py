"""Export the network as ONNX graphs: `encode` (image -> multi-scale encoded features) and `decode`
(features, queries, reference boxes -> logits, boxes, hidden states, first layer's boxes), with
dynamic image size and query count, plus the encoder in stages (`encode_stage0..N`: what the CPU
backends run, with the deformable sampling between them; models/export.py) and `encode_step` (the
middle stages as one graph with their weights as inputs, what OpenVINO float32 compiles once).

    python tools/export_onnx.py --resume motrv2_dancetrack.pth --config motrv2 -o exported/
    python submit_dance.py ... --backend openvino --onnx_dir exported/      # run them

The settings come as for `Tracker.from_checkpoint`: `--config` (an .args file or a name in
configs/), else the checkpoint's model card, else the args a training checkpoint holds, else
configs/motrv2.args; any further network flag on this command line wins. Each graph passes
`onnx.checker` and carries its opset, the network configuration and the checkpoint's sha256 in its
metadata. Without --onnx_dir, `--backend onnxruntime|openvino` exports on first use into a cache
(models/backends.py), so this tool is only needed to ship or inspect the files.
"""
import argparse
import json
import sys

from models.backends import graph_metadata
from models.card import CardError, settings_for
from models.checkpoint import CheckpointError, read_checkpoint
from models.config import model_parser
from models.export import GRAPHS, STEP_GRAPH, BackendError, MissingRuntime, export_network, read_metadata, require
from models.tracker import build_network


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("tools/export_onnx.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resume", required=True, help="the checkpoint to export")
    parser.add_argument("--config", default=None, help="an .args file or the name of one in configs/")
    parser.add_argument("-o", "--output", required=True, help="folder for encode.onnx, decode.onnx and the encoder's stages")
    parser.add_argument("--trace_size", type=int, nargs=2, default=(160, 288), metavar=("H", "W"),
                        help="image size the graphs are traced at (they run at any size)")
    return parser


def main(argv=None) -> int:
    parser = get_parser()
    args, network_argv = parser.parse_known_args(argv)
    try:
        require("onnx", "export the network")
        extra = vars(model_parser().parse_args(network_argv)) if network_argv else {}
        given = {k: v for k, v in extra.items() if f"--{k}" in network_argv}
        settings, source, loaded = settings_for(args.resume, args.config, {**given, "device": "cpu",
                                                                           "backend": "torch"}, load=read_checkpoint)
        settings.resume = args.resume
        network = build_network(settings, loaded)
        paths = export_network(network, args.output, metadata=graph_metadata(settings),
                               image_hw=tuple(args.trace_size))
    except (MissingRuntime, BackendError, CheckpointError, CardError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"settings from {source}")
    for name in GRAPHS:
        meta = read_metadata(paths[name])
        print(f"{paths[name]}: opset {meta['opset']}, config {json.dumps(json.loads(meta['config']))}")
    stages = [p for name, p in paths.items() if name.startswith("encode_stage")]
    print(f"{len(stages)} encoder stages for the CPU backends: {stages[0].parent}/encode_stage{{0..{len(stages) - 1}}}.onnx")
    if STEP_GRAPH in paths:
        print(f"the middle stages as one graph fed their weights: {paths[STEP_GRAPH]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
