"""Markdown tables of the TF-SASM ablations: our numbers beside the paper's.

    python -m tools.make_tables --results results/ablation --out results/tables.md

The tables and their rows (with the paper's figures) are tools/ablation/tables.py's. Reads `RESULTS/<table>/<row>/eval.json` (written by tools/ablation/*.sh through
tools/evaluate.py) and writes one table per paper table (II-VI) with, for HOTA, DetA, AssA and
IDF1, our value, the paper's and the difference (ours - paper), and beside the markdown one line
plot per sweep (K, tau, alpha: `<table>.png`, HOTA and IDF1, ours and the paper's); MOTA and IDSW (not in the
paper's ablation tables) are ours only. The alpha sweep and the preset comparison have no paper
numbers. A row without results shows "—". Rows found in a results folder beyond the listed ones
(e.g. K_VALUES="5 10 15 20 25") are appended. The file is written atomically.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from tools.ablation.tables import PAPER_METRICS, TABLES, Row, Table
from util.fileio import write_atomic

MISSING = "—"
OURS_ONLY = ("MOTA", "IDSW")   # not in the paper's ablation tables
ALL_METRICS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW")


class ResultsError(ValueError):
    """An eval.json that cannot be read; the message names the file."""


def load_eval(path: Path) -> Dict[str, float]:
    """The combined metrics of one eval.json (tools/evaluate.py's format)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ResultsError(f"{path}: cannot read eval.json ({err})") from None
    combined = data.get("combined") if isinstance(data, dict) else None
    if not isinstance(combined, dict):
        raise ResultsError(f"{path}: no 'combined' metrics (expected tools/evaluate.py's JSON)")
    missing = [k for k in ALL_METRICS if not isinstance(combined.get(k), (int, float))]
    if missing:
        raise ResultsError(f"{path}: 'combined' lacks numeric {', '.join(missing)}")
    return {k: float(combined[k]) for k in ALL_METRICS}


def _natural_key(name: str):
    return [(0, float(part)) if re.fullmatch(r"\d+(\.\d+)?", part) else (1, part)
            for part in re.findall(r"\d+(?:\.\d+)?|\D+", name)]


def table_rows(table: Table, results: Path) -> List[Tuple[Row, Optional[Dict[str, float]]]]:
    """(row, our metrics or None) for the listed rows, then for extra row folders found on disk."""
    folder = results / table.key
    listed = {row.name for row in table.rows}
    rows = list(table.rows)
    if folder.is_dir():
        extra = sorted((p.name for p in folder.iterdir() if p.is_dir() and p.name not in listed),
                       key=_natural_key)
        rows += [Row(name, name, f"extra row `{name}`") for name in extra]
    out = []
    for row in rows:
        eval_json = folder / row.name / "eval.json"
        out.append((row, load_eval(eval_json) if eval_json.is_file() else None))
    return out


def fmt_value(value: Optional[float], metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return str(int(round(value))) if metric == "IDSW" else f"{value:.2f}"


def fmt_paper(value: Optional[float]) -> str:
    return MISSING if value is None else f"{value:.1f}"


def fmt_delta(ours: Optional[float], paper: Optional[float]) -> str:
    if ours is None or paper is None:
        return MISSING
    text = f"{ours - paper:+.2f}"
    return "0.00" if text in ("+0.00", "-0.00") else text


def render_table(table: Table, results: Path) -> str:
    rows = table_rows(table, results)
    if table.has_paper:
        header = ["Row"]
        for metric in PAPER_METRICS:
            header += [metric, "paper", "Δ"]
        header += list(OURS_ONLY)
    else:
        header = ["Row"] + list(ALL_METRICS)
    lines = [f"### {table.title}", "",
             "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for row, ours in rows:
        cells = [row.label]
        if table.has_paper:
            for metric in PAPER_METRICS:
                mine = None if ours is None else ours[metric]
                theirs = None if row.paper is None else row.paper.get(metric)
                cells += [fmt_value(mine, metric), fmt_paper(theirs), fmt_delta(mine, theirs)]
            metrics = OURS_ONLY
        else:
            metrics = ALL_METRICS
        cells += [fmt_value(None if ours is None else ours[m], m) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {row.label}: {row.what} (`{table.key}/{row.name}`)" for row, _ in rows]
    lines += [f"- Note: {note}" for note in table.notes]
    lines.append(f"- Script: `tools/ablation/{table.script}`")
    lines.append("")
    return "\n".join(lines)


def render(results: Path, tables: Sequence[Table] = TABLES) -> str:
    parts = ["# TF-SASM ablations: ours beside the paper", "",
             f"Ours: `{results}/<table>/<row>/eval.json` (TrackEval via tools/evaluate.py), in percent "
             "except IDSW. Paper: TF-SASM Tables II-VI, DanceTrack val. Δ = ours - paper. "
             f"{MISSING} = not run yet.", ""]
    parts += [render_table(table, results) for table in tables]
    return "\n".join(parts)


PLOT_METRICS = ("HOTA", "IDF1")


def sweep_series(table: Table, results: Path, metric: str):
    """(ours, paper) of a sweep for `metric`: each a sorted list of (x, value); x is the number in the
    row's name (K5 -> 5, tau0.2 -> 0.2), rows without a result (ours) or a paper value are left out."""
    ours, paper = [], []
    for row, mine in table_rows(table, results):
        match = re.search(r"\d+(?:\.\d+)?", row.name)
        if match is None:
            continue
        x = float(match.group())
        if mine is not None:
            ours.append((x, mine[metric]))
        if row.paper is not None and metric in row.paper:
            paper.append((x, row.paper[metric]))
    return sorted(ours), sorted(paper)


def plot_sweeps(results: Path, out_dir: Path, tables: Sequence[Table] = TABLES) -> List[Path]:
    """One PNG per sweep that has results of ours (`out_dir/<table>.png`), written atomically."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []
    for table in tables:
        if table.plot_x is None:   # plotted: the sweeps with an x-axis label
            continue
        series = {m: sweep_series(table, results, m) for m in PLOT_METRICS}
        if not any(ours for ours, _ in series.values()):
            continue
        fig, axes = plt.subplots(1, len(PLOT_METRICS), figsize=(4 * len(PLOT_METRICS), 3.2), dpi=120)
        for ax, metric in zip(axes, PLOT_METRICS):
            ours, paper = series[metric]
            if ours:
                ax.plot(*zip(*ours), "o-", label="ours")
            if paper:
                ax.plot(*zip(*paper), "s--", label="paper")
            ax.set_xlabel(table.plot_x)
            ax.set_ylabel(f"{metric} (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(table.title, fontsize=9)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        path = out_dir / f"{table.key}.png"
        write_atomic(path, buffer.getvalue())
        written.append(path)
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="TF-SASM ablation tables, ours beside the paper's.")
    parser.add_argument("--results", default="results/ablation", help="OUT of tools/ablation/*.sh")
    parser.add_argument("--out", default="results/tables.md", help="markdown file to write")
    args = parser.parse_args(argv)
    results = Path(args.results)
    try:
        text = render(results)
    except ResultsError as err:
        print(f"make_tables.py: error: {err}", file=sys.stderr)
        return 1
    write_atomic(Path(args.out), text)
    plots = plot_sweeps(results, Path(args.out).parent)
    if plots:
        print(f"wrote {', '.join(str(p) for p in plots)} (sweeps: ours beside the paper's)")
    done = sum(1 for table in TABLES for _, ours in table_rows(table, results) if ours is not None)
    total = sum(len(table_rows(table, results)) for table in TABLES)
    print(f"wrote {args.out} ({done} of {total} rows have results)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
