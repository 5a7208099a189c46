"""docs/contributing.md stays true: its memory-variant example, applied to a copy of `models/`,
gives a working `--ofs max_score` by touching that one module."""
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTE = REPO / "docs" / "contributing.md"

CHECK = textwrap.dedent("""
    import argparse, torch
    from models.config import TrackerConfig, add_memory_args, add_tracker_args
    from models.memory import OFS_CHOICES, build_memory
    from models.structures import Instances

    parser = add_memory_args(add_tracker_args(argparse.ArgumentParser()))
    config = TrackerConfig.from_args(parser.parse_args(["--memory", "sparse", "--ofs", "max_score"]))
    assert "max_score" in OFS_CHOICES and config.memory.ofs == "max_score"
    assert "highest score since the last store" in parser.format_help().replace("\\n", " ").replace("  ", " ")
    memory = build_memory(config.memory)
    assert type(memory).__name__ == "OfficialMaxScore", type(memory)

    # One track that does not move (no store is due): after a store reset (best_iou = 1) the candidate
    # follows the highest score, not the lowest overlap nor the latest frame.
    inst = Instances((1, 1))
    inst.query_pos = torch.zeros(2, 4)
    inst.pred_boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.35, 0.3, 0.2, 0.2]])
    inst.obj_idxes = torch.tensor([0, 1])
    inst.scores = torch.zeros(2)
    memory.init_fields(inst, 4)
    inst.best_iou = torch.ones(2)
    for score, value in ((0.3, 1.0), (0.7, 2.0), (0.5, 3.0)):
        inst.scores = torch.tensor([score, 0.1])
        inst.query_pos = torch.full((2, 4), value)
        memory.update(inst)
    assert torch.equal(inst.best_features[0], torch.full((4,), 2.0)), inst.best_features
    assert not bool((~inst.mem_padding_mask).any()), "nothing was due to be stored"
    print("ok")
""")


def example_diff() -> str:
    blocks = re.findall(r"```diff\n(.*?)```", NOTE.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/contributing.md should hold one diff example"
    return blocks[0]


def test_the_example_touches_one_module():
    files = re.findall(r"^\+\+\+ b/(\S+)", example_diff(), flags=re.M)
    assert files == ["models/memory/strategies.py"]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to apply the example")
def test_the_memory_variant_example_applies_and_works(tmp_path):
    for package in ("models", "util"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "example.diff").write_text(example_diff())
    applied = subprocess.run(["git", "apply", "--unidiff-zero", "example.diff"], cwd=tmp_path,
                             capture_output=True, text=True)
    assert applied.returncode == 0, f"the example no longer applies to models/: {applied.stderr}"
    run = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]
