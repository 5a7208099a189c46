"""README.md's commands, run as written, on generated stand-ins, each checked for what the README says.

Every ```bash block of the README is split into commands (continuation lines joined, a heredoc kept
with its command). Each command must match an entry of CHECKS (what to inject, what to check) or of
SKIPPED (why it cannot run here); a command that matches neither fails `test_every_readme_command_has_a_check`,
so a new README section gets its check when it is written. An entry is keyed by the command's first
words (env assignments included); the longest key that starts the command wins.

The commands run with bash in a sandbox folder that looks like a fresh clone after `./setup.sh`: links to
the checkout's files, `.venv/bin/python` (this interpreter, the checkout first on its path, as setup.sh's
.pth does), and under the README's names the data and weights it expects: tiny generated DanceTrack,
MOT17 and SportsMOT splits (`datasets/synthetic.py`, val's sequence named `dancetrack0004` as the README's),
a CrowdHuman stand-in, det_db files, MOTRv2 checkpoints with stand-in weights (`util/standin_weights.py`)
of a small network and a YOLOX-X stand-in. Small sizes come from flags appended to the command
(`CHECKS[...].extra`; argparse keeps the later value), nothing else of the command is changed.
Commands run in README order (later ones read what earlier ones wrote), so running them is one slow test.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


# -- the README's commands --------------------------------------------------------------------------------
@dataclass
class Command:
    text: str          # as bash runs it (continuations joined, the heredoc included)
    line: int          # README line where it starts

    @property
    def words(self) -> str:
        return " ".join(self.text.split("\n", 1)[0].split())


def readme_commands(text: Optional[str] = None) -> List[Command]:
    text = README.read_text() if text is None else text
    commands = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```bash":
            i += 1
            continue
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            start, cmd = i, lines[i]
            while cmd.endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd[:-1] + " " + lines[i].strip()
            heredoc = re.search(r"<<\s*'?(\w+)'?", cmd)
            if heredoc:
                end = heredoc.group(1)
                body = []
                while i + 1 < len(lines) and lines[i + 1].strip() != end:
                    i += 1
                    body.append(lines[i])
                i += 1
                cmd = "\n".join([cmd, *body, end])
            code = cmd if heredoc else _strip_comment(cmd)
            if code.strip():
                commands.append(Command(code.strip(), start + 1))
            i += 1
        i += 1
    return commands


def _strip_comment(line: str) -> str:
    # a `#` that starts a word begins a comment (bash's rule, quotes aside: the README quotes none)
    return re.split(r"(?:^|\s)#", line, maxsplit=1)[0]


def python_api_block() -> str:
    text = README.read_text()
    section = text.split("## Python API", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


# -- checks -------------------------------------------------------------------------------------------------
# Small networks and images, appended to the commands (later flags win).
NET = ("--backbone resnet18 --enc_layers 1 --dec_layers 2 --dim_feedforward 64 --hidden_dim 64 --nheads 8 "
       "--num_feature_levels 4")
TRACK = f"{NET} --val_width 64 --val_max_size 96 --num_workers 0 --device cpu --no_progress"
TRAIN = ("--backbone resnet18 --hidden_dim 32 --nheads 4 --enc_layers 1 --dec_layers 2 --dim_feedforward 64 "
         "--num_queries 5 --train_scales 64 --train_max_size 96 --train_crop_scales 64 --train_crop_size 48 64 "
         "--sampler_lengths 2 --sampler_steps --num_workers 0 --device cpu --no_progress --epochs 1 "
         "--sample_interval 1")
DETECT = "--test_size 64 96 --batch_size 2 --workers 1"


def _flag(cmd: str, name: str, default: Optional[str] = None) -> Optional[str]:
    words = shlex.split(cmd.split("\n", 1)[0], comments=True)
    values = [words[i + 1] for i, w in enumerate(words[:-1]) if w == name]
    return values[-1] if values else default


def _mot_lines(path: Path) -> List[List[float]]:
    rows = [[float(x) for x in line.split(",")] for line in path.read_text().splitlines() if line]
    assert all(len(r) == 10 and r[0] >= 1 and r[1] >= 0 for r in rows), path
    return rows


def check_submit(cmd: str, out: str, w: Path) -> None:
    """One `<seq>.txt` of MOTChallenge lines per sequence under OUTPUT_DIR/EXP_NAME (each variant's
    folder with --variants)."""
    root = w / _flag(cmd, "--output_dir")
    assert "frame/s" not in out and "s/frame" not in out, "progress bars despite --no_progress"
    if _flag(cmd, "--variants"):
        names = [ln.split()[0] for ln in (w / _flag(cmd, "--variants")).read_text().splitlines()
                 if ln.strip() and not ln.startswith("#")]
        folders = [root / n for n in names]
    else:
        folders = [root / _flag(cmd, "--exp_name")]
    for folder in folders:
        files = sorted(folder.glob("*.txt"))
        assert files, f"nothing written to {folder}"
        for f in files:
            _mot_lines(f)


def check_evaluate(cmd: str, out: str, w: Path) -> None:
    """Prints the table (HOTA ... and a combined row); --json writes the same."""
    assert "HOTA" in out and "COMBINED" in out.upper(), out[-2000:]
    if _flag(cmd, "--json"):
        results = json.loads((w / _flag(cmd, "--json")).read_text())
        assert {"combined", "per_sequence"} <= set(results)


def check_eval_dance(cmd: str, out: str, w: Path) -> None:
    """'writes TRACKER_DIR/eval.json'"""
    tracker_dir = shlex.split(cmd)[1]
    assert "HOTA" in out
    assert "combined" in json.loads((w / tracker_dir / "eval.json").read_text())


def check_compare(cmd: str, out: str, w: Path) -> None:
    """index.html and report.json under -o, crops with --images."""
    folder = w / _flag(cmd, "-o")
    report = json.loads((folder / "report.json").read_text())
    assert (folder / "index.html").is_file() and report


def check_make_detdb(cmd: str, out: str, w: Path) -> None:
    """A det_db JSON: every frame of the sequences it read has a key."""
    db = json.loads((w / _flag(cmd, "--output")).read_text())
    assert db and all(isinstance(v, list) for v in db.values())
    frames = _flag(cmd, "--frames")
    if frames:  # keys name the sequence folder: my_video/img1/00000001.txt
        assert f"{Path(frames).parent.name}/img1/00000001.txt" in db, sorted(db)[:3]


def check_track_video(cmd: str, out: str, w: Path) -> None:
    """<stem>.txt and <stem>_tracked.mp4 in --output_dir; <stem>_det_db.json with --save_det_db."""
    folder = w / _flag(cmd, "--output_dir", "outputs/track_video")
    stem = Path(shlex.split(cmd)[2]).stem  # .venv/bin/python tools/track_video.py VIDEO ...
    assert _mot_lines(folder / f"{stem}.txt") is not None
    assert (folder / f"{stem}_tracked.mp4").stat().st_size > 0
    if "--save_det_db" in cmd:
        assert json.loads((folder / f"{stem}_det_db.json").read_text())
    assert "not found; running the detector" not in out  # the config's split det_db is not this video's


def check_visualize(cmd: str, out: str, w: Path) -> None:
    assert (w / _flag(cmd, "--out")).stat().st_size > 0


def check_make_synthetic(cmd: str, out: str, w: Path) -> None:
    root = w / _flag(cmd, "--out")
    for split in ("train", "val"):
        seqs = list((root / "DanceTrack" / split).glob("*/gt/gt.txt"))
        assert seqs, split
    assert json.loads((root / "det_db_synthetic.json").read_text())


def check_train(cmd: str, out: str, w: Path) -> None:
    """Every epoch writes output_dir/checkpoint.pth and a line of log.txt."""
    folder = w / _flag(cmd, "--output_dir")
    assert (folder / "checkpoint.pth").is_file()
    assert len((folder / "log.txt").read_text().splitlines()) == 1


def check_heredoc(cmd: str, out: str, w: Path) -> None:
    name = shlex.split(cmd.split("\n", 1)[0])[2]
    assert (w / name).read_text().strip() == "\n".join(cmd.split("\n")[1:-1]).strip()


def check_ablation(cmd: str, out: str, w: Path) -> None:
    """results/ablation/table2/<row>/eval.json for each row, and results/tables.md."""
    rows = list((w / "results" / "ablation" / "table2").glob("*/eval.json"))
    assert len(rows) == 3, rows
    assert "HOTA" in (w / "results" / "tables.md").read_text()


def check_benchmark_memory(cmd: str, out: str, w: Path) -> None:
    assert "sparse ms" in out and "dense/sparse" in out


@dataclass
class Check:
    check: Callable[[str, str, Path], None]
    extra: str = ""              # appended to the command
    env: Dict[str, str] = field(default_factory=dict)


CHECKS: Dict[str, Check] = {
    ".venv/bin/python submit_dance.py": Check(check_submit, TRACK),
    ".venv/bin/python tools/evaluate.py": Check(check_evaluate),
    "tools/eval_dance.sh": Check(check_eval_dance),
    ".venv/bin/python tools/compare.py": Check(check_compare),
    ".venv/bin/python tools/make_detdb.py": Check(check_make_detdb, DETECT),
    ".venv/bin/python tools/track_video.py": Check(check_track_video, TRACK + " --det_test_size 64 96"),
    ".venv/bin/python tools/visualize.py": Check(check_visualize),
    ".venv/bin/python tools/make_synthetic.py": Check(
        check_make_synthetic, "--num_train 1 --num_val 1 --frames 8 8 --width 96 --height 64 --dancers 2 3"),
    ".venv/bin/python main.py": Check(check_train, TRAIN),
    "cat > variants.txt": Check(check_heredoc),
    "tools/ablation/table2_modules.sh": Check(check_ablation, env={"EXTRA_ARGS": TRACK}),
    ".venv/bin/python tools/benchmark_memory.py": Check(
        check_benchmark_memory, "--tracks 10 --frame_hw 64 96 --reps 2 --frame_reps 1"),
}

# What cannot run here, and why (each one a README command's first words).
SKIPPED: Dict[str, str] = {
    "apt-get install opencv-doc": "installs a Debian package (root and the network)",
    ".venv/bin/python examples/real_video.py": "needs opencv-doc's vtest.avi (apt-get); tests/test_api.py runs the example's code",
    "./setup.sh": "installs from PyPI (the network); the sandbox stands for its result",
    ".venv/bin/python -m pytest": "the test suite this test is part of",
    ".venv/bin/python submit_dance.py --demo": "a minute; tests/test_demo.py runs it and checks what it writes",
    ".venv/bin/torchrun --nproc_per_node 8": "needs 8 GPUs (tests/test_registry.py takes a step with its flags)",
    "NUM_GPUS=4": "needs 4 GPUs",
    ".venv/bin/python tools/benchmark.py --device cuda": "needs a GPU",
    ".venv/bin/python tools/benchmark.py --sizes 800x1422 --frames 2 --upstream": "needs a checkout of "
        "upstream MOTRv2 (a download) and minutes per 800x1422 frame",
    ".venv/bin/python tools/benchmark_attention.py": "minutes at the encoder's full shape; no size flag",
    ".venv/bin/python tools/benchmark.py --sizes 800x1422 --frames 2 --backends": "needs a checkout of upstream MOTRv2 "
        "(a download) and minutes per 800x1422 frame and backend",
    ".venv/bin/python tools/export_onnx.py": "tests/test_export.py runs it (its module fixture) and checks what it "
        "writes; here it would add a 20 s export",
    ".venv/bin/python tools/backend_quality.py": "tracks the demo twice per run (minutes, bf16 emulated); "
        "tests/test_export.py's slow bf16 test runs its track_demo",
    "trtexec": "needs TensorRT and a GPU",
}


def entry_for(command: Command):
    keys = [k for k in (*CHECKS, *SKIPPED) if command.words.startswith(k)]
    return max(keys, key=len) if keys else None


def test_readme_commands_are_found():
    commands = readme_commands()
    assert len(commands) >= 20
    assert commands[0].words.startswith("./setup.sh")
    heredoc = [c for c in commands if c.words.startswith("cat > variants.txt")]
    assert heredoc and heredoc[0].text.endswith("EOT") and "tfsasm" in heredoc[0].text


def test_every_readme_command_has_a_check():
    missing = [f"README.md:{c.line}: {c.words[:90]}" for c in readme_commands() if entry_for(c) is None]
    assert not missing, ("README commands without a check (add an entry to CHECKS in tests/test_readme.py, "
                         "or to SKIPPED saying why it cannot run):\n" + "\n".join(missing))


def test_every_readme_command_uses_the_checkouts_interpreter():
    bare = [f"README.md:{c.line}: {c.words[:90]}" for c in readme_commands()
            if re.match(r"(\w+=\S+\s+)*(python3?|torchrun|pip)\b", c.words)]
    assert not bare, "use .venv/bin/python (the README's rule):\n" + "\n".join(bare)


def test_a_new_command_without_a_check_is_reported():
    text = "```bash\n.venv/bin/python tools/brand_new.py --x 1 \\\n    --y 2   # a comment\n```\n"
    (cmd,) = readme_commands(text)
    assert cmd.words == ".venv/bin/python tools/brand_new.py --x 1 --y 2" and entry_for(cmd) is None


# -- the sandbox ----------------------------------------------------------------------------------------------
VAL_SEQ = "dancetrack0004"


def _rename_sequence(split_dir: Path, old: str, new: str, det_db: Path) -> None:
    (split_dir / old).rename(split_dir / new)
    ini = split_dir / new / "seqinfo.ini"
    ini.write_text(ini.read_text().replace(old, new))
    for seqmap in split_dir.parent.glob("*seqmap*.txt"):
        seqmap.write_text(seqmap.read_text().replace(old, new))
    db = json.loads(det_db.read_text())
    det_db.write_text(json.dumps({k.replace(f"/{old}/", f"/{new}/"): v for k, v in db.items()}))


def _checkpoint(path: Path, argv: str) -> None:
    import torch
    from main import get_args_parser
    from models import build_model
    from util.standin_weights import make_state_dict
    args = get_args_parser().parse_args((REPO / "configs" / "motrv2.args").read_text().split() + argv.split())
    model, _, _ = build_model(args)
    torch.save({"model": make_state_dict(model.state_dict())}, path)


def _yolox_checkpoint(path: Path) -> None:
    import torch
    from models.yolox import build_yolox
    from util.standin_weights import make_state_dict
    with torch.device("meta"):
        model = build_yolox("yolox-x", 1)
    torch.save({"model": make_state_dict(model.state_dict())}, path)


def _video(frames: List[Path], path: Path) -> None:
    import cv2
    first = cv2.imread(str(frames[0]))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (first.shape[1], first.shape[0]))
    for f in frames:
        writer.write(cv2.imread(str(f)))
    writer.release()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    from datasets.synthetic import make_dataset
    w = tmp_path_factory.mktemp("clone")
    for item in REPO.iterdir():
        if item.name not in {".venv", "data", "outputs", "exps", "results", ".git"}:
            (w / item.name).symlink_to(item)
    venv = w / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
    (venv / "python").chmod(0o755)
    data = w / "data"
    tiny = dict(width=96, height=64, num_dancers=3)
    info = make_dataset(data, splits={"train": {"num_seqs": 1, "num_frames": 8}, "val": {"num_seqs": 1, "num_frames": 4},
                                      "test": {"num_seqs": 1, "num_frames": 3}},
                        seed=3, det_db_name="det_db_motrv2.json", **tiny)
    _rename_sequence(data / "DanceTrack" / "val", info["splits"]["val"]["sequences"][0], VAL_SEQ, info["det_db_path"])
    db = json.loads(info["det_db_path"].read_text())
    ch = data / "crowdhuman"
    (ch / "Images").mkdir(parents=True)
    shutil.copy(next((data / "DanceTrack" / "train").glob("*/img1/00000001.jpg")), ch / "Images" / "ch0.jpg")
    (ch / "annotation_trainval.odgt").write_text(json.dumps(
        {"ID": "ch0", "gtboxes": [{"fbox": [10, 5, 20, 40]}, {"fbox": [50, 10, 20, 40]}]}) + "\n")
    db["crowdhuman/train_image/ch0.txt"] = ["12.0,6.0,18.0,38.0,0.90\n"]
    info["det_db_path"].write_text(json.dumps(db))
    make_dataset(data, splits={"train": {"num_seqs": 1, "num_frames": 6}}, seed=4, layout="mot17",
                 det_db_name="det_db_mot17_unused.json", **tiny)
    make_dataset(data, splits={"val": {"num_seqs": 1, "num_frames": 4}}, seed=5, layout="sportsmot",
                 det_db_name="det_db_sportsmot.json", **tiny)
    for name in ("motrv2_dancetrack.pth", "motrv2_mot17.pth", "my_sportsmot_model.pth"):
        _checkpoint(w / name, NET)
    _yolox_checkpoint(w / "yolox_x.pth")
    os.link(w / "yolox_x.pth", w / "ocsort_dance_model.pth.tar")
    frames = sorted((data / "DanceTrack" / "val" / VAL_SEQ / "img1").glob("*.jpg"))
    (w / "my_video" / "img1").mkdir(parents=True)
    for f in frames:
        shutil.copy(f, w / "my_video" / "img1" / f.name)
    _video(frames, w / "my_video.mp4")
    shutil.copytree(data / "DanceTrack" / "val", w / "my_split", ignore=shutil.ignore_patterns("gt"))
    return w


def _env() -> Dict[str, str]:
    # PYTHON unset: the scripts' default, the sandbox's .venv/bin/python, is what the README promises
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "NUM_GPUS")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return env


@pytest.mark.slow
def test_readme_commands_run_as_written(sandbox):
    """Each README command, in order, in the sandbox; each one's check on what it wrote or printed."""
    failures = []
    for command in readme_commands():
        key = entry_for(command)
        assert key is not None, f"README.md:{command.line}: no check"
        if key in SKIPPED:
            continue
        check = CHECKS[key]
        text = command.text if "\n" in command.text else f"{command.text} {check.extra}"
        env = {**_env(), **check.env}
        proc = subprocess.run(["bash", "-c", text], cwd=sandbox, env=env, capture_output=True, text=True,
                              timeout=900)
        out = proc.stdout + proc.stderr
        try:
            assert proc.returncode == 0, f"exit {proc.returncode}:\n{out[-3000:]}"
            check.check(command.text, out, sandbox)
        except (AssertionError, OSError, ValueError) as exc:  # a file it should have written, unreadable
            failures.append(f"README.md:{command.line}: {command.words[:100]}\n  {exc}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_readme_python_api_runs_from_another_folder(sandbox, tmp_path):
    """The API snippet as one's own script, outside the checkout, run by the checkout's .venv/bin/python;
    the stand-in checkpoint's small network goes in as keywords (any submit_dance.py flag is one)."""
    code = python_api_block()
    small = ", ".join(f"{k.lstrip('-')}={v!r}" if not v.lstrip("-").isdigit() else f"{k.lstrip('-')}={v}"
                      for k, v in zip(NET.split()[::2], NET.split()[1::2]))
    assert 'device="auto")' in code
    code = code.replace('device="auto")', f'device="cpu", {small}, val_width=64, val_max_size=96)')
    mine = tmp_path / "my_code"
    mine.mkdir()
    for name in ("motrv2_dancetrack.pth", "my_video.mp4"):
        (mine / name).symlink_to(sandbox / name)
    script = ("import numpy as np\n"
              "def my_detector(frame):\n    return np.array([[10, 10, 40, 50, 0.9], [50, 8, 80, 60, 0.8]])\n"
              + code + "\nprint('ok', repr(tracker))\n")
    (mine / "mine.py").write_text(script)
    proc = subprocess.run([str(sandbox / ".venv" / "bin" / "python"), "mine.py"], cwd=mine, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ok" in proc.stdout


# -- promises of the README with a test of their own (quick) --------------------------------------------------
from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=50, deadline=None)
@given(prefix=st.lists(st.sampled_from(["data", "DanceTrack", "val", "mine", "x y"]), max_size=3),
       seq=st.sampled_from(["my_video", "dancetrack0004", "MOT17-02-FRCNN"]),
       number=st.integers(1, 99999), digits=st.integers(6, 8), other_digits=st.integers(6, 8))
def test_det_db_key_rule_same_sequence_and_frame_from_any_root(prefix, seq, number, digits, other_digits):
    """A key written from one root is found from another: same sequence folder and frame number."""
    from datasets.det_db import DetDB, find_key
    written = "/".join([*prefix, seq, "img1", f"{number:0{digits}d}.txt"])
    other = DetDB({written: ["1,2,3,4,0.5\n"], "/".join([*prefix, seq, "img1", f"{number + 1:08d}.txt"]): []})
    assert find_key(other, f"elsewhere/{seq}/img1/{number:0{other_digits}d}.txt") == written
    assert find_key(other, f"elsewhere/not_{seq}/img1/{number:08d}.txt") is None


def test_det_db_key_rule_refuses_an_ambiguous_frame():
    from datasets.det_db import DetDB, DetDBError, find_key
    db = DetDB({"a/s/img1/000001.txt": [], "b/s/img1/000001.txt": []})
    with pytest.raises(DetDBError, match="2 keys for that sequence and frame"):
        find_key(db, "c/s/img1/00000001.txt")


def test_missing_crowdhuman_is_one_line_naming_it_and_the_way_out(tmp_path):
    from datasets.synthetic import make_dataset
    make_dataset(tmp_path, splits={"train": 1}, seed=1, num_frames=5, width=96, height=64, num_dancers=2,
                 det_db_name="det_db_motrv2.json")
    cmd = [sys.executable, str(REPO / "main.py"), *(REPO / "configs" / "motrv2.args").read_text().split(),
           "--mot_path", str(tmp_path), "--output_dir", str(tmp_path / "exp"), *TRAIN.split()]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()[-1:]
    assert "crowdhuman" in line and "annotation_trainval.odgt" in line and "--no_append_crowd" in line


def test_no_append_crowd_undoes_the_configs_append_crowd():
    from main import get_args_parser
    argv = (REPO / "configs" / "motrv2.args").read_text().split()
    assert get_args_parser().parse_args(argv).append_crowd
    assert not get_args_parser().parse_args(argv + ["--no_append_crowd"]).append_crowd


def test_amp_fp16_is_refused_off_cuda_and_bf16_left_as_it_was():
    import torch
    from util.device import AmpError, autocast_context, check_amp
    with pytest.raises(AmpError, match="--amp fp16 needs a CUDA device"):
        check_amp(torch.device("cpu"), "fp16")
    check_amp(torch.device("cpu"), "bf16")
    with autocast_context(torch.device("cpu"), "off"):
        pass


def test_benchmark_on_cuda_without_a_gpu_is_one_line():
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "benchmark.py"), "--device", "cuda"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "no CUDA device" in proc.stderr
