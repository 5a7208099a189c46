"""The command-line flags every entry point shares, and turning `.args` files and keywords into them.

`get_args_parser()` holds upstream MOTRv2's flags (names and defaults kept, so existing `.args`
files and scripts work) plus ours; `get_tracking_parser()` adds the tracking flags of
`submit_dance.py`.  Upstream flags that change nothing in this code base are accepted but grouped
under "accepted for compatibility" in `--help`, and `warn_inert_flags` warns when one is set.
"""
import argparse
import math
import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"

# Upstream flags that do nothing here, with the values that are no-ops upstream too (no warning).
# --meta_arch motr is in every upstream config: it selects the model this code base always builds.
INERT_FLAGS: Dict[str, tuple] = {
    "meta_arch": ("deformable_detr", "motr"), "accurate_ratio": (False,), "frozen_weights": (None,),
    "num_anchors": (1,), "enable_fpn": (False,), "position_embedding_scale": (2 * math.pi,),
    "crop": (False,), "cj": (False,), "extra_track_attn": (False,), "loss_normalizer": (False,),
    "filter_ignore": (False,), "mix_match": (False,), "mask_loss_coef": (1,), "dice_loss_coef": (1,),
    "gt_file_train": (None,), "gt_file_val": (None,), "coco_path": ("",), "coco_panoptic_path": (None,),
    "remove_difficult": (False,), "eval": (False,), "vis": (False,), "cache_mode": (False,),
    "input_video": ("",), "data_txt_path_train": ("",), "data_txt_path_val": ("",), "img_path": ("",),
    "memory_bank_score_thresh": (0.0,), "memory_bank_len": (4,), "memory_bank_with_self_attn": (False,),
}


def _iou_threshold(text: str) -> float:
    """argparse type for an IoU threshold in (0, 1]."""
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: an IoU in (0, 1]")
    return value


def get_args_parser() -> argparse.ArgumentParser:
    """Model, training and memory flags (upstream MOTRv2's `main.py` parser, plus ours)."""
    parser = argparse.ArgumentParser("MOTRv2 + TF-SASM", add_help=False)
    a = parser.add_argument
    # -- optimisation
    a("--lr", default=2e-4, type=float)
    a("--lr_backbone_names", default=["backbone.0"], type=str, nargs="+")
    a("--lr_backbone", default=2e-5, type=float)
    a("--lr_linear_proj_names", default=["reference_points", "sampling_offsets"], type=str, nargs="+")
    a("--lr_linear_proj_mult", default=0.1, type=float)
    a("--batch_size", default=2, type=int)
    a("--weight_decay", default=1e-4, type=float)
    a("--epochs", default=50, type=int)
    a("--lr_drop", default=40, type=int)
    a("--save_period", default=50, type=int)
    a("--lr_drop_epochs", default=None, type=int, nargs="+")
    a("--clip_max_norm", default=0.1, type=float, help="gradient clipping max norm")
    a("--sgd", action="store_true")
    # -- Deformable DETR variants
    a("--with_box_refine", default=False, action="store_true")
    a("--two_stage", default=False, action="store_true", help="not implemented (MOTRv2 does not use it)")
    # -- model
    a("--backbone", default="resnet50", type=str, help="torchvision ResNet: resnet18, resnet34, resnet50, ...")
    a("--dilation", action="store_true", help="replace stride with dilation in the last block (DC5)")
    a("--position_embedding", default="sine", type=str, choices=("sine", "learned"))
    a("--num_feature_levels", default=4, type=int)
    a("--enc_layers", default=6, type=int)
    a("--dec_layers", default=6, type=int)
    a("--dim_feedforward", default=1024, type=int)
    a("--hidden_dim", default=256, type=int)
    a("--dropout", default=0.1, type=float)
    a("--nheads", default=8, type=int)
    a("--num_queries", default=300, type=int)
    a("--dec_n_points", default=4, type=int)
    a("--enc_n_points", default=4, type=int)
    a("--decoder_cross_self", default=False, action="store_true")
    a("--sigmoid_attn", default=False, action="store_true")
    a("--max_size", default=1333, type=int)
    a("--val_width", default=800, type=int)
    a("--append_crowd", default=False, action="store_true")
    a("--masks", action="store_true")
    a("--no_aux_loss", dest="aux_loss", action="store_false")
    # -- matcher and loss
    a("--set_cost_class", default=2, type=float)
    a("--set_cost_bbox", default=5, type=float)
    a("--set_cost_giou", default=2, type=float)
    a("--cls_loss_coef", default=2, type=float)
    a("--bbox_loss_coef", default=5, type=float)
    a("--giou_loss_coef", default=2, type=float)
    a("--focal_alpha", default=0.25, type=float)
    # -- data
    a("--dataset_file", default="coco")
    a("--output_dir", default="", help="where to save; empty for no saving")
    a("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    a("--seed", default=42, type=int)
    a("--resume", default="", help="checkpoint to resume from / to track with")
    a("--start_epoch", default=0, type=int, metavar="N")
    a("--num_workers", default=2, type=int)
    a("--pretrained", default=None, help="weights to start training from (model only)")
    # -- end-to-end MOT
    a("--mot_path", default="data", type=str, help="data root (DanceTrack/<split>/... below it)")
    a("--det_db", default="", type=str)
    a("--query_interaction_layer", default="QIM", type=str)
    a("--sample_mode", type=str, default="fixed_interval")
    a("--sample_interval", type=int, default=1)
    a("--random_drop", type=float, default=0)
    a("--fp_ratio", type=float, default=0)
    a("--merger_dropout", type=float, default=0.1)
    a("--update_query_pos", action="store_true")
    a("--sampler_steps", type=int, nargs="*")
    a("--sampler_lengths", type=int, nargs="*")
    a("--exp_name", default="submit", type=str)
    a("--memory_bank_type", type=str, default=None, help="upstream's learned memory bank (training loss only)")
    a("--use_checkpoint", action="store_true", default=False)
    a("--query_denoise", type=float, default=0.0)
    # -- ours
    a("--qim_augment", action="store_true",
      help="apply QIM random drop (--random_drop) and false-positive insertion (--fp_ratio) in training; "
           "upstream MOTRv2 defines but never applies them")
    a("--train_scales", type=int, nargs="+", default=None,
      help="training short-side sizes (default: upstream's 608..992)")
    a("--train_max_size", type=int, default=None, help="training long-side cap (default: upstream's 1536)")
    a("--train_crop_scales", type=int, nargs="+", default=None,
      help="short side before the random crop (default: upstream's 800 1000 1200)")
    a("--train_crop_size", type=int, nargs=2, default=None,
      help="min and max side of the random crop (default: upstream's 800 1200)")
    a("--num_threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    a("--no_progress", action="store_true", help="no tqdm progress bar (logs of long runs)")
    from datasets.layouts import add_dataset_args
    add_dataset_args(parser)  # --dataset, --mot17_copy, --split_dir (training and tracking)
    from models.sparse_memory import add_memory_args
    add_memory_args(parser)
    _add_inert_args(parser)
    return parser


def _add_inert_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group(
        "accepted for compatibility", "upstream MOTRv2 flags that change nothing here (a warning says so when set)")
    a = g.add_argument
    for name in ("accurate_ratio", "enable_fpn", "crop", "cj", "extra_track_attn", "loss_normalizer",
                 "filter_ignore", "mix_match", "remove_difficult", "eval", "vis", "cache_mode",
                 "memory_bank_with_self_attn"):
        a(f"--{name}", action="store_true")
    a("--meta_arch", default="deformable_detr", type=str)
    a("--frozen_weights", type=str, default=None)
    a("--num_anchors", default=1, type=int)
    a("--position_embedding_scale", default=2 * math.pi, type=float)
    a("--mask_loss_coef", default=1, type=float)
    a("--dice_loss_coef", default=1, type=float)
    a("--gt_file_train", type=str)
    a("--gt_file_val", type=str)
    a("--coco_path", default="", type=str)
    a("--coco_panoptic_path", type=str)
    for name in ("input_video", "data_txt_path_train", "data_txt_path_val", "img_path"):
        a(f"--{name}", default="", type=str)
    a("--memory_bank_score_thresh", type=float, default=0.0)
    a("--memory_bank_len", type=int, default=4)


def add_tracking_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The tracker's flags (thresholds, output filter) and how a run reads its input."""
    g = parser.add_argument_group("tracker")
    a = g.add_argument
    a("--score_threshold", default=0.5, type=float, help="score for a new track and for writing a box")
    a("--update_score_threshold", default=0.5, type=float,
      help="score from which QIM updates a track's query; also the memory's 'detected' test (paper preset)")
    a("--miss_tolerance", default=20, type=int, help="frames a track may be missed before it ends")
    a("--track_nms_iou", default=None, type=_iou_threshold,
      help="suppress the lower-scoring of two reported boxes overlapping by more than this IoU "
           "(counted as a miss); default: off, as upstream MOTRv2")
    a("--area_threshold", default=100, type=float, help="boxes of at most this many pixels are not written")
    a("--public_protocol", action="store_true",
      help="report only tracks born from a proposal of their first frame (det_ind >= 0 at birth): with a "
           "det_db of public detections (make_detdb.py --from_det_txt), MOTChallenge's public-detection protocol")
    g = parser.add_argument_group("tracking run")
    a = g.add_argument
    a("--split", default="val", choices=("train", "val", "test", "train_half", "val_half"),
      help="split under --mot_path; train_half / val_half: MOT17's / MOT20's train videos cut in two (--half_split)")
    a("--seqs", nargs="+", default=None, help="track only these sequences")
    a("--overwrite", action="store_true", help="re-track sequences whose result file exists")
    a("--missing_detections", default="error", choices=("error", "empty"),
      help="a frame absent from the det_db: stop with an error, or track it without proposals")
    a("--val_max_size", default=1536, type=int,
      help="long-side cap of the model input; the short side is --val_width (800), as upstream resizes")
    a("--amp", default="off", choices=("off", "fp16", "bf16"), help="mixed precision (CUDA only)")
    a("--compile", action="store_true", help="torch.compile the backbone (one-off compile time; long runs)")
    a("--variants", default=None, metavar="FILE",
      help="track several tracker/memory variants in one pass: one 'NAME FLAG...' per line")
    a("--demo", action="store_true", help="run the built-in demo (synthetic data, shipped small model)")
    return parser


def get_tracking_parser() -> argparse.ArgumentParser:
    """`submit_dance.py`'s parser: every model flag plus the tracker's."""
    parser = argparse.ArgumentParser("MOTRv2 tracking on DanceTrack-format data", parents=[get_args_parser()])
    return add_tracking_args(parser)


def warn_inert_flags(args: argparse.Namespace) -> List[str]:
    """Warn once for each upstream flag that is set but changes nothing here; returns their names."""
    set_flags = [name for name, harmless in INERT_FLAGS.items()
                 if hasattr(args, name) and getattr(args, name) not in harmless]
    for name in set_flags:
        warnings.warn(f"--{name} {getattr(args, name)!r} is accepted for compatibility with upstream MOTRv2 "
                      "but does nothing in this code base", stacklevel=2)
    return set_flags


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


def flags_to_argv(parser: argparse.ArgumentParser, flags: Mapping[str, Any]) -> List[str]:
    """Keyword flags (`memory="sparse"`, `score_threshold=0.5`, `with_box_refine=True`) as command-line
    words for `parser`; an unknown name is refused by name."""
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    argv: List[str] = []
    for name, value in flags.items():
        action = actions.get(name)
        if action is None:
            raise ValueError(f"unknown flag {name!r} (not a flag of submit_dance.py; see --help)")
        option = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            if bool(value) == action.const:
                argv.append(option)
            elif bool(value) != action.default:
                raise ValueError(f"flag {name!r}: expected {action.const} or {action.default}, got {value!r}")
        elif value is None:
            if action.default is not None:
                raise ValueError(f"flag {name!r}: None is not a value of --{name}")
        elif isinstance(value, (list, tuple)):
            argv += [option, *map(str, value)]
        else:
            argv += [option, str(value)]
    return argv


def tracking_args(config: Union[str, os.PathLike, None] = "motrv2",
                  flags: Optional[Mapping[str, Any]] = None,
                  argv: Sequence[str] = ()) -> argparse.Namespace:
    """Parse `config`'s flags, then `argv`, then keyword `flags` (later ones win), as submit_dance.py would."""
    parser = get_tracking_parser()
    words = read_args_file(config) + list(argv) + flags_to_argv(parser, flags or {})
    try:
        return parser.parse_args(words)
    except SystemExit as exc:  # argparse printed why; say it again as an exception for library callers
        raise ValueError(f"invalid flags {' '.join(words)!r} (see the message above)") from exc
