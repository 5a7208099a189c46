"""The backbone's inference optimisation (batch norm folded into convolutions, channels-last) keeps outputs."""

import pytest
import torch

from models.backbone import Backbone, FrozenBatchNorm2d
from models.structures import nested_tensor_from_tensor_list


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_folded_backbone_matches(name):
    torch.manual_seed(0)
    backbone = Backbone(name, train_backbone=False, return_interm_layers=True, dilation=False).eval()
    for m in backbone.modules():  # non-trivial frozen statistics
        if isinstance(m, FrozenBatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.0)
    x = nested_tensor_from_tensor_list([torch.randn(3, 64, 96)])
    with torch.no_grad():
        before = {k: v.tensors for k, v in backbone(x).items()}
        folded = backbone.optimize_for_inference()
        after = {k: v.tensors for k, v in backbone(x).items()}
    assert folded == sum(1 for m in backbone.modules() if isinstance(m, torch.nn.Identity))
    assert folded == (1 + 8 * 2 + 3 if name == "resnet18" else 1 + 16 * 3 + 4)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules())
    for k in before:
        assert before[k].shape == after[k].shape
        scale = before[k].abs().max()
        assert torch.allclose(after[k], before[k], atol=1e-5 * float(scale), rtol=1e-5), k


@pytest.mark.slow  # torch.compile: about a minute on 2 cores
def test_compiled_motr_matches():
    """`--compile` (torch.compile of the folded backbone) keeps the model's outputs."""
    from main import get_args_parser
    from models import build_model
    from tests.helpers import SMALL_MODEL_ARGV, motrv2_argv
    torch.manual_seed(0)
    model, _, _ = build_model(get_args_parser().parse_args(motrv2_argv(SMALL_MODEL_ARGV)))
    model.eval()
    x = nested_tensor_from_tensor_list([torch.randn(3, 96, 160)])
    proposals = torch.tensor([[0.5, 0.5, 0.2, 0.4, 0.9], [0.2, 0.3, 0.1, 0.2, 0.6]])
    with torch.inference_mode():
        before = model._forward_single_image(x, model._generate_empty_tracks(proposals))
        model.optimize_for_inference(compile_backbone=True)
        after = model._forward_single_image(x, model._generate_empty_tracks(proposals))
    for key in ("pred_logits", "pred_boxes", "hs"):
        assert torch.allclose(after[key], before[key], atol=1e-4), key
