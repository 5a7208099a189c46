"""submit_dance.py end to end on a generated DanceTrack-format folder, with the stand-in weights."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import REPO, motrv2_argv, motrv2_standin_state_dict

SEQS = {"dancetrack0001": 4, "dancetrack0002": 3}
W, H = 96, 64
# Each test runs submit_dance.py with the full-size MOTRv2 in subprocesses: 10-50 s apiece on 2 cores.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mot")
    rng = np.random.default_rng(0)
    det_db = {}
    for seq, n in SEQS.items():
        img_dir = root / "DanceTrack" / "val" / seq / "img1"
        img_dir.mkdir(parents=True)
        (img_dir.parent / "seqinfo.ini").write_text(
            f"[Sequence]\nname={seq}\nimDir=img1\nframeRate=20\nseqLength={n}\nimWidth={W}\nimHeight={H}\nimExt=.jpg\n")
        for f in range(1, n + 1):
            img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
            cv2.rectangle(img, (10 + 5 * f, 10), (40 + 5 * f, 50), (255, 255, 255), -1)
            cv2.imwrite(str(img_dir / f"{f:08d}.jpg"), img)
            key = f"DanceTrack/val/{seq}/img1/{f:08d}.txt"
            det_db[key] = [f"{10 + 5 * f},10,30,40,0.9\n", "60,5,20,30,0.4\n"]
    (root / "det_db.json").write_text(json.dumps(det_db))
    ckpt = root / "standin.pth"
    torch.save({"model": motrv2_standin_state_dict()}, ckpt)
    return root, ckpt


def run_submit(root, ckpt, out, *extra):
    cmd = [sys.executable, str(REPO / "submit_dance.py"), *motrv2_argv(),
           "--resume", str(ckpt), "--mot_path", str(root), "--det_db", "det_db.json",
           "--output_dir", str(out), "--exp_name", "run", "--split", "val", "--device", "cpu",
           "--score_threshold", "0.3", "--update_score_threshold", "0.3",
           "--val_width", "64", "--val_max_size", "128", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO), timeout=600)


def read_lines(path):
    return [line.split(",") for line in path.read_text().splitlines()]


def test_writes_one_well_formed_file_per_sequence(data, tmp_path):
    root, ckpt = data
    proc = run_submit(root, ckpt, tmp_path, "--num_workers", "1", "--score_threshold", "0.05")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "run"
    assert sorted(os.listdir(out)) == [f"{s}.txt" for s in sorted(SEQS)]  # and no temporary files
    total = 0
    for seq, n in SEQS.items():
        rows = read_lines(out / f"{seq}.txt")
        total += len(rows)
        for r in rows:
            assert len(r) == 10 and r[6:] == ["1", "-1", "-1", "-1"]
            frame, track_id = int(r[0]), int(r[1])
            x, y, w, h = map(float, r[2:6])
            assert 1 <= frame <= n and track_id >= 0 and w > 0 and h > 0 and w * h > 100
        frames = [int(r[0]) for r in rows]
        assert frames == sorted(frames)
        for f in set(frames):  # ids unique per frame
            ids = [r[1] for r in rows if int(r[0]) == f]
            assert len(ids) == len(set(ids))
    assert total > 0


def test_resumes_skips_finished_and_overwrite_redoes(data, tmp_path):
    root, ckpt = data
    assert run_submit(root, ckpt, tmp_path, "--num_workers", "0", "--seqs", "dancetrack0001").returncode == 0
    first = (tmp_path / "run" / "dancetrack0001.txt").read_bytes()
    marker = tmp_path / "run" / "dancetrack0001.txt"
    marker.write_text("kept\n")
    proc = run_submit(root, ckpt, tmp_path, "--num_workers", "0")
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text() == "kept\n"  # finished sequence skipped
    assert (tmp_path / "run" / "dancetrack0002.txt").exists()
    proc = run_submit(root, ckpt, tmp_path, "--num_workers", "0", "--overwrite", "--seqs", "dancetrack0001")
    assert proc.returncode == 0, proc.stderr
    assert marker.read_bytes() == first  # and deterministic: the same bytes as the first run


def test_bad_checkpoint_lists_keys_and_exits_nonzero(data, tmp_path):
    root, _ = data
    state = motrv2_standin_state_dict()
    state.pop("query_embed.weight")
    state["extra.weight"] = torch.zeros(1)
    state["position.weight"] = torch.zeros(11, 4)
    bad = tmp_path / "bad.pth"
    torch.save({"model": state}, bad)
    proc = run_submit(root, bad, tmp_path, "--num_workers", "0")
    assert proc.returncode == 2
    for text in ("missing from the checkpoint (1)", "query_embed.weight", "unexpected in the checkpoint (1)",
                 "extra.weight", "position.weight: checkpoint (11, 4) vs model (10, 4)"):
        assert text in proc.stderr
    assert not (tmp_path / "run").exists() or not os.listdir(tmp_path / "run")
