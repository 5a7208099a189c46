"""MOTR(v2), the network: image -> backbone + encoder features; features + queries -> decoder outputs.

Per frame, the decoder takes three kinds of queries as one `Instances`: the learned detect
queries, one query per YOLOX proposal (box as reference point, score as content), and the
queries of the tracks alive from the previous frame.  The network holds no tracker policy:
everything per frame and per sequence around it (ids, track NMS, the memory, QIM's call, scores
and pixel boxes) is the frame step's (`models/track_step.py`, used by `models/tracker.py`).
Training runs its own clip loop here (`forward`), with the matcher.

Upstream's inference API (`inference_single_image`, `track_base`, `memory`, `clear`) is
`models.compat.UpstreamMOTR`, what `models.build_model` returns.
"""
import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from util.device import float32_if_half

from .backbone import build_backbone
from .deformable_transformer import EncodedFeatures, build_deformable_transformer
from .position_encoding import pos2posemb
from .qim import build_query_interaction_layer
from .structures import Instances, NestedTensor, nested_tensor_from_tensor_list
from .track_step import RuntimeTrackerBase  # noqa: F401  (upstream's import path models.motr.RuntimeTrackerBase)


def _autocast_is_bf16(device_type: str) -> bool:
    """Whether bf16 autocast is on for `device_type` (torch >= 2.4 can tell; older: treated as off)."""
    try:
        return torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.bfloat16
    except (AttributeError, TypeError):
        return False


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


class MOTR(nn.Module):
    def __init__(self, backbone, transformer, num_classes: int, num_queries: int, num_feature_levels: int,
                 criterion, track_embed, aux_loss: bool = True, with_box_refine: bool = True,
                 use_checkpoint: bool = False, query_denoise: float = 0.0):
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
        # Not a registered submodule: it holds no weights and must not appear in the state dict.
        self.__dict__["criterion"] = criterion
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
        return tracks

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

    # -- the network: encode an image, decode queries -------------------------------------------------
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

    def encode(self, samples) -> EncodedFeatures:
        """Backbone, input projections and encoder: everything that depends on the image alone.
        `samples`: a normalised `[B, 3, H, W]` tensor (or a NestedTensor)."""
        if not isinstance(samples, NestedTensor):
            samples = nested_tensor_from_tensor_list(samples)
        device_type = samples.tensors.device.type
        if _autocast_is_bf16(device_type):
            # bf16 through the whole ResNet leaves ~1% relative error in the features (bf16's 8-bit
            # mantissa, compounded over 50 layers) and moves boxes by a pixel; the backbone stays
            # float32 and the encoder's big matmuls take bf16 (value/output projections, FFNs).
            with torch.autocast(device_type, enabled=False):
                features = self._features(samples)
            return self.transformer.encode(*features)
        return self.transformer.encode(*self._features(samples))

    def decode(self, features: EncodedFeatures, tgt: torch.Tensor, ref_pts: torch.Tensor,
               attn_mask: Optional[torch.Tensor] = None) -> Dict:
        """Decoder and heads for content queries `tgt` [Q, C] at reference boxes `ref_pts` [Q, 4].
        Returns `pred_logits` [1, Q, classes], `pred_boxes` [1, Q, 4] (normalised cx, cy, w, h),
        `hs` [1, Q, C], `first_layer_boxes` [1, Q, 4] and, with aux_loss, the other layers' outputs."""
        hs, boxes = self.transformer.decode(features, tgt, ref_pts, attn_mask)
        with torch.autocast(hs.device.type, enabled=False):  # the class heads in float32 under autocast too
            hs = float32_if_half(hs)
            logits = torch.stack([self.class_embed[lvl](hs[lvl]) for lvl in range(hs.shape[0])])
        out = {"pred_logits": logits[-1], "pred_boxes": boxes[-1], "hs": hs[-1], "first_layer_boxes": boxes[0]}
        if self.aux_loss:
            out["aux_outputs"] = [{"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])]
        return out

    def _forward_single_image(self, samples: NestedTensor, tracks: Instances,
                              gtboxes: Optional[torch.Tensor] = None) -> Dict:
        """One training frame (or raw outputs for fresh queries): encode, then decode `tracks`' queries
        plus, with `gtboxes`, query denoising's noisy gt boxes that the real queries cannot see."""
        features = self.encode(samples)
        tgt, ref_pts, attn_mask = tracks.query_pos, tracks.ref_pts, None
        if gtboxes is not None:
            n_dt = len(tracks)
            tgt = torch.cat([tgt, self.refine_embed.weight.expand(gtboxes.size(0), -1)])
            ref_pts = torch.cat([ref_pts, gtboxes])
            attn_mask = torch.zeros((len(ref_pts), len(ref_pts)), dtype=torch.bool, device=ref_pts.device)
            attn_mask[:n_dt, n_dt:] = True
        return self.decode(features, tgt, ref_pts, attn_mask)

    # -- training: a clip at a time ------------------------------------------------------------------
    def _training_step(self, frame_res: Dict, tracks: Instances, is_last: bool) -> Dict:
        """Split off the denoising outputs, match to the ground truth, QIM (the criterion gives ids)."""
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
            tracks.scores = frame_res["pred_logits"][0].sigmoid().max(dim=-1).values
        tracks.pred_logits = frame_res["pred_logits"][0]
        tracks.pred_boxes = frame_res["pred_boxes"][0]
        tracks.output_embedding = frame_res["hs"][0]
        frame_res["track_instances"] = tracks
        tracks = self.criterion.match_for_single_frame(frame_res)
        frame_res["track_instances"] = None if is_last else self.track_embed({"track_instances": tracks})
        return frame_res

    def forward(self, data: Dict) -> Dict:
        """Training on a clip: `data` holds `imgs`, `gt_instances` and `proposals` per frame."""
        if not self.training:
            raise RuntimeError("MOTR.forward trains on a clip; to track, use models.tracker.Tracker "
                               "(or inference_single_image per frame)")
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
            new = self._generate_empty_tracks(proposals)
            tracks = new if tracks is None else Instances.cat([new, tracks])
            samples = nested_tensor_from_tensor_list([frame])
            if self.use_checkpoint and not is_last:
                # Recompute this frame's activations in the backward pass instead of storing them.
                frame_res = checkpoint(self._forward_single_image, samples, tracks, gtboxes, use_reentrant=False)
            else:
                frame_res = self._forward_single_image(samples, tracks, gtboxes)
            frame_res = self._training_step(frame_res, tracks, is_last)
            tracks = frame_res["track_instances"]
            outputs["pred_logits"].append(frame_res["pred_logits"])
            outputs["pred_boxes"].append(frame_res["pred_boxes"])
        outputs["losses_dict"] = self.criterion.losses_dict
        return outputs


def build(args, network_class=None):
    """(network, criterion, postprocessors), as upstream's `build_model(args)` returns them; the
    network is a `MOTR` (or `network_class`, a subclass)."""
    # The training runner sets num_classes from the dataset registry (--dataset_file); tracking: 1.
    num_classes = int(getattr(args, "num_classes", None) or 1)
    backbone = build_backbone(args)
    transformer = build_deformable_transformer(args)
    d_model = transformer.d_model
    track_embed = build_query_interaction_layer(args, args.query_interaction_layer, d_model,
                                                args.dim_feedforward, d_model * 2)
    from .criterion import build_criterion
    criterion, _ = build_criterion(args, num_classes)
    model = (network_class or MOTR)(backbone, transformer, num_classes=num_classes, num_queries=args.num_queries,
                 num_feature_levels=args.num_feature_levels, criterion=criterion, track_embed=track_embed,
                 aux_loss=args.aux_loss, with_box_refine=args.with_box_refine,
                 use_checkpoint=args.use_checkpoint, query_denoise=args.query_denoise)
    return model, criterion, {}
