"""Runs upstream MOTRv2 (a checkout given on the command line) on one saved input, for
tools/benchmark.py --upstream.  Nothing of upstream is copied here: this imports their code from
their folder and only routes their deformable attention to their own pure-PyTorch function (their
CUDA extension is not built) and stops torchvision from downloading ImageNet weights."""
import importlib.util
import json
import sys
import time
import types

import torch
import torchvision

upstream, input_path, h, w, reps, threads, weights_file = sys.argv[1:8]
h, w, reps = int(h), int(w), int(reps)
torch.set_num_threads(int(threads))
# benchmark.py starts this with PYTHONPATH=<upstream checkout>, so `models`, `main`, ... are theirs.
sys.modules["MultiScaleDeformableAttention"] = types.ModuleType("MultiScaleDeformableAttention")
torchvision.__version__ = "0.29"  # their util.misc parses the version as a float
from models.ops.functions import ms_deform_attn_func  # noqa: E402
from models.ops.modules import ms_deform_attn  # noqa: E402

ms_deform_attn.MSDeformAttnFunction.apply = staticmethod(
    lambda value, shapes, starts, loc, weights, step: ms_deform_attn_func.ms_deform_attn_core_pytorch(
        value, shapes, loc, weights))
import models.backbone as upstream_backbone  # noqa: E402

upstream_backbone.is_main_process = lambda: False
_resnet50 = torchvision.models.resnet50
torchvision.models.resnet50 = lambda pretrained=False, **kw: _resnet50(weights=None, **kw)
from main import get_args_parser  # noqa: E402
from models import build_model  # noqa: E402

# Our stand-in weights, loaded by path: upstream's packages share our module names (models, util).
_spec = importlib.util.spec_from_file_location("standin_weights", weights_file)
_standin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_standin)

args = get_args_parser().parse_args(open(f"{upstream}/configs/motrv2.args").read().split())
args.device = "cpu"
model, _, _ = build_model(args)
model.load_state_dict(_standin.make_state_dict(model.state_dict()))
model.eval()
data = torch.load(input_path)
times, tracks = [], None
with torch.no_grad():
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        if tracks is not None:
            tracks.remove("boxes")
            tracks.remove("labels")
        tracks = model.inference_single_image(data["img"], (h, w), tracks, data["proposals"])["track_instances"]
        times.append(time.perf_counter() - t0)
print(json.dumps({"times": times}))
