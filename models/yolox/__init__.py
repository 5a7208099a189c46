"""YOLOX object detector (inference), compatible with official YOLOX / ByteTrack checkpoints.

The DanceTrack proposal detector of MOTRv2 is YOLOX-X with one class ('person'), run on
ByteTrack's preprocessing at test size (800, 1440).
"""
from .detector import YOLOX, YOLOX_SIZES, build_yolox, extract_state_dict, load_state_dict_strict
from .head import YOLOXHead
from .inference import (DEFAULT_NMS_THRE, DEFAULT_SCORE_FLOOR, detect_frames, detect_preprocessed,
                        load_yolox, preprocess_batch, resolve_device)
from .network import CSPDarknet, YOLOPAFPN
from .postprocess import cxcywh_to_xyxy, postprocess
from .preprocess import DANCETRACK_TEST_SIZE, RGB_MEAN, RGB_STD, letterbox_ratio, preproc

__all__ = [
    "YOLOX", "YOLOX_SIZES", "build_yolox", "extract_state_dict", "load_state_dict_strict", "YOLOXHead",
    "CSPDarknet", "YOLOPAFPN", "postprocess", "cxcywh_to_xyxy", "preproc", "letterbox_ratio",
    "RGB_MEAN", "RGB_STD", "DANCETRACK_TEST_SIZE", "DEFAULT_SCORE_FLOOR", "DEFAULT_NMS_THRE",
    "load_yolox", "detect_frames", "detect_preprocessed", "preprocess_batch", "resolve_device",
]
