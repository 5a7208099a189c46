"""Training clips for MOTRv2 (upstream's `DetMOTDetection`) from any dataset of datasets/registry.py.

Which training sets: `--dataset_file`, one name or several joined by `,` or `+` to mix them
(`dancetrack`, `sportsmot`, `mot17`, `mot20`, `bft`, and `crowdhuman` for --append_crowd);
upstream's `e2e_dance` (and main.py's default `coco`) stand for `--dataset` (default dancetrack),
`e2e_mot` / `e2e_joint` for mot17 (registry.training_sets). Each is read from its train split as
datasets/layouts.py finds it (`<mot_path>/MOT17/train/...`), or from `--split_dir` when given.
A dataset with copies of each video (MOT17) keeps one copy per video (--mot17_copy, FRCNN for
`all`); the gt rows kept are those with the consider flag set and of the entry's `train_classes`
(MOT17, MOT20: pedestrians, class 1), else of any class that is a person. Frame files are found
in img1/ by number, whatever the digits; det_db keys follow them; images are decoded by
datasets/sequences.py's `read_image`, the decoder tracking uses.

DanceTrack's layout (paths relative to `--mot_path`):

    DanceTrack/train/<seq>/gt/gt.txt            frame,id,x,y,w,h,mark,label,... (MOTChallenge)
    DanceTrack/train/<seq>/img1/00000001.jpg     frames, 1-based, 8 digits
    <--det_db>                                   JSON: "DanceTrack/train/<seq>/img1/00000001.txt"
                                                 -> ["x,y,w,h,score\\n", ...] (YOLOX detections)
    crowdhuman/annotation_trainval.odgt          only with --append_crowd
    crowdhuman/Images/<ID>.jpg                   (det_db keys "crowdhuman/train_image/<ID>.txt")

An item is one clip of `sampler_lengths` frames (the current period's length):

    imgs          list of [3, H, W] normalised float tensors
    gt_instances  list of Instances: boxes [n, 4] normalised cxcywh, labels [n] (0 = person),
                  obj_ids [n] float64, unique over the dataset (video index * 100000 + track id)
    proposals     list of [m, 5] tensors: normalised cx, cy, w, h, detector score

Ground-truth boxes and detections go through the same augmentation (see datasets/transforms.py).
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from datasets import registry
from datasets.det_db import det_db_key, find_key, load_det_db, parse_det_lines
from datasets.layouts import resolve_split
from datasets.sequences import IMAGE_EXTENSIONS, SequenceError, read_image
from datasets.transforms import FixedMotRandomShift, make_mot_transforms
from models.structures import Instances

# Track ids are unique within a video; offsetting by video keeps them unique in the dataset.
OBJ_ID_OFFSET_PER_VIDEO = 100000


def read_mot_gt(gt_path: str, pedestrians_only: bool = False,
                classes: Optional[Tuple[int, ...]] = None) -> Dict[int, np.ndarray]:
    """MOTChallenge gt.txt -> {frame: [k, 5] array of x, y, w, h, track id}, keeping only
    boxes marked to evaluate (mark != 0) of the gt `classes` (`pedestrians_only`: class 1), else
    of every class that is a person."""
    if pedestrians_only:
        classes = (1,)
    try:
        table = np.loadtxt(gt_path, delimiter=",", ndmin=2, usecols=range(8))
    except (ValueError, IndexError) as err:
        raise ValueError(f"{gt_path}: not a MOTChallenge gt file "
                         f"(frame,id,x,y,w,h,mark,label per line): {err}") from None
    if table.size == 0:
        return {}
    labels = table[:, 7].astype(np.int64)
    if classes is not None:
        keep = (table[:, 6] != 0) & np.isin(labels, classes)
    else:
        keep = (table[:, 6] != 0) & ~np.isin(labels, registry.NON_PERSON_CLASSES)
    table = table[keep]
    frames = table[:, 0].astype(np.int64)
    order = np.argsort(frames, kind="stable")  # keep file order within a frame
    table, frames = table[order], frames[order]
    starts = np.flatnonzero(np.r_[True, frames[1:] != frames[:-1]])
    per_frame = np.split(table[:, [2, 3, 4, 5, 1]], starts[1:])
    return {int(frames[s]): boxes for s, boxes in zip(starts, per_frame)}


def training_datasets(args) -> List[str]:
    """The datasets named by --dataset_file (registry.training_sets); ValueError naming a bad part."""
    return registry.training_sets(getattr(args, "dataset_file", None), getattr(args, "dataset", None))


def _frame_files(seq_dir: str) -> Dict[int, str]:
    """{frame number: file name} of the images in img1/ (numeric names, any number of digits)."""
    img_dir = os.path.join(seq_dir, "img1")
    if not os.path.isdir(img_dir):
        return {}
    out = {}
    for name in os.listdir(img_dir):
        stem, ext = os.path.splitext(name)
        if ext.lower() in IMAGE_EXTENSIONS and stem.isdigit():
            out.setdefault(int(stem), name)
    return out


def _is_crowd(ann: dict) -> bool:
    return ann.get("extra", {}).get("ignore", 0) == 1


class DetMOTDetection(torch.utils.data.Dataset):
    """Clips of DanceTrack train (plus CrowdHuman stills with `--append_crowd`) with det_db
    proposals.  Args used: mot_path, det_db, sampler_lengths, sampler_steps, sample_mode,
    sample_interval, append_crowd."""

    split_dir = "DanceTrack/train"

    def __init__(self, args, transform=None):
        self.transform = transform
        self.mot_path = str(args.mot_path)
        if not args.sampler_lengths:
            raise ValueError("--sampler_lengths is required (frames per training clip, e.g. 5)")
        self.lengths: List[int] = list(args.sampler_lengths)
        self.sampler_steps: List[int] = list(args.sampler_steps or [])
        self.num_frames_per_batch = max(self.lengths)
        self.sample_mode = args.sample_mode
        self.sample_interval = args.sample_interval
        if self.sample_mode not in ("fixed_interval", "random_interval"):
            raise ValueError(f"--sample_mode '{self.sample_mode}': expected fixed_interval or random_interval")
        self.period_idx = 0
        self.current_epoch = 0

        self.labels_full: Dict[str, Dict[int, np.ndarray]] = {}
        self.video_dict: Dict[str, int] = {}
        self.vid_tmax: Dict[str, int] = {}
        self.frame_files: Dict[str, Dict[int, str]] = {}
        self.vid_root: Dict[str, str] = {}
        self.indices: List[Tuple[str, int]] = []
        datasets = training_datasets(args)
        split_dir = getattr(args, "split_dir", None)
        if split_dir is not None and len(datasets) > 1:
            raise ValueError("--split_dir replaces the training set: give one dataset in --dataset_file")
        copy = getattr(args, "mot17_copy", None)
        train_split = getattr(args, "train_split", "train")
        for dataset in datasets:
            entry = registry.get(dataset, "--dataset_file")
            # One copy of each video: the copies share their frames and gt.
            default_copy = (entry if entry.copies else registry.REGISTRY["mot17"]).default_copy
            use = default_copy if copy in (None, "all") else copy
            try:
                layout = resolve_split(self.mot_path, dataset, train_split, split_dir, use,
                                       half_convention=getattr(args, "half_split", registry.HALF_CONVENTIONS[0]))
            except SequenceError as exc:
                raise FileNotFoundError(f"{dataset} training split: {exc}") from None
            for seq in layout.names:
                vid = f"{layout.rel}/{seq}"
                seq_dir = os.path.join(layout.key_root, vid)
                gt_path = os.path.join(seq_dir, "gt", "gt.txt")
                if not os.path.isfile(gt_path):
                    continue
                labels = read_mot_gt(gt_path, classes=entry.train_classes)
                files = _frame_files(seq_dir)
                if layout.half is not None:  # the half's frames only, under their own numbers
                    first, last = registry.half_frames(len(files), layout.half, layout.half_convention)
                    numbers = sorted(files)[first - 1:last]
                    labels = {t: v for t, v in labels.items() if numbers[0] <= t <= numbers[-1]}
                if not labels:
                    continue
                self.labels_full[vid] = labels
                self.video_dict[vid] = len(self.video_dict)
                self.frame_files[vid] = files
                self.vid_root[vid] = layout.key_root
                t_min, t_max = min(labels), max(labels)
                self.vid_tmax[vid] = t_max
                # Start frames leave room for a clip at interval 1 (as upstream).
                self.indices.extend((vid, t) for t in range(t_min, t_max + 1 - self.num_frames_per_batch))
        if not self.labels_full and not getattr(args, "append_crowd", False):
            raise FileNotFoundError(f"no training sequence with gt/gt.txt in {', '.join(datasets)} under "
                                    f"{split_dir or self.mot_path}")

        self.ch_dir = Path(self.mot_path) / "crowdhuman"
        self.ch_indices: List[Tuple[str, list]] = []
        if getattr(args, "append_crowd", False):
            odgt = self.ch_dir / "annotation_trainval.odgt"
            if not odgt.is_file():
                raise FileNotFoundError(
                    f"--append_crowd (set in configs/motrv2.args) needs CrowdHuman: {odgt} not found; put "
                    f"CrowdHuman under {self.ch_dir}/ (Images/, annotation_trainval.odgt) or add "
                    "--no_append_crowd to train without it")
            with open(odgt) as f:
                for line_no, line in enumerate(f, 1):
                    try:
                        datum = json.loads(line)
                        boxes = [ann["fbox"] for ann in datum["gtboxes"] if not _is_crowd(ann)]
                    except (ValueError, KeyError) as err:
                        raise ValueError(f"{odgt}, line {line_no}: bad CrowdHuman annotation ({err})") from None
                    self.ch_indices.append((datum["ID"], boxes))

        if args.det_db:
            db_path = os.path.join(self.mot_path, args.det_db)
            self.det_db = load_det_db(db_path)
            self.det_db_path = db_path
        else:
            self.det_db = None  # no detector: clips carry empty proposals
            self.det_db_path = None

    # -- curriculum over clip lengths -----------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Clip length of `epoch`: `sampler_lengths[k]` from epoch `sampler_steps[k-1]` on."""
        self.current_epoch = epoch
        if not self.sampler_steps:
            return
        self.period_idx = sum(epoch >= step for step in self.sampler_steps)
        self.num_frames_per_batch = self.lengths[self.period_idx]

    def step_epoch(self) -> None:
        self.set_epoch(self.current_epoch + 1)

    # -- loading -----------------------------------------------------------------------------
    def _detections(self, key: str, where: str) -> np.ndarray:
        if self.det_db is None:
            return np.zeros((0, 5))
        found = find_key(self.det_db, key)
        if found is None:
            raise KeyError(f"det_db {self.det_db_path} has no entry '{key}' (detections of {where})")
        return parse_det_lines(self.det_db[found], found)

    @staticmethod
    def _make_target(gt_xywh: np.ndarray, obj_ids: torch.Tensor, dets: np.ndarray) -> dict:
        """Target dict of the transforms: gt boxes then detection boxes, pixel xyxy."""
        boxes = torch.as_tensor(np.concatenate([gt_xywh.reshape(-1, 4), dets[:, :4]]), dtype=torch.float32)
        boxes[:, 2:] += boxes[:, :2]
        n_gt = len(gt_xywh)
        return {
            "boxes": boxes,
            "scores": torch.cat([torch.ones(n_gt), torch.as_tensor(dets[:, 4], dtype=torch.float32)]),
            "labels": torch.zeros(n_gt, dtype=torch.long),
            "obj_ids": obj_ids,
        }

    def _load_frame(self, vid: str, frame: int) -> Tuple[np.ndarray, dict]:
        files = self.frame_files.get(vid) or {}
        name = files.get(frame)
        if name is None:  # not there when the dataset was built: name the file it should be
            sample = next(iter(files.values()), "00000000.jpg")
            stem, ext = os.path.splitext(sample)
            name = f"{frame:0{len(stem)}d}{ext}"
        rel = f"{vid}/img1/{name}"
        img = read_image(os.path.join(self.vid_root.get(vid, self.mot_path), rel))
        gt = self.labels_full[vid].get(frame, np.zeros((0, 5)))
        obj_ids = torch.as_tensor(gt[:, 4] + self.video_dict[vid] * OBJ_ID_OFFSET_PER_VIDEO, dtype=torch.float64)
        dets = self._detections(det_db_key(rel), f"frame {frame} of {vid}")
        return img, self._make_target(gt[:, :4], obj_ids, dets)

    def _load_crowd(self, index: int) -> Tuple[List[np.ndarray], List[dict]]:
        """A CrowdHuman still turned into a clip by small repeated shifts."""
        image_id, boxes = self.ch_indices[index]
        img = read_image(str(self.ch_dir / "Images" / f"{image_id}.jpg"))
        gt = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        dets = self._detections(f"crowdhuman/train_image/{image_id}.txt", f"CrowdHuman image {image_id}")
        target = self._make_target(gt, torch.arange(len(gt)), dets)
        return FixedMotRandomShift(self.num_frames_per_batch)([img], [target])

    def sample_frames(self, vid: str, start: int) -> List[int]:
        """Frame numbers of a clip starting at `start`, clamped to the video's last frame."""
        if self.sample_mode == "random_interval":
            # Upstream draws randint(1, sample_interval + 1), both ends included; kept as is.
            step = random.randint(1, self.sample_interval + 1)
        else:
            step = self.sample_interval
        return [min(start + step * k, self.vid_tmax[vid]) for k in range(self.num_frames_per_batch)]

    def __len__(self) -> int:
        return len(self.indices) + len(self.ch_indices)

    def __getitem__(self, idx: int) -> dict:
        if idx < len(self.indices):
            vid, start = self.indices[idx]
            loaded = [self._load_frame(vid, frame) for frame in self.sample_frames(vid, start)]
            imgs, targets = [item[0] for item in loaded], [item[1] for item in loaded]
        else:
            imgs, targets = self._load_crowd(idx - len(self.indices))
        if self.transform is not None:
            imgs, targets = self.transform(imgs, targets)
        gt_instances, proposals = [], []
        for img, target in zip(imgs, targets):
            n_gt = len(target["labels"])
            image_size = tuple(img.shape[1:3]) if torch.is_tensor(img) else tuple(img.shape[:2])
            gt_instances.append(Instances(image_size, boxes=target["boxes"][:n_gt], labels=target["labels"],
                                          obj_ids=target["obj_ids"]))
            proposals.append(torch.cat([target["boxes"][n_gt:], target["scores"][n_gt:, None]], dim=1))
        return {"imgs": imgs, "gt_instances": gt_instances, "proposals": proposals}


def collate_fn(batch: List[dict]) -> dict:
    """Upstream's `mot_collate_fn`: a dict of per-sample lists, unwrapped when the batch is one
    clip (MOTR trains with batch size 1: `data['imgs']` is then the clip's frame list)."""
    out = {}
    for key in batch[0]:
        values = [sample[key] for sample in batch]
        out[key] = values[0] if len(values) == 1 else values
    return out


mot_collate_fn = collate_fn


def build_transform(args, image_set: str):
    return make_mot_transforms(image_set, args)


def build_dataset(image_set: str, args) -> DetMOTDetection:
    """The DanceTrack training clips with the `image_set` ('train' / 'val') augmentation."""
    if not Path(args.mot_path).exists():
        raise FileNotFoundError(f"--mot_path {args.mot_path} does not exist")
    if image_set not in ("train", "val"):
        raise ValueError(f"unknown image_set '{image_set}' (expected 'train' or 'val')")
    return DetMOTDetection(args, transform=build_transform(args, image_set))


build = build_dataset
