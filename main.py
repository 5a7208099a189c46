"""MOTRv2 training, and the command-line parsers every entry point shares.

    python main.py $(cat configs/motrv2.args) --mot_path DATA --output_dir exps/motrv2
    torchrun --nproc_per_node 8 main.py $(cat configs/motrv2.args) ...

`get_args_parser()` (upstream's home for it) holds upstream MOTRv2's flags (names and defaults kept,
so existing `.args` files and scripts work) plus ours, composed from the network's flags
(`models.config.add_network_args`), the memory's (generated from `MemoryConfig`), the datasets'
(`datasets.layouts.add_dataset_args`) and the training flags below. `get_tracking_parser()` adds
the tracker's flags (generated from `TrackerConfig`) and the tracking run's, for `submit_dance.py`.
Upstream flags that change nothing in this code base are accepted but grouped under "accepted for
compatibility" in `--help`, and `warn_inert_flags` warns when one is set.
"""
import argparse
import math
import warnings
from typing import Dict, List

from datasets.layouts import add_dataset_args
from datasets.sequences import CORRUPT_FRAME_POLICIES
from models.config import add_device_args, add_inference_args, add_memory_args, add_network_args, add_tracker_args
from util.cli import ArgumentParser
from util.flags import checked, non_negative, positive

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
    "max_size": (1333,),
}


def _add_training_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("optimisation")
    a = g.add_argument
    a("--lr", default=2e-4, type=checked(float, non_negative))
    a("--lr_backbone_names", default=["backbone.0"], type=str, nargs="+")
    a("--lr_linear_proj_names", default=["reference_points", "sampling_offsets"], type=str, nargs="+")
    a("--lr_linear_proj_mult", default=0.1, type=checked(float, non_negative))
    a("--batch_size", default=2, type=checked(int, positive))
    a("--weight_decay", default=1e-4, type=checked(float, non_negative))
    a("--epochs", default=50, type=checked(int, non_negative))
    a("--lr_drop", default=40, type=checked(int, positive))
    a("--save_period", default=50, type=checked(int, positive))
    a("--lr_drop_epochs", default=None, type=checked(int, positive), nargs="+")
    a("--clip_max_norm", default=0.1, type=checked(float, non_negative), help="gradient clipping max norm")
    a("--sgd", action="store_true")
    g = parser.add_argument_group("data and run")
    a = g.add_argument
    a("--output_dir", default="", help="where to save; empty for no saving")
    a("--seed", default=42, type=checked(int, non_negative))
    a("--start_epoch", default=0, type=checked(int, non_negative), metavar="N")
    a("--num_workers", default=2, type=checked(int, non_negative))
    a("--pretrained", default=None, help="weights to start training from (model only)")
    a("--mot_path", default="data", type=str, help="data root (DanceTrack/<split>/... below it)")
    a("--det_db", default="", type=str)
    a("--append_crowd", default=False, action="store_true",
      help="also train on CrowdHuman stills (<mot_path>/crowdhuman/; configs/motrv2.args sets it)")
    a("--no_append_crowd", dest="append_crowd", action="store_false",
      help="train without CrowdHuman even when a config sets --append_crowd (the later flag wins)")
    a("--sample_mode", type=str, default="fixed_interval")
    a("--sample_interval", type=checked(int, positive), default=1)
    a("--sampler_steps", type=checked(int, non_negative), nargs="*")
    a("--exp_name", default="submit", type=str)
    a("--train_scales", type=checked(int, positive), nargs="+", default=None,
      help="training short-side sizes (default: upstream's 608..992)")
    a("--train_max_size", type=checked(int, positive), default=None, help="training long-side cap (default: upstream's 1536)")
    a("--train_crop_scales", type=checked(int, positive), nargs="+", default=None,
      help="short side before the random crop (default: upstream's 800 1000 1200)")
    a("--train_crop_size", type=checked(int, positive), nargs=2, default=None,
      help="min and max side of the random crop (default: upstream's 800 1200)")
    a("--num_threads", type=checked(int, non_negative), default=0, help="torch CPU threads (0: torch's default)")
    a("--no_progress", action="store_true", help="no tqdm progress bar (logs of long runs)")


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
    a("--max_size", default=1333, type=int, help="upstream's unused test-time size (tracking: --val_max_size)")


def get_args_parser() -> argparse.ArgumentParser:
    """Network, memory, dataset and training flags (upstream MOTRv2's `main.py` parser, plus ours)."""
    parser = argparse.ArgumentParser("MOTRv2 + TF-SASM", add_help=False)
    _add_training_args(parser)
    add_network_args(parser)
    add_device_args(parser)
    add_dataset_args(parser)  # --dataset, --mot17_copy, --split_dir (training and tracking)
    add_memory_args(parser)
    _add_inert_args(parser)
    return parser


def add_tracking_run_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """How a tracking run reads its input and writes its results (submit_dance.py)."""
    g = parser.add_argument_group("tracking run")
    a = g.add_argument
    a("--split", default="val", choices=("train", "val", "test", "train_half", "val_half"),
      help="split under --mot_path; train_half / val_half: MOT17's / MOT20's train videos cut in two (--half_split)")
    a("--seqs", nargs="+", default=None, help="track only these sequences")
    a("--overwrite", action="store_true", help="re-track sequences whose result file exists")
    a("--missing_detections", default="error", choices=("error", "empty"),
      help="a frame absent from the det_db: stop with an error, or track it without proposals")
    a("--variants", default=None, metavar="FILE",
      help="track several tracker/memory variants in one pass: one 'NAME FLAG...' per line")
    a("--corrupt_frames", default="error", choices=CORRUPT_FRAME_POLICIES,
      help="a frame that does not decode completely (truncated, damaged): stop with an error naming it, or "
           "leave it out with a warning (no boxes for that frame)")
    a("--demo", action="store_true", help="run the built-in demo (synthetic data, shipped small model)")
    return parser


def get_tracking_parser() -> argparse.ArgumentParser:
    """`submit_dance.py`'s parser: every model flag plus the tracker's and the tracking run's."""
    parser = ArgumentParser("MOTRv2 tracking on DanceTrack-format data", parents=[get_args_parser()])
    add_tracker_args(parser)
    add_inference_args(parser)
    return add_tracking_run_args(parser)


def warn_inert_flags(args: argparse.Namespace) -> List[str]:
    """Warn once for each upstream flag that is set but changes nothing here; returns their names."""
    set_flags = [name for name, harmless in INERT_FLAGS.items()
                 if hasattr(args, name) and getattr(args, name) not in harmless]
    for name in set_flags:
        warnings.warn(f"--{name} {getattr(args, name)!r} is accepted for compatibility with upstream MOTRv2 "
                      "but does nothing in this code base", stacklevel=2)
    return set_flags


def main(args):
    from engine import train
    warn_inert_flags(args)
    train(args)


if __name__ == "__main__":
    from datasets.det_db import DetDBError
    parser = ArgumentParser("MOTRv2 training", parents=[get_args_parser()])
    try:
        main(parser.parse_args())
    except (FileNotFoundError, DetDBError) as exc:  # missing data (a split, CrowdHuman, a det_db): one line
        raise SystemExit(f"error: {exc}") from None
