"""Damaged checkpoints are refused before any weight reaches a model, naming the file and what is wrong."""
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from models.checkpoint import (CheckpointError, checksum_path, load_checkpoint, read_checkpoint, sha256_of,
                               write_checksum)
from models.yolox import load_yolox

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "weights" / "synthetic_small.pth"


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 4))


def saved(tmp_path, state, name="ckpt.pth"):
    path = tmp_path / name
    torch.save({"model": state}, path)
    return path


def flip_bytes_in_record(path: Path, name_suffix: str, count: int = 100) -> None:
    """Flip `count` bytes inside the stored data of the zip record whose name ends with `name_suffix`."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(name_suffix) and i.file_size >= count)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        start = info.header_offset + 30 + name_len + extra_len
        f.seek(start)
        data = bytearray(f.read(count))
        f.seek(start)
        f.write(bytes(b ^ 0xFF for b in data))


def test_the_shipped_weights_match_the_checksum_beside_them():
    sidecar = Path(checksum_path(str(SHIPPED)))
    assert sidecar.is_file(), "weights/synthetic_small.pth.sha256 is missing"
    assert sidecar.read_text().split()[0] == sha256_of(str(SHIPPED))


def test_flipped_bytes_fail_the_zip_crc(tmp_path):
    model = small_model()
    path = saved(tmp_path, model.state_dict())
    assert read_checkpoint(str(path))  # intact: reads
    flip_bytes_in_record(path, "data/0")
    with pytest.raises(CheckpointError, match=r"ckpt\.pth is damaged: record '.*data/0' fails its CRC"):
        read_checkpoint(str(path))
    with pytest.raises(CheckpointError, match="fails its CRC"):
        load_checkpoint(small_model(), str(path))


def test_a_checksum_beside_the_file_that_does_not_match_is_refused(tmp_path):
    path = saved(tmp_path, small_model().state_dict())
    write_checksum(str(path))
    read_checkpoint(str(path))
    torch.save({"model": small_model().state_dict(), "epoch": 3}, path)  # replaced, checksum now stale
    with pytest.raises(CheckpointError, match=r"does not match its checksum .*ckpt\.pth\.sha256"):
        read_checkpoint(str(path))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensors(tmp_path, bad):
    state = small_model().state_dict()
    state["1.weight"][2, 3] = bad
    state["0.bias"][:] = bad
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"non-finite weights .* 2 tensor\(s\): 0\.bias, 1\.weight"):
        load_checkpoint(model, str(saved(tmp_path, state)))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the model was changed"


@pytest.mark.parametrize("content", [b"", b"\x00" * 1000, b"not a checkpoint at all\n"])
def test_yolox_checkpoint_that_is_not_one_is_a_checkpoint_error(tmp_path, content):
    path = tmp_path / "yolox.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"yolox\.pth"):
        load_yolox(path, "cpu", name="yolox-s")


def test_yolox_truncated_checkpoint_is_a_checkpoint_error(tmp_path):
    path = saved(tmp_path, small_model().state_dict(), "yolox.pth")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"yolox\.pth"):
        load_yolox(path, "cpu", name="yolox-s")
