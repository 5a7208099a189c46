"""The ablation tables' rows, defined once: each row's name, its tracker/memory flags and the paper's
figures. The shell scripts of this folder, the variants files they write and `tools/make_tables.py`
all read them from here.

    python -m tools.ablation.tables tables                        # table keys, in order
    python -m tools.ablation.tables rows table5 --memory_preset official
        # one line per row: NAME --flag value ... (a sweep's values from its *_VALUES variable)
    python -m tools.ablation.tables describe table5               # the rows, for --help
    python -m tools.ablation.tables split-extra --memory_tau 0 --device cpu
        # line 1: the tracker/memory flags with their values; line 2: the other words
    python -m tools.ablation.tables write FILE < text             # stdin to FILE, atomically

Paper figures: TF-SASM (arXiv 2407.04327), Tables II-VI (DanceTrack val), as docs/paper_figures.md
has them. The paper's parenthesised gains are not copied: some disagree with its own values (see the
notes).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from datasets import registry
from util.fileio import write_atomic

PAPER_METRICS = ("HOTA", "DetA", "AssA", "IDF1")   # what Tables II-VI report

# The authors' TF-SASM settings (zigonk/TF-SASM configs/motrv2_sam_feat_selector.args and
# tools/simple_inference.sh), in the order written on a command line; memory rows change some of them.
# The preset is the caller's MEMORY_PRESET unless a row sets it.
TFSASM: Tuple[Tuple[str, str], ...] = (
    ("--memory", "sparse"), ("--memory_preset", "official"), ("--ofs", "min_iou"), ("--memory_size", "10"),
    ("--memory_tau", "0.1"), ("--memory_alpha", "0.5"), ("--memory_max_frame_gap", "10"))


def tracker_flag_names() -> Tuple[str, ...]:
    """The tracker's and the memory's settings (their flags are `--<name> VALUE`): the fields of the
    config dataclasses (TrackerConfig and its MemoryConfig), so that a new setting is one without
    being listed here."""
    from models.config import tracker_flags
    return tuple(f.dest for f in tracker_flags())


def _paper(hota: float, deta: float, assa: float, idf1: float) -> Dict[str, float]:
    return dict(zip(PAPER_METRICS, (hota, deta, assa, idf1)))


@dataclass(frozen=True)
class Row:
    name: str                 # folder under RESULTS/<table>/, the scripts' row name
    label: str                # as the paper names the row
    what: str                 # the setting, for the footnote
    changes: Tuple[Tuple[str, str], ...] = ()   # (flag, value) changed from (or added to) TFSASM
    paper: Optional[Mapping[str, float]] = None
    memory: bool = True       # False: the row's flags are `changes` alone (MOTRv2, no memory)

    def flags(self, memory_preset: str = "official") -> Tuple[str, ...]:
        """The row's tracker/memory flags, each once, in TFSASM's order then the added ones."""
        if not self.memory:
            return tuple(word for pair in self.changes for word in pair)
        values = dict(TFSASM)
        values["--memory_preset"] = memory_preset
        values.update(self.changes)   # a dict keeps TFSASM's order; new flags go last
        return tuple(word for pair in values.items() for word in pair)


@dataclass(frozen=True)
class Sweep:
    """Rows that set one flag to each of a list of values (the list can be changed by `env`)."""
    flag: str
    prefix: str               # row name = prefix + value (K5, tau0.2)
    env: str                  # environment variable with other values, e.g. K_VALUES="3 25"

    def row(self, value: str) -> Row:
        return Row(f"{self.prefix}{value}", value, f"`{self.flag} {value}`", ((self.flag, value),))


@dataclass(frozen=True)
class Table:
    key: str                  # folder under RESULTS/ (the scripts' TABLE)
    title: str
    script: str               # tools/ablation/<script>
    rows: Tuple[Row, ...]
    notes: Tuple[str, ...] = field(default_factory=tuple)
    sweep: Optional[Sweep] = None
    plot_x: Optional[str] = None   # x-axis label of make_tables' line plot (sweeps only)

    @property
    def has_paper(self) -> bool:
        return any(row.paper for row in self.rows)

    def rows_for(self, values: Optional[Sequence[str]] = None) -> Tuple[Row, ...]:
        """The listed rows, or a sweep's rows for other values (a listed row keeps its paper figures)."""
        if values is None or self.sweep is None:
            return self.rows
        listed = {row.name: row for row in self.rows}
        rows = []
        for value in values:
            made = self.sweep.row(value)
            rows.append(listed.get(made.name, made))
        return tuple(rows)


def _sweep_rows(sweep: Sweep, papers: Mapping[str, Optional[Dict[str, float]]],
                what: Mapping[str, str] = {}) -> Tuple[Row, ...]:
    rows = []
    for value, paper in papers.items():
        row = replace(sweep.row(value), paper=paper)
        if value in what:
            row = replace(row, what=f"{row.what} ({what[value]})")
        rows.append(row)
    return tuple(rows)


FULL = "sparse memory + OFS, K = 10, tau = 0.1"
K_SWEEP = Sweep("--memory_size", "K", "K_VALUES")
TAU_SWEEP = Sweep("--memory_tau", "tau", "TAU_VALUES")
ALPHA_SWEEP = Sweep("--memory_alpha", "alpha", "ALPHA_VALUES")
REG_SWEEP = Sweep("--memory_temporal_gap_reg", "reg", "REG_VALUES")

TABLES: Tuple[Table, ...] = (
    Table("table2", "Table II: effectiveness of each module", "table2_modules.sh", (
        Row("motrv2", "Baseline (MOTRv2)", "`--memory none`", (("--memory", "none"),),
            _paper(65.4, 79.0, 54.4, 67.1), memory=False),
        Row("sasm", "+ SASM", "sparse memory, stores the latest feature (`--ofs latest`)",
            (("--ofs", "latest"),), _paper(66.1, 79.1, 55.4, 69.4)),
        Row("sasm_ofs", "+ OFS", f"{FULL} (`--ofs min_iou`)", (("--ofs", "min_iou"),),
            _paper(66.5, 79.4, 55.8, 69.5)),
    ), ("The paper's gains in brackets disagree with its values for + SASM: HOTA 66.1 - 65.4 = +0.7 "
        "(printed +0.6), IDF1 69.4 - 67.1 = +2.3 (printed +1.0).",
        "Memory rows use the authors' K = 10, tau = 0.1, max frame gap 10, alpha = 0.5.")),
    Table("table3", "Table III: memory density", "table3_density.sh", (
        Row("dense", "Dense", "store every frame (`--memory dense --ofs latest`, K = 10)",
            (("--memory", "dense"), ("--ofs", "latest")), _paper(64.5, 78.3, 53.3, 67.2)),
        Row("sparse", "Sparse", "store after moving tau (`--memory sparse --ofs latest`, K = 10)",
            (("--memory", "sparse"), ("--ofs", "latest")), _paper(66.1, 79.1, 55.3, 69.4)),
    ), ("The paper's Sparse row is Table II's + SASM, yet gives AssA 55.3 here and 55.4 there.",
        "Both without the feature selector and with at most K = 10 features, as in the paper.")),
    Table("table4", "Table IV: storing under overlap", "table4_ofs.sh", (
        Row("delay", "Delaying", "wait until IoU <= 0.1 (`--ofs delay`, `--memory_delay_iou`)",
            (("--ofs", "delay"),), _paper(66.0, 79.0, 55.3, 68.8)),
        Row("ofs", "OFS", "least-overlap feature since the last store (`--ofs min_iou`)",
            (("--ofs", "min_iou"),), _paper(66.5, 79.4, 55.8, 69.5)),
    ), ("Both on the same sparse memory (K = 10, tau = 0.1).",)),
    Table("table5", "Table V: memory size K", "table5_memory_size.sh", _sweep_rows(K_SWEEP, {
        "5": _paper(66.0, 79.1, 55.2, 68.9), "10": _paper(66.5, 79.4, 55.8, 69.5),
        "15": _paper(65.8, 79.1, 54.9, 68.5), "20": _paper(65.6, 78.6, 54.9, 68.6)}),
        (f"Other settings: {FULL}.",), K_SWEEP, "memory size K"),
    Table("table6", "Table VI: moving-distance threshold tau", "table6_tau.sh", _sweep_rows(TAU_SWEEP, {
        "0.05": _paper(65.5, 79.1, 54.5, 68.7), "0.1": _paper(66.5, 79.4, 55.8, 69.5),
        "0.2": _paper(65.7, 79.1, 54.8, 68.5), "0.3": _paper(65.9, 79.2, 55.1, 68.7),
        "0.4": _paper(65.8, 79.0, 55.0, 68.5)}),
        (f"Other settings: {FULL}; tau is a fraction of the image size.",), TAU_SWEEP,
        "moving-distance threshold tau"),
    Table("alpha", "Blend weight alpha (not in the paper)", "alpha_sweep.sh", _sweep_rows(
        ALPHA_SWEEP, dict.fromkeys(("0.25", "0.5", "0.75", "1.0")),
        {"0.5": "the authors' value", "1.0": "memory ignored: MOTRv2"}),
        (f"Decoder input = alpha * query + (1 - alpha) * mean(memory). Other settings: {FULL}.",),
        ALPHA_SWEEP, "blend weight alpha"),
    Table("gap_reg", "Temporal-gap regularisation (the authors' sweep, not in the paper)", "gap_reg_sweep.sh",
          _sweep_rows(REG_SWEEP, dict.fromkeys(("0.05", "0.1", "0.2", "0.3"))),
          (f"best_iou *= 1 + reg each frame (their tools/ablation_inference_weight_decay.sh). "
           f"Other settings: {FULL}.",), REG_SWEEP),
    Table("presets", "Memory presets (not in the paper)", "presets.sh", (
        Row("official", "official", "the authors' public code (`--memory_preset official`)",
            (("--memory_preset", "official"),)),
        Row("paper", "paper", "the algorithm as the paper states it (`--memory_preset paper`)",
            (("--memory_preset", "paper"),)),
    ), (f"Both: {FULL}. The paper's full method on val: HOTA 66.5, DetA 79.4, AssA 55.8, IDF1 69.5. "
        "MEMORY_PRESET does not apply here.",)),
)
BY_KEY: Dict[str, Table] = {table.key: table for table in TABLES}


def table(key: str) -> Table:
    if key not in BY_KEY:
        raise KeyError(f"unknown ablation table {key!r} (known: {', '.join(BY_KEY)})")
    return BY_KEY[key]


def script_rows(key: str, memory_preset: str = "official",
                environ: Mapping[str, str] = os.environ) -> List[Tuple[str, Tuple[str, ...]]]:
    """(row name, flags) the script of table `key` tracks: a sweep's values from its environment
    variable when set (e.g. K_VALUES="3 25")."""
    spec = table(key)
    values = None
    if spec.sweep is not None and environ.get(spec.sweep.env, "").split():
        values = environ[spec.sweep.env].split()
    return [(row.name, row.flags(memory_preset)) for row in spec.rows_for(values)]


def split_extra(words: Sequence[str], names: Optional[Sequence[str]] = None) -> Tuple[List[str], List[str]]:
    """EXTRA_ARGS' words as (tracker/memory flags with their values, the rest). A tracker flag takes
    one value, so in the one pass it goes on every variant line and the rest on the command."""
    known = {f"--{name}" for name in (tracker_flag_names() if names is None else names)}
    tracker, rest = [], []
    i = 0
    while i < len(words):
        if words[i] in known:
            tracker += list(words[i:i + 2])
            i += 2
        else:
            rest.append(words[i])
            i += 1
    return tracker, rest


def describe(spec: Table) -> str:
    """The rows of a table as --help shows them: name, the flags it changes, the paper's figures."""
    lines = [f"{spec.title} (OUT/{spec.key}/<row>):"]
    for row in spec.rows:
        changed = " ".join(w for pair in row.changes for w in pair)
        flags = changed if not row.memory else f"TF-SASM {changed}".rstrip()
        paper = "" if not row.paper else "   paper " + "/".join(f"{row.paper[m]:.1f}" for m in PAPER_METRICS)
        lines.append(f"  {row.name:10s} {flags}{paper}")
    if spec.has_paper:
        lines.append(f"  (paper: {'/'.join(PAPER_METRICS)})")
    if spec.sweep is not None:
        lines.append(f"  {spec.sweep.env}=\"v1 v2 ...\" tracks {spec.sweep.flag} v1, v2, ... instead")
    lines += [f"  {note}" for note in spec.notes]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["split-extra"]:   # its words are flags of another program: not parsed here
        tracker, rest = split_extra(argv[1:])
        print(" ".join(tracker))
        print(" ".join(rest))
        return 0
    parser = argparse.ArgumentParser(prog="python -m tools.ablation.tables",
                                     description="The ablation tables' rows, for tools/ablation/*.sh.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tables", help="table keys, one a line")
    rows = sub.add_parser("rows", help="NAME FLAGS... of each row of a table")
    rows.add_argument("table")
    rows.add_argument("--memory_preset", default="official", help="a preset of models/memory's registry")
    desc = sub.add_parser("describe", help="a table's rows for --help ('all': every table)")
    desc.add_argument("table")
    sub.add_parser("split-extra", help="WORDS...: EXTRA_ARGS' tracker/memory flags (line 1) and the rest (line 2)")
    write = sub.add_parser("write", help="standard input to FILE, atomically")
    write.add_argument("file")
    data = sub.add_parser("dataset", help="a dataset's folder (line 1) and its copies (line 2), from the registry")
    data.add_argument("name")
    seqs = sub.add_parser("sequences", help="the sequence folders (with img1/) of SPLIT_DIR a run tracks")
    seqs.add_argument("name")
    seqs.add_argument("split_dir")
    seqs.add_argument("--copy", default=None, help="MOT17-style copy tracked ('all': every copy)")
    args = parser.parse_args(argv)
    try:
        if args.command == "tables":
            print("\n".join(BY_KEY))
        elif args.command == "rows":
            from models.memory import PRESETS  # only this subcommand pays for importing torch
            if args.memory_preset not in PRESETS:
                parser.error(f"argument --memory_preset: {args.memory_preset!r}: must be one of {', '.join(PRESETS)}")
            for name, flags in script_rows(args.table, args.memory_preset):
                print(" ".join((name,) + flags))
        elif args.command == "describe":
            specs = TABLES if args.table == "all" else (table(args.table),)
            print("\n\n".join(describe(spec) for spec in specs))
            print(f"\nTF-SASM: {' '.join(Row('', '', '').flags('MEMORY_PRESET'))} (the authors' settings)")
        elif args.command == "dataset":
            entry = registry.get(args.name, flag="DATASET")
            print(entry.folder or "")
            print(" ".join(entry.copies))
        elif args.command == "sequences":
            entry = registry.get(args.name, flag="DATASET")
            for folder in sorted(p for p in Path(args.split_dir).glob("*/img1") if p.is_dir()):
                name = folder.parent.name
                copy = registry.copy_of(entry, name)
                if args.copy in (None, "all") or copy is None or copy == args.copy:
                    print(name)
        else:
            write_atomic(args.file, sys.stdin.read())
    except KeyError as err:
        print(f"tables.py: error: {err.args[0]}", file=sys.stderr)
        return 2
    except ValueError as err:  # an unknown dataset name (registry.DatasetError)
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
