"""MOTRv2 training (and the argument parser every entry point shares).

    python main.py $(cat configs/motrv2.args) --mot_path DATA --output_dir exps/motrv2
    torchrun --nproc_per_node 8 main.py $(cat configs/motrv2.args) ...

Flags keep upstream MOTRv2's names and defaults, so existing .args files and scripts work.
"""
import argparse

import numpy as np


def get_args_parser() -> argparse.ArgumentParser:
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
    a("--meta_arch", default="deformable_detr", type=str)
    a("--sgd", action="store_true")
    # -- Deformable DETR variants
    a("--with_box_refine", default=False, action="store_true")
    a("--two_stage", default=False, action="store_true")
    a("--accurate_ratio", default=False, action="store_true")
    # -- model
    a("--frozen_weights", type=str, default=None)
    a("--num_anchors", default=1, type=int)
    a("--backbone", default="resnet50", type=str, help="torchvision ResNet: resnet18, resnet34, resnet50, ...")
    a("--enable_fpn", action="store_true")
    a("--dilation", action="store_true", help="replace stride with dilation in the last block (DC5)")
    a("--position_embedding", default="sine", type=str, choices=("sine", "learned"))
    a("--position_embedding_scale", default=2 * np.pi, type=float)
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
    a("--crop", action="store_true")
    a("--cj", action="store_true")
    a("--extra_track_attn", action="store_true")
    a("--loss_normalizer", action="store_true")
    a("--max_size", default=1333, type=int)
    a("--val_width", default=800, type=int)
    a("--filter_ignore", action="store_true")
    a("--append_crowd", default=False, action="store_true")
    a("--masks", action="store_true")
    a("--no_aux_loss", dest="aux_loss", action="store_false")
    # -- matcher and loss
    a("--mix_match", action="store_true")
    a("--set_cost_class", default=2, type=float)
    a("--set_cost_bbox", default=5, type=float)
    a("--set_cost_giou", default=2, type=float)
    a("--mask_loss_coef", default=1, type=float)
    a("--dice_loss_coef", default=1, type=float)
    a("--cls_loss_coef", default=2, type=float)
    a("--bbox_loss_coef", default=5, type=float)
    a("--giou_loss_coef", default=2, type=float)
    a("--focal_alpha", default=0.25, type=float)
    # -- data
    a("--dataset_file", default="coco")
    a("--gt_file_train", type=str)
    a("--gt_file_val", type=str)
    a("--coco_path", default="data/coco", type=str, help="unused: upstream's flag, kept so its commands parse")
    a("--coco_panoptic_path", type=str)
    a("--remove_difficult", action="store_true")
    a("--output_dir", default="", help="where to save; empty for no saving")
    a("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    a("--seed", default=42, type=int)
    a("--resume", default="", help="checkpoint to resume from / to track with")
    a("--start_epoch", default=0, type=int, metavar="N")
    a("--eval", action="store_true")
    a("--vis", action="store_true")
    a("--num_workers", default=2, type=int)
    a("--pretrained", default=None, help="weights to start training from (model only)")
    a("--cache_mode", default=False, action="store_true")
    # -- end-to-end MOT
    a("--mot_path", default="data", type=str, help="the data root (DanceTrack/, det_db files)")
    a("--det_db", default="", type=str)
    a("--input_video", default="figs/demo.mp4", type=str)
    a("--data_txt_path_train", default="./datasets/data_path/detmot17.train", type=str)
    a("--data_txt_path_val", default="./datasets/data_path/detmot17.train", type=str)
    a("--img_path", default="data/valid/JPEGImages/")
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
    a("--memory_bank_score_thresh", type=float, default=0.0)
    a("--memory_bank_len", type=int, default=4)
    a("--memory_bank_type", type=str, default=None)
    a("--memory_bank_with_self_attn", action="store_true", default=False)
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
    from models.sparse_memory import add_memory_args
    add_memory_args(parser)
    return parser


def main(args):
    from engine import train
    train(args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser("MOTRv2 training", parents=[get_args_parser()])
    main(parser.parse_args())
