#!/usr/bin/env bash
# TF-SASM Table VI: moving-distance threshold tau (DanceTrack val); TAU_VALUES="0.05 0.1 0.2 0.3 0.4"
# (the paper's rows) by default; tau is a fraction of the image size.
#
#   tools/ablation/table6_tau.sh [CKPT [MOT_PATH [DET_DB [SPLIT]]]]
#
# The rows (OUT/table6/<row>; listed by --help) are defined in tools/ablation/tables.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ablation_init table6 "$@"
table_rows
finish_tables
