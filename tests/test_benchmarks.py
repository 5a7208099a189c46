"""Each benchmark scored as its owners score it: tools/evaluate.py against TrackEval run directly
with the owners' own run_mot_challenge.py settings (written out here, not read from the registry),
on gt with zero-flagged rows and distractor classes, with a missing sequence, per group and on the
half splits."""
import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

from datasets import registry
from tools.evaluate import EvaluationInputError, evaluate, main

# The settings each dataset's owners pass to TrackEval's scripts/run_mot_challenge.py beside
# GT_FOLDER / SEQMAP_FILE / SKIP_SPLIT_FOL True / TRACKER_SUB_FOLDER '' (the rest are its
# defaults: BENCHMARK MOT17, DO_PREPROC True). DanceTrack: its README's command; SportsMOT:
# codes/evaluation/TrackEval/evalutate.sh; BFT: MOTIP's submit_and_evaluate.py; MOT17 / MOT20:
# TrackEval's own README.
OWNERS = {"dancetrack": {}, "sportsmot": {"BENCHMARK": "sportsmot"}, "mot17": {"BENCHMARK": "MOT17"},
          "mot20": {"BENCHMARK": "MOT20"}, "bft": {}}
KEYS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "FP", "FN", "IDSW")


def _lines(rows):
    return "".join(",".join(f"{v:g}" for v in r) + "\n" for r in rows)


def make_scene(root: Path, names, seed: int, frames: int = 24, people: int = 6):
    """gt (5% of rows zero-flagged, 3% class 7, 3% class 6, 2% class 2) and a noisy tracker that
    also puts boxes on every zero-flagged and distractor row."""
    rng = np.random.default_rng(seed)
    gt_dir, trk_dir = root / "gt", root / "trk"
    trk_dir.mkdir(parents=True)
    for name in names:
        rows, tracked = [], []
        start = rng.uniform(0, 600, size=(people, 2))
        vel = rng.uniform(-6, 6, size=(people, 2))
        for f in range(1, frames + 1):
            for p in range(people):
                x, y = start[p] + vel[p] * f
                u = rng.random()
                consider, cls = (0, 1) if u < 0.05 else (1, 7) if u < 0.08 else (1, 6) if u < 0.11 else \
                    (1, 2) if u < 0.13 else (1, 1)
                rows.append((f, p + 1, round(x), round(y), 40, 90, consider, cls, 1))
                if rng.random() < 0.85:  # detected, a little off, ids swapped half way for two people
                    tid = p + 1 if not (f > frames // 2 and p < 2) else 2 - p
                    tracked.append((f, tid, round(x + rng.normal(0, 3)), round(y + rng.normal(0, 3)), 40, 90,
                                    round(float(rng.uniform(0.3, 1)), 3), -1, -1, -1))
            if rng.random() < 0.3:  # a false positive far from anyone
                tracked.append((f, 99, 900, 900, 30, 60, 0.5, -1, -1, -1))
        seq = gt_dir / name
        (seq / "gt").mkdir(parents=True)
        (seq / "gt" / "gt.txt").write_text(_lines(rows))
        (seq / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nseqLength={frames}\n")
        (trk_dir / f"{name}.txt").write_text(_lines(tracked))
    return gt_dir, trk_dir


def trackeval_direct(gt_dir: Path, trk_dir: Path, names, owners: dict, tmp: Path) -> dict:
    """TrackEval's Evaluator as run_mot_challenge.py runs it, on a seqmap of `names`:
    {seq or 'COMBINED_SEQ': {key: value}}."""
    import trackeval
    tmp.mkdir(parents=True, exist_ok=True)
    seqmap = tmp / "seqmap.txt"
    seqmap.write_text("name\n" + "".join(f"{n}\n" for n in names))
    eval_config = {**trackeval.Evaluator.get_default_eval_config(), "USE_PARALLEL": False, "PRINT_RESULTS": False,
                   "PRINT_CONFIG": False, "TIME_PROGRESS": False, "OUTPUT_SUMMARY": False,
                   "OUTPUT_DETAILED": False, "PLOT_CURVES": False}
    dataset_config = {**trackeval.datasets.MotChallenge2DBox.get_default_dataset_config(),
                      "GT_FOLDER": str(gt_dir), "TRACKERS_FOLDER": str(trk_dir.parent),
                      "TRACKERS_TO_EVAL": [trk_dir.name], "TRACKER_SUB_FOLDER": "", "SEQMAP_FILE": str(seqmap),
                      "SKIP_SPLIT_FOL": True, "SPLIT_TO_EVAL": "val", "OUTPUT_FOLDER": str(tmp / "out"),
                      "PRINT_CONFIG": False, **owners}
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR(), trackeval.metrics.Identity()]
    with contextlib.redirect_stdout(io.StringIO()):
        dataset = trackeval.datasets.MotChallenge2DBox(dataset_config)
        res, _ = trackeval.Evaluator(eval_config).evaluate([dataset], metrics)
    out = {}
    for seq, by_class in res["MotChallenge2DBox"][trk_dir.name].items():
        r = by_class["pedestrian"]
        out[seq] = {"HOTA": 100 * np.mean(r["HOTA"]["HOTA"]), "DetA": 100 * np.mean(r["HOTA"]["DetA"]),
                    "AssA": 100 * np.mean(r["HOTA"]["AssA"]), "MOTA": 100 * r["CLEAR"]["MOTA"],
                    "IDF1": 100 * r["Identity"]["IDF1"], "FP": r["CLEAR"]["CLR_FP"], "FN": r["CLEAR"]["CLR_FN"],
                    "IDSW": r["CLEAR"]["IDSW"]}
    return out


def assert_same(ours: dict, ref: dict):
    for key in KEYS:
        assert ours[key] == pytest.approx(ref[key], abs=1e-6), key


@pytest.mark.parametrize("name", sorted(OWNERS))
def test_scores_equal_trackeval_run_with_the_owners_settings(name, tmp_path):
    names = ["seqA", "seqB", "seqC"]
    gt, trk = make_scene(tmp_path, names, seed=len(name))
    ref = trackeval_direct(gt, trk, names, OWNERS[name], tmp_path / "ref")
    ours = evaluate(gt, trk, benchmark=name)
    assert_same(ours["combined"], ref["COMBINED_SEQ"])
    for seq in names:
        assert_same(ours["per_sequence"][seq], ref[seq])
    # the distractor classes matter: MOT20 ignores class 6 boxes that the others count as FP
    mot17 = evaluate(gt, trk, benchmark="mot17")["combined"]
    if name == "mot20":
        assert ours["combined"]["FP"] < mot17["FP"]
    else:
        assert ours["combined"] == mot17  # every other owner scores with MOT17's rules
    # zero-flagged rows are not targets under any owner's settings: boxes on them are FPs
    assert ours["combined"]["FP"] > 0


@pytest.mark.parametrize("name", ["dancetrack", "mot20"])
def test_a_sequence_without_a_result_is_an_error_as_in_trackeval(name, tmp_path):
    names = ["seqA", "seqB", "seqC"]
    gt, trk = make_scene(tmp_path, names, seed=3)
    (trk / "seqB.txt").unlink()
    import trackeval
    with pytest.raises(trackeval.utils.TrackEvalException, match="seqB"):
        trackeval_direct(gt, trk, names, OWNERS[name], tmp_path / "ref")
    with pytest.raises(EvaluationInputError, match="seqB"):
        evaluate(gt, trk, benchmark=name)
    rest = evaluate(gt, trk, benchmark=name, allow_missing=True)
    assert rest["missing"] == {"results": ["seqB"]}
    assert_same(rest["combined"], trackeval_direct(gt, trk, ["seqA", "seqC"], OWNERS[name],
                                                   tmp_path / "ref2")["COMBINED_SEQ"])
    # a sequence of the seqmap without gt
    seqmap = tmp_path / "map.txt"
    seqmap.write_text("name\nseqA\nseqZ\n")
    with pytest.raises(EvaluationInputError, match="seqZ"):
        evaluate(gt, trk, seqmap=seqmap, benchmark=name)


def test_the_released_seqmap_beside_the_split_is_read(tmp_path):
    """DanceTrack / BFT: DanceTrack/val_seqmap.txt lists what is scored, as the owners' command reads it."""
    root = tmp_path / "DanceTrack"
    gt, trk = make_scene(tmp_path / "x", ["dancetrack0004", "dancetrack0005"], seed=5)
    root.mkdir()
    gt.rename(root / "val")
    (root / "val_seqmap.txt").write_text("name\ndancetrack0004\n")
    res = evaluate(root / "val", trk, benchmark="dancetrack")
    assert list(res["per_sequence"]) == ["dancetrack0004"] and res["seqmap"] == str(root / "val_seqmap.txt")
    (root / "val_seqmap.txt").write_text("name\ndancetrack0004\ndancetrack0007\n")
    with pytest.raises(EvaluationInputError, match="dancetrack0007"):
        evaluate(root / "val", trk, benchmark="dancetrack")


def test_sportsmot_per_sport_rows_equal_trackeval_on_each_sports_list(tmp_path, capsys):
    sports = {"basketball": ["v_a_c001", "v_a_c002"], "football": ["v_b_c001"], "volleyball": ["v_c_c001"]}
    names = [n for group in sports.values() for n in group]
    root = tmp_path / "SportsMOT"
    gt, trk = make_scene(tmp_path / "x", names, seed=7)
    root.mkdir()
    gt.rename(root / "val")
    (root / "splits_txt").mkdir()
    for sport, seqs in sports.items():  # released without a header line
        (root / "splits_txt" / f"{sport}.txt").write_text("".join(f"{s}\n" for s in seqs + ["v_not_in_val"]))
    res = evaluate(root / "val", trk, benchmark="sportsmot")
    assert list(res["groups"]) == list(sports)
    for sport, seqs in sports.items():
        ref = trackeval_direct(root / "val", trk, seqs, OWNERS["sportsmot"], tmp_path / sport)["COMBINED_SEQ"]
        assert_same(res["groups"][sport], ref)
    assert main(["--gt_folder", str(root / "val"), "--tracker_folder", str(trk), "--dataset", "sportsmot",
                 "--json", str(tmp_path / "e.json")]) == 0
    table = capsys.readouterr().out
    assert all(f"[{sport}]" in table for sport in sports)
    assert '"groups"' in (tmp_path / "e.json").read_text()


def test_half_frame_ranges_are_bytetracks_and_motips():
    # MOT17-02 has 600 frames, MOT17-05 837
    assert registry.half_frames(600, "train_half") == (1, 301)
    assert registry.half_frames(600, "val_half") == (302, 600)
    assert registry.half_frames(837, "train_half") == (1, 419)
    assert registry.half_frames(837, "val_half") == (420, 837)
    assert registry.half_frames(600, "train_half", "motip") == (1, 300)
    assert registry.half_frames(600, "val_half", "motip") == (301, 600)
    for n in range(2, 60):
        for conv in registry.HALF_CONVENTIONS:
            (a, b), (c, d) = registry.half_frames(n, "train_half", conv), registry.half_frames(n, "val_half", conv)
            assert a == 1 and c == b + 1 and d == n


def test_val_half_scores_the_second_half_renumbered_from_one(tmp_path):
    frames = 25
    gt, trk = make_scene(tmp_path, ["MOT17-02-FRCNN"], seed=11, frames=frames)
    first, last = frames // 2 + 2, frames  # ByteTrack: val_half is frames n//2+2 .. n
    # the reference: ByteTrack's gt_val_half.txt (rows of the range, frame - (first - 1)) and the
    # tracker's rows of the range, renumbered the same way
    ref_gt = tmp_path / "ref_gt" / "MOT17-02-FRCNN"
    (ref_gt / "gt").mkdir(parents=True)
    rows = np.loadtxt(gt / "MOT17-02-FRCNN" / "gt" / "gt.txt", delimiter=",")
    rows = rows[rows[:, 0] >= first]
    rows[:, 0] -= first - 1
    (ref_gt / "gt" / "gt.txt").write_text(_lines(rows))
    (ref_gt / "seqinfo.ini").write_text(f"[Sequence]\nseqLength={last - first + 1}\n")
    half_trk = tmp_path / "half" / "trk"
    half_trk.mkdir(parents=True)
    t = np.loadtxt(trk / "MOT17-02-FRCNN.txt", delimiter=",")
    t = t[t[:, 0] >= first]
    t[:, 0] -= first - 1
    (half_trk / "MOT17-02-FRCNN.txt").write_text(_lines(t))
    ref = trackeval_direct(ref_gt.parent, half_trk, ["MOT17-02-FRCNN"], OWNERS["mot17"], tmp_path / "ref")
    ours = evaluate(gt, half_trk, benchmark="mot17", half="val_half")
    assert_same(ours["combined"], ref["COMBINED_SEQ"])
    # a result numbered as the full video has frames beyond the half: named
    with pytest.raises(EvaluationInputError, match="beyond the sequence length"):
        evaluate(gt, trk, benchmark="mot17", half="val_half")


def test_half_splits_track_and_train_on_their_frames(tmp_path):
    from datasets.dance import DetMOTDetection
    from datasets.layouts import resolve_split
    from datasets.sequences import SequenceError
    from datasets.synthetic import make_dataset
    from main import get_args_parser
    make_dataset(tmp_path, splits={"train": 1}, seed=1, num_frames=9, width=96, height=64, num_dancers=3,
                 layout="mot17")
    val = resolve_split(str(tmp_path), "mot17", "val_half").read("MOT17-01-FRCNN")
    # ByteTrack: 9 frames -> train 1..5, val 6..9, numbered 1..4
    assert [n for n, _ in val.frames] == [1, 2, 3, 4]
    assert [p.rsplit("/", 1)[1] for _, p in val.frames] == [f"{i:06d}.jpg" for i in range(6, 10)]
    assert val.frames[0][1].startswith("MOT17/train/") and val.info["seqlength"] == "4"
    motip = resolve_split(str(tmp_path), "mot17", "val_half", half_convention="motip").read("MOT17-01-FRCNN")
    assert motip.frames[0][1].endswith("000005.jpg") and len(motip.frames) == 5
    with pytest.raises(SequenceError, match="no half splits"):
        resolve_split(str(tmp_path), "dancetrack", "val_half")
    small = ["--mot_path", str(tmp_path), "--dataset_file", "mot17", "--sampler_lengths", "2"]
    full = DetMOTDetection(get_args_parser().parse_args(small))
    half = DetMOTDetection(get_args_parser().parse_args(small + ["--train_split", "train_half"]))
    (vid,) = half.labels_full
    assert sorted(half.labels_full[vid]) == [1, 2, 3, 4, 5] and len(full.labels_full[vid]) == 9
    assert len(half) < len(full)


def test_public_protocol_reports_only_tracks_born_from_a_proposal():
    import torch
    from models.tracker import Tracker, TrackerConfig
    from tests.helpers import build_parity_model
    torch.manual_seed(0)
    network, _ = build_parity_model()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(64, 96, 3), dtype=np.uint8)
    dets = [np.array([[10, 10, 40, 60, 0.9], [50, 5, 80, 50, 0.8]]), np.zeros((0, 5)), np.zeros((0, 5))]
    runs = {}
    for public in (False, True):
        tracker = Tracker(network, TrackerConfig(score_threshold=0.05, update_score_threshold=0.05,
                                                 area_threshold=0, public_protocol=public), device="cpu",
                          input_size=(64, 96))
        frames = []
        for d in dets:
            rows = tracker.update(d, img)
            births = dict(zip(tracker.tracks.obj_idxes.tolist(), tracker.tracks.birth_det_index.tolist()))
            frames.append((rows, births))
        runs[public] = frames
    for (plain, births), (public, _) in zip(runs[False], runs[True]):
        born_from_proposal = [r for r in plain if births[int(r[4])] >= 0]
        np.testing.assert_allclose(public, np.array(born_from_proposal).reshape(-1, 8))
    assert any(len(p) for p, _ in runs[False])  # the plain run reports something to filter
    # a frame with no proposals starts no reportable track
    tracker = Tracker(network, TrackerConfig(score_threshold=0.05, update_score_threshold=0.05, area_threshold=0,
                                             public_protocol=True), device="cpu", input_size=(64, 96))
    assert len(tracker.update(np.zeros((0, 5)), img)) == 0


def test_public_scores_are_mapped_into_unit_range_per_copy(tmp_path):
    from tools import make_detdb
    det_lines = "1,-1,10,10,20,40,2.3\n1,-1,40,10,20,40,-0.42\n2,-1,10,10,20,40,0\n"
    root = tmp_path / "MOT17" / "train"
    for copy in ("DPM", "FRCNN"):
        seq = root / f"MOT17-02-{copy}"
        (seq / "img1").mkdir(parents=True)
        (seq / "det").mkdir()
        for f in (1, 2):
            import cv2
            cv2.imwrite(str(seq / "img1" / f"{f:06d}.jpg"), np.zeros((64, 96, 3), np.uint8))
        (seq / "seqinfo.ini").write_text(f"[Sequence]\nname={seq.name}\nimDir=img1\nseqLength=2\n"
                                         "imWidth=96\nimHeight=64\nimExt=.jpg\n")
        (seq / "det" / "det.txt").write_text(det_lines if copy == "DPM" else det_lines.replace("2.3", "0.97")
                                             .replace("-0.42", "0.31"))
    db = make_detdb.main(["--from_det_txt", "--dataset", "mot17", "--mot17_copy", "all", "--mot_path", str(tmp_path),
                          "--split", "train", "--output", str(tmp_path / "db.json")])
    dpm = [float(line.split(",")[4]) for line in db["MOT17/train/MOT17-02-DPM/img1/000001.txt"]]
    assert dpm == pytest.approx([1 / (1 + np.exp(-2.3)), 1 / (1 + np.exp(0.42))], abs=1e-9)
    assert float(db["MOT17/train/MOT17-02-DPM/img1/000002.txt"][0].split(",")[4]) == pytest.approx(0.5)
    frcnn = [float(line.split(",")[4]) for line in db["MOT17/train/MOT17-02-FRCNN/img1/000001.txt"]]
    assert frcnn == [0.97, 0.31]  # probabilities already: unchanged
