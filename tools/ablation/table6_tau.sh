#!/usr/bin/env bash
# TF-SASM Table VI: moving-distance threshold tau (DanceTrack val).
#
#   tools/ablation/table6_tau.sh [CKPT [MOT_PATH [DET_DB [SPLIT]]]]
#
# Rows (OUT/table6/tau<t>): full TF-SASM (sparse + OFS, K = 10) with --memory_tau t for t in
# TAU_VALUES (default "0.05 0.1 0.2 0.3 0.4", the paper's rows; tau is a fraction of the image size).
# Paper HOTA: 65.5, 66.5, 65.7, 65.9, 65.8.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ablation_init table6 "$@"

read -r -a tau_values <<<"${TAU_VALUES:-0.05 0.1 0.2 0.3 0.4}"
for tau in "${tau_values[@]}"; do
    tfsasm --memory_tau "$tau"
    run_variant "tau$tau" "${VARIANT_FLAGS[@]}"
done

finish_tables
