#!/usr/bin/env bash
# TF-SASM Table V: memory size K, the number of stored features per track (DanceTrack val);
# K_VALUES="5 10 15 20" (the paper's rows) by default.
#
#   tools/ablation/table5_memory_size.sh [CKPT [MOT_PATH [DET_DB [SPLIT]]]]
#
# The rows (OUT/table5/<row>; listed by --help) are defined in tools/ablation/tables.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ablation_init table5 "$@"
table_rows
finish_tables
