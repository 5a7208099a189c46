"""Which tracker id covered each ground-truth box, frame by frame, as TrackEval's CLEAR metrics match them.

CLEAR (trackeval/metrics/clear.py) matches each frame on its own: a Hungarian assignment on IoU,
pairs under IoU 0.5 forbidden, and a bonus of 1000 for a pair that continues the previous frame's
match of that gt id, so an identity is kept whenever it still overlaps. A frame with no gt or no
tracker box is skipped: it changes neither the previous-frame matches nor any count. Then

* an id switch is a matched gt whose tracker id differs from the id it was last matched to (any
  number of frames back);
* a fragmentation is a gt tracked again after at least one processed frame untracked, once it has
  been tracked before (TrackEval's Frag: tracked stretches minus one).

``replay_clear`` applies that rule to the data TrackEval scores (``tools/evaluate.py``'s
``on_sequence`` hook hands it over) and maps TrackEval's relabelled ids back to the ids of the
files. Its switch and fragment counts are checked against CLEAR's IDSW and Frag by the caller.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

IOU_THRESHOLD = 0.5         # CLEAR's default THRESHOLD, the one tools/evaluate.py scores with
CONTINUATION_BONUS = 1000.0  # CLEAR's weight for keeping the previous frame's match
EPS = np.finfo("float").eps
MISSED, ABSENT = -1, -2     # cover values: gt present but unmatched; gt not in the frame
SWITCH, FRAGMENT = "switch", "fragment"


@dataclass
class Event:
    """One id switch or fragmentation of one gt identity under one tracker."""
    frame: int       # 1-based frame where the gt is matched again (to ``new_id``)
    gt_id: int
    kind: str        # SWITCH or FRAGMENT
    old_id: int      # the tracker id the gt was last matched to
    new_id: int
    last_frame: int  # the frame of that last match (before the event)


@dataclass
class SequenceMatch:
    """One tracker on one sequence, in the files' ids. G gt identities, T frames.

    gt_ids: (G,) sorted. cover: (G, T) tracker id matched to gt g in frame t+1, MISSED or ABSENT.
    gt_boxes, tracker_boxes: (G, T, 4) x, y, w, h of the gt box and of the matched tracker box (NaN
    where none). frame_tracks: per frame, (ids (n,), boxes (n, 4)) of every scored tracker box.
    """
    gt_ids: np.ndarray
    cover: np.ndarray
    gt_boxes: np.ndarray
    tracker_boxes: np.ndarray
    frame_tracks: List[tuple]
    events: List[Event] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(e.kind == kind for e in self.events)


def _original_ids(raw_ids: Sequence[np.ndarray], raw_dets: Sequence[np.ndarray],
                  ids: Sequence[np.ndarray], dets: Sequence[np.ndarray], num_ids: int) -> np.ndarray:
    """(num_ids,) the file id of each of TrackEval's relabelled ids 0..num_ids-1.

    Preprocessing only deletes rows (keeping the order) and relabels the survivors' ids, so each
    frame's kept rows are found in its raw rows by their boxes, which it leaves untouched.
    """
    original = np.full(num_ids, -1, dtype=np.int64)
    for t, (ids_t, dets_t) in enumerate(zip(ids, dets)):
        if len(ids_t) == 0:
            continue
        raw_ids_t, raw_dets_t = np.asarray(raw_ids[t]), np.asarray(raw_dets[t])
        if len(ids_t) == len(raw_ids_t):
            kept = raw_ids_t
        else:  # rows were removed: walk the raw rows, taking each that is the next kept one
            rows, j = [], 0
            for i in range(len(raw_ids_t)):
                if j < len(ids_t) and np.array_equal(raw_dets_t[i], dets_t[j]):
                    rows.append(i)
                    j += 1
            if j != len(ids_t):
                raise RuntimeError(f"frame {t + 1}: cannot align TrackEval's preprocessed boxes with the file's")
            kept = raw_ids_t[rows]
        known = original[ids_t]
        if np.any((known >= 0) & (known != kept)):
            raise RuntimeError(f"frame {t + 1}: TrackEval's relabelled ids do not map to one file id each")
        original[ids_t] = kept
    return original


def replay_clear(raw: dict, data: dict, threshold: float = IOU_THRESHOLD) -> SequenceMatch:
    """CLEAR's per-frame matching of one sequence: TrackEval's ``raw`` and preprocessed ``data``."""
    num_t, num_gt = data["num_timesteps"], data["num_gt_ids"]
    gt_orig = _original_ids(raw["gt_ids"], raw["gt_dets"], data["gt_ids"], data["gt_dets"], num_gt)
    tr_orig = _original_ids(raw["tracker_ids"], raw["tracker_dets"], data["tracker_ids"], data["tracker_dets"],
                            data["num_tracker_ids"])
    if not np.all(np.diff(gt_orig) > 0):  # TrackEval relabels in sorted order
        raise RuntimeError("TrackEval's gt ids are not a sorted relabelling of the file's")
    cover = np.full((num_gt, num_t), ABSENT, dtype=np.int64)
    gt_boxes = np.full((num_gt, num_t, 4), np.nan)
    tracker_boxes = np.full((num_gt, num_t, 4), np.nan)
    frame_tracks = []
    events: List[Event] = []
    last_id = np.full(num_gt, -1, dtype=np.int64)      # relabelled tracker id of the last match, any frame back
    last_frame = np.zeros(num_gt, dtype=np.int64)
    prev_step = np.full(num_gt, -1, dtype=np.int64)    # the previous processed frame's matches
    for t in range(num_t):
        gt_t, tr_t = data["gt_ids"][t], data["tracker_ids"][t]
        frame_tracks.append((tr_orig[tr_t] if len(tr_t) else np.zeros(0, np.int64),
                             np.asarray(data["tracker_dets"][t], dtype=float).reshape(-1, 4)))
        if len(gt_t):
            cover[gt_t, t] = MISSED
            gt_boxes[gt_t, t] = data["gt_dets"][t]
        if len(gt_t) == 0 or len(tr_t) == 0:
            continue  # CLEAR skips the frame: the previous-frame matches carry over
        sim = data["similarity_scores"][t]
        score = CONTINUATION_BONUS * (tr_t[None, :] == prev_step[gt_t][:, None]) + sim
        score[sim < threshold - EPS] = 0
        rows, cols = linear_sum_assignment(-score)
        ok = score[rows, cols] > EPS
        rows, cols = rows[ok], cols[ok]
        g, k = gt_t[rows], tr_t[cols]
        seen = last_id[g] >= 0
        switched = seen & (last_id[g] != k)
        resumed = seen & (prev_step[g] < 0)
        for kind, mask in ((SWITCH, switched), (FRAGMENT, resumed)):
            for i in np.flatnonzero(mask):
                events.append(Event(frame=t + 1, gt_id=int(gt_orig[g[i]]), kind=kind,
                                    old_id=int(tr_orig[last_id[g[i]]]), new_id=int(tr_orig[k[i]]),
                                    last_frame=int(last_frame[g[i]])))
        cover[g, t] = tr_orig[k]
        tracker_boxes[g, t] = np.asarray(data["tracker_dets"][t])[cols]
        last_id[g] = k
        last_frame[g] = t + 1
        prev_step[:] = -1
        prev_step[g] = k
    events.sort(key=lambda e: (e.frame, e.gt_id, e.kind))
    return SequenceMatch(gt_ids=gt_orig, cover=cover, gt_boxes=gt_boxes, tracker_boxes=tracker_boxes,
                         frame_tracks=frame_tracks, events=events)


def cover_runs(cover_row: np.ndarray) -> List[List[int]]:
    """[[first_frame, last_frame, id], ...] (1-based, inclusive): the runs of one gt's cover row,
    ABSENT frames left out and MISSED kept as id -1."""
    present = np.flatnonzero(cover_row != ABSENT)
    if present.size == 0:
        return []
    values = cover_row[present]
    # A run breaks where the id changes or the gt was absent in between.
    breaks = np.flatnonzero((np.diff(values) != 0) | (np.diff(present) != 1)) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [present.size]]) - 1
    return [[int(present[s]) + 1, int(present[e]) + 1, int(values[s])] for s, e in zip(starts, ends)]
