"""Typed configs: flags generated from the dataclasses, one range check on every path, round trips."""
import argparse
import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import main
from inference import VariantError, read_variants, variant_parser
from models.config import TrackerConfig, model_args, tracker_flags
from models.memory import OFS_CHOICES, PRESETS, MemoryConfig
from util.flags import from_namespace, to_argv

BAD = [  # (flag, value, what the message says)
    ("--memory_alpha", "1.5", "argument --memory_alpha: 1.5: must be a number in [0, 1]"),
    ("--score_threshold", "-0.1", "argument --score_threshold: -0.1: must be a number in [0, 1]"),
    ("--memory_size", "0", "argument --memory_size: 0: must be a number > 0"),
    ("--track_nms_iou", "0.0", "argument --track_nms_iou: 0.0: must be a number in (0, 1]"),
    ("--memory_tau", "nan", "argument --memory_tau: nan: must be a number >= 0"),
    ("--miss_tolerance", "-1", "argument --miss_tolerance: -1: must be a number >= 0"),
]


def _api_value(flag, text):
    field = next(f for f in tracker_flags() if f.flag == flag)
    return field, field.type(text)


@pytest.mark.parametrize("flag, text, expected", BAD)
def test_a_value_out_of_range_gives_one_message_on_every_path(flag, text, expected, tmp_path, capsys):
    # command line: argparse's error, naming the flag
    with pytest.raises(SystemExit):
        main.get_tracking_parser().parse_args([flag, text])
    assert f"error: {expected}" in capsys.readouterr().err
    # a --variants line: file:line: and the same message
    path = tmp_path / "variants.txt"
    path.write_text(f"ok --memory sparse\nbad {flag} {text}\n")
    base = main.get_tracking_parser().parse_args(["--output_dir", str(tmp_path)])
    with pytest.raises(VariantError) as err:
        read_variants(str(path), base, main.get_tracking_parser())
    assert str(err.value) == f"{path}:2: {expected}"
    # the Python API: ValueError, nothing printed
    field, value = _api_value(flag, text)
    with pytest.raises(ValueError) as err:
        config = TrackerConfig()
        if field.path[0] == "memory":
            MemoryConfig(**{field.path[1]: value})
        else:
            dataclasses.replace(config, **{field.path[0]: value})
    assert str(err.value) == expected
    assert capsys.readouterr() == ("", "")


def test_keyword_flags_are_checked_strictly_without_usage_text(capsys):
    with pytest.raises(ValueError, match=r"^argument --memory_alpha: 2.0: must be a number in \[0, 1\]$"):
        model_args("motrv2", {"memory_alpha": 2})
    with pytest.raises(ValueError, match="unknown flag 'lr'"):
        model_args("motrv2", {"lr": 0.1})
    assert capsys.readouterr() == ("", "")
    # the .args file's training flags are skipped, its network flags read
    args = model_args("tfsasm")
    assert args.num_queries == 10 and args.memory == "sparse" and not hasattr(args, "lr")


def test_flags_and_defaults_are_the_fields():
    parser = main.get_tracking_parser()
    defaults = parser.parse_args([])
    assert TrackerConfig.from_args(defaults) == TrackerConfig()
    assert defaults.miss_tolerance == TrackerConfig().miss_tolerance == 20
    flags = {f.flag for f in tracker_flags()}
    assert {"--memory", "--memory_preset", "--ofs", "--memory_size", "--memory_tau", "--memory_alpha",
            "--memory_max_frame_gap", "--memory_store_score", "--memory_delay_iou", "--memory_temporal_gap_reg",
            "--score_threshold", "--update_score_threshold", "--miss_tolerance", "--track_nms_iou",
            "--area_threshold", "--public_protocol"} == flags
    assert {a.dest for a in variant_parser()._actions if a.option_strings} == {f.dest for f in tracker_flags()}
    help_text = parser.format_help()
    assert all(flag in help_text for flag in flags)


probability = st.floats(0, 1, allow_nan=False)
configs = st.builds(
    TrackerConfig,
    score_threshold=probability, update_score_threshold=probability, miss_tolerance=st.integers(0, 100),
    track_nms_iou=st.none() | st.floats(0, 1, allow_nan=False, exclude_min=True),
    area_threshold=st.floats(0, 1e6, allow_nan=False),
    memory=st.builds(MemoryConfig, mode=st.sampled_from(("none", "sparse", "dense")), preset=st.sampled_from(PRESETS),
                     ofs=st.sampled_from(OFS_CHOICES), size=st.integers(1, 50), tau=st.floats(0, 10, allow_nan=False),
                     alpha=probability, max_frame_gap=st.integers(0, 100), store_score=probability,
                     delay_iou=probability, temporal_gap_reg=st.floats(0, 5, allow_nan=False)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs)
def test_configs_round_trip_through_the_command_line(config):
    argv = to_argv(config)
    parsed = main.get_tracking_parser().parse_args(argv)
    assert TrackerConfig.from_args(parsed) == config
    assert from_namespace(TrackerConfig, argparse.Namespace(**vars(parsed))) == config
    assert TrackerConfig.from_flags(**{f.dest: getattr(parsed, f.dest) for f in tracker_flags()}) == config
