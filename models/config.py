"""The model layer's settings: `TrackerConfig` (with its `MemoryConfig`), the network's flags, and
reading an `.args` file with them.

Each tracker / memory default is written once, on its dataclass field; the command-line flags, the
`--variants` lines and the ablation scripts are generated from those fields (`util.flags`).
`add_network_args` holds every flag `build_model` reads (upstream MOTRv2's names and defaults).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Union

from util.flags import (FlagField, add_flags, check_fields, checked, finite, flag_fields, from_namespace, in_range,
                        non_negative, option, positive, probability)

from .memory import MemoryConfig

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


@dataclass(frozen=True)
class TrackerConfig:
    """Every setting of the tracker (thresholds, output filter) and its memory (`memory`)."""
    score_threshold: float = option(0.5, "score for a new track and for writing a box", check=probability)
    update_score_threshold: float = option(
        0.5, "score from which QIM updates a track's query; also the memory's 'detected' test (paper preset)",
        check=probability)
    miss_tolerance: int = option(20, "frames a track may be missed before it ends", check=non_negative)
    track_nms_iou: Optional[float] = option(
        None, "suppress the lower-scoring of two reported boxes overlapping by more than this IoU (counted as "
        "a miss); default: off, as upstream MOTRv2", check=in_range(0, 1, low_open=True), optional=True)
    area_threshold: float = option(100.0, "boxes of at most this many pixels are not written", check=non_negative)
    public_protocol: bool = option(
        False, "report only tracks born from a proposal of their first frame (det_ind >= 0 at birth): with a det_db "
        "of public detections (make_detdb.py --from_det_txt), MOTChallenge's public-detection protocol")
    memory: MemoryConfig = field(default_factory=MemoryConfig)

    def __post_init__(self):
        check_fields(self)

    @classmethod
    def from_args(cls, args) -> "TrackerConfig":
        """The tracker settings of a parsed command line (any object with the flags' attributes)."""
        return from_namespace(cls, args)

    @classmethod
    def from_flags(cls, **flags: Any) -> "TrackerConfig":
        """The config of flag-named values (`memory="sparse"`, `memory_size=5`, `score_threshold=0.4`);
        an unknown name raises ValueError."""
        known = {f.dest for f in flag_fields(cls)}
        unknown = sorted(set(flags) - known)
        if unknown:
            raise ValueError(f"unknown tracker or memory flag {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return from_namespace(cls, argparse.Namespace(**flags))


THRESHOLD_FIELDS = ("score_threshold", "update_score_threshold", "miss_tolerance", "track_nms_iou",
                    "area_threshold", "public_protocol")


def tracker_flags() -> List[FlagField]:
    """Every tracker and memory flag (name, default, help, allowed values), in `--help` order: what a
    `--variants` line may set."""
    return flag_fields(TrackerConfig)


def add_tracker_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The tracker's flags (thresholds, output filter)."""
    add_flags(parser, TrackerConfig, "tracker", only=THRESHOLD_FIELDS)
    return parser


def add_memory_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The memory's flags."""
    add_flags(parser, MemoryConfig, "TF-SASM sparse memory")
    return parser


def add_network_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Every flag `build_model` reads: backbone, transformer, QIM, matcher and loss (upstream's names
    and defaults)."""
    g = parser.add_argument_group("network")
    a = g.add_argument
    a("--with_box_refine", default=False, action="store_true")
    a("--two_stage", default=False, action="store_true", help="not implemented (MOTRv2 does not use it)")
    a("--backbone", default="resnet50", type=str, help="torchvision ResNet: resnet18, resnet34, resnet50, ...")
    a("--lr_backbone", default=2e-5, type=checked(float, non_negative), help="backbone learning rate (0: the backbone is frozen)")
    a("--dilation", action="store_true", help="replace stride with dilation in the last block (DC5)")
    a("--position_embedding", default="sine", type=str, choices=("sine", "learned"))
    a("--num_feature_levels", default=4, type=checked(int, in_range(1, 4)))
    a("--enc_layers", default=6, type=checked(int, non_negative))
    a("--dec_layers", default=6, type=checked(int, positive))
    a("--dim_feedforward", default=1024, type=checked(int, positive))
    a("--hidden_dim", default=256, type=checked(int, positive))
    a("--dropout", default=0.1, type=checked(float, in_range(0, 1, high_open=True)))
    a("--nheads", default=8, type=checked(int, positive))
    a("--num_queries", default=300, type=checked(int, non_negative))
    a("--dec_n_points", default=4, type=checked(int, positive))
    a("--enc_n_points", default=4, type=checked(int, positive))
    a("--decoder_cross_self", default=False, action="store_true")
    a("--sigmoid_attn", default=False, action="store_true")
    a("--masks", action="store_true")
    a("--no_aux_loss", dest="aux_loss", action="store_false")
    a("--use_checkpoint", action="store_true", default=False)
    a("--query_denoise", type=checked(float, non_negative), default=0.0)
    a("--dataset_file", default="coco", help="e2e_dance, e2e_mot, e2e_joint: sets the number of classes")
    g = parser.add_argument_group("query interaction (QIM)")
    a = g.add_argument
    a("--query_interaction_layer", default="QIM", type=str)
    a("--random_drop", type=checked(float, probability), default=0)
    a("--fp_ratio", type=checked(float, probability), default=0)
    a("--merger_dropout", type=checked(float, in_range(0, 1, high_open=True)), default=0.1)
    a("--update_query_pos", action="store_true")
    a("--qim_augment", action="store_true",
      help="apply QIM random drop (--random_drop) and false-positive insertion (--fp_ratio) in training; "
           "upstream MOTRv2 defines but never applies them")
    g = parser.add_argument_group("matcher and loss")
    a = g.add_argument
    a("--set_cost_class", default=2, type=checked(float))
    a("--set_cost_bbox", default=5, type=checked(float))
    a("--set_cost_giou", default=2, type=checked(float))
    a("--cls_loss_coef", default=2, type=checked(float))
    a("--bbox_loss_coef", default=5, type=checked(float))
    a("--giou_loss_coef", default=2, type=checked(float))
    a("--focal_alpha", default=0.25, type=checked(float, probability))
    a("--sampler_lengths", type=checked(int, positive), nargs="*", help="frames per training clip (the loss normaliser)")
    a("--memory_bank_type", type=str, default=None, help="upstream's learned memory bank (training loss only)")
    return parser


def add_device_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Where the network runs, its weights and its input's short side (training and tracking)."""
    g = parser.add_argument_group("device and weights")
    a = g.add_argument
    a("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    a("--resume", default="", help="checkpoint to resume from / to track with")
    a("--val_width", default=800, type=checked(int, positive), help="short side of the model input when tracking")
    return parser


BACKENDS = ("torch", "onnxruntime", "openvino")


@dataclass(frozen=True)
class BackendConfig:
    """Which runtime runs the network's encode and decode (models/backends.py); the tracker around
    them is the same Python for every backend."""
    backend: str = option("torch", "runtime of the network: torch, or its exported ONNX graphs on onnxruntime or "
                          "openvino (exported on first use into a cache; pip install -r requirements.txt)",
                          choices=BACKENDS)
    onnx_dir: Optional[str] = option(
        None, "with --backend onnxruntime|openvino: take the graphs (encode.onnx, decode.onnx) from this folder "
        "(tools/export_onnx.py) instead of the export cache", optional=True)

    def __post_init__(self):
        check_fields(self)

    @classmethod
    def from_args(cls, args) -> "BackendConfig":
        return from_namespace(cls, args)


def add_inference_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """How a tracker runs the network: input size cap, precision, compile, backend."""
    g = parser.add_argument_group("inference")
    a = g.add_argument
    a("--val_max_size", default=1536, type=checked(int, positive),
      help="long-side cap of the model input; the short side is --val_width (800), as upstream resizes")
    a("--amp", default="off", choices=("off", "fp16", "bf16"),
      help="mixed precision: fp16 (CUDA), bf16 (CUDA; on the CPU for every backend where the CPU has bf16, "
           "else float32 with a warning)")
    a("--compile", action="store_true", help="torch.compile the backbone (one-off compile time; long runs)")
    add_flags(parser, BackendConfig, "backend")
    return parser


# -- .args files and keyword flags ------------------------------------------------------------------
def config_path(config: Union[str, os.PathLike]) -> Path:
    """A path to an `.args` file, or the name of one in `configs/` ("motrv2", "tfsasm", ...)."""
    path = Path(config)
    if path.is_file():
        return path
    named = CONFIG_DIR / f"{config}.args"
    if named.is_file():
        return named
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.args"))
    raise ValueError(f"config {str(config)!r}: neither an .args file nor one of {known}")


def read_args_file(config: Union[str, os.PathLike, None]) -> List[str]:
    """The flags of an `.args` file, split as the shell splits `$(cat file)`."""
    return [] if config is None else config_path(config).read_text().split()


class _Refusing(argparse.ArgumentParser):
    """An argparse parser that raises ValueError (one line, no usage text) instead of exiting."""

    def error(self, message):
        raise ValueError(message)


def model_parser() -> argparse.ArgumentParser:
    """The flags a tracker needs from a command line or `.args` file: network, inference, tracker, memory."""
    parser = _Refusing("tracker", add_help=False, allow_abbrev=False)
    add_network_args(parser)
    add_device_args(parser)
    add_inference_args(parser)
    add_tracker_args(parser)
    add_memory_args(parser)
    return parser


def flags_to_argv(parser: argparse.ArgumentParser, flags: Mapping[str, Any]) -> List[str]:
    """Keyword flags (`memory="sparse"`, `score_threshold=0.5`, `with_box_refine=True`) as command-line
    words for `parser`; an unknown name is refused by name."""
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    argv: List[str] = []
    for name, value in flags.items():
        action = actions.get(name)
        if action is None:
            raise ValueError(f"unknown flag {name!r} (not a network, inference, tracker or memory flag)")
        option_ = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            if bool(value) == action.const:
                argv.append(option_)
            elif bool(value) != action.default:
                raise ValueError(f"flag {name!r}: expected {action.const} or {action.default}, got {value!r}")
        elif value is None:
            if action.default is not None:
                raise ValueError(f"flag {name!r}: None is not a value of --{name}")
        elif isinstance(value, (list, tuple)):
            argv += [option_, *map(str, value)]
        else:
            argv += [option_, str(value)]
    return argv


def model_args(config: Union[str, os.PathLike, None] = "motrv2", flags: Optional[Mapping[str, Any]] = None,
               argv: Sequence[str] = ()) -> argparse.Namespace:
    """`config`'s flags (its training and data flags, which change nothing at inference, skipped), then
    `argv`, then keyword `flags` (strictly: an unknown or out-of-range one raises ValueError)."""
    parser = model_parser()
    args, _skipped = parser.parse_known_args(read_args_file(config))
    return parser.parse_args(list(argv) + flags_to_argv(parser, flags or {}), namespace=args)

