"""Our model against the public reference code, number for number (tests/data/README.md).

Every `*_reference.pt` of MOTRv2/TF-SASM kind in tests/data/parity is checked: a fixture whose tracks
carry memory fields is run with the memory flags its `about` names, the others with `--memory none`.
"""
import dataclasses

import pytest
import torch

from models.ms_deform_attn import MSDeformAttn
from models.motr import RuntimeTrackerBase
from models.structures import nested_tensor_from_tensor_list
from models.tracker import Tracker, TrackerConfig, mot_lines, select_output
from tests.helpers import PARITY, build_parity_model, frame_input, memory_argv_from_about

FIXTURES = sorted(p for p in PARITY.glob("*_reference.pt") if not p.name.startswith("yolox"))
ATOL = 1e-4


def _close(mine: torch.Tensor, ref: torch.Tensor) -> bool:
    mine, ref = mine.double(), ref.double()
    # absolute 1e-4, relative 1e-4 for large values (pixel boxes)
    return bool(torch.all((mine - ref).abs() <= ATOL + ATOL * ref.abs()))


def _field(tracks, name):
    if name == "mem_bank_sum":
        return tracks.mem_bank.sum(-1)
    if name == "best_features_sum":
        return tracks.best_features.sum(-1)
    return tracks.get(name)


ENTRY_POINTS = ("tracker", "upstream_api")


@pytest.fixture(scope="module", params=[(p, e) for p in FIXTURES for e in ENTRY_POINTS],
                ids=[f"{p.stem}-{e}" for p in FIXTURES for e in ENTRY_POINTS])
def run(request):
    """Track the fixture's frames once per entry point: our `Tracker`, and upstream's API (build, set
    `track_embed.score_thr` and `track_base` after the build, `inference_single_image`)."""
    path, entry = request.param
    ref = torch.load(path, weights_only=False)
    uses_memory = "mem_padding_mask" in ref["track_fields"]
    extra = memory_argv_from_about(ref["about"]) if uses_memory else ["--memory", "none"]
    model, args = build_parity_model(extra)
    if entry == "upstream_api":
        model.track_embed.score_thr = ref["update_score_threshold"]
        model.track_base = RuntimeTrackerBase(ref["score_threshold"], ref["score_threshold"], ref["miss_tolerance"])
    # Raw outputs through the plain path (grid_sample reference attention, unfused backbone); the tracking
    # run through what users run (fast attention, folded batch norm, channels-last).
    MSDeformAttn.implementation = "reference"
    try:
        with torch.no_grad():
            first = model._generate_empty_tracks(ref["proposals"][0])
            raw = model._forward_single_image(nested_tensor_from_tensor_list(frame_input(ref["frames_uint8"][0])),
                                              first)
    finally:
        MSDeformAttn.implementation = "auto"
    model.optimize_for_inference()
    tracker = Tracker(model, dataclasses.replace(
        TrackerConfig.from_args(args), score_threshold=ref["score_threshold"],
        update_score_threshold=ref["update_score_threshold"], miss_tolerance=ref["miss_tolerance"]))
    tracks, per_frame, lines = None, [], []
    for i, (frame, proposals) in enumerate(zip(ref["frames_uint8"], ref["proposals"])):
        if entry == "tracker":
            output = tracker.track(frame_input(frame), proposals, ref["ori_img_size"])
            tracks = tracker.tracks
        else:
            tracks = model.inference_single_image(frame_input(frame), ref["ori_img_size"], tracks, proposals)[
                "track_instances"]
            output = select_output(tracks, ref["score_threshold"])
        per_frame.append(tracks.clone())
        lines += mot_lines(output, i + 1)
    return ref, raw, per_frame, lines


def test_first_frame_raw_outputs(run):
    ref, raw, _, _ = run
    r = ref["first_frame_raw"]
    assert _close(raw["pred_logits"], r["pred_logits"])
    assert _close(raw["pred_boxes"], r["pred_boxes"])
    assert _close(raw["hs"], r["hs"])
    assert _close(torch.stack([a["pred_logits"] for a in raw["aux_outputs"]]), r["aux_pred_logits"])
    assert _close(torch.stack([a["pred_boxes"] for a in raw["aux_outputs"]]), r["aux_pred_boxes"])


def test_every_frame_track_instances(run):
    ref, _, per_frame, _ = run
    assert len(per_frame) == len(ref["per_frame_tracks"])
    for i, (mine, expected) in enumerate(zip(per_frame, ref["per_frame_tracks"])):
        assert len(mine) == len(expected["obj_idxes"]), f"frame {i}: number of instances"
        assert torch.equal(mine.obj_idxes, expected["obj_idxes"]), f"frame {i}: obj_idxes"
        for name in expected:  # the track fields, plus full memory tensors on the last frame
            value = expected[name]
            if value.dtype in (torch.bool, torch.long, torch.int32, torch.int64):
                assert torch.equal(_field(mine, name).to(value.dtype), value), f"frame {i}: {name}"
            else:
                assert _close(_field(mine, name), value), f"frame {i}: {name}"


def test_mot_lines(run):
    ref, _, _, lines = run
    expected = ref["mot_lines"]
    assert len(lines) == len(expected)
    for mine, exp in zip(lines, expected):
        m, e = mine.strip().split(","), exp.strip().split(",")
        assert m[:2] == e[:2], f"frame/id differ: {mine!r} vs {exp!r}"
        assert all(abs(float(a) - float(b)) <= 0.05 for a, b in zip(m[2:6], e[2:6])), (mine, exp)
        assert m[6:] == e[6:]


def test_tfsasm_config_is_the_fixture_configuration():
    """`$(cat configs/tfsasm.args)` selects exactly the memory settings the TF-SASM fixture was made with,
    so the parity run above is the run of that config."""
    from main import get_args_parser
    from tests.helpers import REPO
    ref = torch.load(PARITY / "tfsasm_reference.pt", weights_only=False)
    parser = get_args_parser()
    ours = parser.parse_args((REPO / "configs" / "tfsasm.args").read_text().split())
    fixture = parser.parse_args((REPO / "configs" / "motrv2.args").read_text().split()
                                + memory_argv_from_about(ref["about"]))
    for name in ("memory", "memory_preset", "ofs", "memory_size", "memory_tau", "memory_alpha",
                 "memory_max_frame_gap", "memory_store_score", "memory_temporal_gap_reg"):
        assert getattr(ours, name) == getattr(fixture, name), name
    assert {k: v for k, v in vars(ours).items() if not k.startswith(("memory", "ofs"))} == \
        {k: v for k, v in vars(fixture).items() if not k.startswith(("memory", "ofs"))}


def test_memory_with_alpha_one_is_motrv2():
    """--memory sparse with alpha = 1 stores features but never changes a decoder input: the tracks must
    be MOTRv2's (the motrv2 fixture, first frames)."""
    ref = torch.load(PARITY / "motrv2_reference.pt", weights_only=False)
    model, _ = build_parity_model(["--memory", "sparse", "--memory_alpha", "1"])
    model.track_embed.score_thr = ref["update_score_threshold"]
    model.track_base = RuntimeTrackerBase(ref["score_threshold"], ref["score_threshold"], ref["miss_tolerance"])
    tracks = None
    for i in range(3):
        tracks = model.inference_single_image(frame_input(ref["frames_uint8"][i]), ref["ori_img_size"], tracks,
                                              ref["proposals"][i])["track_instances"]
        expected = ref["per_frame_tracks"][i]
        assert torch.equal(tracks.obj_idxes, expected["obj_idxes"])
        assert _close(tracks.query_pos, expected["query_pos"]) and _close(tracks.boxes, expected["boxes"])
    assert (~tracks.mem_padding_mask).any(), "the memory stored nothing: the test would prove nothing"
