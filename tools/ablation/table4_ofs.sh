#!/usr/bin/env bash
# TF-SASM Table IV: which feature to store under overlap, delaying vs OFS (DanceTrack val).
#
#   tools/ablation/table4_ofs.sh [CKPT [MOT_PATH [DET_DB [SPLIT]]]]
#
# Rows (OUT/table4/<row>), both on the same sparse memory (K = 10, tau = 0.1):
#   delay  wait until the overlap is low   --ofs delay (store once IoU <= --memory_delay_iou, 0.1)
#   ofs    least-overlap feature since the last store   --ofs min_iou
# Paper (HOTA/DetA/AssA/IDF1): 66.0/79.0/55.3/68.8, 66.5/79.4/55.8/69.5.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ablation_init table4 "$@"

tfsasm --ofs delay
run_variant delay "${VARIANT_FLAGS[@]}"
tfsasm --ofs min_iou
run_variant ofs "${VARIANT_FLAGS[@]}"

finish_tables
