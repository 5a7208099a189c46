"""Running the YOLOX detector on BGR frames: checkpoint loading, batching, boxes in frame pixels."""
import pickle
import zipfile
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from util.device import resolve_device

from ..checkpoint import CheckpointError, extract_state_dict, non_finite_tensors, verify_file
from .detector import YOLOX, build_yolox, load_state_dict_strict
from .postprocess import postprocess
from .preprocess import DANCETRACK_TEST_SIZE, preproc

# ByteTrackInference (the det_db source of MOTRv2) keeps detections with obj * cls >= 0.05
# after NMS at IoU 0.7.
DEFAULT_SCORE_FLOOR = 0.05
DEFAULT_NMS_THRE = 0.7


def load_yolox(checkpoint: Optional[Union[str, Path]], device: Union[str, torch.device] = "auto",
               name: str = "yolox-x", num_classes: int = 1, trust_checkpoint: bool = False) -> YOLOX:
    """Build YOLOX (default: X, one class) in eval mode on `device` and load `checkpoint` strictly.

    checkpoint: a .pth/.pth.tar holding a state dict or {'model': state_dict} (YOLOX, ByteTrack,
    OC-SORT). Loaded with weights_only=True; full-pickle checkpoints need trust_checkpoint=True.
    checkpoint=None keeps the random initialisation (for tests only).
    """
    if checkpoint is None:
        return build_yolox(name, num_classes).to(resolve_device(device)).eval()
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"YOLOX checkpoint not found: {path}")
    verify_file(str(path))
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            with open(path, "rb") as f:
                pickled = f.read(1) == b"\x80"  # a pickle's protocol opcode (torch.save's legacy format)
            if not pickled and not zipfile.is_zipfile(path):
                raise CheckpointError(f"cannot read YOLOX checkpoint {path} ({path.stat().st_size} bytes): neither "
                                      "a zip archive nor a pickle, so not a PyTorch checkpoint") from None
            if not trust_checkpoint:
                why = str(err).strip().splitlines()[0]
                raise CheckpointError(f"{path} holds more than tensors (weights_only load failed: {why}); "
                                      "if you trust the file, pass trust_checkpoint=True / --trust_checkpoint") from err
            state = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"cannot read YOLOX checkpoint {path} ({path.stat().st_size} bytes): {exc}. "
                              "The file is truncated or is not a PyTorch checkpoint") from exc
    bad = non_finite_tensors(extract_state_dict(state)) if isinstance(state, dict) else []
    if bad:
        raise CheckpointError(f"YOLOX checkpoint {path} holds non-finite weights in {len(bad)} tensor(s): "
                              + ", ".join(bad[:10]))
    # Every tensor comes from the checkpoint: skip the slow random init of ~100M parameters.
    with torch.device("meta"):
        model = build_yolox(name, num_classes)
    model.to_empty(device="cpu")
    load_state_dict_strict(model, state, source=str(path))
    return model.to(resolve_device(device)).eval()


def preprocess_batch(frames_bgr: Sequence[np.ndarray], test_size: Tuple[int, int]
                     ) -> Tuple[torch.Tensor, List[float]]:
    prepared = [preproc(frame, test_size) for frame in frames_bgr]
    images = torch.from_numpy(np.stack([p[0] for p in prepared]))
    return images, [p[1] for p in prepared]


@torch.no_grad()
def detect_preprocessed(model: YOLOX, images: torch.Tensor, ratios: Sequence[float],
                        score_floor: float = DEFAULT_SCORE_FLOOR, nms_thre: float = DEFAULT_NMS_THRE,
                        half: bool = False) -> List[np.ndarray]:
    """images [B, 3, H_t, W_t] from preproc, ratios their resize ratios ->
    per image float32 [n, 5] = x, y, w, h (frame pixels, left/top/width/height), score
    (obj * cls_conf), sorted by decreasing score."""
    param = next(model.parameters())
    if half and param.device.type != "cuda":
        raise ValueError("half precision inference needs a CUDA device")
    images = images.to(param.device, non_blocking=True)
    # fp16 autocast on GPU (as ByteTrackInference ran with --fp16); the decode stays float32.
    with torch.autocast("cuda", dtype=torch.float16, enabled=half):
        raw = model(images)
    raw = raw.float()
    results = []
    for dets, ratio in zip(postprocess(raw, model.num_classes, score_floor, nms_thre), ratios):
        # float32 throughout, as ByteTrackInference's save_dets: the same bits give the same
        # rounding in the det_db text and the same order among near-equal scores.
        dets = dets.cpu()
        boxes = dets[:, :4] / ratio
        scores = dets[:, 4] * dets[:, 5]
        order = torch.argsort(scores, descending=True, stable=True)  # NMS order already; ties kept
        xywh = torch.cat((boxes[:, :2], boxes[:, 2:] - boxes[:, :2]), dim=1)
        results.append(torch.cat((xywh, scores[:, None]), dim=1)[order].numpy())
    return results


def detect_frames(model: YOLOX, frames_bgr: Sequence[np.ndarray],
                  test_size: Tuple[int, int] = DANCETRACK_TEST_SIZE, score_floor: float = DEFAULT_SCORE_FLOOR,
                  nms_thre: float = DEFAULT_NMS_THRE, batch_size: int = 8, half: bool = False
                  ) -> List[np.ndarray]:
    """BGR uint8 frames (any sizes) -> per frame float32 [n, 5] = x, y, w, h, score in frame
    pixels, sorted by decreasing score, score >= score_floor."""
    results: List[np.ndarray] = []
    for start in range(0, len(frames_bgr), batch_size):
        images, ratios = preprocess_batch(frames_bgr[start:start + batch_size], test_size)
        results.extend(detect_preprocessed(model, images, ratios, score_floor, nms_thre, half))
    return results
