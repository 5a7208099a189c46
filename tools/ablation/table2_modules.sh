#!/usr/bin/env bash
# TF-SASM Table II: effectiveness of each module (DanceTrack val).
#
#   tools/ablation/table2_modules.sh [CKPT [MOT_PATH [DET_DB [SPLIT]]]]
#
# Rows (OUT/table2/<row>):
#   motrv2    Baseline   MOTRv2, no memory                  --memory none
#   sasm      + SASM     sparse memory, stores the latest   --memory sparse --ofs latest
#   sasm_ofs  + OFS      sparse memory + feature selector   --memory sparse --ofs min_iou
# Memory rows use the authors' K = 10, tau = 0.1, max frame gap 10, alpha = 0.5.
# Paper (HOTA/DetA/AssA/IDF1): 65.4/79.0/54.4/67.1, 66.1/79.1/55.4/69.4, 66.5/79.4/55.8/69.5.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ablation_init table2 "$@"

run_variant motrv2 --memory none
tfsasm --ofs latest
run_variant sasm "${VARIANT_FLAGS[@]}"
tfsasm --ofs min_iou
run_variant sasm_ofs "${VARIANT_FLAGS[@]}"

finish_tables
