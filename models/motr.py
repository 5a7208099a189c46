"""MOTR(v2): end-to-end tracking by queries.

Per frame, the decoder takes three kinds of queries as one `Instances`: the learned detect
queries, one query per YOLOX proposal (box as reference point, score as content), and the
queries of the tracks alive from the previous frame.  The runtime tracker gives ids to confident
new queries and retires tracks missing for too long; QIM turns the kept tracks into next
frame's queries.  The optional sparse memory (TF-SASM) blends a track's stored features into
its decoder input and decides, after ids are given, which features to store.
"""
import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.checkpoint import checkpoint

from util.device import resolve_device  # noqa: F401  (models.motr.resolve_device, as before)

from .backbone import build_backbone
from .deformable_transformer import build_deformable_transformer
from .position_encoding import pos2posemb
from .qim import build_query_interaction_layer
from .structures import (Instances, NestedTensor, box_cxcywh_to_xyxy, nested_tensor_from_tensor_list)


class MLP(nn.Module):
    """A plain multi-layer perceptron with ReLU between layers (the box head)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


class RuntimeTrackerBase:
    """Track ids at inference: a new id for a new query scoring >= `score_thresh`; a track scoring
    below `filter_score_thresh` for `miss_tolerance` consecutive frames loses its id.

    `nms_iou` (None: off, as upstream) adds non-maximum suppression among the boxes this frame
    would report (tracks with an id scoring >= `filter_score_thresh`, and new queries scoring >=
    `score_thresh`): of two such boxes overlapping by more than `nms_iou`, the lower-scoring one is
    treated as missed this frame (its score is set to 0: no box written, no new id, no QIM update,
    and its miss count goes up). It stops a track that has lost its object from riding on an
    object another track already follows, which a small, briefly trained model does often.
    """

    def __init__(self, score_thresh: float = 0.6, filter_score_thresh: float = 0.5, miss_tolerance: int = 10,
                 nms_iou: Optional[float] = None):
        if nms_iou is not None and not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1] (or None for no suppression), got {nms_iou}")
        self.score_thresh = score_thresh
        self.filter_score_thresh = filter_score_thresh
        self.miss_tolerance = miss_tolerance
        self.nms_iou = nms_iou
        self.max_obj_id = 0

    def clear(self):
        self.max_obj_id = 0

    def suppress_overlaps(self, tracks: Instances) -> None:
        """Zero the score of every reported box that a higher-scoring reported box overlaps by more
        than `nms_iou` (greedy NMS, as torchvision.ops.nms)."""
        reported = ((tracks.obj_idxes >= 0) & (tracks.scores >= self.filter_score_thresh)) | (
            (tracks.obj_idxes < 0) & (tracks.scores >= self.score_thresh))
        candidates = torch.nonzero(reported).flatten()
        if len(candidates) < 2:
            return
        boxes = box_cxcywh_to_xyxy(tracks.pred_boxes[candidates]).float()
        kept = torchvision.ops.nms(boxes, tracks.scores[candidates].float(), self.nms_iou)
        suppressed = torch.ones(len(candidates), dtype=torch.bool, device=candidates.device)
        suppressed[kept] = False
        gone = candidates[suppressed]
        tracks.scores[gone] = 0.0
        # The post-processing recomputes scores from the logits: lower those too, so the box is not written.
        tracks.pred_logits[gone] = torch.finfo(tracks.pred_logits.dtype).min

    def update(self, tracks: Instances) -> None:
        if self.nms_iou is not None:
            self.suppress_overlaps(tracks)
        tracks.disappear_time[tracks.scores >= self.score_thresh] = 0
        new_obj = (tracks.obj_idxes == -1) & (tracks.scores >= self.score_thresh)
        missing = (tracks.obj_idxes >= 0) & (tracks.scores < self.filter_score_thresh)
        num_new = int(new_obj.sum())
        tracks.obj_idxes[new_obj] = self.max_obj_id + torch.arange(num_new, device=tracks.obj_idxes.device)
        self.max_obj_id += num_new
        tracks.disappear_time[missing] += 1
        tracks.obj_idxes[missing & (tracks.disappear_time >= self.miss_tolerance)] = -1


class TrackerPostProcess(nn.Module):
    """Scores and pixel xyxy boxes (`scores`, `boxes`, `labels`) from the raw predictions."""

    @torch.no_grad()
    def forward(self, tracks: Instances, target_size) -> Instances:
        img_h, img_w = target_size
        scores = tracks.pred_logits[..., 0].sigmoid()
        scale = torch.tensor([img_w, img_h, img_w, img_h], dtype=tracks.pred_boxes.dtype,
                             device=tracks.pred_boxes.device)
        tracks.boxes = box_cxcywh_to_xyxy(tracks.pred_boxes) * scale[None, :]
        tracks.scores = scores
        tracks.labels = torch.zeros_like(scores)
        return tracks


# Fields the post-processing adds; they are dropped before the next frame's concatenation.
_OUTPUT_ONLY_FIELDS = ("boxes", "labels")


class MOTR(nn.Module):
    def __init__(self, backbone, transformer, num_classes: int, num_queries: int, num_feature_levels: int,
                 criterion, track_embed, aux_loss: bool = True, with_box_refine: bool = True,
                 use_checkpoint: bool = False, query_denoise: float = 0.0, memory: Optional[nn.Module] = None):
        super().__init__()
        if not with_box_refine:
            raise NotImplementedError("MOTRv2 uses --with_box_refine; the shared-head variant is not implemented")
        self.num_queries = num_queries
        self.track_embed = track_embed
        self.transformer = transformer
        hidden_dim = transformer.d_model
        self.num_classes = num_classes
        num_pred = transformer.decoder.num_layers
        self.class_embed = nn.ModuleList(nn.Linear(hidden_dim, num_classes) for _ in range(num_pred))
        self.bbox_embed = nn.ModuleList(MLP(hidden_dim, hidden_dim, 4, 3) for _ in range(num_pred))
        self.num_feature_levels = num_feature_levels
        self.use_checkpoint = use_checkpoint
        self.query_denoise = query_denoise
        self.position = nn.Embedding(num_queries, 4)
        self.yolox_embed = nn.Embedding(1, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        if query_denoise:
            self.refine_embed = nn.Embedding(1, hidden_dim)
        self.input_proj = self._make_input_proj(backbone, hidden_dim, num_feature_levels)
        self.backbone = backbone
        self.aux_loss = aux_loss
        self.transformer.decoder.bbox_embed = self.bbox_embed
        self.post_process = TrackerPostProcess()
        self.track_base = RuntimeTrackerBase()
        # Not a registered submodule: it holds no weights and must not appear in the state dict.
        self.__dict__["criterion"] = criterion
        self.memory = memory
        self._reset_parameters()

    @staticmethod
    def _make_input_proj(backbone, hidden_dim: int, num_feature_levels: int) -> nn.ModuleList:
        projs = [nn.Sequential(nn.Conv2d(c, hidden_dim, kernel_size=1), nn.GroupNorm(32, hidden_dim))
                 for c in backbone.num_channels]
        in_channels = backbone.num_channels[-1]
        for _ in range(num_feature_levels - len(projs)):
            projs.append(nn.Sequential(nn.Conv2d(in_channels, hidden_dim, kernel_size=3, stride=2, padding=1),
                                       nn.GroupNorm(32, hidden_dim)))
            in_channels = hidden_dim
        return nn.ModuleList(projs)

    def _reset_parameters(self):
        bias_value = -math.log((1 - 0.01) / 0.01)  # prior probability 0.01 for the focal loss
        for head in self.class_embed:
            nn.init.constant_(head.bias, bias_value)
        for head in self.bbox_embed:
            nn.init.constant_(head.layers[-1].weight, 0)
            nn.init.constant_(head.layers[-1].bias, 0)
        # Deformable DETR starts its first box head at w, h = sigmoid(-2) because its references
        # are points. MOTRv2's references are whole proposal boxes, so a zero update (keep the
        # proposal) is the natural start; released checkpoints overwrite this either way.
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)
        nn.init.uniform_(self.position.weight, 0, 1)

    # -- queries --------------------------------------------------------------------------------
    def _generate_empty_tracks(self, proposals: Optional[torch.Tensor] = None) -> Instances:
        """Fresh queries: the learned detect queries, then one per proposal (`[n, 5]` cx, cy, w, h, score)."""
        d_model = self.query_embed.weight.shape[1]
        device = self.query_embed.weight.device
        tracks = Instances((1, 1))
        if proposals is None:
            tracks.ref_pts = self.position.weight
            tracks.query_pos = self.query_embed.weight
        else:
            proposals = proposals.to(device=device, dtype=self.position.weight.dtype)
            tracks.ref_pts = torch.cat([self.position.weight, proposals[:, :4]])
            tracks.query_pos = torch.cat(
                [self.query_embed.weight, pos2posemb(proposals[:, 4:], d_model) + self.yolox_embed.weight])
        n = len(tracks)
        tracks.output_embedding = torch.zeros((n, d_model), device=device)
        tracks.obj_idxes = torch.full((n,), -1, dtype=torch.long, device=device)
        tracks.matched_gt_idxes = torch.full((n,), -1, dtype=torch.long, device=device)
        tracks.disappear_time = torch.zeros((n,), dtype=torch.long, device=device)
        tracks.iou = torch.ones((n,), dtype=torch.float, device=device)
        tracks.scores = torch.zeros((n,), dtype=torch.float, device=device)
        tracks.track_scores = torch.zeros((n,), dtype=torch.float, device=device)
        tracks.pred_boxes = torch.zeros((n, 4), dtype=torch.float, device=device)
        tracks.pred_logits = torch.zeros((n, self.num_classes), dtype=torch.float, device=device)
        if self.memory is not None:
            self.memory.init_fields(tracks, d_model)
        return tracks

    def _queries_for_frame(self, proposals, tracks: Optional[Instances]) -> Instances:
        new = self._generate_empty_tracks(proposals)
        if tracks is None:
            return new
        for name in _OUTPUT_ONLY_FIELDS:
            if tracks.has(name):
                tracks.remove(name)
        return Instances.cat([new, tracks])

    def clear(self):
        self.track_base.clear()

    def optimize_for_inference(self, compile_backbone: bool = False) -> "MOTR":
        """Inference-only speed-ups that keep the outputs (to float rounding): frozen batch norms folded
        into the backbone's convolutions, channels-last convolutions, and optionally the backbone
        compiled with `torch.compile` (a one-off compile of a minute or so; worth it for long runs).
        Call after loading weights; the state dict of the result differs (do not save it)."""
        if self.training:
            raise RuntimeError("optimize_for_inference() is for eval mode: call model.eval() first")
        backbone = self.backbone[0]
        backbone.optimize_for_inference()
        if compile_backbone:
            # Frame sizes vary between sequences: compile for dynamic shapes once instead of per size.
            backbone.body = torch.compile(backbone.body, dynamic=True)
        return self

    # -- one frame through the network -------------------------------------------------------------
    def _features(self, samples: NestedTensor):
        features, pos = self.backbone(samples)
        srcs, masks = [], []
        for lvl, feat in enumerate(features):
            src, mask = feat.decompose()
            srcs.append(self.input_proj[lvl](src))
            masks.append(mask)
        for lvl in range(len(features), self.num_feature_levels):
            src = self.input_proj[lvl](features[-1].tensors if lvl == len(features) else srcs[-1])
            mask = F.interpolate(samples.mask[None].float(), size=src.shape[-2:]).to(torch.bool)[0]
            srcs.append(src)
            masks.append(mask)
            pos.append(self.backbone[1](NestedTensor(src, mask)).to(src.dtype))
        return srcs, masks, pos

    def _forward_single_image(self, samples: NestedTensor, tracks: Instances,
                              gtboxes: Optional[torch.Tensor] = None) -> Dict:
        srcs, masks, pos = self._features(samples)
        tgt = tracks.query_pos
        if self.memory is not None:
            tgt = self.memory.blend_decoder_input(tgt, tracks)
        ref_pts = tracks.ref_pts
        attn_mask = None
        if gtboxes is not None:
            # Query denoising: noisy gt boxes as extra queries that the real ones cannot see.
            n_dt = len(tracks)
            tgt = torch.cat([tgt, self.refine_embed.weight.expand(gtboxes.size(0), -1)])
            ref_pts = torch.cat([ref_pts, gtboxes])
            attn_mask = torch.zeros((len(ref_pts), len(ref_pts)), dtype=torch.bool, device=ref_pts.device)
            attn_mask[:n_dt, n_dt:] = True
        hs, boxes, _ = self.transformer(srcs, masks, pos, tgt, ref_pts, attn_mask=attn_mask)
        logits = torch.stack([self.class_embed[lvl](hs[lvl]) for lvl in range(hs.shape[0])])
        out = {"pred_logits": logits[-1], "pred_boxes": boxes[-1], "hs": hs[-1],
               "first_layer_boxes": boxes[0]}
        if self.aux_loss:
            out["aux_outputs"] = [{"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])]
        return out

    def _post_process_single_image(self, frame_res: Dict, tracks: Instances, is_last: bool) -> Dict:
        n_ins = len(tracks)
        if self.query_denoise > 0 and frame_res["pred_logits"].shape[1] > n_ins:
            ps_outputs = [{"pred_logits": frame_res["pred_logits"][:, n_ins:],
                           "pred_boxes": frame_res["pred_boxes"][:, n_ins:]}]
            for aux in frame_res["aux_outputs"]:
                ps_outputs.append({"pred_logits": aux["pred_logits"][:, n_ins:],
                                   "pred_boxes": aux["pred_boxes"][:, n_ins:]})
                aux["pred_logits"] = aux["pred_logits"][:, :n_ins]
                aux["pred_boxes"] = aux["pred_boxes"][:, :n_ins]
            frame_res["ps_outputs"] = ps_outputs
            for key in ("hs", "pred_logits", "pred_boxes", "first_layer_boxes"):
                frame_res[key] = frame_res[key][:, :n_ins]
        with torch.no_grad():
            if self.training:
                scores = frame_res["pred_logits"][0].sigmoid().max(dim=-1).values
            else:
                scores = frame_res["pred_logits"][0, :, 0].sigmoid()
        tracks.scores = scores
        tracks.pred_logits = frame_res["pred_logits"][0]
        tracks.pred_boxes = frame_res["pred_boxes"][0]
        tracks.output_embedding = frame_res["hs"][0]
        if self.memory is not None:
            self.memory.after_forward(tracks, frame_res["first_layer_boxes"][0].detach(),
                                      frame_res["pred_boxes"][0].detach())
        if self.training:
            frame_res["track_instances"] = tracks
            tracks = self.criterion.match_for_single_frame(frame_res)
        else:
            self.track_base.update(tracks)
        if self.memory is not None:
            self.memory.update(tracks)
        frame_res["track_instances"] = None if is_last else self.track_embed({"track_instances": tracks})
        return frame_res

    @torch.no_grad()
    def inference_single_image(self, img, ori_img_size, track_instances: Optional[Instances] = None,
                               proposals: Optional[torch.Tensor] = None) -> Dict:
        """Track one frame. `img`: normalised `[1, 3, H, W]` (or a NestedTensor); `ori_img_size`: (h, w)
        of the original image, for pixel boxes; `proposals`: `[n, 5]` normalised cx, cy, w, h, score.
        Returns {'track_instances': the live tracks with `boxes` (pixels, xyxy), `scores`, `obj_idxes`}."""
        if not isinstance(img, NestedTensor):
            img = nested_tensor_from_tensor_list(img)
        tracks = self._queries_for_frame(proposals, track_instances)
        res = self._forward_single_image(img, tracks)
        res = self._post_process_single_image(res, tracks, is_last=False)
        return {"track_instances": self.post_process(res["track_instances"], ori_img_size)}

    # -- training: a clip at a time ------------------------------------------------------------------
    def forward(self, data: Dict) -> Dict:
        if self.training:
            self.criterion.initialize_for_single_clip(data["gt_instances"])
        frames = data["imgs"]
        outputs = {"pred_logits": [], "pred_boxes": []}
        tracks = None
        for frame_index, (frame, gt, proposals) in enumerate(zip(frames, data["gt_instances"], data["proposals"])):
            is_last = frame_index == len(frames) - 1
            gtboxes = None
            if self.query_denoise > 0:
                gtboxes = gt.boxes.clone()
                noise = torch.rand_like(gtboxes) * 2 - 1
                gtboxes[..., :2] += gtboxes[..., 2:] * noise[..., :2] * self.query_denoise
                gtboxes[..., 2:] *= 1 + self.query_denoise * noise[..., 2:]
            tracks = self._queries_for_frame(proposals, tracks)
            samples = nested_tensor_from_tensor_list([frame])
            if self.use_checkpoint and not is_last and self.training:
                # Recompute this frame's activations in the backward pass instead of storing them.
                frame_res = checkpoint(self._forward_single_image, samples, tracks, gtboxes, use_reentrant=False)
            else:
                frame_res = self._forward_single_image(samples, tracks, gtboxes)
            frame_res = self._post_process_single_image(frame_res, tracks, is_last)
            tracks = frame_res["track_instances"]
            outputs["pred_logits"].append(frame_res["pred_logits"])
            outputs["pred_boxes"].append(frame_res["pred_boxes"])
        if self.training:
            outputs["losses_dict"] = self.criterion.losses_dict
        else:
            outputs["track_instances"] = tracks
        return outputs


def build(args):
    """(model, criterion, postprocessors), as upstream's `build_model(args)` returns them."""
    num_classes = {"e2e_dance": 1, "e2e_mot": 1, "e2e_joint": 1, "e2e_static_mot": 1}.get(args.dataset_file)
    if num_classes is None:
        raise ValueError(f"--dataset_file {args.dataset_file!r}: MOTR supports e2e_dance, e2e_mot, e2e_joint")
    backbone = build_backbone(args)
    transformer = build_deformable_transformer(args)
    d_model = transformer.d_model
    track_embed = build_query_interaction_layer(args, args.query_interaction_layer, d_model,
                                                args.dim_feedforward, d_model * 2)
    from .criterion import build_criterion
    criterion, _ = build_criterion(args, num_classes)
    from .sparse_memory import SparseMemory
    memory = SparseMemory.from_args(args)
    model = MOTR(backbone, transformer, num_classes=num_classes, num_queries=args.num_queries,
                 num_feature_levels=args.num_feature_levels, criterion=criterion, track_embed=track_embed,
                 aux_loss=args.aux_loss, with_box_refine=args.with_box_refine,
                 use_checkpoint=args.use_checkpoint, query_denoise=args.query_denoise, memory=memory)
    return model, criterion, {}
