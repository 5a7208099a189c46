"""QIMv2: the query interaction module that turns this frame's tracks into next frame's queries.

Kept tracks get their reference box moved to the predicted box (when confident) and their content
query updated from the decoder output; in training it also drops tracks at random and inserts
false-positive queries, as MOTR does, to make the tracker robust to both.
"""
from typing import Optional

import torch
from torch import nn

from .position_encoding import pos2posemb
from .structures import Instances, box_cxcywh_to_xyxy, box_iou


class QueryInteractionModuleV2(nn.Module):
    def __init__(self, args, dim_in: int, hidden_dim: int, dim_out: int):
        super().__init__()
        self.random_drop = args.random_drop
        self.fp_ratio = args.fp_ratio
        self.update_query_pos = args.update_query_pos
        # Upstream MOTRv2 defines random drop / false-positive insertion but never calls them;
        # --qim_augment turns them on (MOTR v1 behaviour). Off keeps MOTRv2 training as published.
        self.augment = getattr(args, "qim_augment", False)
        # Tracks scoring above this get their reference box and query updated. A Tracker passes its own
        # update threshold to forward() (several trackers share one module); this attribute is the
        # threshold of upstream's API (`model.track_embed.score_thr = ...`) and of training.
        self.score_thr = 0.5
        dropout = args.merger_dropout
        self.self_attn = nn.MultiheadAttention(dim_in, 8, dropout)
        self.linear1 = nn.Linear(dim_in, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(hidden_dim, dim_in)
        if self.update_query_pos:
            self.linear_pos1 = nn.Linear(dim_in, hidden_dim)
            self.linear_pos2 = nn.Linear(hidden_dim, dim_in)
            self.dropout_pos1 = nn.Dropout(dropout)
            self.dropout_pos2 = nn.Dropout(dropout)
            self.norm_pos = nn.LayerNorm(dim_in)
        self.linear_feat1 = nn.Linear(dim_in, hidden_dim)
        self.linear_feat2 = nn.Linear(hidden_dim, dim_in)
        self.dropout_feat1 = nn.Dropout(dropout)
        self.dropout_feat2 = nn.Dropout(dropout)
        self.norm_feat = nn.LayerNorm(dim_in)
        self.norm1 = nn.LayerNorm(dim_in)
        self.norm2 = nn.LayerNorm(dim_in)
        if self.update_query_pos:
            self.norm3 = nn.LayerNorm(dim_in)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        if self.update_query_pos:
            self.dropout3 = nn.Dropout(dropout)
            self.dropout4 = nn.Dropout(dropout)
        self.activation = nn.ReLU(True)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    # -- training-time augmentation ----------------------------------------------------------
    def _random_drop_tracks(self, tracks: Instances) -> Instances:
        if self.random_drop > 0 and len(tracks) > 0:
            tracks = tracks[torch.rand_like(tracks.scores) > self.random_drop]
        return tracks

    def _add_fp_tracks(self, all_tracks: Instances, active: Instances) -> Instances:
        """For a random subset of active tracks, add the unmatched query that overlaps it most."""
        inactive = all_tracks[all_tracks.obj_idxes < 0]
        chosen = active[torch.bernoulli(torch.full_like(active.scores, self.fp_ratio)).bool()]
        if len(inactive) == 0 or len(chosen) == 0:
            return active
        if len(chosen) >= len(inactive):
            fp = inactive
        else:
            ious, _ = box_iou(box_cxcywh_to_xyxy(inactive.pred_boxes), box_cxcywh_to_xyxy(chosen.pred_boxes))
            fp = inactive[torch.unique(ious.max(dim=0).indices)]
        return Instances.cat([active, fp])

    def _select_active_tracks(self, tracks: Instances) -> Instances:
        if self.training:
            active = tracks[(tracks.obj_idxes >= 0) | (tracks.scores > 0.5)]
            active.obj_idxes[active.iou <= 0.5] = -1
            return active
        return tracks[tracks.obj_idxes >= 0]

    # -- the update ------------------------------------------------------------------------------
    def _update_track_embedding(self, tracks: Instances, score_thr: float) -> Instances:
        is_pos = tracks.scores > score_thr
        tracks.ref_pts[is_pos] = tracks.pred_boxes.detach().clone()[is_pos]
        out_embed = tracks.output_embedding
        query_feat = tracks.query_pos
        query_pos = pos2posemb(tracks.ref_pts, out_embed.shape[-1] // 4)
        q = k = query_pos + out_embed
        tgt = out_embed
        tgt2 = self.self_attn(q[:, None], k[:, None], value=tgt[:, None], need_weights=False)[0][:, 0]
        tgt = self.norm1(tgt + self.dropout1(tgt2))
        tgt2 = self.linear2(self.dropout(self.activation(self.linear1(tgt))))
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        if self.update_query_pos:
            query_pos2 = self.linear_pos2(self.dropout_pos1(self.activation(self.linear_pos1(tgt))))
            tracks.query_pos = self.norm_pos(query_pos + self.dropout_pos2(query_pos2))
        query_feat2 = self.linear_feat2(self.dropout_feat1(self.activation(self.linear_feat1(tgt))))
        query_feat = self.norm_feat(query_feat + self.dropout_feat2(query_feat2))
        tracks.query_pos[is_pos] = query_feat[is_pos]
        return tracks

    def forward(self, data: dict, score_thr: Optional[float] = None) -> Instances:
        """Next frame's queries from `data["track_instances"]`; `score_thr` overrides `self.score_thr`."""
        tracks: Instances = data["track_instances"]
        active = self._select_active_tracks(tracks)
        if self.training and self.augment:
            active = self._random_drop_tracks(active)
            if self.fp_ratio > 0:
                active = self._add_fp_tracks(tracks, active)
        return self._update_track_embedding(active, self.score_thr if score_thr is None else score_thr)


def build_query_interaction_layer(args, layer_name: str, dim_in: int, hidden_dim: int, dim_out: int):
    if layer_name != "QIMv2":
        raise ValueError(f"--query_interaction_layer {layer_name!r}: only QIMv2 (MOTRv2's) is implemented")
    return QueryInteractionModuleV2(args, dim_in, hidden_dim, dim_out)
