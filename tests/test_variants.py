"""submit_dance.py --variants: every variant on one pass over the frames gives the files of its own run."""
import os

import pytest

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

