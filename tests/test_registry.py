"""The dataset registry (datasets/registry.py): names, --dataset_file mixes, scoring settings that
agree with TrackEval's, and every README training example taking a step on generated data."""
import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets import registry
from tests.helpers import REPO
from tools.evaluate import evaluate


def test_every_dataset_is_one_entry_read_by_every_reader():
    from datasets import layouts, synthetic
    from tools import evaluate as ev
    assert registry.NAMES == ("dancetrack", "sportsmot", "mot17", "mot20", "bft", "custom")
    assert synthetic.LAYOUTS == registry.LAYOUT_NAMES == tuple(n for n in registry.NAMES if n != "custom")
    assert layouts.DATASETS == ev.BENCHMARKS == registry.NAMES
    assert registry.get("MOT20").scoring.benchmark == "MOT20" and registry.get("mot20").copies == ()
    with pytest.raises(registry.DatasetError, match="--benchmark 'kitti'"):
        registry.get("kitti", "--benchmark")


def test_dataset_file_names_mixes_and_upstream_names():
    ts = registry.training_sets
    assert ts("mot17,dancetrack") == ["mot17", "dancetrack"]
    assert ts("dancetrack+sportsmot,crowdhuman") == ["dancetrack", "sportsmot"]
    assert ts("e2e_dance") == ["dancetrack"] and ts("e2e_dance", "mot20") == ["mot20"] and ts("coco") == ["dancetrack"]
    assert ts("e2e_mot") == ts("e2e_joint") == ["mot17"] and ts("e2e_mot20") == ["mot20"]
    assert registry.num_classes("mot17,dancetrack") == 1
    with pytest.raises(registry.DatasetError, match="unknown dataset 'kitti'"):
        ts("mot17,kitti")


def _box_lines(rows):
    return "".join(",".join(str(v) for v in r) + "\n" for r in rows)


@pytest.mark.parametrize("name", ["mot17", "mot20", "custom"])
def test_distractor_classes_are_what_trackeval_does_with_the_benchmark(name, tmp_path):
    """For each gt class, a tracker box on a box of that class is a false positive unless the
    class is one of the entry's distractors (TrackEval picks them by BENCHMARK)."""
    entry = registry.get(name)
    frames = 3
    gt, trk = tmp_path / "gt", tmp_path / "trk"
    trk.mkdir()
    for cls in range(1, 14):
        seq = gt / f"seq{cls:02d}"
        (seq / "gt").mkdir(parents=True)
        (seq / "seqinfo.ini").write_text(f"[Sequence]\nname=seq{cls:02d}\nseqLength={frames}\n")
        rows = [(f, 1, 10, 10, 50, 100, 1, 1, 1) for f in range(1, frames + 1)]
        rows += [(f, 2, 200, 10, 50, 100, 1, cls, 1) for f in range(1, frames + 1)]
        (seq / "gt" / "gt.txt").write_text(_box_lines(rows))
        tracked = [(f, 1, 10, 10, 50, 100, 1, -1, -1, -1) for f in range(1, frames + 1)]
        tracked += [(f, 2, 200, 10, 50, 100, 1, -1, -1, -1) for f in range(1, frames + 1)]
        (trk / f"seq{cls:02d}.txt").write_text(_box_lines(tracked))
    res = evaluate(gt, trk, benchmark=name)["per_sequence"]
    ignored = {cls for cls in range(1, 14) if res[f"seq{cls:02d}"]["FP"] == 0}
    assert ignored == {1, *entry.scoring.distractor_classes}
    if name == "mot20":
        assert 6 in ignored  # non_mot_vehicle: MOT20's own distractor
    else:
        assert 6 not in ignored


# -- README training examples, a step each on generated data -----------------------------------------
def readme_training_commands():
    """Every `main.py` command of the README (the Training section and the per-dataset ones), its
    `$(cat configs/X.args)` expanded, plus the variants its comments name."""
    text = (REPO / "README.md").read_text()
    joined = re.sub(r"\\\n\s*", " ", text)
    commands = []
    for line in joined.splitlines():
        if "main.py" not in line or not re.match(r"\s*(\.venv/bin/)?(python|torchrun)\b", line):
            continue
        comment = line.split("#", 1)[1] if "#" in line else ""
        line = line.split("#", 1)[0]
        line = re.sub(r"\$\(cat (configs/\S+)\)", lambda m: (REPO / m.group(1)).read_text().replace("\n", " "), line)
        argv = shlex.split(line)
        argv = argv[argv.index("main.py") + 1:]
        commands.append(argv)
        for extra in re.findall(r"(--dataset_file \S+)", comment):
            commands.append(argv + extra.split())
    return commands


def test_readme_lists_the_training_examples():
    cmds = readme_training_commands()
    assert len(cmds) >= 4
    assert any("mot17,dancetrack" in c for c in cmds)


# Shrinks the network and the images so that one step runs in seconds; the example's own choices
# (dataset, --dataset_file, config, det_db, crowd) are kept.
SMALL = ("--backbone resnet18 --hidden_dim 32 --nheads 4 --enc_layers 1 --dec_layers 2 --dim_feedforward 64 "
         "--num_queries 5 --train_scales 64 --train_max_size 96 --train_crop_scales 64 --train_crop_size 48 64 "
         "--sampler_lengths 2 --sampler_steps --num_workers 0 --device cpu --no_progress --epochs 1").split()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """DanceTrack and MOT17 layouts, a CrowdHuman stand-in and one det_db file under every name
    the README's examples give."""
    from datasets.synthetic import make_dataset
    root = tmp_path_factory.mktemp("readme_data")
    merged = {}
    for layout in ("dancetrack", "mot17"):
        info = make_dataset(root, splits={"train": 1}, seed=2, num_frames=6, width=96, height=64, num_dancers=3,
                            layout=layout, det_db_name=f"det_db_{layout}.json")
        merged.update(json.loads(Path(info["det_db_path"]).read_text()))
    ch = root / "crowdhuman"
    (ch / "Images").mkdir(parents=True)
    frame = next((root / "DanceTrack" / "train").glob("*/img1/00000001.jpg"))
    shutil.copy(frame, ch / "Images" / "ch0.jpg")
    (ch / "annotation_trainval.odgt").write_text(json.dumps(
        {"ID": "ch0", "gtboxes": [{"fbox": [10, 5, 20, 40]}, {"fbox": [50, 10, 20, 40]}]}) + "\n")
    merged["crowdhuman/train_image/ch0.txt"] = ["12.0,6.0,18.0,38.0,0.90\n"]
    for name in ("det_db_synthetic.json", "det_db_motrv2.json", "det_db_mot17_public.json"):
        (root / name).write_text(json.dumps(merged))
    return root


def _override(argv, flag, value):
    out, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a == flag:
            skip = True
            continue
        out.append(a)
    return out + [flag, value]


# a training step per README example: about 1-6 s each on one core
@pytest.mark.parametrize("index", range(len(readme_training_commands())))
def test_each_readme_training_example_takes_a_step(index, data_root, tmp_path):
    import engine
    from datasets.dance import build_dataset, collate_fn
    from main import get_args_parser
    from models.motr import build
    argv = readme_training_commands()[index]
    argv = _override(argv, "--mot_path", str(data_root))
    argv = _override(argv, "--output_dir", str(tmp_path))
    args = get_args_parser().parse_args(argv + SMALL)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        engine.seed_everything(0)
        args.num_classes = registry.num_classes(args.dataset_file, args.dataset)  # as engine.train
        model, criterion, _ = build(args)
        dataset = build_dataset("train", args)
        wanted = {registry.get(n).folder for n in registry.training_sets(args.dataset_file, args.dataset)}
        assert {v.split("/")[0] for v in dataset.labels_full} == wanted
        clip = collate_fn([dataset[0]])
        optimizer = engine.build_optimizer(model, args)
        stats = engine.train_one_epoch(model, criterion, [clip], optimizer, torch.device("cpu"), 0,
                                       args.clip_max_norm, progress=False)
    finally:
        torch.set_num_threads(before)
    assert np.isfinite(stats["loss"]) and stats["loss"] > 0


def test_generated_mot20_layout_is_read_trained_on_and_has_public_detections(tmp_path):
    from datasets.dance import DetMOTDetection
    from datasets.layouts import resolve_split
    from datasets.synthetic import make_dataset
    from main import get_args_parser
    from tools import make_detdb
    make_dataset(tmp_path, splits={"train": 1}, seed=1, num_frames=5, width=96, height=64, num_dancers=3,
                 layout="mot20")
    split = resolve_split(str(tmp_path), "mot20", "train")
    assert split.names == ["MOT20-01"]
    assert split.read("MOT20-01").frames[0][1] == "MOT20/train/MOT20-01/img1/000001.jpg"
    db = make_detdb.main(["--from_det_txt", "--dataset", "mot20", "--mot_path", str(tmp_path), "--split", "train",
                          "--output", str(tmp_path / "public.json")])
    assert len(db) == 5 and all(k.startswith("MOT20/train/MOT20-01/img1/") for k in db)
    args = get_args_parser().parse_args(SMALL + ["--mot_path", str(tmp_path), "--dataset_file", "mot20",
                                                 "--det_db", "public.json"])
    ds = DetMOTDetection(args)
    assert list(ds.labels_full) == ["MOT20/train/MOT20-01"] and len(ds) > 0
