"""submit_dance.py --variants: every variant on one pass over the frames gives the files of its own run."""
import os

import pytest
import torch

import inference
import submit_dance
from tests.helpers import REPO, SMALL_MODEL_ARGV
from tests.test_tracker import RUN, SEQS, data  # noqa: F401  (the generated split and small model)

VARIANTS = """\
# name  flags (tracker and memory only)
none      --memory none
latest    --memory sparse --ofs latest
min_iou   --memory sparse --ofs min_iou      # the authors' TF-SASM
dense     --memory dense --ofs latest
paper     --memory sparse --memory_preset paper --memory_tau 0.01

K5        --memory sparse --memory_size 5 --memory_max_frame_gap 2
delay     --memory sparse --ofs delay --memory_delay_iou 0.3 --score_threshold 0.4
"""


def base_argv(root, ckpt, out):
    return (REPO / "configs" / "motrv2.args").read_text().split() + SMALL_MODEL_ARGV + RUN + [
        "--resume", str(ckpt), "--mot_path", str(root), "--det_db", "det_db.json", "--output_dir", str(out)]


def variants_file(tmp_path, text=VARIANTS):
    path = tmp_path / "variants.txt"
    path.write_text(text)
    return path


def results(out, names):
    return {(name, seq): (out / name / f"{seq}.txt").read_text() for name in names for seq in SEQS}


def separate_runs(root, ckpt, out):
    for line in VARIANTS.splitlines():
        words = line.split("#")[0].split()
        if words:
            assert submit_dance.main(base_argv(root, ckpt, out) + words[1:] + ["--exp_name", words[0]]) == 0
    return results(out, NAMES)


NAMES = [line.split()[0] for line in VARIANTS.splitlines() if line.split() and not line.startswith("#")]


@pytest.fixture(scope="module")
def separate(data, tmp_path_factory):  # noqa: F811
    root, ckpt, _ = data
    return separate_runs(root, ckpt, tmp_path_factory.mktemp("separate"))


def assert_same_files(mine, theirs):
    assert mine.keys() == theirs.keys()
    for key in theirs:
        a, b = mine[key].splitlines(), theirs[key].splitlines()
        assert len(a) == len(b), key
        for x, y in zip(a, b):
            x, y = x.split(","), y.split(",")
            assert x[:2] == y[:2] and x[6:] == y[6:], key
            assert all(abs(float(u) - float(v)) <= 0.01 for u, v in zip(x[2:6], y[2:6])), key


@pytest.mark.slow
def test_one_pass_gives_every_variants_own_files(data, separate, tmp_path):  # noqa: F811
    root, ckpt, _ = data
    assert len({text for text in separate.values()}) > len(SEQS) * 3, "the variants barely differ: a weak test"
    assert submit_dance.main(base_argv(root, ckpt, tmp_path) + ["--variants", str(variants_file(tmp_path))]) == 0
    assert sorted(os.listdir(tmp_path)) == sorted(NAMES + ["variants.txt"])
    assert_same_files(results(tmp_path, NAMES), separate)


@pytest.mark.slow
def test_interrupted_run_resumes_only_the_missing_variants(data, separate, tmp_path, monkeypatch):  # noqa: F811
    root, ckpt, _ = data
    argv = base_argv(root, ckpt, tmp_path) + ["--variants", str(variants_file(tmp_path))]
    writes = []
    real_write = inference.write_atomic

    def write_then_die(path, lines):
        if len(writes) == len(NAMES) + 3:  # the first sequence done, the second part-way
            raise KeyboardInterrupt
        writes.append(path)
        real_write(path, lines)
    monkeypatch.setattr(inference, "write_atomic", write_then_die)
    assert submit_dance.main(argv) == 130
    monkeypatch.setattr(inference, "write_atomic", real_write)
    finished = {os.path.relpath(p, tmp_path) for p in writes}
    before = {p: os.path.getmtime(tmp_path / p) for p in finished}
    tracked = []
    real_track = inference.track_sequence
    monkeypatch.setattr(inference, "track_sequence",
                        lambda trackers, frames, *a, **k: tracked.append((frames.seq.name, len(trackers)))
                        or real_track(trackers, frames, *a, **k))
    assert submit_dance.main(argv) == 0
    assert tracked == [(sorted(SEQS)[1], len(NAMES) - 3)]  # only the second sequence, only its missing variants
    assert all(os.path.getmtime(tmp_path / p) == t for p, t in before.items())
    assert_same_files(results(tmp_path, NAMES), separate)


@pytest.mark.parametrize("text, message", [
    ("a --memory sparse\nb --backbone resnet50\n", r"variants\.txt:2: --backbone is not a tracker"),
    ("a --memory sparse\nb --num_queries 5\n", r":2: --num_queries"),
    ("a --memory sparse\nb --val_width 400\n", r":2: --val_width"),
    ("a --memory sparse\n# c\nb --resume x.pth\n", r":3: --resume"),
    ("a --memory sparse\na --memory none\n", r":2: duplicate variant name 'a' \(first on line 1\)"),
    ("a --memory sparse\nb --no_such_flag 1\n", r":2: unrecognized arguments: --no_such_flag"),
    ("a --memory sparse\nb --memory_size\n", r":2: argument --memory_size: expected one argument"),
    ("a --memory often\n", r":1: argument --memory: invalid choice"),
    ("a --memory sparse --memory_alpha 2\n", r":1: .*alpha"),
    ("a --track_nms_iou 1.5\n", r":1: argument --track_nms_iou"),
    ("a/b --memory none\n", r":1: variant name 'a/b'"),
    ("# nothing\n\n", r"no variants"),
])
def test_bad_variant_files_stop_before_any_work_naming_the_line(data, tmp_path, capsys, text, message):  # noqa: F811
    root, ckpt, _ = data
    out = tmp_path / "out"
    assert submit_dance.main(base_argv(root, ckpt, out) + ["--variants", str(variants_file(tmp_path, text))]) == 2
    err = capsys.readouterr().err
    assert __import__("re").search(message, err), err
    assert not out.exists() or not any(out.iterdir())  # nothing written


def _small_network():
    from main import get_args_parser
    from models import build_model
    from tests.helpers import motrv2_argv, standin_state_dict
    network, _, _ = build_model(get_args_parser().parse_args(motrv2_argv(SMALL_MODEL_ARGV)))
    network.load_state_dict(standin_state_dict(SMALL_MODEL_ARGV))
    return network.eval()


def _count_value_projections(network):
    calls = []
    for layer in network.transformer.decoder.layers:
        layer.cross_attn.value_proj.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_decodes_of_one_frames_features_share_the_decoders_value_tables():
    """With EncodedFeatures.decoder_values (what track_frame sets for several trackers) the decoder
    projects each layer's value table once per frame, and every decode gives exactly the numbers a
    decode that projects its own gives."""
    network = _small_network()
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, 96, 160, generator=g)
    queries = [(torch.randn(q, 64, generator=g), torch.rand(q, 4, generator=g) * 0.5 + 0.25) for q in (7, 12, 3)]
    with torch.inference_mode():
        features = network.encode(image)
        own = [network.decode(features, tgt, ref) for tgt, ref in queries]
        calls = _count_value_projections(network)
        features.decoder_values = {}
        shared = [network.decode(features, tgt, ref) for tgt, ref in queries]
    assert len(calls) == len(network.transformer.decoder.layers)
    for a, b in zip(own, shared):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if k != "aux_outputs")


def test_track_frame_projects_the_decoders_values_once_for_all_its_trackers():
    from models.tracker import Tracker, TrackerConfig, track_frame
    network = _small_network()
    trackers = [Tracker(network, TrackerConfig.from_flags(memory=m), device=torch.device("cpu"))
                for m in ("none", "sparse", "dense")]
    calls = _count_value_projections(network)
    g = torch.Generator().manual_seed(1)
    image = torch.randn(1, 3, 96, 160, generator=g)
    proposals = torch.cat([torch.rand(6, 2, generator=g) * 0.6 + 0.2, torch.full((6, 2), 0.1),
                           torch.full((6, 1), 0.9)], 1)
    for _ in range(2):
        track_frame(trackers, image, proposals, (96, 160))
    assert len(calls) == 2 * len(network.transformer.decoder.layers)  # once per frame and layer, not per tracker
    calls.clear()
    track_frame(trackers[:1], image, proposals, (96, 160))  # one tracker: projected as it decodes, nothing held
    assert len(calls) == len(network.transformer.decoder.layers)


def test_shared_decoder_values_are_dropped_when_the_tokens_are_replaced():
    """Tables projected from other tokens are never reused: replacing `tokens` empties the cache."""
    network = _small_network()
    g = torch.Generator().manual_seed(2)
    tgt, ref = torch.randn(5, 64, generator=g), torch.rand(5, 4, generator=g) * 0.5 + 0.25
    with torch.inference_mode():
        features = network.encode(torch.randn(1, 3, 96, 160, generator=g))
        other = network.encode(torch.randn(1, 3, 96, 160, generator=g)).tokens
        features.decoder_values = {}
        network.decode(features, tgt, ref)
        features.tokens = other
        got = network.decode(features, tgt, ref)
        features.decoder_values = None
        expected = network.decode(features, tgt, ref)
    assert torch.equal(got["pred_boxes"], expected["pred_boxes"]) and torch.equal(got["hs"], expected["hs"])
