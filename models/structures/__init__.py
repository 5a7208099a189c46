from .instances import Instances
from .boxes import (box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, box_xywh_to_cxcywh, box_xyxy_to_xywh,
                    box_iou, generalized_box_iou, matched_box_iou, inverse_sigmoid)
from .nested_tensor import NestedTensor, nested_tensor_from_tensor_list

__all__ = ["Instances", "NestedTensor", "nested_tensor_from_tensor_list", "box_cxcywh_to_xyxy",
           "box_xyxy_to_cxcywh", "box_xywh_to_cxcywh", "box_xyxy_to_xywh", "box_iou",
           "generalized_box_iou", "matched_box_iou", "inverse_sigmoid"]
