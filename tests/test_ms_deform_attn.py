"""The fast multi-scale deformable attention agrees with the grid_sample reference."""
import copy
import importlib.util
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

from models import ms_deform_attn_ops as ops
from models.ms_deform_attn import MSDeformAttn, ms_deform_attn, ms_deform_attn_reference
from models.ms_deform_attn_ops import ms_deform_attn_fast, ms_deform_attn_gather
from tests.helpers import random_inputs

REPO = Path(__file__).resolve().parents[1]
HAS_CUDA = torch.cuda.is_available()


def level_starts(shapes):
    starts, total = [], 0
    for h, w in shapes:
        starts.append(total)
        total += h * w
    return starts


@st.composite
def attention_cases(draw):
    shapes = draw(st.lists(st.tuples(st.integers(1, 9), st.integers(1, 9)), min_size=1, max_size=4))
    dims = dict(n=draw(st.integers(1, 2)), lq=draw(st.integers(0, 12)), m=draw(st.integers(1, 3)),
                d=draw(st.integers(1, 6)), p=draw(st.integers(1, 4)))
    spread = draw(st.sampled_from([(0.0, 1.0), (-0.5, 1.5), (-3.0, 4.0)]))
    snap = draw(st.booleans())  # put points exactly on pixel centres / edges
    chunk = draw(st.sampled_from([None, 1, 7, 64]))
    return shapes, dims, spread, snap, chunk, draw(st.integers(0, 2 ** 31 - 1))


@settings(max_examples=80, deadline=None)
@given(attention_cases())
def test_gather_matches_reference(case):
    shapes, dims, (low, high), snap, chunk, seed = case
    value, loc, weights = random_inputs(shapes, low=low, high=high, seed=seed, **dims)
    if snap:  # multiples of half a pixel of the finest level: centres, edges, the borders 0 and 1
        w_max, h_max = max(w for _, w in shapes), max(h for h, _ in shapes)
        loc[..., 0] = (loc[..., 0] * 2 * w_max).round() / (2 * w_max)
        loc[..., 1] = (loc[..., 1] * 2 * h_max).round() / (2 * h_max)
    out = ms_deform_attn_gather(value, shapes, level_starts(shapes), loc, weights, samples_per_chunk=chunk)
    assert out.shape == (dims["n"], dims["lq"], dims["m"] * dims["d"])
    if dims["lq"]:
        ref = ms_deform_attn_reference(value, shapes, loc, weights)
        assert (out - ref).abs().max().item() <= 1e-5


def test_borders_far_points_and_single_pixel_levels():
    shapes = [(3, 4), (1, 1), (2, 5)]
    value, loc, weights = random_inputs(shapes, n=1, lq=8, m=2, d=3, p=3)
    loc[0, 0] = 0.0                 # left/top border: half of the corner pixel
    loc[0, 1] = 1.0                 # right/bottom border
    loc[0, 2] = 1e9                 # far outside: nothing
    loc[0, 3] = -1e9
    loc[0, 4, ..., 0] = 0.5         # centre column of every level
    loc[0, 5] = -0.5 / 4            # exactly one pixel outside the finest level
    ref = ms_deform_attn_reference(value, shapes, loc, weights)
    out = ms_deform_attn_gather(value, shapes, None, loc, weights)
    assert (out - ref).abs().max().item() <= 1e-5
    assert out[0, 2].abs().max().item() == 0.0 and out[0, 3].abs().max().item() == 0.0
    # infinite locations are outside too (the reference's grid_sample returns NaN there)
    loc[0, 2], loc[0, 3, ..., 0] = float("inf"), -float("inf")
    out_inf = ms_deform_attn_gather(value, shapes, None, loc, weights)
    assert out_inf[0, 2:4].abs().max().item() == 0.0
    assert torch.equal(out_inf[0, 4:], out[0, 4:])
    # a 1x1 map sampled at its centre returns that pixel, whatever the other levels hold
    one = torch.zeros_like(loc[:, :1])
    one[..., 1, :, :] = 0.5
    w = torch.zeros_like(weights[:, :1])
    w[..., 1, 0] = 1.0
    single = ms_deform_attn_gather(value, shapes, None, one, w).view(1, 2, 3)
    assert torch.allclose(single[0], value[0, 12], atol=1e-6)


def test_empty_queries_and_dispatch():
    shapes = [(4, 4), (2, 2)]
    value, loc, weights = random_inputs(shapes, lq=0)
    for fn in (ms_deform_attn_fast, ms_deform_attn):
        out = fn(value, shapes, level_starts(shapes), loc, weights)
        assert out.shape == (2, 0, 12) and out.dtype == value.dtype
    value, loc, weights = random_inputs(shapes, lq=6, seed=3)
    ref = ms_deform_attn_reference(value, shapes, loc, weights)
    for starts in (level_starts(shapes), torch.tensor(level_starts(shapes)), None):
        assert (ms_deform_attn(value, shapes, starts, loc, weights) - ref).abs().max().item() <= 1e-5
    # spatial_shapes as a tensor (upstream style) also works
    shape_tensor = torch.tensor(shapes)
    assert (ms_deform_attn_fast(value, shape_tensor, None, loc, weights) - ref).abs().max().item() <= 1e-5


def test_bad_arguments_name_the_problem():
    shapes = [(4, 4), (2, 2)]
    value, loc, weights = random_inputs(shapes)
    with pytest.raises(ValueError, match="level_start_index"):
        ms_deform_attn_fast(value, shapes, [0, 15], loc, weights)
    with pytest.raises(ValueError, match="cover 17 tokens"):
        ms_deform_attn_fast(value, [(4, 4), (1, 1)], None, loc, weights)
    with pytest.raises(ValueError, match="attention_weights"):
        ms_deform_attn_fast(value, shapes, None, loc, weights[..., :1])


def test_cpu_worker_threads_agree_and_leave_thread_count_alone():
    shapes = [(9, 11), (5, 6), (1, 1)]
    value, loc, weights = random_inputs(shapes, n=2, lq=40, m=4, d=8, p=3, seed=8)
    ref = ms_deform_attn_reference(value, shapes, loc, weights)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)  # 3 workers (a new pool), 14 chunks
        with torch.inference_mode():
            out = ms_deform_attn_gather(value, shapes, None, loc, weights, samples_per_chunk=2 * 4 * 9 * 3)
        assert torch.get_num_threads() == 3
        assert any(key[1] == 3 for key in ops._worker_pools)
    finally:
        torch.set_num_threads(before)
    assert (out - ref).abs().max().item() <= 1e-5


def test_int64_indices_when_rows_exceed_int32(monkeypatch):
    shapes = [(5, 6), (3, 2)]
    value, loc, weights = random_inputs(shapes, seed=5)
    ref = ms_deform_attn_reference(value, shapes, loc, weights)
    monkeypatch.setattr(ops, "_INT32_ROWS", 10)
    assert (ms_deform_attn_gather(value, shapes, None, loc, weights) - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("chunk", [None, 5])
def test_gradients_match_reference(chunk):
    shapes = [(5, 6), (3, 2), (1, 1)]
    inputs = random_inputs(shapes, n=2, lq=7, m=2, d=3, p=2, dtype=torch.float64, seed=11)
    grads = []
    for fn in (lambda *a: ms_deform_attn_reference(a[0], shapes, a[1], a[2]),
               lambda *a: ms_deform_attn_gather(a[0], shapes, None, a[1], a[2], samples_per_chunk=chunk)):
        leaves = [t.clone().requires_grad_(True) for t in inputs]
        out = fn(*leaves)
        upstream = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
        grads.append(torch.autograd.grad((out * upstream).sum(), leaves))
    for name, g_ref, g_fast in zip(("value", "locations", "weights"), *grads):
        assert g_ref.abs().max() > 0, name
        assert torch.allclose(g_fast, g_ref, atol=1e-10, rtol=1e-8), name


def test_gradcheck_tiny():
    shapes = [(3, 2), (1, 2)]
    value, loc, weights = random_inputs(shapes, n=1, lq=2, m=2, d=2, p=2, low=0.05, high=0.95,
                                        dtype=torch.float64, seed=2)
    leaves = tuple(t.requires_grad_(True) for t in (value, loc, weights))
    assert torch.autograd.gradcheck(lambda v, l, w: ms_deform_attn_gather(v, shapes, None, l, w), leaves,
                                    eps=1e-6, atol=1e-6)


def test_module_auto_equals_reference_with_grad():
    torch.manual_seed(0)
    shapes = [(6, 8), (3, 4)]
    module = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=2)
    with torch.no_grad():  # non-trivial offsets and weights
        for lin in (module.sampling_offsets, module.attention_weights):
            lin.weight.normal_(0, 0.3)
    s = sum(h * w for h, w in shapes)
    query, feats = torch.randn(2, 9, 32), torch.randn(2, s, 32)
    ref_points = torch.rand(2, 9, 2, 2)
    outs, grads = [], []
    for impl in ("reference", "auto"):
        module.implementation = impl
        module.zero_grad()
        out = module(query, ref_points, feats, shapes, torch.tensor(level_starts(shapes)))
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append(module.sampling_offsets.weight.grad.clone())
    assert (outs[0] - outs[1]).abs().max().item() <= 1e-5
    assert grads[0].abs().max() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-4, rtol=1e-4)


@st.composite
def projection_cases(draw):
    shapes = draw(st.lists(st.tuples(st.integers(1, 7), st.integers(1, 7)), min_size=1, max_size=3))
    return dict(shapes=shapes, n=draw(st.integers(1, 2)), lq=draw(st.integers(0, 9)), heads=draw(st.integers(1, 4)),
                head_dim=draw(st.integers(1, 5)), points=draw(st.integers(1, 3)), boxes=draw(st.booleans()),
                sigmoid=draw(st.booleans()), padded=draw(st.booleans()),
                implementation=draw(st.sampled_from(["auto", "reference", "export"])),
                seed=draw(st.integers(0, 2 ** 31 - 1)))


@settings(max_examples=60, deadline=None)
@given(projection_cases())
def test_projecting_the_samples_is_sampling_the_value_table(case):
    """The decoder's order (sample the features, project the samples) against the encoder's (project
    every token, sample the table), in float64: the same outputs and gradients for any level layout,
    boxes or points reaching past the map (zero padding drops a corner's bias too), padding, and
    every implementation."""
    shapes, heads, implementation = case["shapes"], case["heads"], case["implementation"]
    c, n_levels, n, lq = heads * case["head_dim"], len(shapes), case["n"], case["lq"]
    g = torch.Generator().manual_seed(case["seed"])
    late = MSDeformAttn(c, n_levels, heads, case["points"], sigmoid_attn=case["sigmoid"], project_after_sampling=True)
    with torch.no_grad():
        for param in late.parameters():  # biases too: the value projection's must be weighed right
            param.copy_(torch.randn(param.shape, generator=g))
    early = copy.deepcopy(late)
    early.project_after_sampling = False
    s = sum(h * w for h, w in shapes)
    query = torch.randn(n, lq, c, generator=g, dtype=torch.float64, requires_grad=True)
    feats = torch.randn(n, s, c, generator=g, dtype=torch.float64, requires_grad=True)
    ref = torch.rand(n, lq, n_levels, 4 if case["boxes"] else 2, generator=g, dtype=torch.float64) * 1.4 - 0.2
    mask = (torch.rand(n, s, generator=g) < 0.3) if case["padded"] else None
    spatial = torch.tensor(shapes) if implementation == "export" else shapes
    results = []
    for module in (late.double(), early.double()):
        module.implementation = implementation
        out = module(query, ref, feats, spatial, level_starts(shapes), mask)
        grads = torch.autograd.grad(out.sum(), [query, feats, module.value_proj.weight, module.value_proj.bias],
                                    allow_unused=True) if lq else ()
        results.append((out.detach(), grads))
    (out_late, grads_late), (out_early, grads_early) = results
    assert out_late.shape == (n, lq, c)
    assert torch.allclose(out_late, out_early, rtol=1e-9, atol=1e-9)
    for a, b in zip(grads_late, grads_early):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-9)


def test_the_decoder_projects_its_samples_and_the_encoder_its_table():
    """Which order each attention takes (the cheaper one at their shapes), and that the decoder
    makes the sampling table once per decode, not once per layer."""
    from models import deformable_transformer as dt
    transformer = dt.DeformableTransformer(d_model=32, nhead=4, num_encoder_layers=2, num_decoder_layers=3,
                                           dim_feedforward=64, num_feature_levels=2).eval()
    transformer.decoder.bbox_embed = torch.nn.ModuleList(torch.nn.Linear(32, 4) for _ in range(3))  # as MOTR sets it
    assert all(layer.cross_attn.project_after_sampling for layer in transformer.decoder.layers)
    assert not any(layer.self_attn.project_after_sampling for layer in transformer.encoder.layers)
    srcs = [torch.randn(1, 32, 6, 8), torch.randn(1, 32, 3, 4)]
    masks = [torch.zeros(1, 6, 8, dtype=torch.bool), torch.zeros(1, 3, 4, dtype=torch.bool)]
    tables, projected = [], []
    original = dt.sampling_table
    for layer in transformer.decoder.layers:
        layer.cross_attn.value_proj.register_forward_hook(lambda *_: projected.append(1))
    try:
        dt.sampling_table = lambda *a, **k: tables.append(1) or original(*a, **k)
        with torch.no_grad():
            hs, _ = transformer.decode(transformer.encode(srcs, masks, srcs), torch.randn(5, 32), torch.rand(5, 4))
    finally:
        dt.sampling_table = original
    assert hs.shape == (3, 1, 5, 32) and len(tables) == 1 and not projected


def test_a_table_given_to_an_early_projecting_attention_is_refused():
    attn = MSDeformAttn(d_model=16, n_levels=1, n_heads=2, n_points=1)
    x = torch.randn(1, 6, 16)
    with pytest.raises(ValueError, match="project_after_sampling=False"):
        attn(x, torch.rand(1, 6, 1, 2), x, [(2, 3)], torch.tensor([0]), table=torch.randn(1, 6, 1, 17))


def test_bfloat16_close_to_float32():
    shapes = [(6, 7), (3, 3)]
    value, loc, weights = random_inputs(shapes, lq=9, seed=4)
    ref = ms_deform_attn_reference(value, shapes, loc, weights)
    out = ms_deform_attn_gather(value.bfloat16(), shapes, None, loc.bfloat16(), weights.bfloat16())
    assert out.dtype == torch.bfloat16
    # bf16 has ~3 significant digits; the geometry itself runs in float32
    assert (out.float() - ref).abs().max().item() <= 0.05 * ref.abs().max().item()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
def test_triton_kernel_in_interpreter():
    """The Triton kernel, run by Triton's CPU interpreter, agrees with the reference."""
    script = textwrap.dedent("""
        import torch
        from models.ms_deform_attn import ms_deform_attn_reference
        from models.ms_deform_attn_ops import ms_deform_attn_triton
        gen = torch.Generator().manual_seed(0)
        shapes = [(5, 7), (1, 1), (2, 3)]
        s = sum(h * w for h, w in shapes)
        value = torch.randn(2, s, 3, 5, generator=gen)
        loc = torch.rand(2, 37, 3, 3, 2, 2, generator=gen) * 1.6 - 0.3
        loc[0, 0], loc[0, 1], loc[0, 2], loc[0, 3] = 1e9, -1e9, 0.0, 1.0
        weights = torch.rand(2, 37, 3, 3, 2, generator=gen)
        out = ms_deform_attn_triton(value, shapes, [0, 35, 36], loc, weights, block_q=16)
        ref = ms_deform_attn_reference(value, shapes, loc, weights)
        err = (out - ref).abs().max().item()
        # the decoder's one table of C+1 = 257 channels sampled by (query, head) pairs, at the default
        # block size for it (8 queries of a 512-channel block)
        table = torch.randn(1, s, 1, 257, generator=gen)
        loc, weights = loc[:1, :, :1], weights[:1, :, :1]
        out = ms_deform_attn_triton(table, shapes, [0, 35, 36], loc, weights)
        err = max(err, (out - ms_deform_attn_reference(table, shapes, loc, weights)).abs().max().item())
        print("MAXERR", err)
    """)
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    err = float(proc.stdout.split("MAXERR")[1])
    assert err <= 1e-5


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
@pytest.mark.parametrize("dtype", ["*fp16", "*fp32"])
@pytest.mark.parametrize("block_q,block_d", [(64, 32), (8, 512)])  # the encoder's heads, the decoder's table
def test_triton_kernel_compiles_for_h100(dtype, block_q, block_d):
    """Compiles the kernel down to an sm_90 cubin: no GPU needed, catches what the interpreter
    accepts but the compiler does not (types, constexpr branches)."""
    import triton
    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError:
        pytest.skip("this triton version has no ASTSource/GPUTarget")
    signature = {"value_ptr": dtype, "levels_ptr": "*i32", "loc_ptr": dtype, "attn_ptr": dtype, "out_ptr": dtype,
                 "n_tokens": "i32", "n_queries": "i32", "n_heads": "i32", "head_dim": "i32",
                 "N_LEVELS": "constexpr", "N_POINTS": "constexpr", "BLOCK_Q": "constexpr", "BLOCK_D": "constexpr"}
    # what a launch specialises: 16-byte aligned pointers, integer arguments that are multiples of 16
    # (head_dim is exempt, see the kernel)
    attrs = {(i,): [["tt.divisibility", 16]] for i in range(8)}
    source = ASTSource(fn=ops._build_triton_kernel(), signature=signature,
                       constexprs={"N_LEVELS": 4, "N_POINTS": 4, "BLOCK_Q": block_q, "BLOCK_D": block_d},
                       attrs=attrs)
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32))
    assert "msda_forward_kernel" in compiled.asm["ptx"]
    assert len(compiled.asm["cubin"]) > 1000


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-2), (torch.bfloat16, 5e-2)])
@pytest.mark.parametrize("m,d", [(8, 32), (1, 257)])  # the encoder's heads, the decoder's one table
def test_cuda_matches_reference(dtype, tol, m, d):
    shapes = [(13, 17), (7, 9), (1, 1)]
    value, loc, weights = random_inputs(shapes, n=2, lq=300, m=m, d=d, p=4, seed=9)
    ref = ms_deform_attn_reference(value, shapes, loc, weights)
    cuda = [t.cuda().to(dtype) for t in (value, loc, weights)]
    for fn in (ms_deform_attn_fast, ms_deform_attn_gather):
        out = fn(cuda[0], shapes, level_starts(shapes), cuda[1], cuda[2])
        assert out.dtype == dtype
        assert (out.float().cpu() - ref).abs().max().item() <= tol * max(1.0, ref.abs().max().item())


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_a_triton_failure_sends_only_its_launch_to_the_gather_path(monkeypatch):
    """A kernel that fails to compile for the decoder's 257 channels warns once and leaves the
    encoder's 32-channel heads on the kernel."""
    if not ops.triton_available():
        pytest.skip("no Triton kernel on this machine")
    real, calls = ops.ms_deform_attn_triton, []

    def failing_for_wide_tables(value, *args, **kwargs):
        calls.append(value.shape[-1])
        if value.shape[-1] > 64:
            raise RuntimeError("simulated compiler failure")
        return real(value, *args, **kwargs)

    monkeypatch.setattr(ops, "ms_deform_attn_triton", failing_for_wide_tables)
    monkeypatch.setitem(ops._triton_state, "broken", set())
    shapes = [(13, 17), (7, 9)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for m, d in ((1, 257), (1, 257), (8, 32)):
            value, loc, weights = (t.cuda() for t in random_inputs(shapes, n=1, lq=40, m=m, d=d, p=4, seed=d))
            ref = ms_deform_attn_reference(value, shapes, loc, weights)
            out = ms_deform_attn_fast(value, shapes, level_starts(shapes), loc, weights)
            assert (out - ref).abs().max().item() <= 1e-4
    assert calls == [257, 32]  # the second wide call went straight to the gather path
    failures = [str(w.message) for w in caught if "Triton kernel failed" in str(w.message)]
    assert len(failures) == 1 and "257 channels" in failures[0]
