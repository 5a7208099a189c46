"""Tests for tools/evaluate.py (TrackEval-based HOTA / CLEAR / Identity evaluation)."""

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools.evaluate import METRIC_KEYS, EvaluationInputError, evaluate, main  # noqa: E402

from tests.helpers import DATA  # noqa: E402
TUD_DIR = DATA / "tud_campus"

# A numpy-2 incompatibility inside trackeval would first show up as a DeprecationWarning.
pytestmark = pytest.mark.filterwarnings("error::DeprecationWarning")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def mot_line(frame, track_id, box, tail=(1, 1, 1)):
    x, y, w, h = box
    return ",".join(str(v) for v in (frame, track_id, x, y, w, h, *tail))


def write_sequence(split_dir: Path, name: str, gt_lines, seq_length: int) -> Path:
    seq_dir = split_dir / name
    (seq_dir / "gt").mkdir(parents=True)
    (seq_dir / "gt" / "gt.txt").write_text("".join(line + "\n" for line in gt_lines))
    (seq_dir / "seqinfo.ini").write_text(
        f"[Sequence]\nname={name}\nimDir=img1\nframeRate=20\nseqLength={seq_length}\n"
        "imWidth=640\nimHeight=480\nimExt=.jpg\n")
    return seq_dir


def write_tracker(tracker_dir: Path, name: str, lines) -> Path:
    tracker_dir.mkdir(parents=True, exist_ok=True)
    path = tracker_dir / f"{name}.txt"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def two_walkers(num_frames):
    """Two far-apart people walking right: {frame: [(gt_id, box), ...]} (IoU between them is 0)."""
    return {f: [(1, (10 + 3 * f, 50, 40, 100)), (2, (300 + 3 * f, 60, 40, 100))]
            for f in range(1, num_frames + 1)}


def gt_lines_of(frames):
    return [mot_line(f, i, box) for f, objs in frames.items() for i, box in objs]


def tracker_lines_of(frames, id_of=lambda frame, gt_id: gt_id):
    return [mot_line(f, id_of(f, i), box, tail=(0.9, -1, -1, -1)) for f, objs in frames.items()
            for i, box in objs]


def check_row(row, expected, tol=1e-9):
    for key, value in expected.items():
        if key == "IDSW":
            assert row[key] == value, key
        else:
            assert row[key] == pytest.approx(value, abs=tol), key


# --------------------------------------------------------------------------------------------
# published figures: TUD-Campus
# --------------------------------------------------------------------------------------------

def build_tud(tmp_path):
    # README: column 8 (class) of gt.txt is -1 and must be set to 1 (pedestrian); 71 frames.
    gt_lines = []
    for line in (TUD_DIR / "gt.txt").read_text().splitlines():
        fields = line.split(",")
        fields[7] = "1"
        gt_lines.append(",".join(fields))
    split = tmp_path / "gt"
    write_sequence(split, "TUD-Campus", gt_lines, seq_length=71)
    trackers = tmp_path / "tracker"
    write_tracker(trackers, "TUD-Campus", (TUD_DIR / "test.txt").read_text().splitlines())
    return split, trackers


def test_tud_campus_matches_published_figures(tmp_path):
    split, trackers = build_tud(tmp_path)
    res = evaluate(split, trackers, benchmark="custom")
    combined = res["combined"]
    assert combined["MOTA"] / 100 == pytest.approx(0.526462, abs=1e-6)
    assert combined["IDF1"] / 100 == pytest.approx(0.557659, abs=1e-6)
    assert combined["HOTA"] / 100 == pytest.approx(0.391397, abs=1e-6)
    assert combined["IDSW"] == 7
    # One sequence: the combined row is that sequence's row.
    assert res["per_sequence"]["TUD-Campus"] == combined


def test_tud_raw_gt_class_is_rejected_with_line(tmp_path):
    # Unmodified TUD gt has class -1, which TrackEval's MOTChallenge reader cannot use.
    split = tmp_path / "gt"
    seq_dir = write_sequence(split, "TUD-Campus", (TUD_DIR / "gt.txt").read_text().splitlines(), 71)
    write_tracker(tmp_path / "trk", "TUD-Campus", (TUD_DIR / "test.txt").read_text().splitlines())
    with pytest.raises(EvaluationInputError) as info:
        evaluate(split, tmp_path / "trk", benchmark="custom")
    assert info.value.path == str(seq_dir / "gt" / "gt.txt") and info.value.line == 1
    assert "class" in str(info.value)


# --------------------------------------------------------------------------------------------
# hand-made cases with known answers
# --------------------------------------------------------------------------------------------

def test_perfect_tracker_scores_100(tmp_path):
    frames = two_walkers(12)
    # A third person who overlaps person 1 (IoU ~0.4) and leaves halfway.
    for f in range(1, 7):
        frames[f].append((7, (30 + 3 * f, 50, 40, 100)))
    split = tmp_path / "gt"
    gt_dir = write_sequence(split, "seq", gt_lines_of(frames), seq_length=12)
    trackers = tmp_path / "trk"
    # Tracker file is a byte copy of the gt file (DanceTrack gt: frame,id,x,y,w,h,1,1,1).
    write_tracker(trackers, "seq", (gt_dir / "gt" / "gt.txt").read_text().splitlines())
    res = evaluate(split, trackers, benchmark="custom")
    perfect = {"HOTA": 100, "DetA": 100, "AssA": 100, "MOTA": 100, "IDF1": 100, "IDSW": 0}
    check_row(res["combined"], perfect)
    check_row(res["per_sequence"]["seq"], perfect)
    assert isinstance(res["combined"]["IDSW"], int)


@pytest.mark.parametrize("swap_after", [5, 3])
def test_id_swap_loses_association_not_detection(tmp_path, swap_after):
    n = 10
    frames = two_walkers(n)
    split = tmp_path / "gt"
    write_sequence(split, "seq", gt_lines_of(frames), seq_length=n)
    # Same boxes, but from frame swap_after + 1 on the two ids are exchanged.
    swapped = tracker_lines_of(frames, id_of=lambda f, i: i if f <= swap_after else 3 - i)
    write_tracker(tmp_path / "trk", "seq", swapped)
    row = evaluate(split, tmp_path / "trk", benchmark="custom")["combined"]

    k = swap_after
    # Every box is found exactly: detection is perfect at every IoU threshold.
    # CLEAR: both gt tracks change their matched tracker id once -> 2 switches.
    # IDF1: the best global id map keeps the longer half of each track: IDTP = 2*max(k, n-k)
    #   of 2n gt and 2n tracker boxes -> IDF1 = IDTP / (2n).
    # AssA: a TP of pair (gt, trk) sharing m frames scores m / (n + n - m); k-frame pairs
    #   hold 2k TPs and (n-k)-frame pairs hold 2(n-k) TPs.
    ass_a = (2 * k * k / (2 * n - k) + 2 * (n - k) * (n - k) / (n + k)) / (2 * n)
    expected = {
        "DetA": 100.0,
        "IDSW": 2,
        "MOTA": 100.0 * (1 - 2 / (2 * n)),
        "IDF1": 100.0 * 2 * max(k, n - k) / (2 * n),
        "AssA": 100.0 * ass_a,
        "HOTA": 100.0 * math.sqrt(ass_a),
    }
    check_row(row, expected)
    assert row["AssA"] < 100 and row["IDF1"] < 100


def test_hota_averages_over_iou_thresholds(tmp_path):
    # Every tracker box is shifted 23 px right of its 100x100 gt box: IoU = 77/123 = 0.626.
    # HOTA counts it as a match for thresholds 0.05..0.60 (12 of 19) and as a miss plus a false
    # positive above; CLEAR and Identity match at IoU 0.5, so they see a perfect tracker.
    frames = {f: [(1, (0, 0, 100, 100)), (2, (300, 0, 100, 100))] for f in range(1, 5)}
    shifted = {f: [(i, (x + 23, y, w, h)) for i, (x, y, w, h) in objs] for f, objs in frames.items()}
    split = tmp_path / "gt"
    write_sequence(split, "seq", gt_lines_of(frames), seq_length=4)
    write_tracker(tmp_path / "trk", "seq", tracker_lines_of(shifted))
    row = evaluate(split, tmp_path / "trk", benchmark="custom")["combined"]
    frac = 12 / 19
    check_row(row, {"DetA": 100 * frac, "AssA": 100 * frac, "HOTA": 100 * frac,
                    "MOTA": 100, "IDF1": 100, "IDSW": 0})


def test_trailing_commas_and_spaces_are_accepted(tmp_path):
    frames = two_walkers(6)
    split = tmp_path / "gt"
    write_sequence(split, "seq", gt_lines_of(frames), seq_length=6)
    swapped = tracker_lines_of(frames, id_of=lambda f, i: i if f <= 2 else 3 - i)
    write_tracker(tmp_path / "plain", "seq", swapped)
    write_tracker(tmp_path / "spaced", "seq", [line.replace(",", ", ") + "," for line in swapped])
    spaced = evaluate(split, tmp_path / "spaced", benchmark="custom")["combined"]
    assert spaced == evaluate(split, tmp_path / "plain", benchmark="custom")["combined"]
    assert spaced["IDSW"] == 2


def test_empty_tracker_scores_zero(tmp_path):
    split = tmp_path / "gt"
    write_sequence(split, "seq", gt_lines_of(two_walkers(5)), seq_length=5)
    write_tracker(tmp_path / "trk", "seq", [])
    row = evaluate(split, tmp_path / "trk", benchmark="custom")["combined"]
    check_row(row, {"HOTA": 0, "DetA": 0, "AssA": 0, "MOTA": 0, "IDF1": 0, "IDSW": 0})


def test_combined_pools_detections_over_sequences(tmp_path):
    # Sequence "a" tracked perfectly (G1 boxes), sequence "b" not at all (G2 boxes): combined
    # scores pool counts over sequences instead of averaging per-sequence scores.
    split, trk = tmp_path / "gt", tmp_path / "trk"
    frames_a, frames_b = two_walkers(6), two_walkers(3)
    write_sequence(split, "a", gt_lines_of(frames_a), 6)
    write_sequence(split, "b", gt_lines_of(frames_b), 3)
    write_tracker(trk, "a", tracker_lines_of(frames_a))
    write_tracker(trk, "b", [])
    res = evaluate(split, trk, benchmark="custom")
    g1, g2 = 12, 6
    det_a = g1 / (g1 + g2)
    check_row(res["combined"], {
        "DetA": 100 * det_a, "AssA": 100.0, "HOTA": 100 * math.sqrt(det_a),
        "MOTA": 100 * det_a, "IDF1": 100 * 2 * g1 / (2 * g1 + g2), "IDSW": 0})
    assert sorted(res["per_sequence"]) == ["a", "b"]
    check_row(res["per_sequence"]["a"], {"HOTA": 100, "MOTA": 100})
    check_row(res["per_sequence"]["b"], {"HOTA": 0, "MOTA": 0})


def test_gt_ignore_flag_and_distractor_class(tmp_path):
    # DanceTrack/MOT17 rules: a gt row with 7th column 0 is not scored; only class 1
    # (pedestrian) gt is scored; a tracker box on a distractor-class gt (8 = distractor) is
    # dropped instead of counted as a false positive.
    frames = two_walkers(4)
    gt = gt_lines_of(frames)
    gt += [mot_line(f, 5, (500, 300, 40, 80), tail=(0, 1, 1)) for f in range(1, 5)]  # ignored
    gt += [mot_line(f, 6, (150, 300, 40, 80), tail=(1, 8, 1)) for f in range(1, 5)]  # distractor
    # A static person (class 7, also a distractor) nobody tracks: not a miss either.
    gt += [mot_line(f, 8, (400, 300, 40, 80), tail=(1, 7, 1)) for f in range(1, 5)]
    split = tmp_path / "gt"
    write_sequence(split, "seq", gt, seq_length=4)
    trk = tracker_lines_of(frames)
    trk_with_distractor = trk + [mot_line(f, 9, (150, 300, 40, 80), tail=(0.5, -1, -1, -1))
                                 for f in range(1, 5)]
    write_tracker(tmp_path / "trk", "seq", trk_with_distractor)
    row = evaluate(split, tmp_path / "trk", benchmark="custom")["combined"]
    check_row(row, {"HOTA": 100, "DetA": 100, "AssA": 100, "MOTA": 100, "IDF1": 100, "IDSW": 0})


def test_seqmap_selects_sequences(tmp_path):
    split, trk = tmp_path / "gt", tmp_path / "trk"
    frames = two_walkers(4)
    write_sequence(split, "a", gt_lines_of(frames), 4)
    write_sequence(split, "b", gt_lines_of(frames), 4)
    write_tracker(trk, "a", tracker_lines_of(frames))  # no b.txt: b is not in the seqmap
    seqmap = tmp_path / "seqmap.txt"
    seqmap.write_text("name\na\n")
    res = evaluate(split, trk, seqmap=seqmap, benchmark="custom")
    assert list(res["per_sequence"]) == ["a"]
    check_row(res["combined"], {"HOTA": 100, "IDSW": 0})


def test_evaluate_is_quiet_and_writes_nothing(tmp_path, capfd):
    split, trackers = build_tud(tmp_path)
    before = sorted(p for p in tmp_path.rglob("*"))
    evaluate(split, trackers, benchmark="custom")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert sorted(p for p in tmp_path.rglob("*")) == before


# --------------------------------------------------------------------------------------------
# input errors: the message names the file and line; the CLI exits non-zero
# --------------------------------------------------------------------------------------------

GOOD = [mot_line(f, i, box, tail=(0.9, -1, -1, -1)) for f, objs in two_walkers(5).items()
        for i, box in objs]

BAD_TRACKER_FILES = {
    # name: (tracker lines, 1-based line at fault, text the message must contain)
    "frame_beyond_length": (GOOD[:3] + ["6,1,10,10,40,100,0.9,-1,-1,-1"] + GOOD[3:], 4, "beyond"),
    "frame_zero": (GOOD[:2] + ["0,1,10,10,40,100,0.9,-1,-1,-1"], 3, "before the first frame"),
    "duplicate_id_in_frame": (GOOD[:5] + ["3,1,200,10,40,100,0.9,-1,-1,-1"] + GOOD[5:], 6,
                              "twice in frame 3"),
    "non_numeric": (GOOD[:1] + ["1,2,abc,10,40,100,0.9,-1,-1,-1"], 2, "non-numeric"),
    "too_few_columns": (GOOD[:2] + ["2,1,10,10,40,100"], 3, "need at least 7"),
    "column_count_changes": (GOOD[:2] + ["2,1,10,10,40,100,0.9"], 3, "line 1 has 10"),
    "blank_line": (GOOD[:2] + [""] + GOOD[2:], 3, "blank line"),
    "fractional_frame": (GOOD[:1] + ["1.5,3,10,10,40,100,0.9,-1,-1,-1"], 2, "not an integer"),
    "negative_id": (GOOD[:1] + ["1,-4,10,10,40,100,0.9,-1,-1,-1"], 2, "negative"),
    "non_finite_box": (GOOD[:1] + ["1,3,nan,10,40,100,0.9,-1,-1,-1"], 2, "non-finite"),
    "non_pedestrian_class": (GOOD[:1] + ["1,3,10,10,40,100,0.9,3,-1,-1"], 2, "not pedestrian"),
}


@pytest.fixture
def gt_split(tmp_path):
    split = tmp_path / "gt"
    write_sequence(split, "seq", gt_lines_of(two_walkers(5)), seq_length=5)
    return split


@pytest.mark.parametrize("case", sorted(BAD_TRACKER_FILES))
def test_bad_tracker_file_names_file_and_line(tmp_path, gt_split, capsys, case):
    lines, bad_line, phrase = BAD_TRACKER_FILES[case]
    path = write_tracker(tmp_path / "trk", "seq", lines)
    with pytest.raises(EvaluationInputError) as info:
        evaluate(gt_split, tmp_path / "trk", benchmark="custom")
    message = str(info.value)
    assert info.value.path == str(path) and info.value.line == bad_line
    assert f"{path}:{bad_line}:" in message and phrase in message

    rc = main(["--gt_folder", str(gt_split), "--tracker_folder", str(tmp_path / "trk"), "--benchmark", "custom"])
    err = capsys.readouterr().err
    assert rc != 0
    assert err.count("\n") == 1 and f"{path}:{bad_line}:" in err


def test_duplicate_id_reports_first_in_file_and_earlier_line(tmp_path, gt_split):
    # Two duplicates; the one in frame 3 comes first in the file although frame 1 sorts first.
    lines = ["3,1,10,10,40,100,0.9,-1,-1,-1", "3,2,90,10,40,100,0.9,-1,-1,-1",
             "3,1,200,10,40,100,0.9,-1,-1,-1", "1,4,10,10,40,100,0.9,-1,-1,-1",
             "1,4,90,10,40,100,0.9,-1,-1,-1"]
    path = write_tracker(tmp_path / "trk", "seq", lines)
    with pytest.raises(EvaluationInputError) as info:
        evaluate(gt_split, tmp_path / "trk", benchmark="custom")
    assert str(info.value) == f"{path}:3: id 1 appears twice in frame 3 (also on line 1)"


def test_missing_tracker_sequence_file(tmp_path, gt_split):
    write_sequence(gt_split, "other", gt_lines_of(two_walkers(2)), seq_length=2)
    write_tracker(tmp_path / "trk", "seq", GOOD)  # other.txt is missing
    with pytest.raises(EvaluationInputError) as info:
        evaluate(gt_split, tmp_path / "trk", benchmark="custom")
    assert info.value.path == str((tmp_path / "trk").resolve())
    assert "no result file" in str(info.value) and "other" in str(info.value) and "--allow_missing" in str(info.value)
    # The real CLI, as a separate process: non-zero exit and a one-line message naming the sequence.
    argv = [sys.executable, str(REPO_ROOT / "tools" / "evaluate.py"), "--gt_folder", str(gt_split),
            "--tracker_folder", str(tmp_path / "trk"), "--benchmark", "custom"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))  # this checkout's code, whatever the venv points at
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode != 0
    assert proc.stdout == "" and proc.stderr.strip().count("\n") == 0 and "other" in proc.stderr
    # --allow_missing: the rest is scored and the left-out sequence printed
    proc = subprocess.run(argv + ["--allow_missing"], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "not scored (no result file): other" in proc.stdout
    res = evaluate(gt_split, tmp_path / "trk", benchmark="custom", allow_missing=True)
    assert list(res["per_sequence"]) == ["seq"] and res["missing"] == {"results": ["other"]}
    # no --benchmark / --dataset: refused, never guessed
    proc = subprocess.run(argv[:-2], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2 and "--benchmark" in proc.stderr


def test_bad_gt_and_seqinfo_are_named(tmp_path, gt_split):
    write_tracker(tmp_path / "trk", "seq", GOOD)
    ini = gt_split / "seq" / "seqinfo.ini"
    ini.write_text("[Sequence]\nname=seq\n")
    with pytest.raises(EvaluationInputError) as info:
        evaluate(gt_split, tmp_path / "trk", benchmark="custom")
    assert info.value.path == str(ini) and "seqLength" in str(info.value)

    ini.write_text("[Sequence]\nseqLength=4\n")  # gt has frame 5
    gt_file = gt_split / "seq" / "gt" / "gt.txt"
    with pytest.raises(EvaluationInputError) as info:
        evaluate(gt_split, tmp_path / "trk", benchmark="custom")
    assert info.value.path == str(gt_file) and info.value.line == 9 and "beyond" in str(info.value)


# --------------------------------------------------------------------------------------------
# CLI / shell wrapper
# --------------------------------------------------------------------------------------------

def test_cli_table_and_json(tmp_path, capsys):
    split, trackers = build_tud(tmp_path)
    out_json = tmp_path / "out" / "eval.json"
    rc = main(["--gt_folder", str(split), "--tracker_folder", str(trackers), "--json", str(out_json), "--dataset", "custom"])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "TUD-Campus" in stdout and "COMBINED" in stdout and "52.646" in stdout
    saved = json.loads(out_json.read_text())
    assert saved == evaluate(split, trackers, benchmark="custom")
    assert set(saved["combined"]) == set(METRIC_KEYS)
    assert not list(out_json.parent.glob("*.tmp"))  # the temp file was renamed away


def test_eval_dance_sh_writes_eval_json(tmp_path):
    split, trackers = build_tud(tmp_path)
    seqmap = tmp_path / "seqmap"
    seqmap.write_text("name\nTUD-Campus\n")
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run(["bash", str(REPO_ROOT / "tools" / "eval_dance.sh"), str(trackers), str(split),
                           str(seqmap)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((trackers / "eval.json").read_text())
    assert saved["combined"]["IDSW"] == 7
    assert saved["combined"]["MOTA"] / 100 == pytest.approx(0.526462, abs=1e-6)


# --------------------------------------------------------------------------------------------
# property: metrics do not depend on which integers name the tracks
# --------------------------------------------------------------------------------------------

# Boxes on a coarse grid so that gt and tracker boxes often overlap partially or exactly.
box_strategy = st.tuples(st.sampled_from([0, 10, 20, 40]), st.sampled_from([0, 15]),
                         st.sampled_from([20, 30]), st.sampled_from([20, 40]))


@st.composite
def scenes(draw):
    num_frames = draw(st.integers(1, 6))

    def tracks(max_tracks):
        count = draw(st.integers(1, max_tracks))
        # Per track, per frame: a box or absent.
        return [[draw(st.one_of(st.none(), box_strategy)) for _ in range(num_frames)]
                for _ in range(count)]

    gt, trk = tracks(3), tracks(4)
    new_ids = draw(st.lists(st.integers(0, 500), min_size=len(trk), max_size=len(trk), unique=True))
    return num_frames, gt, trk, new_ids


def lines_of_tracks(tracks, ids, tail):
    return [mot_line(f + 1, track_id, box, tail) for track_id, boxes in zip(ids, tracks)
            for f, box in enumerate(boxes) if box is not None]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenes())
def test_relabelling_tracker_ids_leaves_metrics_unchanged(scene):
    num_frames, gt, trk, new_ids = scene
    tail = (0.9, -1, -1, -1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_sequence(tmp / "gt", "seq", lines_of_tracks(gt, range(1, len(gt) + 1), (1, 1, 1)),
                       num_frames)
        write_tracker(tmp / "orig", "seq", lines_of_tracks(trk, range(1, len(trk) + 1), tail))
        write_tracker(tmp / "relabelled", "seq", lines_of_tracks(trk, new_ids, tail))
        original = evaluate(tmp / "gt", tmp / "orig", benchmark="custom")["combined"]
        relabelled = evaluate(tmp / "gt", tmp / "relabelled", benchmark="custom")["combined"]
    check_row(relabelled, original)
    for key in ("HOTA", "DetA", "AssA", "IDF1"):
        assert 0.0 <= original[key] <= 100.0 + 1e-9
