#!/usr/bin/env bash
# Blend weight alpha of the decoder input, alpha * query + (1 - alpha) * mean(memory)
# (DanceTrack val). Not in the paper, which leaves alpha unstated; the authors' code uses 0.5.
# ALPHA_VALUES="0.25 0.5 0.75 1.0" by default; alpha = 1.0 ignores the memory (= MOTRv2).
#
#   tools/ablation/alpha_sweep.sh [CKPT [MOT_PATH [DET_DB [SPLIT]]]]
#
# The rows (OUT/alpha/<row>; listed by --help) are defined in tools/ablation/tables.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ablation_init alpha "$@"
table_rows
finish_tables
