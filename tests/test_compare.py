"""tools/compare.py: the events it lists are the switches and fragments a result has, its tables are
tools/evaluate.py's, and its page renders in a real browser."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import DATA, REPO
from tools.compare import CompareInputError, compare, parse_tracker_args
from tools.evaluate import evaluate

MINI = DATA / "mot17_mini" / "train"          # real MOT17 frames and gt: 4 and 8 frames
LONG_SEQ, SHORT_SEQ = "MOT17-04-FRCNN", "MOT17-02-FRCNN"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FIRST_NEW_ID = 5000  # ids the scripted switches move to: above every gt id


def gt_tracks(seq):
    """{gt_id: {frame: box}} of the boxes MOT17's rules score (consider 1, class pedestrian)."""
    gt = np.loadtxt(MINI / seq / "gt" / "gt.txt", delimiter=",")
    gt = gt[(gt[:, 6] == 1) & (gt[:, 7] == 1)]
    tracks = {}
    for row in gt:
        tracks.setdefault(int(row[1]), {})[int(row[0])] = tuple(row[2:6])
    return tracks


def script(seq, edits):
    """A result made from the gt of ``seq`` (every box with its gt id), then ``edits`` applied, each
    ``(kind, gt_id, frame, length)`` on its own gt id: "switch" moves the id to a new one from
    ``frame`` on; "gap" removes ``length`` frames from ``frame``; "gap_switch" both, the new id
    after the gap. Returns the MOT lines and the events that must be found:
    (seq, frame, gt_id, old_id, new_id, kind, last_frame)."""
    tracks = {g: {f: (g, box) for f, box in frames.items()} for g, frames in gt_tracks(seq).items()}
    expected = set()
    for n, (kind, g, frame, length) in enumerate(edits):
        new_id = FIRST_NEW_ID + n
        if kind in ("gap", "gap_switch"):
            for f in range(frame, frame + length):
                del tracks[g][f]
            resume = frame + length
            expected.add((seq, resume, g, g, new_id if kind == "gap_switch" else g, "fragment", frame - 1))
        else:
            resume = frame
        if kind in ("switch", "gap_switch"):
            for f in tracks[g]:
                if f >= resume:
                    tracks[g][f] = (new_id, tracks[g][f][1])
            expected.add((seq, resume, g, g, new_id, "switch", frame - 1))
    lines = [f"{f},{tid},{x},{y},{w},{h},1,-1,-1,-1"
             for g in tracks for f, (tid, (x, y, w, h)) in sorted(tracks[g].items())]
    return lines, expected


def write_result(folder: Path, seq_lines: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seq, lines in seq_lines.items():
        (folder / f"{seq}.txt").write_text("\n".join(lines) + "\n")
    return folder


def found(report, tracker):
    return {(e["sequence"], e["frame"], e["gt_id"], e["old_id"], e["new_id"], e["kind"], e["last_frame"])
            for e in report["events"] if e["tracker"] == tracker}


def assert_counts_match_evaluate(report, gt_folder, folders, benchmark):
    for name, folder in folders.items():
        results = evaluate(str(gt_folder), str(folder), benchmark=benchmark)
        for seq, row in results["per_sequence"].items():
            got = report["tables"]["per_sequence"][seq][name]
            assert (got["IDSW"], got["Frag"]) == (row["IDSW"], row["Frag"])
            mine = [e for e in report["events"] if e["tracker"] == name and e["sequence"] == seq]
            assert sum(e["kind"] == "switch" for e in mine) == row["IDSW"]
            assert sum(e["kind"] == "fragment" for e in mine) == row["Frag"]
        assert report["tables"]["combined"][name] == results["combined"]


# Edits on distinct gt ids present in all of MOT17-04's 8 frames; each leaves the gt matched again.
LONG_IDS = sorted(g for g, frames in gt_tracks(LONG_SEQ).items() if len(frames) == 8)
EDITS = [("switch", LONG_IDS[0], 3, 0), ("gap", LONG_IDS[1], 4, 2), ("gap_switch", LONG_IDS[2], 2, 3),
         ("switch", LONG_IDS[3], 8, 0)]
SHORT_EDITS = [("gap", sorted(gt_tracks(SHORT_SEQ))[0], 2, 1)]


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    """The gt as a result (A) and its scripted copy (B) on both mini sequences, compared with crops."""
    root = tmp_path_factory.mktemp("compare")
    a_lines = {seq: script(seq, [])[0] for seq in (LONG_SEQ, SHORT_SEQ)}
    (b_long, exp_long), (b_short, exp_short) = script(LONG_SEQ, EDITS), script(SHORT_SEQ, SHORT_EDITS)
    folders = {"A": write_result(root / "a", a_lines),
               "B": write_result(root / "b", {LONG_SEQ: b_long, SHORT_SEQ: b_short})}
    report = compare(str(MINI), {k: str(v) for k, v in folders.items()}, str(root / "report"),
                     benchmark="mot17", images=str(MINI))
    return root / "report", report, folders, exp_long | exp_short


def test_events_are_the_injected_switches_and_fragments(scripted):
    _, report, _, expected = scripted
    assert found(report, "A") == set()
    assert found(report, "B") == expected
    # A kept every identity B lost: all of B's events are "one tracker only", and listed first.
    assert all(e["differential"] and e["also_in"] == [] for e in report["events"])
    for e in report["events"]:
        assert e["others"]["A"] == {"before": e["gt_id"], "after": e["gt_id"]}


def test_tables_and_counts_are_evaluates(scripted):
    out, report, folders, _ = scripted
    assert_counts_match_evaluate(report, MINI, folders, "mot17")
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["tables"] == report["tables"] and on_disk["events"] == report["events"]
    assert on_disk["tables"]["combined"]["A"]["HOTA"] == pytest.approx(100.0)


def test_timelines_show_the_gaps_and_the_new_ids(scripted):
    _, report, _, _ = scripted
    identities = {i["gt_id"]: i["tracks"] for i in report["timelines"][LONG_SEQ]["identities"]}
    assert report["timelines"][LONG_SEQ]["frames"] == 8
    switched, gapped, both, _ = (g for _, g, _, _ in EDITS)
    assert identities[switched]["A"] == [[1, 8, switched]]
    assert identities[switched]["B"] == [[1, 2, switched], [3, 8, FIRST_NEW_ID]]
    assert identities[gapped]["B"] == [[1, 3, gapped], [4, 5, -1], [6, 8, gapped]]
    assert identities[both]["B"] == [[1, 1, both], [2, 4, -1], [5, 8, FIRST_NEW_ID + 2]]


def test_crops_before_and_after_each_differential_event(scripted):
    out, report, _, _ = scripted
    import cv2
    for e in report["events"]:
        assert set(e["images"]) == {"before", "after"}
        for rel in e["images"].values():
            image = cv2.imread(str(out / rel))
            assert image is not None and max(image.shape[:2]) == 320


def test_mixed_result_with_shared_events_lists_one_tracker_events_first(tmp_path):
    """Both trackers switch the same gt (shared); only B fragments another (listed first)."""
    g_shared, g_only = LONG_IDS[4], LONG_IDS[5]
    a_lines, _ = script(LONG_SEQ, [("switch", g_shared, 5, 0)])
    b_lines, _ = script(LONG_SEQ, [("switch", g_shared, 6, 0), ("gap", g_only, 3, 1)])
    folders = {"A": write_result(tmp_path / "a", {LONG_SEQ: a_lines}),
               "B": write_result(tmp_path / "b", {LONG_SEQ: b_lines})}
    report = compare(str(MINI), {k: str(v) for k, v in folders.items()}, str(tmp_path / "r"),
                     benchmark="mot17", seqs=[LONG_SEQ], window=2)
    kinds = [(e["tracker"], e["kind"], e["gt_id"], e["differential"]) for e in report["events"]]
    assert kinds == [("B", "fragment", g_only, True), ("A", "switch", g_shared, False),
                     ("B", "switch", g_shared, False)]
    assert list(report["tables"]["per_sequence"]) == [LONG_SEQ]
    # Closer than the window only: one frame apart is "the same" switch, not when the window is 0.
    report0 = compare(str(MINI), {k: str(v) for k, v in folders.items()}, str(tmp_path / "r0"),
                      benchmark="mot17", seqs=[LONG_SEQ], window=0)
    assert all(e["differential"] for e in report0["events"])


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["switch", "gap", "gap_switch"]), st.integers(2, 8), st.integers(1, 3)),
                min_size=1, max_size=5))
def test_any_scripted_switches_and_gaps_are_found(tmp_path_factory, draws):
    edits = []
    for n, (kind, frame, length) in enumerate(draws):
        if kind != "switch":
            frame = min(frame, 7)
            length = min(length, 8 - frame)  # the gt is matched again after the gap
        edits.append((kind, LONG_IDS[n], frame, length))
    root = tmp_path_factory.mktemp("prop")
    lines, expected = script(LONG_SEQ, edits)
    folder = write_result(root / "b", {LONG_SEQ: lines})
    report = compare(str(MINI), {"B": str(folder)}, str(root / "r"), benchmark="mot17", seqs=[LONG_SEQ])
    assert found(report, "B") == expected


def test_real_trackers_under_both_rule_sets(tmp_path):
    """Real results: Lif_T on MOT17-09 (MOT17 rules, distractor boxes dropped by TrackEval) and the
    TUD-Campus tracker (every box a target); the events are TrackEval's IDSW and Frag."""
    mot17_gt = DATA / "mot17_09_lift" / "MOT17" / "train"
    lif_t = DATA / "mot17_09_lift" / "Lif_T"
    report = compare(str(mot17_gt), {"Lif_T": str(lif_t)}, str(tmp_path / "m"), benchmark="mot17")
    assert_counts_match_evaluate(report, mot17_gt, {"Lif_T": lif_t}, "mot17")
    assert report["tables"]["combined"]["Lif_T"]["IDSW"] == 10 and report["tables"]["combined"]["Lif_T"]["Frag"] == 7

    tud = tmp_path / "tud" / "TUD-Campus"
    (tud / "gt").mkdir(parents=True)
    # tests/data/tud_campus/README: column 8 (class) is -1 and must be set to 1 (pedestrian)
    (tud / "gt" / "gt.txt").write_text("".join(",".join(f[:7] + ["1"] + f[8:]) + "\n" for f in (
        line.split(",") for line in (DATA / "tud_campus" / "gt.txt").read_text().splitlines())))
    (tud / "seqinfo.ini").write_text("[Sequence]\nname=TUD-Campus\nseqLength=71\n")
    result = write_result(tmp_path / "tud_result", {"TUD-Campus": (DATA / "tud_campus" / "test.txt").read_text().split()})
    report = compare(str(tud.parent), {"T": str(result)}, str(tmp_path / "t"), benchmark="dancetrack")
    assert_counts_match_evaluate(report, tud.parent, {"T": result}, "dancetrack")
    assert report["tables"]["combined"]["T"]["IDSW"] == 7  # the published count (tests/data/tud_campus)


def test_bad_arguments_fail_before_any_work(tmp_path):
    with pytest.raises(CompareInputError, match="NAME=DIR"):
        parse_tracker_args(["just_a_folder"])
    with pytest.raises(CompareInputError, match="twice"):
        parse_tracker_args(["A=x", "A=y"])
    with pytest.raises(CompareInputError, match="B=.*not found"):
        compare(str(MINI), {"A": str(MINI), "B": str(tmp_path / "nope")}, str(tmp_path / "r"))
    with pytest.raises(CompareInputError, match="--seqs: MOT17-99"):
        compare(str(MINI), {"A": str(tmp_path)}, str(tmp_path / "r"), seqs=["MOT17-99"])
    with pytest.raises(CompareInputError, match="--images"):
        compare(str(MINI), {"A": str(tmp_path)}, str(tmp_path / "r"), images=str(tmp_path))
    with pytest.raises(CompareInputError, match="--max_images"):
        compare(str(MINI), {"A": str(tmp_path)}, str(tmp_path / "r"), max_images=-1)
    assert not (tmp_path / "r").exists()
    proc = subprocess.run([sys.executable, "tools/compare.py", "--gt_folder", str(MINI), "--trackers", "A",
                           "-o", str(tmp_path / "r")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0 and "NAME=DIR" in proc.stderr


def _browser():
    """A headless Chromium through chromedriver, or a reason why not."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        return None, "no /usr/bin/chromium + /usr/bin/chromedriver (apt-get install chromium chromium-driver)"
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium is not installed (pip install -r requirements.txt)"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1300,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options), None


def test_page_renders_in_a_headless_browser(scripted):
    out, report, _, _ = scripted
    driver, why_not = _browser()
    if driver is None:
        pytest.skip(why_not)
    try:
        driver.get((out / "index.html").resolve().as_uri())
        count = lambda css: driver.execute_script(f"return document.querySelectorAll({css!r}).length")  # noqa: E731
        assert count("#total-table tbody tr") == 2
        assert count("#sequence-table tbody tr") == len(report["tables"]["per_sequence"]) + 1
        cells = driver.execute_script("return [...document.querySelectorAll('#total-table tbody tr')]"
                                      ".map(r => r.innerText)")
        assert cells[0].split("\t")[:2] == ["A", "100.00"]
        identities = sum(len(t["identities"]) for t in report["timelines"].values())
        assert count("svg.timeline") == identities
        assert count("svg.timeline rect.run") > identities  # every gt is covered by both trackers
        assert count("svg .marker.switch") == sum(e["kind"] == "switch" for e in report["events"])
        assert count("svg .marker.fragment") == sum(e["kind"] == "fragment" for e in report["events"])
        assert count("#event-table tbody tr") == len(report["events"])
        loaded = driver.execute_script("return [...document.querySelectorAll('#event-table img')]"
                                       ".filter(i => i.complete && i.naturalWidth > 0).length")
        # Lazy images below the fold may not have loaded; those that did must be real pictures.
        assert loaded <= 2 * len(report["events"])
        errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
        assert errors == []
    finally:
        driver.quit()


def test_cli_writes_the_report(tmp_path, scripted):
    _, _, folders, _ = scripted
    proc = subprocess.run([sys.executable, "tools/compare.py", "--gt_folder", str(MINI), "--benchmark", "mot17",
                           "--trackers", f"A={folders['A']}", f"B={folders['B']}", "--seqs", SHORT_SEQ,
                           "-o", str(tmp_path / "r")], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [(e["tracker"], e["kind"]) for e in report["events"]] == [("B", "fragment")]
    assert "B: HOTA" in proc.stdout and (tmp_path / "r" / "index.html").stat().st_size > 5000


def test_three_trackers(tmp_path):
    """Any number of result folders: an event two of three trackers had is still listed (A kept it)."""
    g = LONG_IDS[0]
    perfect, _ = script(LONG_SEQ, [])
    switched, _ = script(LONG_SEQ, [("switch", g, 3, 0)])
    folders = {name: str(write_result(tmp_path / name, {LONG_SEQ: lines}))
               for name, lines in (("A", perfect), ("B", switched), ("C", switched))}
    report = compare(str(MINI), folders, str(tmp_path / "r"), benchmark="mot17", seqs=[LONG_SEQ])
    assert [(e["tracker"], e["also_in"], e["differential"]) for e in report["events"]] == [
        ("B", ["C"], True), ("C", ["B"], True)]
    assert report["events"][0]["others"] == {"A": {"before": g, "after": g},
                                             "C": {"before": g, "after": FIRST_NEW_ID}}
