#!/usr/bin/env bash
# Evaluate a DanceTrack tracker output folder (HOTA, DetA, AssA, MOTA, IDF1, IDSW).
#
#   tools/eval_dance.sh TRACKER_DIR [GT_SPLIT_DIR] [SEQMAP]
#
# TRACKER_DIR holds <seq>.txt files; GT_SPLIT_DIR defaults to data/DanceTrack/val of this repo;
# SEQMAP is optional (default: every sequence of GT_SPLIT_DIR). Prints a table and writes
# TRACKER_DIR/eval.json. The interpreter is $PYTHON (default: the repository's .venv/bin/python when
# it exists, else python3).
set -euo pipefail

if [[ $# -lt 1 || $# -gt 3 || "$1" == "-h" || "$1" == "--help" ]]; then
    echo "usage: $0 TRACKER_DIR [GT_SPLIT_DIR] [SEQMAP]" >&2
    exit 2
fi

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tracker_dir="$1"
gt_dir="${2:-$repo_root/data/DanceTrack/val}"
seqmap="${3:-}"

args=(--gt_folder "$gt_dir" --tracker_folder "$tracker_dir" --json "$tracker_dir/eval.json" --benchmark dancetrack)
if [[ -n "$seqmap" ]]; then
    args+=(--seqmap "$seqmap")
fi
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$repo_root/.venv/bin/python" ]]; then python="$repo_root/.venv/bin/python"; else python=python3; fi
fi
exec "$python" "$repo_root/tools/evaluate.py" "${args[@]}"
