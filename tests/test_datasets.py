"""Datasets beyond DanceTrack (issue 15) on real MOT17 data: tests/data/mot17_mini (frames, gt and
public detections of MOT17-02 frames 1-4 and MOT17-04 frames 1-8) and tests/data/mot17_09_lift
(full MOT17-09 gt and Lif_T's result, with TrackEval's MOT17 figures in its README)."""
import contextlib
import io
import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch

import submit_dance
from datasets.det_db import DetDBError, det_db_key, read_det_txt
from datasets.layouts import SplitLayout, resolve_split
from datasets.sequences import SequenceError, read_sequence
from tests.helpers import SMALL_MODEL_ARGV, motrv2_argv
from tools import make_detdb
from tools.evaluate import EvaluationInputError, evaluate
from tools.evaluate import main as evaluate_main

DATA = Path(__file__).resolve().parent / "data"
MINI = DATA / "mot17_mini"
LIFT = DATA / "mot17_09_lift"
MINI_FRAMES = {"MOT17-02-FRCNN": 4, "MOT17-04-FRCNN": 8}
# tests/data/mot17_09_lift/README.md: TrackEval 1.3.0, MotChallenge2DBox, BENCHMARK='MOT17'
LIFT_FIGURES = {"HOTA": 64.2261, "DetA": 66.8234, "AssA": 61.7340, "MOTA": 71.5493, "MOTP": 92.0154,
                "IDF1": 72.8845, "FP": 54, "FN": 1451, "IDSW": 10, "MT": 14, "PT": 11, "ML": 1, "Frag": 7}


@pytest.fixture(scope="module")
def mot_root(tmp_path_factory):
    """mot17_mini as released: <mot_path>/MOT17/train/<seq>."""
    root = tmp_path_factory.mktemp("mot")
    shutil.copytree(MINI / "train", root / "MOT17" / "train")
    return root


# -- layouts -------------------------------------------------------------------------------------------
def test_mot17_layout_frames_keys_and_copies(mot_root, tmp_path):
    layout = resolve_split(str(mot_root), "mot17", "train")
    assert layout.names == sorted(MINI_FRAMES)
    seq = layout.read("MOT17-04-FRCNN")
    assert [n for n, _ in seq.frames] == list(range(1, 9))
    assert det_db_key(seq.frames[0][1]) == "MOT17/train/MOT17-04-FRCNN/img1/000001.txt"
    assert (seq.width, seq.height) == (1920, 1080)
    # --seqs takes a video name for its chosen copy; a copy that is not there is named
    assert resolve_split(str(mot_root), "mot17", "train", seqs=["MOT17-02"]).names == ["MOT17-02-FRCNN"]
    with pytest.raises(SequenceError, match="no -DPM copies"):
        resolve_split(str(mot_root), "mot17", "train", mot17_copy="DPM")
    # the three copies: one chosen, or all
    split = tmp_path / "MOT17" / "train"
    for copy in ("DPM", "FRCNN", "SDP"):
        shutil.copytree(MINI / "train" / "MOT17-02-FRCNN", split / f"MOT17-02-{copy}")
    assert resolve_split(str(tmp_path), "mot17", "train").names == ["MOT17-02-FRCNN"]
    assert resolve_split(str(tmp_path), "mot17", "train", mot17_copy="SDP").names == ["MOT17-02-SDP"]
    assert resolve_split(str(tmp_path), "mot17", "train", mot17_copy="all").names == [
        "MOT17-02-DPM", "MOT17-02-FRCNN", "MOT17-02-SDP"]


def test_mot_path_may_be_the_dataset_folder_and_split_dir_keys(tmp_path):
    # tests/data/mot17_mini is MOT17's folder itself: keys relative to it
    layout = resolve_split(str(MINI), "mot17", "train")
    assert layout.read("MOT17-02-FRCNN").frames[0][1] == "train/MOT17-02-FRCNN/img1/000001.jpg"
    # --split_dir inside --mot_path: keys relative to --mot_path
    inside = resolve_split(str(DATA), split_dir=str(MINI / "train"))
    assert inside.read("MOT17-02-FRCNN").frames[0][1] == "mot17_mini/train/MOT17-02-FRCNN/img1/000001.jpg"
    # outside: relative to the split folder's parent, and the frames are read from there
    outside = resolve_split(str(tmp_path), split_dir=str(MINI / "train"))
    seq = outside.read("MOT17-04-FRCNN")
    assert seq.frames[-1] == (8, "train/MOT17-04-FRCNN/img1/000008.jpg")
    assert Path(seq.root, seq.frames[-1][1]).is_file()


def test_frames_in_number_order_whatever_the_digits_and_imext(tmp_path):
    img1 = tmp_path / "split" / "seq" / "img1"
    img1.mkdir(parents=True)
    src = MINI / "train" / "MOT17-02-FRCNN" / "img1" / "000001.jpg"
    for n in (1, 2, 10, 9):
        shutil.copy(src, img1 / f"{n}.jpg")
    shutil.copy(src, img1 / "3.png")  # not the declared imExt
    (img1.parent / "seqinfo.ini").write_text("[Sequence]\nname=seq\nimDir=img1\nseqLength=4\nimExt=.jpg\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the gaps are reported, and kept
        seq = read_sequence(str(tmp_path), "split/seq")
    assert [n for n, _ in seq.frames] == [1, 2, 9, 10]
    assert seq.frames[-1][1] == "split/seq/img1/10.jpg"


# -- det_db from the public detections -------------------------------------------------------------------
def test_det_db_from_det_txt(mot_root, tmp_path):
    out = tmp_path / "det_db_public.json"
    returned = make_detdb.main(["--from_det_txt", "--dataset", "mot17", "--mot_path", str(mot_root),
                                "--split", "train", "--output", str(out)])
    det_db = json.loads(out.read_text())
    assert det_db == returned
    assert sorted(det_db) == sorted(f"MOT17/train/{s}/img1/{f:06d}.txt"
                                    for s, n in MINI_FRAMES.items() for f in range(1, n + 1))
    for seq, n in MINI_FRAMES.items():
        lines = (mot_root / "MOT17" / "train" / seq / "det" / "det.txt").read_text().splitlines()
        for f in range(1, n + 1):
            mine = [line.split(",") for line in lines if int(line.split(",")[0]) == f]
            entry = det_db[f"MOT17/train/{seq}/img1/{f:06d}.txt"]
            assert len(entry) == len(mine) > 0
            assert sorted(tuple(map(float, e.split(","))) for e in entry) == \
                sorted(tuple(map(float, m[2:7])) for m in mine)
            scores = [float(e.split(",")[4]) for e in entry]
            assert scores == sorted(scores, reverse=True)
    assert not list(tmp_path.glob(".*"))  # atomic: no temporary file left


def test_det_txt_frames_without_detections_and_bad_lines(tmp_path):
    split = tmp_path / "MOT17" / "train"
    shutil.copytree(MINI / "train" / "MOT17-02-FRCNN", split / "MOT17-02-FRCNN")
    det = split / "MOT17-02-FRCNN" / "det" / "det.txt"
    det.write_text("1,-1,10,20,30,40,0.9\n3,-1,1,2,3,4,0.5,-1,-1,-1\n")
    db = make_detdb.detdb_from_det_txt([resolve_split(str(tmp_path), "mot17", "train")])
    assert db["MOT17/train/MOT17-02-FRCNN/img1/000002.txt"] == []
    assert db["MOT17/train/MOT17-02-FRCNN/img1/000001.txt"] == ["10,20,30,40,0.9\n"]
    for text, what in (("1,-1,10,20,30,40,0.9\n2,-1,10,x,30,40,0.9\n", ":2: expected"),
                       ("1,-1,10,20,30,40\n", ":1: expected"),
                       ("1.5,-1,10,20,30,40,0.9\n", ":1: frame"),
                       ("1,-1,10,20,-3,40,0.9\n", ":1: negative box"),
                       ("9,-1,10,20,30,40,0.9\n", "frame 9 but")):
        det.write_text(text)
        with pytest.raises(DetDBError, match=what) as err:
            read_det_txt(str(det)) if what != "frame 9 but" else \
                make_detdb.detdb_from_det_txt([resolve_split(str(tmp_path), "mot17", "train")])
        assert str(det) in str(err.value)
    with pytest.raises(SystemExit, match=str(det)):  # the CLI stops with the file named too
        make_detdb.main(["--from_det_txt", "--dataset", "mot17", "--mot_path", str(tmp_path), "--split", "train",
                         "--output", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


# -- tracking ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    from main import get_args_parser
    from models import build_model
    torch.manual_seed(0)
    model, _, _ = build_model(get_args_parser().parse_args(motrv2_argv(SMALL_MODEL_ARGV)))
    path = tmp_path_factory.mktemp("ckpt") / "small.pth"
    torch.save({"model": model.state_dict()}, path)
    return path


def run_submit(*argv):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = submit_dance.main(list(argv))
    finally:
        torch.set_num_threads(before)
    return code, stderr.getvalue()


def submit_argv(ckpt, mot_path, det_db, out, *extra):
    return [*motrv2_argv(SMALL_MODEL_ARGV), "--resume", str(ckpt), "--mot_path", str(mot_path),
            "--det_db", str(det_db), "--output_dir", str(out), "--exp_name", "run", "--device", "cpu",
            "--num_workers", "0", "--val_width", "64", "--val_max_size", "128",
            "--score_threshold", "0.0", "--update_score_threshold", "0.0", *extra]


def test_submit_mot17_train_writes_one_file_per_sequence(mot_root, small_ckpt, tmp_path):
    det_db = tmp_path / "det_db_public.json"
    make_detdb.main(["--from_det_txt", "--dataset", "mot17", "--mot_path", str(mot_root), "--split", "train",
                     "--output", str(det_db)])
    code, err = run_submit(*submit_argv(small_ckpt, mot_root, det_db, tmp_path, "--dataset", "mot17",
                                        "--split", "train"))
    assert code == 0, err
    out = tmp_path / "run"
    assert sorted(p.name for p in out.iterdir()) == [f"{s}.txt" for s in sorted(MINI_FRAMES)]
    for seq, n in MINI_FRAMES.items():
        frames = {int(line.split(",")[0]) for line in (out / f"{seq}.txt").read_text().splitlines()}
        assert frames == set(range(1, n + 1)), seq
    # and the result scores under MOT17's rules without an input error
    res = evaluate(mot_root / "MOT17" / "train", out, benchmark="mot17")
    assert res["benchmark"] == "mot17" and set(res["per_sequence"]) == set(MINI_FRAMES)


def test_submit_split_dir_outside_mot_path(small_ckpt, tmp_path):
    det_db = tmp_path / "db.json"
    make_detdb.main(["--from_det_txt", "--split_dir", str(MINI / "train"), "--mot_path", str(tmp_path),
                     "--output", str(det_db)])
    assert "train/MOT17-02-FRCNN/img1/000001.txt" in json.loads(det_db.read_text())
    code, err = run_submit(*submit_argv(small_ckpt, tmp_path, det_db, tmp_path, "--split_dir", str(MINI / "train"),
                                        "--seqs", "MOT17-02-FRCNN"))
    assert code == 0, err
    assert (tmp_path / "run" / "MOT17-02-FRCNN.txt").is_file()


# -- evaluation -------------------------------------------------------------------------------------------
def gt_as_result(gt: Path) -> str:
    """The gt's pedestrian boxes (consider 1, class 1) as tracker lines."""
    out = []
    for line in gt.read_text().splitlines():
        f = line.split(",")
        if int(float(f[6])) == 1 and int(float(f[7])) == 1:
            out.append(",".join(f[:6] + ["1", "-1", "-1", "-1"]))
    return "\n".join(out) + "\n"


def test_gt_pedestrians_written_back_score_100_under_mot17_rules(tmp_path):
    trk = tmp_path / "trk"
    trk.mkdir()
    for seq in MINI_FRAMES:
        (trk / f"{seq}.txt").write_text(gt_as_result(MINI / "train" / seq / "gt" / "gt.txt"))
    res = evaluate(MINI / "train", trk, benchmark="mot17")
    for row in [res["combined"], *res["per_sequence"].values()]:
        for key in ("HOTA", "DetA", "AssA", "MOTA", "IDF1"):
            assert row[key] == pytest.approx(100.0), key
        assert (row["FP"], row["FN"], row["IDSW"], row["PT"], row["ML"], row["Frag"]) == (0, 0, 0, 0, 0, 0)
    # DanceTrack's owners run TrackEval with MOT17's rules too (BENCHMARK and DO_PREPROC left at defaults)
    assert evaluate(MINI / "train", trk, benchmark="dancetrack")["combined"] == res["combined"]


def test_mot17_09_lift_gives_the_published_figures(tmp_path, capsys):
    gt, trk = LIFT / "MOT17" / "train", LIFT / "Lif_T"
    res = evaluate(gt, trk, benchmark="mot17")
    assert res["benchmark"] == "mot17"
    # the rules are the named benchmark's, never the folder's: without a name, nothing is scored
    with pytest.raises(EvaluationInputError, match="--benchmark NAME or --dataset NAME"):
        evaluate(gt, trk)
    for row in (res["combined"], res["per_sequence"]["MOT17-09-FRCNN"]):
        for key, value in LIFT_FIGURES.items():
            if key == "MOTP":
                continue
            if isinstance(value, int):
                assert row[key] == value, key
            else:
                assert row[key] == pytest.approx(value, abs=1e-4), key  # README gives 6 digits of a fraction
    exact = evaluate(gt, trk, benchmark="mot17")["combined"]
    assert exact["HOTA"] / 100 == pytest.approx(0.642261, abs=1e-6)
    assert exact["MOTA"] / 100 == pytest.approx(0.715493, abs=1e-6)
    assert exact["IDF1"] / 100 == pytest.approx(0.728845, abs=1e-6)
    assert exact["DetA"] / 100 == pytest.approx(0.668234, abs=1e-6)
    assert exact["AssA"] / 100 == pytest.approx(0.617340, abs=1e-6)
    # the CLI's table and JSON carry the counts
    assert evaluate_main(["--gt_folder", str(gt), "--tracker_folder", str(trk), "--json",
                          str(tmp_path / "e.json"), "--benchmark", "MOT17"]) == 0
    table = capsys.readouterr().out
    assert all(k in table for k in ("FP", "FN", "MT", "PT", "ML", "Frag"))
    saved = json.loads((tmp_path / "e.json").read_text())
    assert {k: saved["combined"][k] for k in ("FP", "FN", "MT", "PT", "ML", "Frag")} == \
        {"FP": 54, "FN": 1451, "MT": 14, "PT": 11, "ML": 1, "Frag": 7}


def test_mot17_scores_the_copies_the_tracker_has(tmp_path):
    gt = tmp_path / "MOT17" / "train"
    for copy in ("DPM", "FRCNN", "SDP"):
        shutil.copytree(LIFT / "MOT17" / "train" / "MOT17-09-FRCNN", gt / f"MOT17-09-{copy}")
    trk = tmp_path / "trk"
    trk.mkdir()
    shutil.copy(LIFT / "Lif_T" / "MOT17-09-FRCNN.txt", trk / "MOT17-09-SDP.txt")
    res = evaluate(gt, trk, benchmark="mot17")
    assert list(res["per_sequence"]) == ["MOT17-09-SDP"]
    assert res["combined"]["FN"] == 1451
    with pytest.raises(EvaluationInputError, match="MOT17-09-DPM"):
        evaluate(gt, trk, seqmap=_seqmap(tmp_path, ["MOT17-09-DPM", "MOT17-09-SDP"]), benchmark="mot17")


def _seqmap(tmp_path, names):
    path = tmp_path / "seqmap.txt"
    path.write_text("name\n" + "".join(f"{n}\n" for n in names))
    return path


def test_split_layout_is_a_plain_record():
    layout = SplitLayout("mot17", "/a/MOT17/train", "/a", ["x"])
    assert layout.rel == "MOT17/train"


# -- generated SportsMOT-, MOT17- and BFT-layout splits: track, evaluate, train --------------------------
LAYOUT_SPLIT = {"sportsmot": "val", "mot17": "train", "bft": "val"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """One small split of each layout (train + the split tracked), BFT converted from its released layout."""
    from datasets.synthetic import make_dataset
    from tools import convert_bft
    roots = {}
    for layout, split in LAYOUT_SPLIT.items():
        root = tmp_path_factory.mktemp(layout)
        splits = {"train": 1} if split == "train" else {"train": 1, split: 1}
        make_dataset(root, splits=splits, seed=1, num_frames=6, width=96, height=64, num_dancers=3, layout=layout)
        if layout == "bft":
            assert not list(root.glob("BFT/*/*/img1"))  # as released: loose images
            convert_bft.main(["--bft_root", str(root / "BFT")])
        roots[layout] = root
    return roots


def test_generated_layouts_are_read(generated):
    sports = resolve_split(str(generated["sportsmot"]), "sportsmot", "val")
    seq = sports.read(sports.names[0])
    assert seq.frames[0][1] == "SportsMOT/val/val0001/img1/000001.jpg"
    mot = resolve_split(str(generated["mot17"]), "mot17", "train", mot17_copy="all")
    assert mot.names == ["MOT17-01-DPM", "MOT17-01-FRCNN", "MOT17-01-SDP"]
    gt = (Path(mot.split_dir) / "MOT17-01-SDP" / "gt" / "gt.txt").read_text().splitlines()
    assert all(len(line.split(",")) == 9 and line.split(",")[6:8] == ["1", "1"] for line in gt)
    assert read_det_txt(str(Path(mot.split_dir) / "MOT17-01-DPM" / "det" / "det.txt"))
    bft = resolve_split(str(generated["bft"]), "bft", "val")
    seq = bft.read(bft.names[0])
    assert seq.frames[-1] == (6, "BFT/val/val0001/img1/000006.jpg") and seq.width == 96
    db = json.loads((generated["bft"] / "det_db_synthetic.json").read_text())
    assert all(det_db_key(rel) in db for _, rel in seq.frames)


@pytest.mark.parametrize("layout", sorted(LAYOUT_SPLIT))
def test_generated_layout_tracks_and_evaluates(generated, small_ckpt, tmp_path, layout):
    root, split = generated[layout], LAYOUT_SPLIT[layout]
    extra = ["--dataset", layout, "--split", split]
    det_db = root / "det_db_synthetic.json"
    if layout == "mot17":  # the public detections, for the three copies
        det_db = tmp_path / "public.json"
        make_detdb.main(["--from_det_txt", "--dataset", "mot17", "--mot17_copy", "all", "--mot_path", str(root),
                         "--split", "train", "--output", str(det_db)])
        extra += ["--mot17_copy", "all"]
    code, err = run_submit(*submit_argv(small_ckpt, root, det_db, tmp_path, *extra))
    assert code == 0, err
    layout_split = resolve_split(str(root), layout, split, mot17_copy="all")
    out = tmp_path / "run"
    assert sorted(p.name for p in out.iterdir()) == [f"{n}.txt" for n in layout_split.names]
    res = evaluate(layout_split.split_dir, out, benchmark=layout)
    assert res["benchmark"] == layout and sorted(res["per_sequence"]) == layout_split.names
    assert 0 <= res["combined"]["HOTA"] <= 100


def test_convert_bft_errors_name_file_and_line(tmp_path):
    from tools import convert_bft
    seq = tmp_path / "BFT" / "val" / "s1"
    seq.mkdir(parents=True)
    shutil.copy(MINI / "train" / "MOT17-02-FRCNN" / "img1" / "000001.jpg", seq / "000001.jpg")
    ann = tmp_path / "BFT" / "annotations_mot" / "val" / "s1.txt"
    ann.parent.mkdir(parents=True)
    ann.write_text("1,1,10,10,5,5,1,-1,-1,-1\n1,2,10,x,5,5\n")
    with pytest.raises(SystemExit, match=f"{ann}:2"):
        convert_bft.main(["--bft_root", str(tmp_path / "BFT")])
    assert (seq / "000001.jpg").is_file() and not (seq / "img1").exists()  # nothing moved
    ann.write_text("3,1,10,10,5,5\n")
    with pytest.raises(SystemExit, match="frame 3 but"):
        convert_bft.main(["--bft_root", str(tmp_path / "BFT")])


TINY_TRAIN = ("--meta_arch motr --dataset_file e2e_dance --backbone resnet18 --with_box_refine "
              "--query_interaction_layer QIMv2 --hidden_dim 64 --nheads 4 --enc_layers 1 --dec_layers 2 "
              "--dim_feedforward 128 --num_feature_levels 3 --num_queries 5 --dropout 0 --merger_dropout 0 "
              "--batch_size 1 --sample_mode random_interval --sample_interval 1 --sampler_lengths 2 "
              "--train_scales 64 --train_max_size 96 --train_crop_scales 64 --train_crop_size 48 64 "
              "--num_workers 0 --device cpu --no_progress --det_db det_db_synthetic.json --epochs 1").split()


@pytest.mark.slow
@pytest.mark.parametrize("layout", sorted(LAYOUT_SPLIT))
def test_generated_layout_trains_a_few_steps(generated, layout, tmp_path):
    import engine
    from datasets.dance import build_dataset, collate_fn
    from main import get_args_parser
    from models.motr import build
    args = get_args_parser().parse_args(TINY_TRAIN + ["--mot_path", str(generated[layout]), "--dataset", layout,
                                                      "--lr", "2e-3"])
    dataset = build_dataset("train", args)
    assert len(dataset) > 0 and all(v.startswith({"sportsmot": "SportsMOT", "mot17": "MOT17",
                                                  "bft": "BFT"}[layout]) for v in dataset.labels_full)
    if layout == "mot17":  # one copy per video
        assert list(dataset.labels_full) == ["MOT17/train/MOT17-01-FRCNN"]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        engine.seed_everything(0)
        model, criterion, _ = build(args)
        clip = collate_fn([dataset[0]])
        optimizer = engine.build_optimizer(model, args)
        losses = [engine.train_one_epoch(model, criterion, [clip], optimizer, torch.device("cpu"), step,
                                         args.clip_max_norm, progress=False)["loss"] for step in range(3)]
    finally:
        torch.set_num_threads(before)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def test_dataset_file_mixes_datasets_and_mot17_keeps_pedestrians(generated, tmp_path):
    from datasets.dance import read_mot_gt, training_datasets
    from main import get_args_parser
    parse = get_args_parser().parse_args
    assert training_datasets(parse(["--dataset_file", "e2e_dance", "--dataset", "mot17"])) == ["mot17"]
    assert training_datasets(parse(["--dataset_file", "dancetrack+e2e_mot17,crowdhuman"])) == ["dancetrack", "mot17"]
    with pytest.raises(ValueError, match="unknown dataset 'kitti'"):
        training_datasets(parse(["--dataset_file", "kitti"]))
    labels = read_mot_gt(str(MINI / "train" / "MOT17-02-FRCNN" / "gt" / "gt.txt"), pedestrians_only=True)
    lines = [line.split(",") for line in (MINI / "train" / "MOT17-02-FRCNN" / "gt" / "gt.txt").read_text().splitlines()]
    assert sum(len(v) for v in labels.values()) == sum(1 for f in lines if f[6] == "1" and f[7] == "1")
    # two datasets in one training set: ids stay unique across them
    mixed = tmp_path / "mixed"
    for layout in ("sportsmot", "bft"):
        for sub in generated[layout].iterdir():
            dst = mixed / sub.name
            if sub.is_dir() and not dst.exists():
                shutil.copytree(sub, dst)
    from datasets.dance import DetMOTDetection
    args = parse(TINY_TRAIN + ["--mot_path", str(mixed), "--dataset_file", "sportsmot,bft", "--det_db", ""])
    ds = DetMOTDetection(args)
    assert sorted(v.split("/")[0] for v in ds.labels_full) == ["BFT", "SportsMOT"]
    assert sorted(ds.video_dict.values()) == [0, 1]


def test_ablation_scripts_pass_dataset_through():
    import os
    import subprocess
    from tests.helpers import REPO
    env = {k: v for k, v in os.environ.items() if k not in ("SEQS", "ONLY", "EXTRA_ARGS", "OUT", "SPLIT")}

    def dry(**extra):
        return subprocess.run(["bash", str(REPO / "tools/ablation/table6_tau.sh"), "ck.pth", "nodata", "db.json", "val"],
                              env={**env, "DRY_RUN": "1", **extra}, capture_output=True, text=True, timeout=60)
    done = dry(DATASET="mot17", MOT17_COPY="SDP")
    assert done.returncode == 0, done.stderr
    assert "--dataset mot17 --mot17_copy SDP" in done.stdout
    assert "--benchmark mot17" in done.stdout and "nodata/MOT17/val" in done.stdout
    plain = dry()
    assert plain.returncode == 0 and " --dataset " not in plain.stdout and "--benchmark dancetrack" in plain.stdout
    bad = dry(DATASET="kitti")
    assert bad.returncode == 2 and "DATASET 'kitti': unknown dataset" in bad.stderr
