#!/usr/bin/env bash
# The authors' temporal-gap regularisation sweep (their tools/ablation_inference_weight_decay.sh;
# DanceTrack val): best_iou *= 1 + reg each frame, so an older OFS candidate is replaced more easily.
# Not in the paper, so there is no paper column. REG_VALUES="0.05 0.1 0.2 0.3" by default.
#
#   tools/ablation/gap_reg_sweep.sh [CKPT [MOT_PATH [DET_DB [SPLIT]]]]
#
# The rows (OUT/gap_reg/<row>; listed by --help) are defined in tools/ablation/tables.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ablation_init gap_reg "$@"
table_rows
finish_tables
