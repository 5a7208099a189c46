"""util/standin_weights: the stand-in weights every parity fixture was made with.

A change to the rule would break every parity test at once, with a mismatch that points nowhere;
these checksums of the whole generated state dicts fail by name instead.
"""
import hashlib

import pytest
import torch

from tests.helpers import PARITY
from util.standin_weights import load_manifest, make_state_dict, make_tensor

# sha256 over, per tensor in manifest order: name, shape, dtype, then the tensor's bytes.
CHECKSUMS = {
    "motrv2_state_dict.json": "31a39923fb817683c66ee8655336b6afa4deeb9062d178dcc9e05137a260fbcd",
    "yolox_x_state_dict.json": "0a630c0799d16d58f4629c87be2c71f3dbdbfd4698931df467144ce21affea67",
}


def state_dict_sha256(state):
    h = hashlib.sha256()
    for name, t in state.items():
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}\n".encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("manifest", sorted(CHECKSUMS))
def test_generated_state_dict_checksum(manifest):
    entries = load_manifest(PARITY / manifest)
    state = make_state_dict(entries)
    assert [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in state.items()] == entries
    assert state_dict_sha256(state) == CHECKSUMS[manifest]


def test_state_dict_from_a_module_equals_from_its_manifest():
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    from_module = make_state_dict(module.state_dict())
    manifest = [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in module.state_dict().items()]
    from_manifest = make_state_dict(manifest)
    assert list(from_module) == list(from_manifest)
    assert all(torch.equal(from_module[k], from_manifest[k]) for k in from_module)
    module.load_state_dict(from_module, strict=True)


def test_tensor_depends_on_its_name_only():
    a = make_tensor("layer.weight", (8, 4))
    assert torch.equal(a, make_tensor("layer.weight", [8, 4], torch.float32))
    assert not torch.equal(a, make_tensor("other.weight", (8, 4)))
    assert make_tensor("layer.weight", (8, 4), "float64").dtype == torch.float64


def test_ranges_by_kind():
    var = make_tensor("bn.running_var", (1000,))
    assert var.min() > 0.5 and var.max() < 1.0
    assert make_tensor("bn.running_mean", (1000,)).abs().max() <= 0.1
    boxes = make_tensor("query.position.weight", (300, 4))
    assert boxes.min() > 0.05 and boxes.max() < 0.95
    scale = make_tensor("norm.weight", (1000,))
    assert (scale - 1).abs().max() <= 0.1
    assert make_tensor("norm.bias", (1000,)).abs().max() <= 0.1
    fan_in = 4 * 3 * 3
    conv = make_tensor("conv.weight", (16, 4, 3, 3))
    assert conv.abs().max() <= (3 / fan_in) ** 0.5
    cls = make_tensor("class_embed.0.weight", (1, 256))
    assert cls.abs().max() > (3 / 256) ** 0.5  # wider than the plain rule
    assert torch.equal(make_tensor("bn.num_batches_tracked", (), "int64"), torch.zeros((), dtype=torch.int64))
