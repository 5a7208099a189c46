"""MOTRv2 training loop: one epoch (`train_one_epoch`) and the whole run (`train`).

    python main.py $(cat configs/synthetic_small.args) --mot_path DATA --output_dir exps/small
    torchrun --nproc_per_node 8 main.py $(cat configs/motrv2.args) --mot_path DATA --output_dir exps/motrv2

Follows upstream MOTRv2 (optimizer groups, StepLR, gradient clipping, checkpoint layout
{'model', 'optimizer', 'lr_scheduler', 'epoch', 'args'}) with these differences:

* every epoch starts from RNG states derived from (--seed, rank, epoch), so a run resumed
  with --resume replays exactly the epochs an uninterrupted run would have (CPU: bit-exact);
* checkpoints are written to a temp file and renamed, so an interrupted save never leaves a
  truncated checkpoint.pth;
* a non-finite loss stops training with an error naming the epoch, iteration and loss terms.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from models.structures import Instances
from util.device import dist_rank_world
from util.fileio import atomic_path


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


# -- distributed helpers -----------------------------------------------------------------------------
def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_main_process() -> bool:
    return dist_rank_world()[0] == 0


def init_distributed(args) -> Optional[int]:
    """Join the process group that torchrun describes in the environment (WORLD_SIZE, RANK,
    LOCAL_RANK, MASTER_ADDR/PORT). Returns the local rank, or None for a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    if is_dist():
        return int(os.environ.get("LOCAL_RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and str(args.device) != "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://")
    dist.barrier()
    return local_rank


def _reduce_mean(values: Dict[str, float], device: torch.device) -> Dict[str, float]:
    """Average logged scalars over processes (logging only; gradients are averaged by DDP)."""
    if not is_dist() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist_rank_world()[1]
    return dict(zip(keys, t.tolist()))


# -- seeding -----------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def epoch_seed(base_seed: int, rank: int, epoch: int) -> int:
    """Seed of one epoch on one process: resuming at `epoch` reproduces the uninterrupted run's
    augmentation, dropout and denoising noise without storing RNG states."""
    return (base_seed * 1_000_003 + rank * 10_007 + epoch) % 2 ** 31


# -- one epoch ---------------------------------------------------------------------------------------
def data_to_device(data: dict, device: torch.device) -> dict:
    """Move a collated clip (imgs, gt_instances, proposals lists) to `device`."""
    out = {}
    for key, value in data.items():
        if isinstance(value, (list, tuple)):
            out[key] = [v.to(device) if isinstance(v, (torch.Tensor, Instances)) else v for v in value]
        elif isinstance(value, (torch.Tensor, Instances)):
            out[key] = value.to(device)
        else:
            out[key] = value
    return out


def weighted_loss(loss_dict: Dict[str, torch.Tensor], weight_dict: Dict[str, float]) -> torch.Tensor:
    """Sum of weighted loss terms; terms without a weight are ignored (as upstream)."""
    terms = [loss_dict[k] * weight_dict[k] for k in loss_dict if k in weight_dict]
    if not terms:
        raise KeyError(f"none of the loss terms {sorted(loss_dict)[:6]}... has a weight in criterion.weight_dict "
                       f"(keys like {sorted(weight_dict)[:6]}...): check --sampler_lengths / --dec_layers")
    return sum(terms)


def train_one_epoch(model: nn.Module, criterion: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                    device: torch.device, epoch: int, max_norm: float = 0.0, progress: bool = True) -> Dict[str, float]:
    """Train over `loader` once. Returns the epoch's mean `loss`, per-term weighted means
    (summed over frames/layers: `loss_ce`, `loss_bbox`, `loss_giou`), `grad_norm` and `lr`."""
    model.train()
    criterion.train()
    weight_dict = criterion.weight_dict
    sums: Dict[str, float] = {}
    count = 0
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="clip", dynamic_ncols=True,
               disable=not (progress and is_main_process()), file=sys.stdout, mininterval=2.0)
    for iteration, data in enumerate(bar):
        data = data_to_device(data, device)
        outputs = model(data)
        loss_dict = criterion(outputs, data)
        loss = weighted_loss(loss_dict, weight_dict)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            bad = {k: float(v.detach()) for k, v in loss_dict.items() if not math.isfinite(float(v.detach()))}
            raise NonFiniteLossError(
                f"loss is {loss_value} at epoch {epoch}, iteration {iteration}; non-finite terms: "
                f"{bad or 'none (overflow in the weighted sum)'}. Lower --lr or check the data of this clip.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if max_norm > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        else:  # still measured, for the log
            grad_norm = torch.norm(torch.stack([p.grad.detach().norm(2) for p in params]), 2)
        optimizer.step()

        # Log per-term sums over frames/layers, e.g. frame_3_aux1_loss_bbox -> loss_bbox.
        stats = {"loss": loss_value, "grad_norm": float(grad_norm)}
        for key, value in loss_dict.items():
            if key in weight_dict:
                term = "loss_" + key.rsplit("_loss_", 1)[-1]
                stats[term] = stats.get(term, 0.0) + float(value.detach()) * weight_dict[key]
        for key, value in stats.items():
            sums[key] = sums.get(key, 0.0) + value
        count += 1
        bar.set_postfix(loss=f"{loss_value:.3f}", avg=f"{sums['loss'] / count:.3f}", refresh=False)
    bar.close()
    means = {k: v / max(count, 1) for k, v in sums.items()}
    means = _reduce_mean(means, device)
    means["lr"] = optimizer.param_groups[0]["lr"]
    means["iterations"] = count
    return means


# -- optimizer, scheduler, checkpoints ----------------------------------------------------------------
def _matches(name: str, keywords: List[str]) -> bool:
    return any(k in name for k in keywords)


def build_optimizer(model: nn.Module, args) -> torch.optim.Optimizer:
    """Upstream's three groups: backbone (--lr_backbone), deformable attention's
    sampling_offsets / reference_points (--lr * --lr_linear_proj_mult), the rest (--lr)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    backbone = [p for n, p in named if _matches(n, args.lr_backbone_names)]
    linear_proj = [p for n, p in named if _matches(n, args.lr_linear_proj_names)
                   and not _matches(n, args.lr_backbone_names)]
    rest = [p for n, p in named if not _matches(n, args.lr_backbone_names)
            and not _matches(n, args.lr_linear_proj_names)]
    groups = [{"params": rest, "lr": args.lr},
              {"params": backbone, "lr": args.lr_backbone},
              {"params": linear_proj, "lr": args.lr * args.lr_linear_proj_mult}]
    if args.sgd:
        return torch.optim.SGD(groups, lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    return torch.optim.AdamW(groups, lr=args.lr, weight_decay=args.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, args):
    if args.lr_drop_epochs:
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(args.lr_drop_epochs))
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=args.lr_drop)


def save_checkpoint(path: Path, obj) -> None:
    """torch.save through the atomic writer: an interrupted save never leaves a truncated file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_pretrained(model: nn.Module, path: str) -> List[str]:
    """Model weights only (upstream's --pretrained): tensors whose name and shape fit are loaded,
    the rest is reported and left at its initialisation. Returns the names not loaded."""
    from models.checkpoint import extract_state_dict, read_checkpoint
    state = extract_state_dict(read_checkpoint(path))
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(own) - set(fits))
    unused = sorted(set(state) - set(fits))
    model.load_state_dict(fits, strict=False)
    if is_main_process():
        print(f"--pretrained {path}: loaded {len(fits)}/{len(own)} tensors")
        if skipped:
            print(f"  left at init ({len(skipped)}): {', '.join(skipped[:10])}{' ...' if len(skipped) > 10 else ''}")
        if unused:
            print(f"  unused ({len(unused)}): {', '.join(unused[:10])}{' ...' if len(unused) > 10 else ''}")
    return skipped


def resume_state(model: nn.Module, optimizer, scheduler, path: str) -> int:
    """Load a training checkpoint (strictly); returns the epoch to start from. A weights-only
    checkpoint (no optimizer/epoch) starts at epoch 0 with fresh optimizer state.

    The schedule's milestones come from this run's flags (--lr_drop / --lr_drop_epochs), as in
    upstream, so a resumed run may move a learning-rate drop that has not happened yet."""
    from collections import Counter

    from models.checkpoint import load_checkpoint
    checkpoint = load_checkpoint(model, path, strict=True)
    if all(k in checkpoint for k in ("optimizer", "lr_scheduler", "epoch")):
        step_size, milestones = getattr(scheduler, "step_size", None), getattr(scheduler, "milestones", None)
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["lr_scheduler"])
        if step_size is not None:
            scheduler.step_size = step_size
        if milestones is not None:
            scheduler.milestones = Counter(milestones)
        return int(checkpoint["epoch"]) + 1
    if is_main_process():
        print(f"--resume {path}: no optimizer/epoch in the checkpoint; starting at epoch 0 from its weights")
    return 0


def _args_dict(args) -> dict:
    """Plain (picklable, readable) copy of the arguments for the checkpoint."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


# -- the whole run -------------------------------------------------------------------------------------
def train(args) -> Dict[str, float]:
    """Train MOTRv2 with `args` (main.py's flags). Returns the last epoch's stats."""
    from datasets import registry
    from datasets.dance import build_dataset, collate_fn
    from models.motr import build
    from util.device import resolve_device

    if getattr(args, "num_threads", 0):
        torch.set_num_threads(args.num_threads)
    if args.batch_size != 1:
        raise ValueError(f"--batch_size {args.batch_size}: MOTR trains one clip per step and process "
                         "(as upstream); use more processes (torchrun) for a bigger batch")
    local_rank = init_distributed(args)
    device = resolve_device(args.device)
    if local_rank is not None and device.type == "cuda":
        device = torch.device("cuda", local_rank)
    rank, world = dist_rank_world()
    seed_everything(args.seed + rank)

    args.num_classes = registry.num_classes(args.dataset_file, getattr(args, "dataset", None))
    model, criterion, _ = build(args)
    if criterion is None:
        raise ImportError("models/criterion.py is missing: training needs the ClipMatcher criterion")
    model.to(device)
    model_without_ddp = model
    n_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if is_main_process():
        print(f"model: {n_parameters / 1e6:.2f} M trainable parameters; device {device}; {world} process(es)")

    dataset = build_dataset("train", args)
    # A DistributedSampler also for one process: its shuffle depends only on (seed, epoch).
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True,
                                                  seed=args.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, sampler=sampler, collate_fn=collate_fn,
                                         num_workers=args.num_workers, pin_memory=device.type == "cuda",
                                         persistent_workers=False)

    optimizer = build_optimizer(model_without_ddp, args)
    scheduler = build_scheduler(optimizer, args)
    if args.pretrained:
        load_pretrained(model_without_ddp, args.pretrained)
    start_epoch = args.start_epoch
    if args.resume:
        start_epoch = resume_state(model_without_ddp, optimizer, scheduler, args.resume)
        if is_main_process():
            print(f"resumed from {args.resume}: starting at epoch {start_epoch}")

    # A frozen backbone (--lr_backbone 0) is a fixed function: run a folded copy of it (after loading).
    if model_without_ddp.backbone[0].use_folded_copy_if_frozen() and is_main_process():
        print("backbone frozen: running a batch-norm-folded copy of it")

    if is_dist():
        # Proposal/track queries vary per frame, so some parameters (e.g. the QIM on a frame
        # without tracks) may get no gradient in a step.
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)

    output_dir = Path(args.output_dir) if args.output_dir else None
    if output_dir is not None and is_main_process():
        output_dir.mkdir(parents=True, exist_ok=True)

    stats: Dict[str, float] = {}
    start_time = time.time()
    for epoch in range(start_epoch, args.epochs):
        seed_everything(epoch_seed(args.seed, rank, epoch))
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        epoch_start = time.time()
        stats = train_one_epoch(model, criterion, loader, optimizer, device, epoch, args.clip_max_norm,
                                progress=not getattr(args, "no_progress", False))
        scheduler.step()
        if output_dir is not None and is_main_process():
            checkpoint = {"model": model_without_ddp.state_dict(), "optimizer": optimizer.state_dict(),
                          "lr_scheduler": scheduler.state_dict(), "epoch": epoch, "args": _args_dict(args)}
            save_checkpoint(output_dir / "checkpoint.pth", checkpoint)
            write_training_card(output_dir / "checkpoint.pth", args, epoch)
            if args.save_period and (epoch + 1) % args.save_period == 0:
                save_checkpoint(output_dir / f"checkpoint{epoch:04d}.pth", checkpoint)
                write_training_card(output_dir / f"checkpoint{epoch:04d}.pth", args, epoch)
            record = {"epoch": epoch, **{f"train_{k}": v for k, v in stats.items()},
                      "epoch_seconds": round(time.time() - epoch_start, 1), "n_parameters": n_parameters,
                      "clip_length": dataset.num_frames_per_batch}
            with open(output_dir / "log.txt", "a") as f:
                f.write(json.dumps(record) + "\n")
        if is_main_process():
            print(f"epoch {epoch}: loss {stats.get('loss', float('nan')):.4f} "
                  f"({time.time() - epoch_start:.0f} s)", flush=True)
    if is_main_process():
        print(f"training time {datetime.timedelta(seconds=int(time.time() - start_time))}")
    if is_dist():
        dist.barrier()
        dist.destroy_process_group()
    return stats


def write_training_card(path: Path, args, epoch: int) -> None:
    """The model card beside a training checkpoint (models/card.py): its architecture and input size
    from `args`, default tracker settings (not tuned), what it was trained on, its sha256."""
    from models.card import card_from_args, training_data, write_card
    write_card(card_from_args(args, path, name=f"{Path(args.output_dir).name or 'model'} epoch {epoch}",
                              trained_on=training_data(vars(args))), path)


def export_model_weights(checkpoint_paths, out_path: str, half: bool = True) -> int:
    """Write the model weights of one training checkpoint, or the mean of several (say the last
    epochs of one run), alone as {'model': state_dict}; floating
    tensors in fp16 when `half` (load_checkpoint casts them back into the fp32 model on load).
    Integer tensors (batch-norm counters) are taken from the first checkpoint. Returns the file size
    in bytes. A model card is written beside `out_path` (models/card.py) from the first checkpoint's
    card or training args; the tracker settings and notes of a card already at `out_path` for the
    same architecture are kept (the shipped card's tuned thresholds survive a re-export)."""
    from models.card import export_card
    from models.checkpoint import CheckpointError, extract_state_dict, read_checkpoint
    paths = [checkpoint_paths] if isinstance(checkpoint_paths, (str, os.PathLike)) else list(checkpoint_paths)
    if not paths:
        raise ValueError("export_model_weights needs at least one checkpoint")
    first = read_checkpoint(str(paths[0]))
    states = [extract_state_dict(first)] + [extract_state_dict(read_checkpoint(str(p))) for p in paths[1:]]
    for path, other in zip(paths[1:], states[1:]):
        if other.keys() != states[0].keys():
            raise CheckpointError(
                f"{path} and {paths[0]} hold different weights: only in {path}: "
                f"{sorted(other.keys() - states[0].keys())}, only in {paths[0]}: "
                f"{sorted(states[0].keys() - other.keys())}")
    state = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            value = torch.stack([s[key].float() for s in states]).mean(0) if len(states) > 1 else value
            value = value.half() if half else value
        state[key] = value
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out_path, {"model": state})
    export_card(paths[0], first, out_path)
    return out_path.stat().st_size
