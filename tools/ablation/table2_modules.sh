#!/usr/bin/env bash
# TF-SASM Table II: effectiveness of each module (DanceTrack val): MOTRv2, + SASM (sparse memory
# storing the latest feature), + OFS (the feature selector).
#
#   tools/ablation/table2_modules.sh [CKPT [MOT_PATH [DET_DB [SPLIT]]]]
#
# The rows (OUT/table2/<row>; listed by --help) are defined in tools/ablation/tables.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ablation_init table2 "$@"
table_rows
finish_tables
