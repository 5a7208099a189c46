#!/usr/bin/env bash
# Blend weight alpha of the decoder input, alpha * query + (1 - alpha) * mean(memory)
# (DanceTrack val). Not in the paper, which leaves alpha unstated; the authors' code uses 0.5.
#
#   tools/ablation/alpha_sweep.sh [CKPT [MOT_PATH [DET_DB [SPLIT]]]]
#
# Rows (OUT/alpha/alpha<a>): full TF-SASM (sparse + OFS, K = 10, tau = 0.1) with --memory_alpha a
# for a in ALPHA_VALUES (default "0.25 0.5 0.75 1.0"); alpha = 1.0 ignores the memory (= MOTRv2).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ablation_init alpha "$@"

read -r -a alpha_values <<<"${ALPHA_VALUES:-0.25 0.5 0.75 1.0}"
for alpha in "${alpha_values[@]}"; do
    tfsasm --memory_alpha "$alpha"
    run_variant "alpha$alpha" "${VARIANT_FLAGS[@]}"
done

finish_tables
