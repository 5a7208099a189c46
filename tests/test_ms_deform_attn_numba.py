"""The fused CPU kernel (models/ms_deform_attn_numba.py) agrees with the grid_sample reference, and
the exported backends' staged encoder with the network's own encoder."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from models import ms_deform_attn_numba as numba_attn
from models.ms_deform_attn import ms_deform_attn_reference
from tests.helpers import random_inputs

pytestmark = pytest.mark.skipif(not numba_attn.available(), reason="numba is not installed (requirements.txt)")


def sample(value, shapes, locations, logits):
    """The kernel at `locations` [N, Lq, M, L, P, 2] with softmax weights of `logits` [N, Lq, M, L, P]:
    zero references, offsets in pixels of each level."""
    n, lq = locations.shape[:2]
    size = torch.tensor([[w, h] for h, w in shapes], dtype=torch.float32)
    out = numba_attn.sample_from_offsets(value, shapes, torch.zeros(n, lq, len(shapes), 2),
                                         locations * size[None, None, None, :, None, :], logits)
    return torch.from_numpy(out).flatten(2)


def attention(logits):
    """The weights the kernel computes from `logits` [N, Lq, M, L, P]: softmax over a head's samples."""
    return logits.flatten(3).softmax(-1).view(logits.shape)


@st.composite
def cases(draw):
    shapes = draw(st.lists(st.tuples(st.integers(1, 9), st.integers(1, 9)), min_size=1, max_size=4))
    dims = dict(n=draw(st.integers(1, 2)), lq=draw(st.integers(0, 12)), m=draw(st.integers(1, 3)),
                d=draw(st.integers(1, 6)), p=draw(st.integers(1, 4)))
    low, high = draw(st.sampled_from([(0.0, 1.0), (-0.5, 1.5), (-3.0, 4.0)]))
    return shapes, dims, low, high, draw(st.integers(0, 2 ** 31 - 1))


@settings(max_examples=60, deadline=None)
@given(cases())
def test_kernel_matches_reference(case):
    shapes, dims, low, high, seed = case
    value, loc, logits = random_inputs(shapes, low=low, high=high, seed=seed, **dims)
    out = sample(value, shapes, loc, logits)
    assert out.shape == (dims["n"], dims["lq"], dims["m"] * dims["d"]) and out.dtype == torch.float32
    if dims["lq"]:
        assert (out - ms_deform_attn_reference(value, shapes, loc, attention(logits))).abs().max().item() <= 1e-5


@settings(max_examples=40, deadline=None)
@given(cases(), st.booleans())
def test_from_offsets_is_the_modules_locations_and_weights(case, sigmoid):
    """MSDeformAttn's locations (reference + offset / size) and softmax / sigmoid, done in the kernel."""
    shapes, dims, _, _, seed = case
    n, lq, m, d, p = (dims[k] for k in ("n", "lq", "m", "d", "p"))
    gen = torch.Generator().manual_seed(seed)
    value = torch.randn(n, sum(h * w for h, w in shapes), m, d, generator=gen)
    reference = torch.rand(n, lq, len(shapes), 2, generator=gen)
    offsets = torch.randn(n, lq, m, len(shapes), p, 2, generator=gen) * 3
    logits = torch.randn(n, lq, m, len(shapes) * p, generator=gen) * 2
    size = torch.tensor([[w, h] for h, w in shapes], dtype=torch.float32)
    locations = reference[:, :, None, :, None, :] + offsets / size[None, None, None, :, None, :]
    weights = (logits.sigmoid() if sigmoid else logits.softmax(-1)).view(n, lq, m, len(shapes), p)
    out = torch.from_numpy(numba_attn.sample_from_offsets(value, shapes, reference, offsets, logits, sigmoid))
    if lq:
        assert (out.flatten(2) - ms_deform_attn_reference(value, shapes, locations, weights)).abs().max().item() <= 2e-5


def test_far_and_infinite_points_sample_nothing():
    shapes = [(3, 4), (1, 1)]
    value, loc, logits = random_inputs(shapes, 1, 4, 2, 3, 2, 0.0, 1.0, seed=0)
    loc[0, 0], loc[0, 1], loc[0, 2] = 1e9, -float("inf"), float("inf")
    out = sample(value, shapes, loc, logits)
    assert out[0, :3].abs().max().item() == 0.0
    expected = ms_deform_attn_reference(value, shapes, loc[:, 3:], attention(logits[:, 3:]))[0, 0]
    assert (out[0, 3] - expected).abs().max() <= 1e-6


def test_bad_shapes_name_what_was_expected():
    shapes = [(3, 4)]
    value, loc, logits = random_inputs(shapes, 1, 4, 2, 3, 2, 0.0, 1.0, seed=0)
    with pytest.raises(ValueError, match="cover value's S=12"):
        sample(value, [(3, 5)], loc, logits)
    with pytest.raises(ValueError, match=r"\[N, Lq, M, L, P, 2\]"):
        numba_attn.sample_from_offsets(value, shapes, torch.zeros(1, 4, 1, 2), loc[..., :1], logits)
    with pytest.raises(ValueError, match="logits must be"):
        sample(value, shapes, loc, logits[..., :1])
    with pytest.raises(ValueError, match="reference_points must be"):
        numba_attn.sample_from_offsets(value, shapes, torch.rand(1, 4, 2), loc, logits)


def _bf16_bits(t: torch.Tensor):
    return t.to(torch.bfloat16).view(torch.int16).numpy().view("uint16")


def test_bf16_bits_in_and_out_are_the_float32_sampling_of_the_rounded_inputs():
    """What a bf16 runtime hands over (uint16 arrays of bf16 bits) is read exactly; the result, asked
    for as bf16 bits, is the float32 result rounded to nearest even."""
    shapes = [(5, 7), (3, 4)]
    gen = torch.Generator().manual_seed(3)
    value = torch.randn(1, 47, 2, 8, generator=gen)
    reference = torch.rand(1, 6, 2, 2, generator=gen)
    offsets = torch.randn(1, 6, 2, 2, 3, 2, generator=gen) * 2
    logits = torch.randn(1, 6, 2, 6, generator=gen)
    rounded = [t.to(torch.bfloat16).float().numpy() for t in (value, offsets, logits)]
    expected = numba_attn.sample_from_offsets(rounded[0], shapes, reference, rounded[1], rounded[2], False)
    got = numba_attn.sample_from_offsets(_bf16_bits(value), shapes, reference, _bf16_bits(offsets), _bf16_bits(logits),
                                         False)
    assert got.dtype == expected.dtype == "float32" and (got == expected).all()
    as_bits = numba_attn.sample_from_offsets(rounded[0], shapes, reference, rounded[1], rounded[2], False, bf16_out=True)
    assert as_bits.dtype == "uint16" and (as_bits == _bf16_bits(torch.from_numpy(expected))).all()
