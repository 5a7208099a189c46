"""Training loop (engine.py): a tiny MOTRv2 learns, --resume continues exactly, gradient
checkpointing changes no gradient, a non-finite loss stops with a clear error."""
import copy
import json
import math
import os
from pathlib import Path

import pytest
import torch

import engine
from main import get_args_parser

# A tiny MOTRv2 on tiny synthetic frames (96 x 64): seconds per test on one CPU core.
TINY = ("--meta_arch motr --dataset_file e2e_dance --backbone resnet18 --with_box_refine "
        "--query_interaction_layer QIMv2 --hidden_dim 64 --nheads 4 --enc_layers 1 --dec_layers 2 "
        "--dim_feedforward 128 --num_feature_levels 3 --num_queries 5 --dropout 0 --merger_dropout 0 "
        "--batch_size 1 --sample_mode random_interval --sample_interval 2 --sampler_lengths 2 "
        "--train_scales 64 --train_max_size 96 --train_crop_scales 64 --train_crop_size 48 64 "
        "--num_workers 0 --device cpu --no_progress --det_db det_db_synthetic.json").split()


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: faster than two on a busy machine, and the same results."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mot_path(tmp_path_factory):
    from datasets.synthetic import make_dataset
    root = tmp_path_factory.mktemp("synthetic")
    make_dataset(root, splits={"train": {"num_seqs": 1, "num_frames": 6}}, width=96, height=64,
                 num_dancers=3, seed=3)
    return root


def tiny_args(mot_path, *extra):
    return get_args_parser().parse_args(TINY + ["--mot_path", str(mot_path)] + [str(e) for e in extra])


def build_tiny(args):
    from models.motr import build
    engine.seed_everything(args.seed)
    model, criterion, _ = build(args)
    return model, criterion


def one_clip(mot_path, args, index=0):
    from datasets.dance import build_dataset, collate_fn
    engine.seed_everything(args.seed)
    dataset = build_dataset("train", args)
    return collate_fn([dataset[index]])


@pytest.mark.slow  # a training run
def test_a_few_steps_on_one_clip_lower_the_loss(mot_path):
    args = tiny_args(mot_path, "--lr", 2e-3)
    model, criterion = build_tiny(args)
    clip = one_clip(mot_path, args)
    assert sum(len(gt) for gt in clip["gt_instances"]) > 0, "the clip must hold objects to learn"
    optimizer = engine.build_optimizer(model, args)
    # Each one-clip "epoch" reports the loss before its update.
    losses = [engine.train_one_epoch(model, criterion, [clip], optimizer, torch.device("cpu"), step,
                                     args.clip_max_norm, progress=False)["loss"] for step in range(8)]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses


def test_optimizer_groups_follow_upstream(mot_path):
    args = tiny_args(mot_path, "--lr", 1e-3, "--lr_backbone", 1e-4, "--lr_linear_proj_mult", 0.1)
    model, _ = build_tiny(args)
    optimizer = engine.build_optimizer(model, args)
    rest, backbone, proj = optimizer.param_groups
    assert (rest["lr"], backbone["lr"], proj["lr"]) == pytest.approx((1e-3, 1e-4, 1e-4))
    names = {id(p): n for n, p in model.named_parameters()}
    assert backbone["params"] and all(names[id(p)].startswith("backbone.0") for p in backbone["params"])
    assert proj["params"] and all(("sampling_offsets" in names[id(p)] or "reference_points" in names[id(p)])
                                  for p in proj["params"])
    grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trainable)  # every trainable tensor once, nothing frozen


def _final_state(output_dir):
    from models.checkpoint import read_checkpoint
    return read_checkpoint(str(output_dir / "checkpoint.pth"))


def _assert_same_tensors(a, b, what):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), what
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            _assert_same_tensors(a[k], b[k], f"{what}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{what}[{i}]")
    else:
        assert a == b, what


@pytest.mark.slow  # a training run
def test_resume_continues_exactly_where_it_stopped(mot_path, tmp_path):
    # lr_drop 1: epoch 1 runs at a tenth of the rate, so a lost scheduler state would show.
    common = ("--lr", 1e-3, "--lr_backbone", 1e-4, "--lr_drop", 1, "--seed", 7, "--query_denoise", 0.05)
    whole = tmp_path / "whole"
    engine.train(tiny_args(mot_path, *common, "--epochs", 2, "--output_dir", whole))

    split = tmp_path / "split"
    engine.train(tiny_args(mot_path, *common, "--epochs", 1, "--output_dir", split))
    after_one = _final_state(split)
    assert after_one["epoch"] == 0
    engine.train(tiny_args(mot_path, *common, "--epochs", 2, "--output_dir", split,
                           "--resume", split / "checkpoint.pth"))

    a, b = _final_state(whole), _final_state(split)
    assert a["epoch"] == b["epoch"] == 1
    _assert_same_tensors(a["model"], b["model"], "model")
    _assert_same_tensors(a["optimizer"], b["optimizer"], "optimizer")
    _assert_same_tensors(a["lr_scheduler"], b["lr_scheduler"], "lr_scheduler")
    # The second epoch did change the weights (the comparison above is not vacuous).
    assert any(not torch.equal(after_one["model"][k], b["model"][k]) for k in b["model"])
    assert b["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * 0.01)
    log_lines = (split / "log.txt").read_text().splitlines()
    assert len(log_lines) == 2 and '"epoch": 1' in log_lines[-1]


def test_gradient_checkpointing_gives_the_same_gradients(mot_path):
    args = tiny_args(mot_path, "--sampler_lengths", 3, "--query_denoise", 0.05)
    model, criterion = build_tiny(args)
    clip = one_clip(mot_path, args)

    def gradients(use_checkpoint):
        model.use_checkpoint = use_checkpoint
        model.zero_grad(set_to_none=True)
        torch.manual_seed(11)  # same denoising noise in both runs
        outputs = model(copy.deepcopy(clip))
        loss = engine.weighted_loss(criterion(outputs, clip), criterion.weight_dict)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.train()
    loss_plain, plain = gradients(False)
    loss_ckpt, ckpt = gradients(True)
    assert torch.allclose(loss_plain, loss_ckpt, atol=1e-6)
    assert plain.keys() == ckpt.keys() and len(plain) > 50
    worst = max((plain[n] - ckpt[n]).abs().max().item() for n in plain)
    assert worst < 1e-5, worst
    assert any(g.abs().sum() > 0 for n, g in plain.items() if n.startswith("backbone"))  # reaches the backbone


class _StubModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))

    def forward(self, data):
        return {"value": self.weight * data["scale"]}


class _StubCriterion(torch.nn.Module):
    weight_dict = {"frame_0_loss_ce": 2.0}

    def forward(self, outputs, data):
        return {"frame_0_loss_ce": outputs["value"], "unweighted_term": outputs["value"] * 100}


def test_weighted_loss_ignores_terms_without_weight():
    loss = engine.weighted_loss({"frame_0_loss_ce": torch.tensor(3.0), "other": torch.tensor(5.0)},
                                {"frame_0_loss_ce": 2.0})
    assert loss.item() == pytest.approx(6.0)
    with pytest.raises(KeyError, match="sampler_lengths"):
        engine.weighted_loss({"other": torch.tensor(5.0)}, {"frame_0_loss_ce": 2.0})


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_names_epoch_and_iteration(bad):
    model, criterion = _StubModel(), _StubCriterion()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = [{"scale": torch.tensor(1.0)}, {"scale": torch.tensor(bad)}]
    with pytest.raises(engine.NonFiniteLossError, match=r"epoch 4, iteration 1.*frame_0_loss_ce"):
        engine.train_one_epoch(model, criterion, loader, optimizer, torch.device("cpu"), 4, 0.1, progress=False)
    # The finite first step was taken: grad 2 clipped to norm 0.1, SGD step of lr * 0.1.
    assert model.weight.item() == pytest.approx(1 - 0.1 * 0.1)


def test_resume_takes_the_lr_drop_from_the_flags_and_fp16_weights_load(tmp_path):
    model = _StubModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    old = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    old.step()
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "lr_scheduler": old.state_dict(), "epoch": 0}, path)
    fresh = _StubModel()
    fresh_optimizer = torch.optim.SGD(fresh.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(fresh_optimizer, step_size=3)
    assert engine.resume_state(fresh, fresh_optimizer, scheduler, str(path)) == 1
    assert scheduler.step_size == 3 and scheduler.last_epoch == 1
    assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(0.1)  # the drop already taken stays

    with torch.no_grad():
        model.weight.fill_(0.3330078125)  # exact in fp16
    torch.save({"model": model.state_dict()}, path)
    size = engine.export_model_weights(str(path), str(tmp_path / "small.pth"))
    assert size == (tmp_path / "small.pth").stat().st_size
    half = torch.load(tmp_path / "small.pth", weights_only=True)["model"]
    assert half["weight"].dtype == torch.float16
    from models.checkpoint import load_checkpoint
    target = _StubModel()
    load_checkpoint(target, str(tmp_path / "small.pth"))
    assert target.weight.dtype == torch.float32 and target.weight.item() == 0.3330078125


def test_exported_weights_can_average_several_checkpoints(tmp_path):
    from models.checkpoint import CheckpointError
    paths = []
    for i, value in enumerate((0.25, 0.5, 1.5)):
        model = _StubModel()
        with torch.no_grad():
            model.weight.fill_(value)
        paths.append(tmp_path / f"checkpoint{i}.pth")
        torch.save({"model": model.state_dict(), "epoch": i}, paths[-1])
    engine.export_model_weights(paths, tmp_path / "mean.pth", half=False)
    mean = torch.load(tmp_path / "mean.pth", weights_only=True)["model"]
    assert mean["weight"].dtype == torch.float32 and mean["weight"].item() == pytest.approx(0.75)
    torch.save({"model": {"other": torch.zeros(1)}}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match=r"odd.pth.*only in .*odd.pth: \['other'\]"):
        engine.export_model_weights([paths[0], tmp_path / "odd.pth"], tmp_path / "bad.pth")
    assert not (tmp_path / "bad.pth").exists()


@pytest.mark.slow  # a training run
def test_checkpoints_are_written_whole_with_periodic_copies(mot_path, tmp_path):
    out = tmp_path / "run"
    engine.train(tiny_args(mot_path, "--epochs", 2, "--save_period", 2, "--output_dir", out,
                           "--sampler_lengths", 2, "--lr_backbone", 0))
    names = sorted(p.name for p in out.iterdir())
    assert names == ["checkpoint.card.json", "checkpoint.pth", "checkpoint0001.card.json", "checkpoint0001.pth",
                     "log.txt"]  # no temp files left; a model card beside each checkpoint
    state = _final_state(out)
    assert set(state) == {"model", "optimizer", "lr_scheduler", "epoch", "args"}
    assert state["args"]["hidden_dim"] == 64
    from models.card import read_card
    card = read_card(out / "checkpoint.pth")  # its sha256 is the final checkpoint's
    assert card.architecture["hidden_dim"] == 64 and card.tracker == {} and "epoch 1" in card.name


def test_shipped_small_model_fits_its_config_and_the_size_limit():
    from models.checkpoint import load_checkpoint
    from models.motr import build
    from tests.helpers import REPO as repo
    weights = repo / "weights" / "synthetic_small.pth"
    assert weights.stat().st_size <= 25_000_000
    args = get_args_parser().parse_args((repo / "configs" / "synthetic_small.args").read_text().split())
    model, _, _ = build(args)
    load_checkpoint(model, str(weights), strict=True)  # fp16 file into the fp32 model
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())


def test_untrained_model_keeps_the_proposal_boxes(mot_path):
    """A fresh model's box heads start at a zero update, so every decoder layer returns each proposal's
    box unchanged (MOTRv2's proposals are whole boxes; Deformable DETR's w, h = sigmoid(-2) start
    would shrink them and the first layer's bias would have to unlearn it)."""
    from models.structures import nested_tensor_from_tensor_list
    model, _ = build_tiny(tiny_args(mot_path))
    model.eval()
    proposals = torch.tensor([[0.3, 0.4, 0.1, 0.3, 0.9], [0.7, 0.6, 0.2, 0.25, 0.6]])
    with torch.no_grad():
        tracks = model._generate_empty_tracks(proposals)
        out = model._forward_single_image(nested_tensor_from_tensor_list(torch.rand(1, 3, 64, 96)), tracks)
    n_learned = len(tracks) - len(proposals)
    for boxes in (out["first_layer_boxes"], out["pred_boxes"]):
        assert torch.allclose(boxes[0, n_learned:], proposals[:, :4], atol=1e-6)


def test_frozen_backbone_runs_a_folded_copy_with_the_same_features(mot_path):
    from models.structures import nested_tensor_from_tensor_list
    model, _ = build_tiny(tiny_args(mot_path, "--lr_backbone", 0))
    backbone = model.backbone[0]
    with torch.no_grad():  # non-trivial batch-norm statistics, so folding changes the weights
        for module in backbone.modules():
            if type(module).__name__ == "FrozenBatchNorm2d":
                module.running_var.uniform_(0.5, 2.0)
                module.bias.normal_()
    keys = list(model.state_dict())
    image = nested_tensor_from_tensor_list(torch.rand(1, 3, 64, 96))
    before = {k: v.tensors for k, v in backbone(image).items()}
    assert backbone.use_folded_copy_if_frozen()
    after = {k: v.tensors for k, v in backbone(image).items()}
    assert before.keys() == after.keys()
    for k in before:
        assert torch.allclose(before[k], after[k], rtol=1e-4, atol=1e-4)
    assert list(model.state_dict()) == keys  # the checkpoint format is unchanged
    trained, _ = build_tiny(tiny_args(mot_path, "--lr_backbone", 1e-5))
    assert not trained.backbone[0].use_folded_copy_if_frozen()  # a trained backbone is left alone


# -- the training step, pinned -----------------------------------------------------------------------
# One step on a fixed clip (3 frames: QIM carries tracks, the matcher keeps them): every loss term and
# the gradient norm of every parameter group, as today's code computes them. A change to the network's
# order of operations (the attention, the decoder) may move them by float rounding, never more.
PIN = Path(__file__).parent / "data" / "training_step.json"
# A parameter counts in the longest group its name starts with. The box heads are listed under the
# decoder (MOTR registers them there first), so they are a group of their own, not part of its norm.
PIN_GROUPS = ("backbone", "input_proj", "transformer.encoder", "transformer.decoder",
              "transformer.decoder.bbox_embed", "transformer.level_embed", "class_embed", "query_embed", "position",
              "yolox_embed", "track_embed")


def pin_group(name: str):
    """The group of parameter `name` (the longest matching prefix), None when it is in none."""
    matches = [g for g in PIN_GROUPS if name == g or name.startswith(g + ".")]
    return max(matches, key=len, default=None)


def training_step(mot_path):
    args = tiny_args(mot_path, "--sampler_lengths", 3)
    model, criterion = build_tiny(args)
    # Off the initial weights, where no gradient reaches the sampling geometry (offset and attention
    # weights start at zero) or QIM (no score passes 0.5): every path of the step carries gradient.
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("sampling_offsets.weight", "attention_weights.weight")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
            elif name.startswith("class_embed") and name.endswith("bias"):
                p.fill_(1.0)
    clip = one_clip(mot_path, args)
    model.train()
    torch.manual_seed(5)
    terms = criterion(model(copy.deepcopy(clip)), clip)
    loss = engine.weighted_loss(terms, criterion.weight_dict)
    loss.backward()
    norms = {}
    assert all(pin_group(n) for n, _ in model.named_parameters()), "a parameter outside PIN_GROUPS"
    for group in PIN_GROUPS:
        grads = [p.grad.double().pow(2).sum() for n, p in model.named_parameters()
                 if pin_group(n) == group and p.grad is not None]
        if grads:
            norms[group] = float(torch.stack(grads).sum().sqrt())
    return {"loss": float(loss.detach()), "terms": {k: float(v.detach()) for k, v in sorted(terms.items())},
            "grad_norms": norms}


def test_training_step_matches_the_recorded_one(mot_path):
    """`MOTR_RECORD_TRAINING_STEP=1 pytest -k recorded_one` rewrites the record: only with the code the
    record was made from (git stash your change first), never to make this test pass."""
    step = training_step(mot_path)
    if os.environ.get("MOTR_RECORD_TRAINING_STEP") == "1":
        PIN.write_text(json.dumps(step, indent=1) + "\n")
    recorded = json.loads(PIN.read_text())
    assert step["terms"].keys() == recorded["terms"].keys() and len(step["terms"]) >= 9
    assert step["grad_norms"].keys() == recorded["grad_norms"].keys()
    assert {"track_embed", "transformer.decoder", "transformer.decoder.bbox_embed", "backbone"} <= step["grad_norms"].keys()
    assert step["loss"] == pytest.approx(recorded["loss"], rel=1e-5)
    for name, value in recorded["terms"].items():
        assert step["terms"][name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
    for name, value in recorded["grad_norms"].items():
        assert step["grad_norms"][name] == pytest.approx(value, rel=1e-4, abs=1e-7), name
