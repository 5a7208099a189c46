#!/usr/bin/env bash
# Every row of Tables II-VI, the alpha sweep, the presets and the temporal-gap regularisation sweep
# (20 distinct settings) in ONE pass over the frames, then results/tables.md.
#
#   tools/ablation/all_tables.sh [CKPT [MOT_PATH [DET_DB [SPLIT]]]]
#
# What one pass costs: each frame is decoded and put through the backbone and the encoder once
# (most of a frame: 3.9 of 4.2 s on 2 CPU cores at 800x1422, 19 of 33 ms on an H200); each of the
# 20 settings then runs its own decoder, ids, QIM and memory on those features (measured by
# tools/benchmark_variants.py on 2 CPU cores: 16 variants in one pass 1.78x the time of one, 10x
# faster than 16 passes). Rows already
# tracked by an earlier run (same settings) are not tracked again. ONE_PASS=0 runs the scripts
# row by row instead (20 full passes).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ablation_init all "$@"
for TABLE in $(tables tables); do
    table_rows
done
TABLE=all
finish_tables
