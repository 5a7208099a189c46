#!/usr/bin/env bash
# TF-SASM Table III: memory density, dense vs sparse (DanceTrack val).
#
#   tools/ablation/table3_density.sh [CKPT [MOT_PATH [DET_DB [SPLIT]]]]
#
# Rows (OUT/table3/<row>); both without the feature selector and with at most K = 10 features,
# as in the paper (its "Sparse" row is Table II's "+ SASM"):
#   dense   store every frame      --memory dense  --ofs latest
#   sparse  store after moving tau --memory sparse --ofs latest
# Paper (HOTA/DetA/AssA/IDF1): 64.5/78.3/53.3/67.2, 66.1/79.1/55.3/69.4.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ablation_init table3 "$@"

tfsasm --memory dense --ofs latest
run_variant dense "${VARIANT_FLAGS[@]}"
tfsasm --memory sparse --ofs latest
run_variant sparse "${VARIANT_FLAGS[@]}"

finish_tables
