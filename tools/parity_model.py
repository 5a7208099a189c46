"""The parity fixtures' model and inputs (tests/data/parity/README.md): MOTRv2 as configs/motrv2.args
builds it with the fixtures' stand-in weights, the memory flags a fixture was made with, and a fixture
frame as the model's input. Shared by the tests and tools/backend_quality.py."""
import re
from pathlib import Path

import torch

from util.standin_weights import load_manifest, make_state_dict

REPO = Path(__file__).resolve().parents[1]
PARITY = REPO / "tests" / "data" / "parity"


def motrv2_standin_state_dict():
    """MOTRv2's stand-in weights (util/standin_weights) for the names of the parity manifest."""
    return make_state_dict(load_manifest(PARITY / "motrv2_state_dict.json"))


def motrv2_argv(extra=()):
    return (REPO / "configs" / "motrv2.args").read_text().split() + list(extra)


def memory_argv_from_about(about: str):
    """The memory flags a TF-SASM fixture was made with, read from its `about` text."""
    def find(pattern, default):
        m = re.search(pattern, about)
        return m.group(1) if m else default
    return ["--memory", "sparse", "--memory_preset", "official",
            "--memory_size", find(r"len (\d+)", "10"),
            "--memory_tau", find(r"max_dist ([0-9.eE+-]+)", "0.1"),
            "--memory_max_frame_gap", find(r"max_frame_gap (\d+)", "10"),
            "--memory_store_score", find(r"high_conf ([0-9.eE+-]+)", "0.8"),
            "--memory_temporal_gap_reg", find(r"temporal_gap_reg ([0-9.eE+-]+)", "0")]


def build_parity_model(extra_argv=()):
    """MOTRv2 as configs/motrv2.args builds it, with the parity fixtures' stand-in weights."""
    from main import get_args_parser
    from models import build_model
    args = get_args_parser().parse_args(motrv2_argv(extra_argv))
    model, _, _ = build_model(args)
    model.load_state_dict(motrv2_standin_state_dict(), strict=True)
    return model.eval(), args


def frame_input(frame_uint8: torch.Tensor) -> torch.Tensor:
    """A fixture frame (HxWx3 RGB uint8) as the model input recipe of the parity README: [1, 3, H, W]."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return (((frame_uint8.permute(2, 0, 1).float() / 255.0) - mean) / std)[None]
