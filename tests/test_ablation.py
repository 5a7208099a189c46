"""The ablation scripts (tools/ablation/*.sh) and the table maker (tools/make_tables.py).

End to end: table2_modules.sh, then table4_ofs.sh (its OFS row only), on a tiny synthetic split
with a small stand-in model; the second must reuse the run the first made for the same setting.
The other scripts are checked with DRY_RUN=1 (their rows and flags), make_tables on fake results.
"""
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from tests.helpers import REPO, SMALL_MODEL_ARGV
from tools import make_tables
from tools.ablation.tables import TFSASM as TFSASM_FLAGS, Row, split_extra

PAPER = REPO / "docs" / "paper_figures.md"  # the paper's Tables I-VI as printed
ABLATION = REPO / "tools" / "ablation"

SCRIPTS = {"table2": "table2_modules.sh", "table3": "table3_density.sh", "table4": "table4_ofs.sh",
           "table5": "table5_memory_size.sh", "table6": "table6_tau.sh", "alpha": "alpha_sweep.sh",
           "presets": "presets.sh"}
# The authors' TF-SASM settings every memory row starts from.
TFSASM = {"--memory": "sparse", "--memory_preset": "official", "--ofs": "min_iou", "--memory_size": "10",
          "--memory_tau": "0.1", "--memory_alpha": "0.5", "--memory_max_frame_gap": "10"}
# What each row changes (row name -> flags it must carry); memory rows: on top of TFSASM.
EXPECTED_ROWS = {
    "table2": {"motrv2": {"--memory": "none"}, "sasm": {"--ofs": "latest"}, "sasm_ofs": {}},
    "table3": {"dense": {"--memory": "dense", "--ofs": "latest"}, "sparse": {"--ofs": "latest"}},
    "table4": {"delay": {"--ofs": "delay"}, "ofs": {}},
    "table5": {f"K{k}": {"--memory_size": str(k)} for k in (5, 10, 15, 20)},
    "table6": {f"tau{t}": {"--memory_tau": t} for t in ("0.05", "0.1", "0.2", "0.3", "0.4")},
    "alpha": {f"alpha{a}": {"--memory_alpha": a} for a in ("0.25", "0.5", "0.75", "1.0")},
    "presets": {"official": {"--memory_preset": "official"}, "paper": {"--memory_preset": "paper"}},
}
SMALL_MODEL = SMALL_MODEL_ARGV


def run_script(script, args=(), env=None, cwd=None):
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("CKPT", "MOT_PATH", "DET_DB", "SPLIT", "OUT", "TABLES", "SEQS", "ONLY",
                             "EXTRA_ARGS", "BASE_ARGS", "NUM_GPUS", "MEMORY_PRESET", "DRY_RUN")}
    full_env.update(env or {})
    return subprocess.run(["bash", str(ABLATION / script), *args], env=full_env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def table_section(markdown: str, title_start: str) -> str:
    match = re.search(rf"^### {re.escape(title_start)}.*?(?=^### |\Z)", markdown, re.S | re.M)
    assert match, f"no section {title_start!r} in:\n{markdown}"
    return match.group(0)


def table_cells(section: str):
    """{row label: [cells after the label]} of the markdown table in `section`."""
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| Row"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


# -- end to end -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    """A 2-sequence x 3-frame synthetic val split, a small MOTRv2 args file and stand-in weights."""
    import torch
    from datasets.synthetic import make_dataset
    from main import get_args_parser
    from models import build_model

    root = tmp_path_factory.mktemp("ablation")
    data = make_dataset(root / "data", splits={"val": 2}, num_frames=3, width=96, height=64,
                        num_dancers=(2, 3), seed=3)
    args_file = root / "small.args"
    args_file.write_text((REPO / "configs" / "motrv2.args").read_text() + "\n".join(SMALL_MODEL) + "\n")
    torch.manual_seed(0)
    model, _, _ = build_model(get_args_parser().parse_args(args_file.read_text().split()))
    state = model.state_dict()
    for key, value in state.items():
        if key.startswith("class_embed.") and key.endswith(".bias"):
            value.fill_(2.0)  # confident queries, so that tracks are written and scored
        # boxes = the reference points (proposals) moved a little by the decoder output, so that
        # tracks match the ground truth and the memory (which changes that output) changes the boxes
        if re.fullmatch(r"bbox_embed\.\d+\.layers\.2\.weight", key):
            value.normal_(0, 0.002)
        if re.fullmatch(r"bbox_embed\.\d+\.layers\.2\.bias", key):
            value.zero_()
    torch.save({"model": state}, root / "small.pth")
    return {"root": root, "det_db": data["det_db"], "args_file": args_file}


@pytest.mark.slow  # two whole ablation scripts: training-free tracking and scoring of several rows
def test_table2_then_table4_end_to_end(tiny_setup):
    root = tiny_setup["root"]
    env = {"OUT": "results/ablation", "BASE_ARGS": "small.args", "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1",  # tiny inputs: threads only add overhead on a shared machine
           # tau 0 and store score 0: the memory stores from the first frames, so it changes the output
           "EXTRA_ARGS": "--val_width 64 --val_max_size 128 --device cpu --num_workers 0 "
                         "--memory_tau 0 --memory_store_score 0"}
    # relative paths, run from another folder than the repository: they are the caller's
    positional = ["small.pth", "data", tiny_setup["det_db"], "val"]
    done = run_script("table2_modules.sh", positional, env, cwd=root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = root / "results" / "ablation"
    # every command is printed before it runs: the rows' one pass, then each row's scoring
    assert re.search(r"^\+ .*submit_dance\.py .*--variants \S*variants_table2\.txt$", done.stdout, re.M)
    for row in ("motrv2", "sasm", "sasm_ofs"):
        assert re.search(rf"^-- table2/{row}: ", done.stdout, re.M)
        assert re.search(rf"^\+ .*tools/evaluate\.py .*table2/{row}/eval\.json", done.stdout, re.M)

    tables_md = root / "results" / "tables.md"
    cells = table_cells(table_section(tables_md.read_text(), "Table II"))
    paper = {row.name: row for row in make_tables.TABLES[0].rows}
    for name in ("motrv2", "sasm", "sasm_ofs"):
        ours = json.loads((out / "table2" / name / "eval.json").read_text())["combined"]
        row = cells[paper[name].label]
        assert make_tables.MISSING not in row, row
        for i, metric in enumerate(make_tables.PAPER_METRICS):
            value, theirs, delta = row[3 * i: 3 * i + 3]
            assert value == f"{ours[metric]:.2f}"
            assert float(theirs) == paper[name].paper[metric]
            assert float(delta) == pytest.approx(ours[metric] - paper[name].paper[metric], abs=0.0051)
        assert row[-1] == str(ours["IDSW"])
    # the memory flags reached the tracker: with memory, the boxes differ from MOTRv2's
    base_txt = (out / "table2" / "motrv2" / "val0001.txt").read_text()
    assert base_txt and base_txt != (out / "table2" / "sasm" / "val0001.txt").read_text()

    shared_run = (out / "table2" / "sasm_ofs").resolve()
    stamps = {p.name: p.stat().st_mtime_ns for p in shared_run.iterdir()}
    done = run_script("table4_ofs.sh", positional, {**env, "ONLY": "ofs"}, cwd=root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # Table IV "OFS" is Table II "+ OFS": same run folder, nothing tracked or scored again
    assert (out / "table4" / "ofs").resolve() == shared_run
    assert not (out / "table4" / "delay").exists()  # not in ONLY
    assert {p.name: p.stat().st_mtime_ns for p in shared_run.iterdir()} == stamps
    ofs_log = done.stdout.split("-- table4/ofs:")[1]
    assert "tracked already" in ofs_log and "not re-scored" in ofs_log
    assert "submit_dance.py" not in ofs_log.split("tools.make_tables")[0]

    markdown = tables_md.read_text()
    table4 = table_cells(table_section(markdown, "Table IV"))
    assert list(table4) == ["Delaying", "OFS"]
    assert table4["OFS"] == cells["+ OFS"]
    assert table4["Delaying"][:3] == ["—", "66.0", "—"]
    table5 = table_cells(table_section(markdown, "Table V"))  # not run: ours missing, the paper's there
    assert table5["5"][:3] == ["—", "66.0", "—"]


# -- every script's rows and flags (dry run) ------------------------------------------------------
def dry_run_rows(script, env=None):
    done = run_script(script, ["ck.pth", "nodata", "db.json", "val"], {"DRY_RUN": "1", **(env or {})})
    assert done.returncode == 0, done.stderr
    rows = {}
    for line in done.stdout.splitlines():
        match = re.match(r"^-- (\w+)/(\S+): (.*)$", line)
        if match:
            table, name, flags = match.groups()
            words = shlex.split(flags)
            pairs = list(zip(words[::2], words[1::2]))
            assert len({flag for flag, _ in pairs}) == len(pairs), f"repeated flag in {line}"
            rows[(table, name)] = dict(pairs)
    return rows, done.stdout


@pytest.mark.parametrize("table", sorted(SCRIPTS))
def test_script_rows_match_paper_tables(table):
    rows, stdout = dry_run_rows(SCRIPTS[table])
    spec = next(t for t in make_tables.TABLES if t.key == table)
    assert [name for (tbl, name) in rows] == [row.name for row in spec.rows]
    assert all(tbl == table for tbl, _ in rows)
    for name, changed in EXPECTED_ROWS[table].items():
        flags = rows[(table, name)]
        expected = dict(changed) if changed.get("--memory") == "none" else {**TFSASM, **changed}
        assert flags == expected, (name, flags)
    assert "-m tools.make_tables --results" in stdout


def test_list_env_and_memory_preset_change_the_rows():
    rows, _ = dry_run_rows("table5_memory_size.sh", {"K_VALUES": "3 25", "MEMORY_PRESET": "paper"})
    assert list(rows) == [("table5", "K3"), ("table5", "K25")]
    assert rows[("table5", "K25")] == {**TFSASM, "--memory_preset": "paper", "--memory_size": "25"}
    rows, _ = dry_run_rows("presets.sh", {"MEMORY_PRESET": "paper"})  # presets.sh sets both itself
    assert rows[("presets", "official")]["--memory_preset"] == "official"


def test_bad_inputs_stop_before_running(tmp_path):
    done = run_script("table2_modules.sh", [str(tmp_path / "missing.pth")], {"OUT": str(tmp_path)})
    assert done.returncode == 2 and "checkpoint not found" in done.stderr
    assert not (tmp_path / "table2").exists()
    done = run_script("table2_modules.sh", ["a", "b", "c", "d", "e"])
    assert done.returncode == 2 and "too many arguments" in done.stderr
    done = run_script("table6_tau.sh", ["--help"])
    assert done.returncode == 0 and "Table VI" in done.stdout and "EXTRA_ARGS" in done.stdout


# -- configs ---------------------------------------------------------------------------------------
def test_tfsasm_configs_are_motrv2_plus_memory_flags():
    from main import get_tracking_parser as get_submit_parser
    base = (REPO / "configs" / "motrv2.args").read_text().splitlines()
    official = (REPO / "configs" / "tfsasm.args").read_text().splitlines()
    paper = (REPO / "configs" / "tfsasm_paper.args").read_text().splitlines()
    assert official[:len(base)] == base and paper[:len(base)] == base
    parser = get_submit_parser()
    args = parser.parse_args(" ".join(official).split())
    assert (args.memory, args.memory_preset, args.memory_size, args.memory_tau, args.memory_max_frame_gap,
            args.ofs, args.memory_alpha) == ("sparse", "official", 10, 0.1, 10, "min_iou", 0.5)
    # the ablations' full-method row is exactly configs/tfsasm.args
    rows, _ = dry_run_rows("table2_modules.sh")
    flags = [w for pair in rows[("table2", "sasm_ofs")].items() for w in pair]
    ablation = parser.parse_args(" ".join(base).split() + flags)
    assert vars(ablation) == vars(args)
    args = parser.parse_args(" ".join(paper).split())
    assert (args.memory, args.memory_preset, args.memory_size, args.memory_tau) == ("sparse", "paper", 10, 0.1)


# -- make_tables -------------------------------------------------------------------------------------
def write_eval(results: Path, table: str, row: str, metrics: dict) -> None:
    folder = results / table / row
    folder.mkdir(parents=True, exist_ok=True)
    combined = {"HOTA": 0.0, "DetA": 0.0, "AssA": 0.0, "MOTA": 0.0, "IDF1": 0.0, "IDSW": 0, **metrics}
    (folder / "eval.json").write_text(json.dumps({"combined": combined, "per_sequence": {}}))


percent = st.floats(min_value=0, max_value=100, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(hota=percent, deta=percent, assa=percent, idf1=percent, mota=st.floats(-100, 100), idsw=st.integers(0, 10**5))
def test_rows_show_ours_paper_and_delta(hota, deta, assa, idf1, mota, idsw):
    ours = {"HOTA": hota, "DetA": deta, "AssA": assa, "IDF1": idf1, "MOTA": mota, "IDSW": idsw}
    with tempfile.TemporaryDirectory() as tmp:
        write_eval(Path(tmp), "table6", "tau0.2", ours)
        cells = table_cells(table_section(make_tables.render(Path(tmp)), "Table VI"))
    paper = {"HOTA": 65.7, "DetA": 79.1, "AssA": 54.8, "IDF1": 68.5}
    row = cells["0.2"]
    for i, metric in enumerate(make_tables.PAPER_METRICS):
        value, theirs, delta = row[3 * i: 3 * i + 3]
        assert float(value) == pytest.approx(ours[metric], abs=0.0051)
        assert float(theirs) == paper[metric]
        assert float(delta) == pytest.approx(ours[metric] - paper[metric], abs=0.0051)
    assert float(row[12]) == pytest.approx(mota, abs=0.0051) and row[13] == str(idsw)
    # the other rows have not run
    assert all(cells[label][0] == make_tables.MISSING for label in ("0.05", "0.1", "0.3", "0.4"))


def test_known_deltas_missing_rows_and_extra_rows(tmp_path):
    write_eval(tmp_path, "table2", "motrv2", {"HOTA": 65.0, "DetA": 80.0, "AssA": 54.4, "IDF1": 70.15})
    write_eval(tmp_path, "table5", "K25", {"HOTA": 60.0})
    write_eval(tmp_path, "table5", "K7", {"HOTA": 61.0})
    write_eval(tmp_path, "presets", "paper", {"HOTA": 66.0, "IDSW": 12})
    out = tmp_path / "tables.md"
    assert make_tables.main(["--results", str(tmp_path), "--out", str(out)]) == 0
    markdown = out.read_text()
    table2 = table_cells(table_section(markdown, "Table II"))
    assert table2["Baseline (MOTRv2)"][:12] == ["65.00", "65.4", "-0.40", "80.00", "79.0", "+1.00",
                                                "54.40", "54.4", "0.00", "70.15", "67.1", "+3.05"]
    assert table2["+ SASM"][:3] == ["—", "66.1", "—"]
    table5 = table_cells(table_section(markdown, "Table V"))
    assert list(table5) == ["5", "10", "15", "20", "K7", "K25"]  # extras after the paper's, in order
    assert table5["K25"][:3] == ["60.00", "—", "—"]
    presets = table_cells(table_section(markdown, "Memory presets"))
    assert presets["paper"] == ["66.00", "0.00", "0.00", "0.00", "0.00", "12"]
    assert presets["official"] == ["—"] * 6
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_bad_eval_json_is_named(tmp_path, capsys):
    (tmp_path / "table3" / "dense").mkdir(parents=True)
    (tmp_path / "table3" / "dense" / "eval.json").write_text('{"combined": {"HOTA": 1}}')
    assert make_tables.main(["--results", str(tmp_path), "--out", str(tmp_path / "t.md")]) == 1
    err = capsys.readouterr().err
    assert "table3/dense/eval.json" in err and "DetA" in err
    assert not (tmp_path / "t.md").exists()


def paper_tables():
    """Data rows of the markdown tables of the paper's figures, in order: [[first number per cell]]."""
    tables, current = [], None
    for line in PAPER.read_text().splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if current is None:
                current = []  # header line
                tables.append(current)
            elif not set("".join(cells)) <= set("-: "):
                current.append([float(re.match(r"[-\d.]+", c).group()) for c in cells[1:]])
        else:
            current = None
    return [table for table in tables if table]  # a lone "| (3) |" line is an equation number


def test_paper_numbers_are_typed_as_printed():
    tables = paper_tables()
    assert len(tables) == 6  # Table I (test set, not an ablation) and Tables II-VI
    for printed, spec in zip(tables[1:], make_tables.TABLES[:5]):
        assert len(printed) == len(spec.rows), spec.title
        for numbers, row in zip(printed, spec.rows):
            assert numbers == [row.paper[m] for m in make_tables.PAPER_METRICS], (spec.title, row.label)


def test_sweeps_are_drawn_with_the_papers_values_beside_ours(tmp_path):
    write_eval(tmp_path, "table5", "K5", {"HOTA": 60.0, "IDF1": 70.0})
    write_eval(tmp_path, "table5", "K25", {"HOTA": 58.0, "IDF1": 69.0})
    write_eval(tmp_path, "alpha", "alpha0.25", {"HOTA": 61.0})
    table5 = next(t for t in make_tables.TABLES if t.key == "table5")
    ours, paper = make_tables.sweep_series(table5, tmp_path, "HOTA")
    assert ours == [(5.0, 60.0), (25.0, 58.0)]
    assert paper == [(5.0, 66.0), (10.0, 66.5), (15.0, 65.8), (20.0, 65.6)]
    out = tmp_path / "out"
    assert make_tables.main(["--results", str(tmp_path), "--out", str(out / "tables.md")]) == 0
    plots = sorted(p.name for p in out.iterdir() if p.suffix == ".png")
    assert plots == ["alpha.png", "table5.png"]  # table6 has no result of ours: no plot
    assert all((out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)


@pytest.mark.slow  # every distinct row of every table, tracked in one pass and scored
def test_all_tables_tracks_every_row_in_one_pass(tiny_setup, tmp_path):
    root = tiny_setup["root"]
    env = {"OUT": str(tmp_path / "ablation"), "BASE_ARGS": "small.args", "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1", "EXTRA_ARGS": "--val_width 64 --val_max_size 128 --device cpu --num_workers 0"}
    done = run_script("all_tables.sh", ["small.pth", "data", tiny_setup["det_db"], "val"], env, cwd=root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    launches = re.findall(r"^\+ .*submit_dance\.py .*$", done.stdout, re.M)
    assert len(launches) == 1, launches  # one tracking run for all the rows
    launches = re.findall(r"--variants (\S+)$", launches[0])
    variants = [line for line in Path(launches[0]).read_text().splitlines() if line.strip()]
    assert len(variants) == 20  # the distinct settings of Tables II-VI, alpha, presets, gap reg
    markdown = (tmp_path / "tables.md").read_text()
    for table in make_tables.TABLES:
        cells = table_cells(table_section(markdown, table.title.split(":")[0]))
        assert list(cells) == [row.label for row in table.rows], table.key
        assert all(cells[row.label][0] != make_tables.MISSING for row in table.rows), table.key
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["alpha.png", "table5.png", "table6.png"]


# -- the rows' one home (tools/ablation/tables.py) ---------------------------------------------------
def test_all_tables_dry_run_lists_each_distinct_setting_once():
    done = run_script("all_tables.sh", ["ck.pth", "nodata", "db.json", "val"], {"DRY_RUN": "1"})
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^-- (\w+)/(\S+): (.*)$", done.stdout, re.M)
    assert len(rows) == sum(len(t.rows) for t in make_tables.TABLES) == 26
    pending = re.search(r"^-- one pass: (\d+) variant.*\n((?:   .*\n)+)", done.stdout, re.M)
    settings_listed = [line.split(None, 1)[1] for line in pending.group(2).splitlines()]
    assert int(pending.group(1)) == len(settings_listed) == len(set(settings_listed)) == 20
    assert len({flags for _, _, flags in rows}) == 20  # the same 20 settings as the rows'


def test_dry_run_does_not_mark_a_tracked_row_pending(tmp_path):
    (tmp_path / "data" / "DanceTrack" / "val" / "seqA" / "img1").mkdir(parents=True)
    (tmp_path / "ck.pth").write_bytes(b"x")
    (tmp_path / "db.json").write_text("{}")
    args = [str(tmp_path / "ck.pth"), str(tmp_path / "data"), str(tmp_path / "db.json"), "val"]
    env = {"DRY_RUN": "1", "OUT": str(tmp_path / "out"), "ONLY": "motrv2 sasm"}
    first = run_script("table2_modules.sh", args, env)
    assert first.returncode == 0, first.stderr
    motrv2_run = re.search(r"^-- table2/motrv2: .*\n   run folder: (\S+)", first.stdout, re.M).group(1)
    Path(motrv2_run).mkdir(parents=True)
    (Path(motrv2_run) / "seqA.txt").write_text("")  # what a real run of that row left
    again = run_script("table2_modules.sh", args, env)
    assert again.returncode == 0, again.stderr
    assert "tracked already" in again.stdout.split("-- table2/sasm:")[0]
    assert re.search(r"^-- one pass: 1 variant", again.stdout, re.M)
    assert Path(motrv2_run).name not in again.stdout.split("-- one pass:")[1]


def test_extra_args_tracker_flags_are_the_config_fields():
    from models.config import tracker_flags
    names = [f.dest for f in tracker_flags()]
    assert {"score_threshold", "ofs", "memory_size", "track_nms_iou"} <= set(names)
    words = ["--device", "cpu"]
    for name in names:
        words += [f"--{name}", "1"]
    tracker, rest = split_extra(words)
    assert rest == ["--device", "cpu"] and len(tracker) == 2 * len(names)
    # a setting whose name does not start with "memory" is one too, once the config has it
    assert split_extra(["--ofs_rule", "x", "--val_width", "64"], names=["ofs_rule"]) == (
        ["--ofs_rule", "x"], ["--val_width", "64"])


@settings(max_examples=30, deadline=None)
@given(changes=st.dictionaries(st.sampled_from([flag for flag, _ in TFSASM_FLAGS] + ["--memory_temporal_gap_reg"]),
                               st.sampled_from(["0", "0.3", "latest", "25"]), max_size=4),
       preset=st.sampled_from(["official", "paper"]))
def test_row_flags_are_tfsasm_with_the_changes(changes, preset):
    flags = Row("r", "r", "", tuple(changes.items())).flags(preset)
    pairs = dict(zip(flags[::2], flags[1::2]))
    assert len(pairs) == len(flags) // 2  # each flag once
    assert pairs == {**dict(TFSASM_FLAGS), "--memory_preset": preset, **changes}
    assert list(pairs)[:len(TFSASM_FLAGS)] == [f for f, _ in TFSASM_FLAGS]  # TF-SASM's order, additions after
