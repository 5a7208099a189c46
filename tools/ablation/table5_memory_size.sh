#!/usr/bin/env bash
# TF-SASM Table V: memory size K, the number of stored features per track (DanceTrack val).
#
#   tools/ablation/table5_memory_size.sh [CKPT [MOT_PATH [DET_DB [SPLIT]]]]
#
# Rows (OUT/table5/K<k>): full TF-SASM (sparse + OFS, tau = 0.1) with --memory_size k for
# k in K_VALUES (default "5 10 15 20", the paper's rows).
# Paper HOTA: 66.0, 66.5, 65.8, 65.6.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ablation_init table5 "$@"

read -r -a k_values <<<"${K_VALUES:-5 10 15 20}"
for k in "${k_values[@]}"; do
    tfsasm --memory_size "$k"
    run_variant "K$k" "${VARIANT_FLAGS[@]}"
done

finish_tables
