#!/usr/bin/env bash
# The two memory presets side by side (DanceTrack val); not a table of the paper: official (the
# authors' public code) and paper (the algorithm as the paper states it; see models/sparse_memory.py).
# MEMORY_PRESET does not apply here.
#
#   tools/ablation/presets.sh [CKPT [MOT_PATH [DET_DB [SPLIT]]]]
#
# The rows (OUT/presets/<row>; listed by --help) are defined in tools/ablation/tables.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ablation_init presets "$@"
table_rows
finish_tables
