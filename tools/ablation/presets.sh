#!/usr/bin/env bash
# The two memory presets side by side (DanceTrack val); not a table of the paper.
#
#   tools/ablation/presets.sh [CKPT [MOT_PATH [DET_DB [SPLIT]]]]
#
# Rows (OUT/presets/<row>): full TF-SASM (sparse + OFS, K = 10, tau = 0.1) with
#   official  the authors' public code       --memory_preset official
#   paper     the algorithm as the paper states it   --memory_preset paper
# (see models/sparse_memory.py). MEMORY_PRESET does not apply here.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ablation_init presets "$@"

for preset in official paper; do
    tfsasm --memory_preset "$preset"
    run_variant "$preset" "${VARIANT_FLAGS[@]}"
done

finish_tables
