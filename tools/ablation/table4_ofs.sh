#!/usr/bin/env bash
# TF-SASM Table IV: which feature to store under overlap, delaying vs OFS (DanceTrack val).
#
#   tools/ablation/table4_ofs.sh [CKPT [MOT_PATH [DET_DB [SPLIT]]]]
#
# The rows (OUT/table4/<row>; listed by --help) are defined in tools/ablation/tables.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ablation_init table4 "$@"
table_rows
finish_tables
