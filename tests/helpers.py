"""Shared test utilities: where the fixtures are, and models with stand-in weights."""
from pathlib import Path

import torch

# The parity fixtures' model and inputs live in tools/ (tools/backend_quality.py uses them too).
from tools.parity_model import (PARITY, build_parity_model, frame_input, memory_argv_from_about,  # noqa: F401
                                 motrv2_argv, motrv2_standin_state_dict)
from util.standin_weights import make_state_dict

REPO = Path(__file__).resolve().parents[1]
# Every fixture the tests read is in the repository (tests/data/README.md says where each came from).
DATA = REPO / "tests" / "data"


# A small MOTRv2 (random weights) for end-to-end tests that need speed, not the real architecture.
SMALL_MODEL_ARGV = ["--backbone", "resnet18", "--enc_layers", "1", "--dec_layers", "2", "--dim_feedforward", "64",
                    "--hidden_dim", "64", "--nheads", "8"]


def standin_state_dict(extra_argv=()):
    """Stand-in weights (the parity fixtures' rule) for the MOTRv2 of configs/motrv2.args + `extra_argv`."""
    from main import get_args_parser
    from models import build_model
    model, _, _ = build_model(get_args_parser().parse_args(motrv2_argv(extra_argv)))
    return make_state_dict(model.state_dict())


def random_inputs(shapes, n=2, lq=5, m=3, d=4, p=2, low=-0.3, high=1.3, dtype=torch.float32, seed=0):
    """Deformable attention inputs: value [n, S, m, d], locations [n, lq, m, L, p, 2] uniform in
    [low, high], weights [n, lq, m, L, p]."""
    gen = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, m, d, generator=gen, dtype=dtype)
    loc = torch.rand(n, lq, m, len(shapes), p, 2, generator=gen, dtype=dtype) * (high - low) + low
    weights = torch.rand(n, lq, m, len(shapes), p, generator=gen, dtype=dtype)
    return value, loc, weights
