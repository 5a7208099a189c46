"""tools/benchmark.py's per-backend peak memory: a fresh process per backend (`--peak_probe`); the
backend flag of tools/benchmark_variants.py."""
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import benchmark  # noqa: E402


def test_peak_probe_counts_what_the_tracking_process_holds():
    """The probe's peak covers the network it holds (the stand-in MOTRv2's parameters) and more:
    it is measured while the network and the tracker are alive, not before."""
    import torch
    model = benchmark.build_model(False, torch.device("cpu"))
    weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    peak = benchmark.peak_in_own_process("torch:fp32", "64x96", 1, None, False)
    assert math.isfinite(peak) and peak > weights_mb + 100  # + torch itself


def test_a_failing_probe_is_nan_with_a_warning_naming_it(capsys):
    peak = benchmark.peak_in_own_process("openvino:fp32", "64x96", 1, str(REPO / "no_such_graphs"), False)
    assert math.isnan(peak)
    err = capsys.readouterr().err
    assert "peak-memory probe of openvino:fp32 failed" in err and "no exported graphs in --probe_graphs" in err


def test_benchmark_variants_refuses_a_backend_precision_it_does_not_have(capsys):
    from tools import benchmark_variants
    with pytest.raises(SystemExit) as info:
        benchmark_variants.main(["--backend", "openvino:fp16"])
    assert info.value.code == 2
    assert "--backend openvino:fp16: precision must be fp32 or bf16" in capsys.readouterr().err
