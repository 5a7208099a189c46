"""Synthetic DanceTrack-style data: look-alike dancers on a stage, with a noisy detector.

The generator writes exactly the on-disk layout that the DanceTrack loaders and
``submit_dance.py`` read, so the whole pipeline (training, inference, evaluation)
can run on it without the real data set::

    <mot_path>/
        det_db_synthetic.json              # make_dataset: det_db of every split
        DanceTrack/                        # ROOT
            <split>/                       # e.g. train, val
                <split>0001/               # one sequence
                    img1/00000001.jpg ...  # frames, 1-based, 8 digits
                    gt/gt.txt              # frame,id,x,y,w,h,1,1,1 (pixels, 1-based ids)
                    seqinfo.ini            # MOTChallenge [Sequence] block
            <split>_seqmap.txt             # "name" header, then one sequence per line
            <split>_det_db.json            # det_db of this split only
            <split>_synthetic.json         # manifest: generation parameters

Det_db keys follow MOTRv2: the image path relative to ``mot_path`` with ``.jpg``
replaced by ``.txt`` (``DanceTrack/val/val0001/img1/00000001.txt``); values are
lists of ``"left,top,width,height,score\\n"`` strings in pixels, sorted by
descending score, as upstream's YOLOX det_db. Pass the det_db's name relative
to ``mot_path`` (``det_db_synthetic.json``) as ``--det_db``.

What makes it a tracking problem rather than a detection one:

* dancers share one body shape and costume (stripes, per-dancer colour jitter of a
  few levels), so identity must come from motion and context;
* they move non-linearly (waypoint seeking with smooth random accelerations plus
  sinusoidal figure-of-eight sway), cross and occlude each other (painter's order
  by foot position: nearer dancers hide farther ones);
* they turn: the heading angle narrows the body, moves the chest band and shows
  the back of the head (hair) when facing away;
* some leave the frame and come back later with the same id;
* detections have jitter, misses (more when occluded), false positives (background
  clutter, boxes merging two overlapping dancers, part boxes) and YOLOX-like scores.

Ground truth boxes are the full (amodal) dancer boxes clipped to the image; a row
is dropped only when the dancer is completely out of frame.

Other layouts (``layout=`` / ``tools/make_synthetic.py --layout``: every dataset of
datasets/registry.py with a released folder, its names and digits read from its entry), so that
every reader is tested without a download (same people, same detector; det_db keys follow the
image paths):

* ``sportsmot``: ``SportsMOT/<split>/<seq>/img1/000001.jpg`` (6 digits), gt as DanceTrack's;
* ``mot17``: ``MOT17/<split>/MOT17-NN-{DPM,FRCNN,SDP}/`` (each video three times, as released),
  6-digit frames, gt ``frame,id,x,y,w,h,consider,class,visibility`` (1, 1, the visible fraction)
  and ``det/det.txt`` (``frame,-1,x,y,w,h,score,-1,-1,-1``, the public-detection file);
* ``mot20``: ``MOT20/<split>/MOT20-NN/``, as ``mot17`` with one folder per video;
* ``bft``: BFT as released, to test ``tools/convert_bft.py``: images loose in
  ``BFT/<split>/<seq>/000001.jpg`` and gt in ``BFT/annotations_mot/<split>/<seq>.txt``; det_db
  keys are those of the converted layout (``BFT/<split>/<seq>/img1/000001.txt``).

Everything is drawn from ``numpy.random.Generator`` streams seeded by
``(seed, split, sequence index)``: the same seed gives byte-identical files, and
adding sequences to a split leaves the earlier ones unchanged.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from datasets import registry
from datasets.det_db import SYNTHETIC_ROUNDING, format_det_lines
from util.fileio import write_atomic

__all__ = [
    "GENERATOR_VERSION",
    "SequenceData",
    "simulate_sequence",
    "make_split",
    "make_dataset",
    "det_key",
    "LAYOUTS",
]

# Every dataset of datasets/registry.py with a released folder: its layout, names and digits.
LAYOUTS = registry.LAYOUT_NAMES

# Bump when the drawing/motion/detector model changes so stale splits regenerate.
GENERATOR_VERSION = 1
DET_DB_NAME = "det_db_synthetic.json"

# Dancer sizes and speeds are specified at this reference image height and scale with it.
_REF_HEIGHT = 192.0


@dataclass
class SequenceData:
    """One simulated sequence, in memory.

    frames: list of HxWx3 uint8 BGR images (frame t is ``frames[t - 1]``).
    gt: int64 array (N, 6) of rows ``frame, id, left, top, width, height`` (1-based frame/id).
    dets: per frame, a float64 array (K, 5) ``left, top, width, height, score``
        sorted by descending score.
    visibility: float64 array (N,) aligned with ``gt``: visible pixels / full body pixels.
    """

    width: int
    height: int
    frames: list
    gt: np.ndarray
    dets: list
    visibility: np.ndarray


# --------------------------------------------------------------------------- motion


def _clip_norm(vec: np.ndarray, max_norm: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vec, axis=-1, keepdims=True)
    factor = np.minimum(1.0, max_norm[:, None] / np.maximum(norm, 1e-9))
    return vec * factor


def _simulate_motion(rng: np.random.Generator, num_dancers: int, num_frames: int,
                     width: int, height: int, base_height: float) -> dict:
    """Trajectories for all dancers, vectorised over dancers.

    Returns arrays of shape (num_frames, num_dancers): ``x`` (body centre),
    ``foot_y``, ``body_h``, ``heading`` (radians, 0 = facing the camera),
    ``step_phase`` and ``arm_phase``.
    """
    n, scale = num_dancers, height / _REF_HEIGHT
    y_lo, y_hi = 0.5 * height, 0.97 * height
    x_lo, x_hi = 0.08 * width, 0.92 * width

    def stage_points(count: int) -> np.ndarray:
        return np.stack([rng.uniform(x_lo, x_hi, count), rng.uniform(y_lo, y_hi, count)], axis=1)

    pos = stage_points(n)
    vel = np.zeros((n, 2))
    ou_acc = np.zeros((n, 2))  # smooth random acceleration (Ornstein-Uhlenbeck)
    target = stage_points(n)
    retarget_timer = rng.integers(15, 50, n)
    v_max = rng.uniform(2.5, 4.5, n) * scale
    height_jitter = rng.uniform(0.94, 1.06, n)

    # Figure-of-eight sway on top of the waypoint motion.
    sway_amp = rng.uniform(2.0, 7.0, (n, 2)) * scale * np.array([1.0, 0.4])
    sway_freq = rng.uniform(0.03, 0.09, n) * 2 * math.pi
    sway_phase = rng.uniform(0, 2 * math.pi, (n, 2))

    heading = rng.uniform(-0.6, 0.6, n)
    turn_rate = np.zeros(n)
    step_phase = rng.uniform(0, 2 * math.pi, n)
    # Dancers follow one choreography: a shared arm rhythm with small per-dancer lag.
    arm_freq = rng.uniform(0.12, 0.25)
    arm_lag = rng.normal(0.0, 0.4, n)

    # Excursion state: 0 on stage, 1 walking off-screen, 2 waiting off-screen,
    # 3 dancing in place until a scheduled exit.
    mode = np.zeros(n, dtype=np.int64)
    wait = np.zeros(n, dtype=np.int64)
    # One dancer per sequence (nearest an edge) is scheduled to leave and come back,
    # so leave-and-return always happens in sequences long enough for it.
    exit_start = np.full(n, -1)
    leaver = int(np.argmin(np.minimum(pos[:, 0], width - pos[:, 0])))
    edge_gap = rng.uniform(0.06, 0.14) * width
    v_max[leaver] = max(v_max[leaver], 4.0 * scale)
    pos[leaver, 0] = edge_gap if pos[leaver, 0] < width / 2 else width - edge_gap
    exit_start[leaver] = rng.integers(2, max(3, num_frames // 6) + 1)
    target[leaver] = pos[leaver]  # dance in place until the exit starts
    mode[leaver] = 3
    exit_side = np.where(pos[:, 0] < width / 2, -1.0, 1.0)

    out = {k: np.zeros((num_frames, n)) for k in
           ("x", "foot_y", "body_h", "heading", "step_phase", "arm_phase")}
    idx = np.arange(n)
    for t in range(num_frames):
        body_h = base_height * height_jitter * (0.75 + 0.35 * pos[:, 1] / height)
        half_w = 0.5 * body_h  # bound on the half width of a body, arms stretched out
        sway = sway_amp * np.sin(sway_freq[:, None] * t * np.array([1.0, 2.0]) + sway_phase)
        x_drawn = pos[:, 0] + sway[:, 0]

        # Scheduled and random exits head for a point well beyond the nearer edge.
        start_exit = (exit_start == t) & (mode == 3)
        offscreen_x = np.where(exit_side < 0, -half_w - 40 * scale, width + half_w + 40 * scale)
        target[start_exit, 0] = offscreen_x[start_exit]
        mode[start_exit] = 1

        fully_out = (x_drawn + half_w < 0) | (x_drawn - half_w > width)
        arrived_out = (mode == 1) & fully_out
        mode[arrived_out] = 2
        wait[arrived_out] = rng.integers(3, 11, n)[arrived_out]
        target[arrived_out] = pos[arrived_out]  # stand still off-screen
        wait[mode == 2] -= 1
        come_back = (mode == 2) & (wait <= 0)
        if come_back.any():
            mode[come_back] = 0
            back_x = np.where(exit_side < 0, rng.uniform(0.1, 0.3, n) * width,
                              rng.uniform(0.7, 0.9, n) * width)
            target[come_back, 0] = back_x[come_back]
            target[come_back, 1] = rng.uniform(y_lo, y_hi, n)[come_back]
            retarget_timer[come_back] = 40

        # New waypoints on stage: random point, a partner's spot (makes crossings), or an exit.
        retarget_timer -= 1
        reached = np.linalg.norm(target - pos, axis=1) < 6 * scale
        new = (mode == 0) & (reached | (retarget_timer <= 0))
        if new.any():
            choice = rng.random(n)
            fresh = stage_points(n)
            partner = (idx + rng.integers(1, max(n, 2), n)) % n
            fresh = np.where((choice < 0.25)[:, None], pos[partner] + rng.normal(0, 4 * scale, (n, 2)), fresh)
            go_out = new & (choice > 0.93) & (t < num_frames - 30)
            exit_side[go_out] = np.where(pos[go_out, 0] < width / 2, -1.0, 1.0)
            fresh[go_out, 0] = np.where(exit_side[go_out] < 0, -half_w[go_out] - 40 * scale,
                                        width + half_w[go_out] + 40 * scale)
            mode[go_out] = 1
            target[new] = fresh[new]
            retarget_timer[new] = rng.integers(20, 60, n)[new]
        if (mode == 0).any():
            exit_side[mode == 0] = np.where(pos[mode == 0, 0] < width / 2, -1.0, 1.0)

        # Spring towards the waypoint + damping + smooth random acceleration.
        ou_acc = 0.85 * ou_acc + rng.normal(0.0, 0.08 * scale, (n, 2))
        spring = _clip_norm(0.06 * (target - pos), np.full(n, 0.8 * scale))
        vel = _clip_norm(vel + spring + ou_acc - 0.08 * vel, v_max)
        pos = pos + vel
        # The stage floor bounds the feet; exits are sideways only.
        below, above = pos[:, 1] < y_lo, pos[:, 1] > y_hi
        pos[:, 1] = np.clip(pos[:, 1], y_lo, y_hi)
        vel[below | above, 1] *= -0.3

        # Turning: a slow random spin rate, occasional pirouettes, drift back to the audience.
        spin = (rng.random(n) < 0.015) * rng.choice([-0.35, 0.35], n)
        turn_rate = 0.9 * turn_rate + rng.normal(0.0, 0.02, n) + spin - 0.015 * np.sin(heading)
        heading = heading + turn_rate
        speed = np.linalg.norm(vel, axis=1)
        step_phase = step_phase + 0.2 + 0.15 * speed / scale

        out["x"][t] = pos[:, 0] + sway[:, 0]
        out["foot_y"][t] = pos[:, 1] + sway[:, 1]
        out["body_h"][t] = body_h
        out["heading"][t] = heading
        out["step_phase"][t] = step_phase
        out["arm_phase"][t] = 2 * math.pi * arm_freq * t + arm_lag
    return out


# --------------------------------------------------------------------------- drawing


@dataclass
class _Palette:
    costume: np.ndarray
    stripe: np.ndarray
    accent: np.ndarray
    pants: np.ndarray
    skin: np.ndarray
    hair: np.ndarray


def _make_palettes(rng: np.random.Generator, num_dancers: int) -> list:
    """One costume for the troupe, with a few levels of per-dancer colour jitter."""
    hue = rng.uniform(0, 180)
    costume_hsv = np.array([[[hue, rng.uniform(150, 230), rng.uniform(170, 230)]]], dtype=np.uint8)
    costume = cv2.cvtColor(costume_hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float64)
    accent = np.array([235.0, 235.0, 235.0]) if rng.random() < 0.5 else 255.0 - costume
    pants = rng.uniform(20, 60, 3)
    skin = np.array([120.0, 160.0, 210.0]) * rng.uniform(0.7, 1.0)
    hair = rng.uniform(10, 40, 3)
    palettes = []
    for _ in range(num_dancers):
        jitter = rng.normal(0.0, 6.0, 3)
        body = np.clip(costume + jitter, 0, 255)
        palettes.append(_Palette(
            costume=body, stripe=body * 0.5, accent=np.clip(accent + jitter, 0, 255),
            pants=np.clip(pants + rng.normal(0, 4, 3), 0, 255),
            skin=np.clip(skin + rng.normal(0, 6, 3), 0, 255),
            hair=np.clip(hair + rng.normal(0, 4, 3), 0, 255)))
    return palettes


def _draw_dancer(body_h: float, heading: float, step_phase: float, arm_phase: float,
                 palette: _Palette):
    """Draw one dancer into a tight crop.

    Returns ``(crop, mask, left_offset)``: BGR uint8 crop, bool mask of the body
    pixels, and the crop's left edge relative to the body centre line. The crop's
    bottom row is the feet, its top row the top of the head.
    """
    h = max(8, int(round(body_h)))
    facing = math.cos(heading)
    squeeze = 0.35 + 0.65 * abs(facing)  # side view is narrow
    head_r = max(2.0, 0.1 * h)
    limb = max(2, int(round(0.065 * h)))
    shoulder_y = 2 * head_r + 0.03 * h + limb / 2
    hip_y = 0.56 * h
    torso_half = max(2.0, 0.15 * h * squeeze)

    # Body-frame geometry: x relative to the centre line, y from the top of the head.
    swing = 0.06 * h * math.sin(step_phase)
    feet_x = np.array([-(0.09 * h + swing), 0.09 * h - swing]) * squeeze
    hips_x = np.array([-0.06 * h, 0.06 * h]) * squeeze
    feet_y = h - 1 - limb / 2
    arm_len = 0.24 * h
    # Angle from hanging down to about horizontal; the two arms move a quarter beat apart.
    arm_angle = 0.2 + 0.65 * (1 + np.sin(arm_phase + np.array([0.0, math.pi / 2])))
    shoulders_x = np.array([-torso_half, torso_half]) * 0.9
    hands_x = shoulders_x + np.array([-1.0, 1.0]) * arm_len * np.sin(arm_angle) * squeeze
    hands_y = shoulder_y + arm_len * np.cos(arm_angle)
    head_x = 0.1 * h * math.sin(heading) * 0.5

    left = min(-torso_half, head_x - head_r, *(feet_x - limb / 2), *(hands_x - limb / 2))
    right = max(torso_half, head_x + head_r, *(feet_x + limb / 2), *(hands_x + limb / 2))
    left = math.floor(left)
    w = int(math.ceil(right - left)) + 1

    def px(x: float) -> int:
        return int(round(x - left))

    def py(y: float) -> int:
        return int(round(y))

    crop = np.zeros((h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), dtype=np.uint8)
    torso_mask = np.zeros((h, w), dtype=np.uint8)
    torso_center = (px(0.0), py((shoulder_y - limb / 2 + hip_y) / 2))
    torso_axes = (max(1, int(round(torso_half))), max(1, int(round((hip_y - shoulder_y + limb / 2) / 2 + 1))))

    def line(p0, p1, colour):
        cv2.line(crop, p0, p1, colour.tolist(), limb)
        cv2.line(mask, p0, p1, 255, limb)

    for side in (0, 1):
        line((px(hips_x[side]), py(hip_y)), (px(feet_x[side]), py(feet_y)), palette.pants)
    cv2.ellipse(torso_mask, torso_center, torso_axes, 0, 0, 360, 1, -1)
    cv2.ellipse(mask, torso_center, torso_axes, 0, 0, 360, 255, -1)
    on_torso = torso_mask.astype(bool)
    rows = np.arange(h)[:, None]
    period = max(2, int(round(0.045 * h)))
    striped = ((rows // period) % 2 == 1) & on_torso
    crop[on_torso] = palette.costume.astype(np.uint8)
    crop[striped] = palette.stripe.astype(np.uint8)
    if facing > 0.0:
        # Chest band: slides sideways as the dancer turns, hidden from behind.
        cols = np.arange(w)[None, :]
        band_x = px(0.7 * torso_half * math.sin(heading))
        band_half = max(1.0, 0.25 * torso_half * facing)
        crop[(np.abs(cols - band_x) <= band_half) & on_torso] = palette.accent.astype(np.uint8)
    for side in (0, 1):
        line((px(shoulders_x[side]), py(shoulder_y)), (px(hands_x[side]), py(hands_y[side])), palette.costume)
    head_c = (px(head_x), py(head_r))
    r = int(round(head_r))
    face = palette.skin if facing > 0.0 else palette.hair
    cv2.circle(crop, head_c, r, face.tolist(), -1)
    cv2.ellipse(crop, head_c, (r, r), 0, 180, 360, palette.hair.tolist(), -1)  # hair on top
    cv2.circle(mask, head_c, r, 255, -1)
    return crop, mask.astype(bool), left


def _make_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A plain stage: back wall, lit floor gradient and low-frequency blotches."""
    wall = rng.uniform(40, 90, 3)
    floor = rng.uniform(70, 130, 3)
    horizon = int(rng.uniform(0.3, 0.45) * height)
    img = np.empty((height, width, 3), dtype=np.float64)
    img[:horizon] = wall
    ramp = np.linspace(0.85, 1.15, height - horizon)[:, None, None]
    img[horizon:] = floor * ramp
    blotch = rng.normal(0.0, 1.0, (max(2, height // 24), max(2, width // 24), 3))
    blotch = cv2.resize(blotch, (width, height), interpolation=cv2.INTER_CUBIC)
    img += 7.0 * blotch
    return img


# --------------------------------------------------------------------------- detector


def _xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def _pairwise_iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _fake_detector(rng: np.random.Generator, full_xyxy: np.ndarray, visible_xyxy: np.ndarray,
                   visibility: np.ndarray, base_height: float, width: int, height: int) -> np.ndarray:
    """YOLOX-like detections for one frame: (K, 5) left, top, w, h, score, by descending score.

    full_xyxy: in-frame gt boxes (clipped), visible_xyxy: boxes of the visible pixels
    (NaN where none are visible), visibility: visible / full body pixels.
    """
    boxes, scores = [np.zeros((0, 4))], [np.zeros(0)]
    k = len(full_xyxy)
    if k:
        # Miss probability rises steeply once a dancer is mostly hidden.
        ramp = np.clip((visibility - 0.1) / 0.5, 0.0, 1.0)
        p_detect = 0.97 * ramp * ramp * (3 - 2 * ramp)
        hit = rng.random(k) < p_detect
        # Occluded dancers get boxes pulled towards their visible part.
        pull = np.clip(visibility + rng.uniform(0.0, 0.4, k), 0.0, 1.0)[:, None]
        vis_box = np.where(np.isnan(visible_xyxy), full_xyxy, visible_xyxy)
        box = pull * full_xyxy + (1 - pull) * vis_box
        wh = box[:, 2:] - box[:, :2]
        centre = (box[:, :2] + box[:, 2:]) / 2 + rng.normal(0.0, 1.0, (k, 2)) * wh * np.array([0.035, 0.03])
        wh = wh * np.exp(rng.normal(0.0, 1.0, (k, 2)) * np.array([0.05, 0.04]))
        box = np.concatenate([centre - wh / 2, centre + wh / 2], axis=1)
        score = (0.45 + 0.5 * rng.beta(4.0, 1.6, k)) * (0.55 + 0.45 * visibility)
        boxes.append(box[hit])
        scores.append(score[hit])

        # Part boxes (upper body) of visible dancers, low scores.
        part = hit & (rng.random(k) < 0.03)
        upper = full_xyxy[part].copy()
        upper[:, 3] = upper[:, 1] + (upper[:, 3] - upper[:, 1]) * rng.uniform(0.35, 0.6, int(part.sum()))
        boxes.append(upper)
        scores.append(0.05 + 0.35 * rng.beta(1.5, 3.0, int(part.sum())))

        # One box over two strongly overlapping dancers.
        iou = _pairwise_iou_xyxy(full_xyxy, full_xyxy)
        ii, jj = np.nonzero(np.triu(iou > 0.25, k=1))
        merge = rng.random(len(ii)) < 0.25
        ii, jj = ii[merge], jj[merge]
        union = np.concatenate([np.minimum(full_xyxy[ii, :2], full_xyxy[jj, :2]),
                                np.maximum(full_xyxy[ii, 2:], full_xyxy[jj, 2:])], axis=1)
        boxes.append(union)
        scores.append(0.1 + 0.4 * rng.beta(2.0, 3.0, len(ii)))

    # Background clutter, mostly on the floor, dancer-shaped, low scores.
    n_clutter = rng.poisson(0.6)
    bh = base_height * rng.uniform(0.5, 1.1, n_clutter)
    bw = bh * rng.uniform(0.3, 0.6, n_clutter)
    x0 = rng.uniform(-0.2, 1.0, n_clutter) * width
    y0 = rng.uniform(0.25, 1.0, n_clutter) * height - bh
    boxes.append(np.stack([x0, y0, x0 + bw, y0 + bh], axis=1))
    scores.append(0.05 + 0.45 * rng.beta(1.2, 4.0, n_clutter))

    box = np.concatenate(boxes)
    score = np.clip(np.concatenate(scores), 0.05, 0.99)
    box[:, [0, 2]] = np.clip(box[:, [0, 2]], 0, width)
    box[:, [1, 3]] = np.clip(box[:, [1, 3]], 0, height)
    wh = box[:, 2:] - box[:, :2]
    keep = (wh >= 2).all(axis=1)
    det = np.concatenate([box[:, :2], wh, score[:, None]], axis=1)[keep]
    return det[np.argsort(-det[:, 4], kind="stable")]


# --------------------------------------------------------------------------- sequence


def simulate_sequence(seed: int | Sequence[int] | np.random.SeedSequence, num_frames: int,
                      width: int, height: int, num_dancers: int) -> SequenceData:
    """Simulate one sequence in memory (no files). See the module docstring."""
    if num_frames < 1 or num_dancers < 1 or width < 32 or height < 32:
        raise ValueError(f"need num_frames>=1, num_dancers>=1, width,height>=32; got "
                         f"{num_frames=}, {num_dancers=}, {width=}, {height=}")
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    # Separate streams: changing the detector model leaves images and gt unchanged.
    motion_rng, look_rng, noise_rng, det_rng = (np.random.default_rng(s) for s in seq.spawn(4))

    scale = height / _REF_HEIGHT
    base_height = look_rng.uniform(32.0, 46.0) * scale  # camera zoom of this sequence
    background = _make_background(look_rng, width, height)
    palettes = _make_palettes(look_rng, num_dancers)
    motion = _simulate_motion(motion_rng, num_dancers, num_frames, width, height, base_height)

    frames, gt_rows, vis_rows, dets = [], [], [], []
    for t in range(num_frames):
        noise = noise_rng.normal(0.0, 3.0, (height, width, 3)) + noise_rng.normal(0.0, 2.0)
        frame = np.clip(background + noise, 0, 255).astype(np.uint8)
        label = np.zeros((height, width), dtype=np.uint8)  # 1 + index of the dancer on top
        full_boxes = np.full((num_dancers, 4), np.nan)  # xyxy inclusive pixels, unclipped
        body_px = np.zeros(num_dancers)
        placed = []
        # Painter's order: farther dancers (feet higher in the image) first.
        for i in np.argsort(motion["foot_y"][t], kind="stable"):
            crop, mask, left = _draw_dancer(motion["body_h"][t, i], motion["heading"][t, i],
                                            motion["step_phase"][t, i], motion["arm_phase"][t, i],
                                            palettes[i])
            ch, cw = mask.shape
            x0 = int(round(motion["x"][t, i] + left))
            y0 = int(round(motion["foot_y"][t, i])) - ch + 1
            ys, xs = np.nonzero(mask)
            full_boxes[i] = [x0 + xs.min(), y0 + ys.min(), x0 + xs.max(), y0 + ys.max()]
            body_px[i] = len(ys)
            # Paste the part of the crop that lies inside the image.
            fx0, fy0 = max(x0, 0), max(y0, 0)
            fx1, fy1 = min(x0 + cw, width), min(y0 + ch, height)
            if fx0 >= fx1 or fy0 >= fy1:
                continue
            sub = mask[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
            frame[fy0:fy1, fx0:fx1][sub] = crop[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0][sub]
            label[fy0:fy1, fx0:fx1][sub] = i + 1
            placed.append((i, fx0, fy0, fx1, fy1))
        frames.append(frame)

        visible_px = np.bincount(label.ravel(), minlength=num_dancers + 1)[1:].astype(np.float64)
        visible_boxes = np.full((num_dancers, 4), np.nan)
        for i, fx0, fy0, fx1, fy1 in placed:
            ys, xs = np.nonzero(label[fy0:fy1, fx0:fx1] == i + 1)
            if len(ys):
                visible_boxes[i] = [fx0 + xs.min(), fy0 + ys.min(), fx0 + xs.max() + 1, fy0 + ys.max() + 1]

        clipped = full_boxes.copy()
        clipped[:, [0, 2]] = np.clip(clipped[:, [0, 2]], 0, width - 1)
        clipped[:, [1, 3]] = np.clip(clipped[:, [1, 3]], 0, height - 1)
        in_frame = ((full_boxes[:, 2] >= 0) & (full_boxes[:, 0] <= width - 1)
                    & (full_boxes[:, 3] >= 0) & (full_boxes[:, 1] <= height - 1))
        ids = np.nonzero(in_frame)[0]
        visibility = visible_px[ids] / np.maximum(body_px[ids], 1.0)
        # Pixel-inclusive corners -> continuous xyxy (right/bottom edge + 1).
        gt_xyxy = clipped[ids] + np.array([0, 0, 1, 1])
        gt_xywh = np.concatenate([gt_xyxy[:, :2], gt_xyxy[:, 2:] - gt_xyxy[:, :2]], axis=1)
        gt_rows.append(np.concatenate([np.full((len(ids), 1), t + 1), ids[:, None] + 1, gt_xywh], axis=1))
        vis_rows.append(visibility)
        dets.append(_fake_detector(det_rng, gt_xyxy, visible_boxes[ids], visibility,
                                   base_height, width, height))

    gt = np.concatenate(gt_rows).astype(np.int64) if gt_rows else np.zeros((0, 6), np.int64)
    return SequenceData(width=width, height=height, frames=frames, gt=gt, dets=dets,
                        visibility=np.concatenate(vis_rows) if vis_rows else np.zeros(0))


# --------------------------------------------------------------------------- files


def det_key(split: str, seq: str, frame: int, layout: str = "dancetrack") -> str:
    """Det_db key of a frame: its image path relative to ``mot_path``, ``.jpg`` -> ``.txt``."""
    entry = registry.get(layout, "layout")
    return f"{entry.folder}/{split}/{seq}/img1/{frame:0{entry.frame_digits}d}.txt"


def _layout_names(layout: str, split: str, index: int) -> list:
    """The folder names of one generated video: one per copy (MOT17's three), else one."""
    entry = registry.get(layout, "layout")
    name = entry.sequence_name.format(split=split, index=index + 1)
    return [f"{name}-{copy}" for copy in entry.copies] or [name]


def _seq_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    # crc32 rather than hash(): str hashes are salted per process.
    return np.random.SeedSequence([int(seed), zlib.crc32(split.encode()), int(index)])


def _as_range(value, name: str) -> tuple:
    lo, hi = (value, value) if np.isscalar(value) else tuple(value)
    if not 1 <= int(lo) <= int(hi):
        raise ValueError(f"{name} must be a positive int or a (lo, hi) range with lo <= hi; got {value!r}")
    return int(lo), int(hi)


def _write_sequence(seq_dir: Path, name: str, data: SequenceData, jpeg_quality: int,
                    layout: str = "dancetrack") -> None:
    entry = registry.get(layout, "layout")
    digits = entry.frame_digits
    img_dir = seq_dir if entry.released_loose else seq_dir / "img1"
    img_dir.mkdir(parents=True)
    for t, frame in enumerate(data.frames, start=1):
        path = img_dir / f"{t:0{digits}d}.jpg"
        if not cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]):
            raise OSError(f"cv2.imwrite failed for {path}")
    if entry.public_detections:  # MOTChallenge gt (visibility) and det/det.txt
        gt_lines = [f"{f},{i},{x},{y},{w},{h},1,1,{v:.5g}\n"
                    for (f, i, x, y, w, h), v in zip(data.gt.tolist(), data.visibility.tolist())]
        det_lines = [f"{t},-1,{x:.2f},{y:.2f},{w:.2f},{h:.2f},{sc:.4f},-1,-1,-1\n"
                     for t, dets in enumerate(data.dets, start=1) for x, y, w, h, sc in dets.tolist()]
        (seq_dir / "det").mkdir()
        (seq_dir / "det" / "det.txt").write_text("".join(det_lines))
    elif entry.released_loose:  # released: gt beside the split, in annotations_mot/<split>/<seq>.txt
        gt_lines = [f"{f},{i},{x},{y},{w},{h},1,-1,-1,-1\n" for f, i, x, y, w, h in data.gt.tolist()]
        ann = seq_dir.parent.parent / "annotations_mot" / seq_dir.parent.name
        ann.mkdir(parents=True, exist_ok=True)
        (ann / f"{name}.txt").write_text("".join(gt_lines))
        return  # no seqinfo.ini either: tools/convert_bft.py writes it
    else:
        gt_lines = [f"{f},{i},{x},{y},{w},{h},1,1,1\n" for f, i, x, y, w, h in data.gt.tolist()]
    (seq_dir / "gt").mkdir()
    (seq_dir / "gt" / "gt.txt").write_text("".join(gt_lines))
    (seq_dir / "seqinfo.ini").write_text(
        "[Sequence]\n"
        f"name={name}\n"
        "imDir=img1\n"
        f"frameRate={entry.frame_rate}\n"
        f"seqLength={len(data.frames)}\n"
        f"imWidth={data.width}\n"
        f"imHeight={data.height}\n"
        "imExt=.jpg\n")


def _split_paths(mot_path: Path, split: str, layout: str = "dancetrack") -> dict:
    root = mot_path / registry.get(layout, "layout").folder
    return {"root": root, "split_dir": root / split, "seqmap": root / f"{split}_seqmap.txt",
            "det_db": root / f"{split}_det_db.json", "manifest": root / f"{split}_synthetic.json"}


def make_split(mot_path, split: str = "train", num_seqs: int = 8, num_frames=(60, 100),
               width: int = 320, height: int = 192, num_dancers=(5, 8), seed: int = 0,
               jpeg_quality: int = 90, overwrite: bool = False, progress: bool = False,
               layout: str = "dancetrack") -> dict:
    """Write one synthetic split at ``<mot_path>/DanceTrack/<split>`` (layout: module docstring;
    ``layout`` names another dataset's, under its own folder).

    ``num_frames`` and ``num_dancers`` are an int or an inclusive ``(lo, hi)`` range drawn
    per sequence. Skips the work when the split's manifest records the same parameters;
    otherwise generates into a hidden temp dir under ``DanceTrack/`` and renames it into
    place, so an interrupted run leaves the previous state intact. An existing split dir
    without a manifest (not made here) is only replaced with ``overwrite=True``.

    Returns a dict with ``split_dir``, ``seqmap``, ``det_db`` (this split's det_db file),
    ``sequences``, ``params``, ``skipped`` and ``seconds``.
    """
    start = time.perf_counter()
    mot_path = Path(mot_path)
    if not split or "/" in split or split.startswith("."):
        raise ValueError(f"bad split name {split!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    frames_lo, frames_hi = _as_range(num_frames, "num_frames")
    dancers_lo, dancers_hi = _as_range(num_dancers, "num_dancers")
    params = {"generator_version": GENERATOR_VERSION, "split": split, "num_seqs": int(num_seqs),
              "num_frames": [frames_lo, frames_hi], "width": int(width), "height": int(height),
              "num_dancers": [dancers_lo, dancers_hi], "seed": int(seed), "jpeg_quality": int(jpeg_quality)}
    if layout != "dancetrack":  # (DanceTrack manifests stay as they were)
        params["layout"] = layout
    paths = _split_paths(mot_path, split, layout)
    videos = [_layout_names(layout, split, i) for i in range(int(num_seqs))]
    names = [name for video in videos for name in video]
    info = {"split": split, "split_dir": paths["split_dir"], "seqmap": paths["seqmap"],
            "det_db": paths["det_db"], "sequences": names, "params": params}

    complete = all(paths[k].exists() for k in ("split_dir", "seqmap", "det_db", "manifest"))
    if complete:
        try:
            recorded = json.loads(paths["manifest"].read_text())
        except (OSError, json.JSONDecodeError):
            recorded = None
        if recorded == params:
            return {**info, "skipped": True, "seconds": time.perf_counter() - start}
    if paths["split_dir"].exists() and not paths["manifest"].exists() and not overwrite:
        raise FileExistsError(f"{paths['split_dir']} exists but has no {paths['manifest'].name} manifest, "
                              "so it was not made by this generator; pass overwrite=True to replace it")

    root = paths["root"]
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{split}.tmp", dir=root))
    try:
        new_split = tmp / split
        new_split.mkdir()
        det_db = {}
        seqs = []
        for i, video in enumerate(videos):
            seq_seed = _seq_seed(seed, split, i)
            pick = np.random.default_rng(seq_seed.spawn(1)[0])
            seqs.append((video, seq_seed, int(pick.integers(frames_lo, frames_hi + 1)),
                         int(pick.integers(dancers_lo, dancers_hi + 1))))
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=sum(s[2] for s in seqs), desc=f"synthetic {split}", unit="frame")
        loose = registry.get(layout, "layout").released_loose
        if loose:  # annotations_mot/<split>/ is written beside new_split, then moved too
            new_split = tmp / "split" / split
            new_split.mkdir(parents=True)
        for video, seq_seed, n_frames, n_dancers in seqs:
            data = simulate_sequence(seq_seed, n_frames, width, height, n_dancers)
            for name in video:
                _write_sequence(new_split / name, name, data, jpeg_quality, layout)
                for t, det in enumerate(data.dets, start=1):
                    det_db[det_key(split, name, t, layout)] = format_det_lines(det, SYNTHETIC_ROUNDING)
            if bar is not None:
                bar.update(n_frames)
        if bar is not None:
            bar.close()
        (tmp / "seqmap.txt").write_text("name\n" + "".join(f"{n}\n" for n in names))
        (tmp / "det_db.json").write_text(json.dumps(det_db, sort_keys=True))
        (tmp / "manifest.json").write_text(json.dumps(params, sort_keys=True, indent=1) + "\n")

        # Swap in: manifest goes last and only after everything else is in place.
        if paths["manifest"].exists():
            paths["manifest"].unlink()
        if paths["split_dir"].exists():
            os.replace(paths["split_dir"], tmp / f"{split}.old")
        os.replace(new_split, paths["split_dir"])
        if loose:
            ann = paths["root"] / "annotations_mot" / split
            ann.parent.mkdir(exist_ok=True)
            if ann.exists():
                shutil.rmtree(ann)
            os.replace(new_split.parent / "annotations_mot" / split, ann)
        os.replace(tmp / "seqmap.txt", paths["seqmap"])
        os.replace(tmp / "det_db.json", paths["det_db"])
        os.replace(tmp / "manifest.json", paths["manifest"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**info, "skipped": False, "seconds": time.perf_counter() - start}


def make_dataset(mot_path, splits: Mapping[str, int | Mapping] | None = None, seed: int = 0,
                 det_db_name: str = DET_DB_NAME, progress: bool = False, **common) -> dict:
    """Write several splits and one det_db covering all of them.

    ``splits`` maps a split name to its number of sequences or to a dict of
    :func:`make_split` keyword overrides (default ``{"train": 8, "val": 3}``);
    ``common`` holds keyword arguments shared by all splits (``num_frames``,
    ``width``, ``height``, ``num_dancers``, ...). The merged det_db is written to
    ``<mot_path>/<det_db_name>``; pass ``det_db_name`` as ``--det_db``.

    Returns ``{"mot_path", "det_db" (name relative to mot_path), "det_db_path", "splits"}``.
    """
    mot_path = Path(mot_path)
    splits = {"train": 8, "val": 3} if splits is None else splits
    infos = {}
    merged = {}
    for split, spec in splits.items():
        kwargs = dict(common)
        kwargs.update({"num_seqs": spec} if isinstance(spec, int) else dict(spec))
        infos[split] = make_split(mot_path, split, seed=seed, progress=progress, **kwargs)
        merged.update(json.loads(Path(infos[split]["det_db"]).read_text()))
    det_db_path = mot_path / det_db_name
    write_atomic(det_db_path, json.dumps(merged, sort_keys=True))
    return {"mot_path": mot_path, "det_db": det_db_name, "det_db_path": det_db_path, "splits": infos}
