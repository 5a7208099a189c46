#!/usr/bin/env bash
# The authors' temporal-gap regularisation sweep (their tools/ablation_inference_weight_decay.sh;
# DanceTrack val): best_iou *= 1 + reg each frame, so an older OFS candidate is replaced more easily.
# Not in the paper, so there is no paper column.
#
#   tools/ablation/gap_reg_sweep.sh [CKPT [MOT_PATH [DET_DB [SPLIT]]]]
#
# Rows (OUT/gap_reg/reg<r>): full TF-SASM (sparse + OFS, K = 10, tau = 0.1) with
# --memory_temporal_gap_reg r for r in REG_VALUES (default "0.05 0.1 0.2 0.3").
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ablation_init gap_reg "$@"

read -r -a reg_values <<<"${REG_VALUES:-0.05 0.1 0.2 0.3}"
for reg in "${reg_values[@]}"; do
    tfsasm --memory_temporal_gap_reg "$reg"
    run_variant "reg$reg" "${VARIANT_FLAGS[@]}"
done

finish_tables
