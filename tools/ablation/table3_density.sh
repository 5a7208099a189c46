#!/usr/bin/env bash
# TF-SASM Table III: memory density, dense vs sparse (DanceTrack val); both without the feature
# selector and with at most K = 10 features, as in the paper (its "Sparse" row is Table II's "+ SASM").
#
#   tools/ablation/table3_density.sh [CKPT [MOT_PATH [DET_DB [SPLIT]]]]
#
# The rows (OUT/table3/<row>; listed by --help) are defined in tools/ablation/tables.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ablation_init table3 "$@"
table_rows
finish_tables
