"""submit_dance.py under bad input, interruptions and reruns.

Every error case checks the message (it names the file / sequence / frame / line at fault), the exit
code, and that nothing else changed on disk. A small random-weight MOTRv2 (resnet18, one encoder
layer) on 96x64 frames keeps the whole file fast; its box heads are randomised so that the written
boxes depend on the pixels (with the usual zero-initialised heads they would be the reference points).
"""
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import pytest
import torch

import submit_dance
from datasets.sequences import SequenceFrames, read_sequence
from models.checkpoint import CheckpointError, load_checkpoint
from tests.helpers import REPO, SMALL_MODEL_ARGV, motrv2_argv

SMALL = SMALL_MODEL_ARGV
# A zero score threshold writes every identified track: result files are never empty.
RUN = ["--val_width", "64", "--val_max_size", "128", "--device", "cpu", "--num_workers", "0",
       "--score_threshold", "0.0", "--update_score_threshold", "0.0", "--split", "val", "--exp_name", "run"]
W, H = 96, 64
BASE = {"dancetrack0001": 2, "dancetrack0002": 3, "dancetrack0003": 4}
# One thread everywhere: the machine is shared, and in-process and subprocess runs compute alike.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# -- data ---------------------------------------------------------------------------------------------
def frame_image(seq_no: int, frame: int) -> np.ndarray:
    """A BGR frame: noise with two bright 'dancers' that move with the frame number."""
    rng = np.random.default_rng([seq_no, frame])
    img = rng.integers(0, 200, (H, W, 3), dtype=np.uint8)
    cv2.rectangle(img, (10 + 5 * frame, 10), (40 + 5 * frame, 50), (255, 255, 255), -1)
    cv2.rectangle(img, (60, 5), (80, 35), (40, 200, 250), -1)
    return img


def det_lines(frame: int) -> List[str]:
    return [f"{10 + 5 * frame},10,30,40,0.9\n", "60,5,20,30,0.4\n"]


def seq_dir(root: Path, name: str) -> Path:
    return root / "DanceTrack" / "val" / name


def key(name: str, frame: int) -> str:
    return f"DanceTrack/val/{name}/img1/{frame:08d}.txt"


def write_seqinfo(root: Path, name: str, length: int, ext: str = ".jpg") -> None:
    (seq_dir(root, name) / "seqinfo.ini").write_text(
        f"[Sequence]\nname={name}\nimDir=img1\nframeRate=20\nseqLength={length}\n"
        f"imWidth={W}\nimHeight={H}\nimExt={ext}\n")


def write_split(root: Path, seqs: Dict[str, int]) -> Path:
    det_db = {}
    for seq_no, (name, n) in enumerate(seqs.items()):
        img_dir = seq_dir(root, name) / "img1"
        img_dir.mkdir(parents=True)
        write_seqinfo(root, name, n)
        for f in range(1, n + 1):
            assert cv2.imwrite(str(img_dir / f"{f:08d}.jpg"), frame_image(seq_no, f))
            det_db[key(name, f)] = det_lines(f)
    write_det_db(root, det_db)
    return root


def write_det_db(root: Path, det_db) -> None:
    (root / "det_db.json").write_text(json.dumps(det_db, indent=0))


def read_det_db(root: Path) -> Dict[str, List[str]]:
    return json.loads((root / "det_db.json").read_text())


def snapshot(folder: Path) -> Dict[str, tuple]:
    """Every file under `folder`: its bytes (or link target) and modification time."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(folder))] = ("->" + os.readlink(path), None)
        elif path.is_file():
            out[str(path.relative_to(folder))] = (path.read_bytes(), path.stat().st_mtime_ns)
    return out


def rows(text: bytes) -> List[List[str]]:
    return [line.split(",") for line in text.decode().splitlines()]


def check_well_formed(text: bytes, frames) -> None:
    lines = rows(text)
    assert lines, "a result file is empty: the test thresholds should write every track"
    for r in lines:
        assert len(r) == 10 and r[6:] == ["1", "-1", "-1", "-1"]
        assert int(r[0]) in frames and int(r[1]) >= 0 and float(r[4]) * float(r[5]) > 100


# -- running ------------------------------------------------------------------------------------------
@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    warnings: List[str]


def submit_argv(root: Path, out: Path, ckpt: Path, *extra: str) -> List[str]:
    return motrv2_argv(SMALL) + ["--resume", str(ckpt), "--mot_path", str(root), "--det_db", "det_db.json",
                                 "--output_dir", str(out), *RUN, *extra]


def submit(root: Path, out: Path, ckpt: Path, *extra: str) -> Result:
    """submit_dance.main in this process (no interpreter start-up); captures output and warnings."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = submit_dance.main(submit_argv(root, out, ckpt, *extra))
    return Result(code, stdout.getvalue(), stderr.getvalue(), [str(w.message) for w in caught])


def start_submit(root: Path, out: Path, ckpt: Path, log_dir: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, str(REPO / "submit_dance.py"), *submit_argv(root, out, ckpt, *extra)]
    # Output to files: a full pipe would stall the child.
    with open(log_dir / "stdout.txt", "w") as stdout, open(log_dir / "stderr.txt", "w") as stderr:
        return subprocess.Popen(cmd, cwd=str(REPO), env=SUBPROCESS_ENV, stdout=stdout, stderr=stderr)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_model(seed: int = 0):
    from main import get_args_parser
    from models import build_model
    torch.manual_seed(seed)
    model, _, _ = build_model(get_args_parser().parse_args(motrv2_argv(SMALL)))
    return model


@pytest.fixture(scope="module")
def state_dict():
    model = small_model()
    with torch.no_grad():
        for head in model.bbox_embed:  # boxes that depend on the image (see the module docstring)
            torch.nn.init.normal_(head.layers[-1].weight, std=0.1)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, state_dict):
    path = tmp_path_factory.mktemp("ckpt") / "small.pth"
    torch.save({"model": state_dict}, path)
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return write_split(tmp_path_factory.mktemp("base"), BASE)


@pytest.fixture(scope="module")
def reference(base, ckpt, tmp_path_factory):
    """Result bytes of an uninterrupted run on the base split, per sequence."""
    out = tmp_path_factory.mktemp("reference")
    res = submit(base, out, ckpt)
    assert res.code == 0, res.stderr
    results = {name: (out / "run" / f"{name}.txt").read_bytes() for name in BASE}
    for name, n in BASE.items():
        check_well_formed(results[name], range(1, n + 1))
    assert sorted(os.listdir(out / "run")) == [f"{n}.txt" for n in BASE]
    return results


@pytest.fixture
def clone(base, tmp_path):
    """A private copy of the base split to break."""
    return Path(shutil.copytree(base, tmp_path / "mot"))


def assert_failed_cleanly(res: Result, out: Path, before: Dict, *texts: str) -> None:
    assert res.code == 2, res.stderr
    assert res.stderr.count("error: ") == 1  # (after any progress bars)
    for text in texts:
        assert text in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    after = snapshot(out)
    for name, value in before.items():  # earlier results untouched
        assert after.get(name) == value, name
    assert not [n for n in after if os.path.basename(n).startswith(".tmp_")]


# -- images -------------------------------------------------------------------------------------------
def test_missing_image_names_the_file_and_keeps_finished_results(clone, ckpt, reference, tmp_path):
    missing = seq_dir(clone, "dancetrack0002") / "img1" / "00000002.jpg"
    missing.unlink()
    try:  # listed by the folder scan but not there: a dangling link into a moved dataset
        os.symlink(clone / "moved" / "00000002.jpg", missing)
    except (OSError, NotImplementedError):
        pytest.skip("no symlinks here")
    out = tmp_path / "out"
    (out / "run").mkdir(parents=True)
    (out / "run" / "dancetrack0003.txt").write_text("an earlier result\n")
    before, data_before = snapshot(out), snapshot(clone)
    res = submit(clone, out, ckpt)
    assert_failed_cleanly(res, out, before, f"image not found: {missing}")
    # Every image is looked at before the first frame: nothing was tracked, the earlier result is kept.
    assert sorted(os.listdir(out / "run")) == ["dancetrack0003.txt"]
    assert snapshot(clone) == data_before


@pytest.mark.parametrize("workers", ["0", "2"])
def test_corrupt_image_names_the_file(clone, ckpt, tmp_path, workers):
    corrupt = seq_dir(clone, "dancetrack0002") / "img1" / "00000002.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg " * 10)
    out = tmp_path / "out"
    res = submit(clone, out, ckpt, "--seqs", "dancetrack0002", "--num_workers", workers)
    # With workers the message is the worker's own, not wrapped in its traceback.
    assert_failed_cleanly(res, out, {}, f"cannot decode image (corrupt or unsupported): {corrupt}")
    assert "DataLoader worker" not in res.stderr
    assert os.listdir(out / "run") == []


def test_empty_sequence_names_its_folder_before_tracking_anything(clone, ckpt, tmp_path):
    (seq_dir(clone, "dancetrack0004") / "img1").mkdir(parents=True)
    out = tmp_path / "out"
    res = submit(clone, out, ckpt)
    assert_failed_cleanly(res, out, {}, f"sequence {seq_dir(clone, 'dancetrack0004')} has no images in img1/")
    assert os.listdir(out / "run") == []  # checked up front: no other sequence was tracked either


def test_missing_seqinfo_and_frame_gaps_warn_on_stderr(clone, base, ckpt, reference, tmp_path):
    (seq_dir(clone, "dancetrack0001") / "seqinfo.ini").unlink()
    (seq_dir(clone, "dancetrack0003") / "img1" / "00000003.jpg").unlink()  # frames 1, 2, 4
    out = tmp_path / "out"
    logs = tmp_path
    proc = start_submit(clone, out, ckpt, logs, "--seqs", "dancetrack0001", "dancetrack0003")
    assert proc.wait(timeout=300) == 0, (logs / "stderr.txt").read_text()
    stderr = (logs / "stderr.txt").read_text()
    assert f"{seq_dir(clone, 'dancetrack0001')}: no seqinfo.ini; inferred 2 frames of {W}x{H}" in stderr
    assert "frame numbers have gaps (missing [3])" in stderr
    assert "declares seqLength=4" in stderr and "holds 3 images" in stderr
    # The inferred seqinfo changes nothing.
    assert (out / "run" / "dancetrack0001.txt").read_bytes() == reference["dancetrack0001"]

    # The gapped sequence is tracked as the 3 frames it has, written under the file numbers.
    renumbered = Path(shutil.copytree(base, tmp_path / "renumbered"))
    img_dir = seq_dir(renumbered, "dancetrack0003") / "img1"
    (img_dir / "00000004.jpg").replace(img_dir / "00000003.jpg")
    write_seqinfo(renumbered, "dancetrack0003", 3)
    det_db = read_det_db(base)
    det_db[key("dancetrack0003", 3)] = det_db.pop(key("dancetrack0003", 4))
    write_det_db(renumbered, det_db)
    res = submit(renumbered, tmp_path / "out_renumbered", ckpt, "--seqs", "dancetrack0003")
    assert res.code == 0, res.stderr
    assert not res.warnings
    expected = [[("4" if r[0] == "3" else r[0])] + r[1:] for r in
                rows((tmp_path / "out_renumbered" / "run" / "dancetrack0003.txt").read_bytes())]
    got = rows((out / "run" / "dancetrack0003.txt").read_bytes())
    assert got == expected
    assert {int(r[0]) for r in got} == {1, 2, 4}


def write_png16(path: Path, img8: np.ndarray, rng) -> None:
    """16-bit version of an 8-bit image, with sub-step noise that rounds back to it."""
    img16 = img8.astype(np.int32) * 257 + rng.integers(-128, 129, img8.shape)
    assert cv2.imwrite(str(path), np.clip(img16, 0, 65535).astype(np.uint16))


def test_grayscale_16bit_and_alpha_images_track_as_their_8bit_rgb_equivalents(ckpt, tmp_path):
    root = tmp_path / "formats"
    rng = np.random.default_rng(5)
    color = frame_image(7, 1)
    gray = cv2.cvtColor(color, cv2.COLOR_BGR2GRAY)
    images = {}

    def add(name, ext, write):
        img_dir = seq_dir(root, name) / "img1"
        img_dir.mkdir(parents=True)
        write(img_dir / f"00000001{ext}")
        images[name] = img_dir / f"00000001{ext}"

    add("c_rgb8", ".png", lambda p: cv2.imwrite(str(p), color))
    add("c_rgb16", ".png", lambda p: write_png16(p, color, rng))
    add("c_bgra", ".png", lambda p: cv2.imwrite(str(p), np.dstack([color, rng.integers(0, 256, (H, W), np.uint8)])))
    add("g_rgb8", ".png", lambda p: cv2.imwrite(str(p), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)))
    add("g_gray8", ".png", lambda p: cv2.imwrite(str(p), gray))
    add("g_gray16", ".png", lambda p: write_png16(p, gray, rng))
    add("j_gray", ".jpg", lambda p: cv2.imwrite(str(p), gray))  # a one-channel JPEG
    decoded = cv2.imread(str(images["j_gray"]), cv2.IMREAD_UNCHANGED)
    assert decoded.ndim == 2 and decoded.dtype == np.uint8
    add("j_rgb8", ".png", lambda p: cv2.imwrite(str(p), cv2.cvtColor(decoded, cv2.COLOR_GRAY2BGR)))
    assert cv2.imread(str(images["g_gray16"]), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert cv2.imread(str(images["c_bgra"]), cv2.IMREAD_UNCHANGED).shape == (H, W, 4)
    write_det_db(root, {key(name, 1): det_lines(1) for name in images})

    res = submit(root, tmp_path / "out", ckpt, "--seqs", *images)  # no seqinfo.ini: inferred
    assert res.code == 0, res.stderr
    out = {name: (tmp_path / "out" / "run" / f"{name}.txt").read_bytes() for name in images}
    for text in out.values():
        check_well_formed(text, {1})
    assert out["c_rgb16"] == out["c_bgra"] == out["c_rgb8"]
    assert out["g_gray8"] == out["g_gray16"] == out["g_rgb8"]
    assert out["j_gray"] == out["j_rgb8"]
    assert out["c_rgb8"] != out["g_rgb8"]  # the boxes do depend on the pixels: the checks above can fail


# -- det_db -------------------------------------------------------------------------------------------
def test_missing_frame_key_fails_before_tracking_or_tracks_without_proposals(clone, base, ckpt, reference,
                                                                             tmp_path):
    det_db = read_det_db(base)
    del det_db[key("dancetrack0002", 2)]
    write_det_db(clone, det_db)
    out = tmp_path / "out"
    res = submit(clone, out, ckpt)
    assert_failed_cleanly(res, out, {}, str(clone / "det_db.json"), "no entry for 1 of the 3 frames",
                          repr(key("dancetrack0002", 2)), "--missing_detections empty")
    assert os.listdir(out / "run") == []  # found before dancetrack0001 was tracked

    res = submit(clone, out, ckpt, "--seqs", "dancetrack0002", "--missing_detections", "empty")
    assert res.code == 0, res.stderr
    seq = read_sequence(str(clone), "DanceTrack/val/dancetrack0002")
    frames = SequenceFrames(str(clone), seq, read_det_db(clone), "empty")
    assert frames[1]["proposals"].shape == (0, 5) and frames[0]["proposals"].shape == (2, 5)
    # Same as a det_db that lists the frame with no detections, and not the same as with them.
    det_db[key("dancetrack0002", 2)] = []
    write_det_db(clone, det_db)
    res = submit(clone, tmp_path / "out_empty_list", ckpt, "--seqs", "dancetrack0002")
    assert res.code == 0, res.stderr
    empty = (out / "run" / "dancetrack0002.txt").read_bytes()
    assert empty == (tmp_path / "out_empty_list" / "run" / "dancetrack0002.txt").read_bytes()
    assert empty != reference["dancetrack0002"]
    check_well_formed(empty, {1, 2, 3})


def test_malformed_det_db_line_names_key_and_line(clone, base, ckpt, tmp_path):
    det_db = read_det_db(base)
    det_db[key("dancetrack0002", 3)] = ["1,2,3,4,0.5\n", "1,2,3\n"]
    write_det_db(clone, det_db)
    out = tmp_path / "out"
    res = submit(clone, out, ckpt, "--seqs", "dancetrack0002")
    assert_failed_cleanly(res, out, {}, f"det_db key {key('dancetrack0002', 3)!r}, line 2:", "'1,2,3\\n'")
    assert os.listdir(out / "run") == []


def test_invalid_json_names_file_and_line(clone, ckpt, tmp_path):
    lines = (clone / "det_db.json").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line == "],")
    lines[at] = "]"  # a missing comma: the parser stops at the next line's key
    (clone / "det_db.json").write_text("\n".join(lines))
    out = tmp_path / "out"
    res = submit(clone, out, ckpt)
    assert_failed_cleanly(res, out, {}, f"{clone / 'det_db.json'}:{at + 2}: not valid JSON")
    assert os.listdir(out / "run") == []


def test_windows_separators_in_det_db_keys_give_the_same_results(clone, base, ckpt, reference, tmp_path):
    write_det_db(clone, {k.replace("/", "\\"): v for k, v in read_det_db(base).items()})
    assert "\\" in (clone / "det_db.json").read_text()
    res = submit(clone, tmp_path / "out", ckpt, "--seqs", "dancetrack0001")
    assert res.code == 0, res.stderr
    assert (tmp_path / "out" / "run" / "dancetrack0001.txt").read_bytes() == reference["dancetrack0001"]


# -- checkpoints ----------------------------------------------------------------------------------------
def test_wrong_architecture_lists_the_mismatched_keys(base, ckpt, tmp_path):
    out = tmp_path / "out"
    res = submit(base, out, ckpt, "--backbone", "resnet50")  # a resnet18 checkpoint
    assert_failed_cleanly(res, out, {}, f"checkpoint {ckpt} does not fit the model", "missing from the checkpoint",
                          "backbone.0.body.layer1.0.conv3.weight",  # bottleneck blocks have a third conv
                          "shape mismatch", "input_proj.0.0.weight: checkpoint (64, 128, 1, 1) vs model "
                          "(64, 512, 1, 1)")
    assert "unexpected in the checkpoint" not in res.stderr
    assert os.listdir(out / "run") == []


def test_truncated_checkpoint_names_the_file(base, ckpt, tmp_path):
    truncated = tmp_path / "truncated.pth"
    data = ckpt.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    res = submit(base, out, ckpt, "--resume", str(truncated))
    assert_failed_cleanly(res, out, {}, f"cannot read checkpoint {truncated} ({len(data) // 2} bytes)",
                          "truncated")
    assert os.listdir(out / "run") == []


def batchnorm_counters() -> Dict[str, torch.Tensor]:
    """The `num_batches_tracked` entries a torchvision resnet18 with regular BatchNorm2d saves,
    under our backbone's key prefix."""
    import torchvision
    return {f"backbone.0.body.{k}": v for k, v in torchvision.models.resnet18().state_dict().items()
            if k.endswith("num_batches_tracked") and not k.startswith("fc.")}


def checkpoint_variants(sd):
    ddp = {f"module.{k}": v for k, v in sd.items()}
    counters = batchnorm_counters()
    return {"model_dict": {"model": sd}, "bare": sd, "ddp_in_model": {"model": ddp}, "ddp_bare": ddp,
            "state_dict_key": {"state_dict": sd, "epoch": 3},
            "batchnorm_counters": {"model": {**sd, **counters}},
            "ddp_bare_with_counters": {f"module.{k}": v for k, v in {**sd, **counters}.items()}}


def test_checkpoint_layouts_all_load_the_same_weights(state_dict, tmp_path):
    model = small_model(seed=1)
    assert len(batchnorm_counters()) == 20
    assert all(k in dict(model.named_modules()) for k in
               (c.rsplit(".", 1)[0] for c in batchnorm_counters()))  # they belong to our backbone's norms
    zeros = {k: torch.zeros_like(v) for k, v in state_dict.items()}
    for name, checkpoint in checkpoint_variants(state_dict).items():
        path = tmp_path / f"{name}.pth"
        torch.save(checkpoint, path)
        model.load_state_dict(zeros)
        load_checkpoint(model, str(path))
        loaded = model.state_dict()
        assert loaded.keys() == state_dict.keys(), name
        assert all(torch.equal(loaded[k], v) for k, v in state_dict.items()), name


def test_batchnorm_counters_do_not_hide_a_real_mismatch(state_dict):
    model = small_model(seed=1)
    bad = {**state_dict, **batchnorm_counters(), "transformer.extra.weight": torch.zeros(2)}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(model, {"model": bad})
    assert "unexpected in the checkpoint (1)" in str(info.value) and "transformer.extra.weight" in str(info.value)
    assert "num_batches_tracked" not in str(info.value)


def test_ddp_checkpoint_with_counters_tracks_the_same(base, state_dict, reference, tmp_path):
    path = tmp_path / "ddp.pth"
    torch.save(checkpoint_variants(state_dict)["ddp_bare_with_counters"], path)
    res = submit(base, tmp_path / "out", path, "--seqs", "dancetrack0001")
    assert res.code == 0, res.stderr
    assert (tmp_path / "out" / "run" / "dancetrack0001.txt").read_bytes() == reference["dancetrack0001"]


# -- interruptions and reruns ---------------------------------------------------------------------------
def result_files(folder: Path) -> List[str]:
    return sorted(f for f in os.listdir(folder) if f.endswith(".txt") and not f.startswith(".")) \
        if folder.is_dir() else []


@pytest.mark.slow  # runs, kills and resumes a tracking subprocess
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_run_keeps_whole_files_and_resumes_to_identical_results(base, ckpt, reference, tmp_path,
                                                                           sig):
    out = tmp_path / "out"
    proc = start_submit(base, out, ckpt, tmp_path)
    deadline = time.monotonic() + 300
    while proc.poll() is None and not result_files(out / "run"):  # the first sequence is done
        assert time.monotonic() < deadline, "submit_dance.py wrote nothing in 300 s"
        time.sleep(0.005)
    proc.send_signal(sig)
    code = proc.wait(timeout=120)
    stderr = (tmp_path / "stderr.txt").read_text()
    assert code == (130 if sig == signal.SIGINT else -signal.SIGKILL), stderr
    if sig == signal.SIGINT:
        assert "interrupted: finished sequences are kept" in stderr and "Traceback" not in stderr

    finished = result_files(out / "run")
    assert 1 <= len(finished) < len(BASE), "the run was not interrupted midway"
    for name in finished:  # whole files only: each is exactly what an uninterrupted run writes
        assert (out / "run" / name).read_bytes() == reference[name[:-4]]
    temps = [f for f in os.listdir(out / "run") if f.startswith(".tmp_")]
    assert sig == signal.SIGKILL or not temps  # SIGINT removes its temporary file itself
    unfinished = sorted(set(BASE) - {n[:-4] for n in finished})
    stale = out / "run" / f".tmp_{unfinished[-1]}.txt.x1y2z3.txt"
    if sig == signal.SIGKILL:  # what a kill in the middle of a write leaves
        stale.write_text("1,0,10.00,10.")
    (out / "run" / "notes.md").write_text("not ours\n")
    before = snapshot(out / "run")

    res = submit(base, out, ckpt)
    assert res.code == 0, res.stderr
    assert f"skipping {len(finished)} finished sequence(s)" in res.stdout
    after = snapshot(out / "run")
    for name in finished + ["notes.md"]:
        assert after[name] == before[name], name  # neither rewritten nor touched
    assert sorted(after) == sorted([f"{n}.txt" for n in BASE] + ["notes.md"])  # stale temporaries removed
    if sig == signal.SIGKILL:
        assert "removed" in res.stdout and "temporary file(s)" in res.stdout
    for name in BASE:
        assert after[f"{name}.txt"][0] == reference[name], name


def test_same_inputs_give_byte_identical_results_with_and_without_workers(base, ckpt, reference, tmp_path):
    for workers in ("0", "2"):
        res = submit(base, tmp_path / workers, ckpt, "--num_workers", workers)
        assert res.code == 0, res.stderr
        for name in BASE:
            assert (tmp_path / workers / "run" / f"{name}.txt").read_bytes() == reference[name], (workers, name)
