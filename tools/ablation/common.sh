# Shared by the ablation scripts of tools/ablation/ (sourced, not run).
#
# Every script takes the same inputs, as positional arguments or as environment variables
# (a positional argument wins):
#
#   SCRIPT [CKPT [MOT_PATH [DET_DB [SPLIT]]]]
#
#   CKPT        MOTRv2 checkpoint                        (default: motrv2_dancetrack.pth)
#   MOT_PATH    data root holding DanceTrack/<SPLIT>/     (default: data; with DATASET, its folder:
#               SportsMOT/, MOT17/, BFT/)
#   DET_DB      YOLOX proposals, MOTRv2's det_db JSON     (default: det_db_motrv2.json; a name that is
#               not a file is looked up under MOT_PATH, as submit_dance.py does)
#   SPLIT       split with ground truth to score on       (default: val)
#
# Further environment variables:
#   DATASET     a dataset of datasets/registry.py: dancetrack (default), sportsmot, mot17, mot20, bft;
#               passed to submit_dance.py as --dataset
#               and to tools/evaluate.py as --benchmark (README: one section per dataset)
#   MOT17_COPY  DATASET=mot17: DPM, FRCNN (default), SDP or all (--mot17_copy)
#   OUT         results folder                  (default: results/ablation)
#   TABLES      markdown written at the end     (default: the folder above OUT, /tables.md,
#                                                i.e. results/tables.md)
#   NUM_GPUS    1: python submit_dance.py; N > 1: $PYTHON -m torch.distributed.run
#               --nproc_per_node N submit_dance.py (torchrun; sequences are split by rank)  (default 1)
#   PYTHON      interpreter                     (default: the repository's .venv/bin/python when it
#               exists, else python3)
#   BASE_ARGS   MOTRv2 flags file               (default: configs/motrv2.args)
#   EXTRA_ARGS  appended to every submit_dance.py call, e.g. "--device cpu --num_workers 0"
#   MEMORY_PRESET  official (the authors' code, default) or paper: the preset of every memory row
#               (presets.sh compares the two regardless)
#   SEQS        only these sequences (space-separated); scored with a seqmap of them
#   ONLY        only these rows of the table (space-separated row names, e.g. "motrv2 sasm")
#   ONE_PASS    1 (default): the rows still to track run as variants of one pass over the frames
#               (submit_dance.py --variants: each frame decoded and encoded once, a tracker per row;
#               about the cost of one run plus a decoder per row); 0: one submit_dance.py run per row
#   DRY_RUN=1   print the commands, run nothing
#
# Each table's rows (name, flags, the paper's figures) are defined once, in tools/ablation/tables.py;
# the scripts read them from there (`$PYTHON -m tools.ablation.tables rows TABLE`).
#
# Relative paths given by you are relative to the folder you run the script from; the defaults
# are relative to the repository root. Nothing here depends on the current folder.
#
# Layout: every distinct setting is tracked once into OUT/runs/<key>/ (key: a hash of the
# submit_dance.py flags and of the checkpoint's and det_db's size and mtime; command.txt there
# says what ran); OUT/<table>/<row> is a link to it, so rows that are the same experiment
# (Table II "+ OFS" = Table IV "OFS" = Table V "10" = Table VI "0.1" = ...) share one run.
# Runs resume: finished sequences are skipped, and the evaluation (OUT/<table>/<row>/eval.json)
# is redone only when a result file is newer than it.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CALLER_PWD="$PWD"
cd "$REPO_ROOT"

die() {
    echo "error: $*" >&2
    exit 2
}

# Absolute path of $1; a relative one is taken relative to the folder $2.
absolute_from() {
    local path="$1" base="$2"
    if [[ "$path" == /* ]]; then
        printf '%s\n' "$path"
    else
        printf '%s\n' "$base/$path"
    fi
}

default_python() {
    if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then
        printf '%s\n' "$REPO_ROOT/.venv/bin/python"
    else
        printf '%s\n' python3
    fi
}

# tables ARGS...: tools/ablation/tables.py (the rows' one home)
tables() {
    "$PYTHON" -m tools.ablation.tables "$@"
}

usage() {
    # The calling script's header comment, its rows, then the shared options above.
    sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$SCRIPT_PATH"
    echo
    tables describe "$TABLE"
    echo
    sed -n '1,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$REPO_ROOT/tools/ablation/common.sh"
}

# ablation_init TABLE "$@": read the inputs, check them, print the setup.
ablation_init() {
    TABLE="$1"
    shift
    PYTHON="${PYTHON:-$(default_python)}"
    SCRIPT_PATH="$(absolute_from "${BASH_SOURCE[1]}" "$CALLER_PWD")"
    if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
        usage
        exit 0
    fi
    (($# <= 4)) || die "too many arguments (at most CKPT MOT_PATH DET_DB SPLIT); see --help"
    # positional > environment > default; user paths are relative to the caller's folder
    local arg_ckpt="${1:-${CKPT:-}}" arg_mot="${2:-${MOT_PATH:-}}" arg_det="${3:-${DET_DB:-}}"
    SPLIT="${4:-${SPLIT:-val}}"
    if [[ -n "$arg_ckpt" ]]; then CKPT="$(absolute_from "$arg_ckpt" "$CALLER_PWD")"
    else CKPT="$REPO_ROOT/motrv2_dancetrack.pth"; fi
    if [[ -n "$arg_mot" ]]; then MOT_PATH="$(absolute_from "$arg_mot" "$CALLER_PWD")"
    else MOT_PATH="$REPO_ROOT/data"; fi
    # DET_DB: a file relative to where it was given, else a name under MOT_PATH (submit_dance.py's rule)
    DET_DB="${arg_det:-det_db_motrv2.json}"
    local det_base="$REPO_ROOT"
    if [[ -n "$arg_det" ]]; then det_base="$CALLER_PWD"; fi
    if [[ "$DET_DB" == /* ]]; then :
    elif [[ -f "$det_base/$DET_DB" ]]; then DET_DB="$det_base/$DET_DB"
    else DET_DB="$MOT_PATH/$DET_DB"; fi
    if [[ -n "${OUT:-}" ]]; then OUT="$(absolute_from "$OUT" "$CALLER_PWD")"
    else OUT="$REPO_ROOT/results/ablation"; fi
    if [[ -n "${TABLES:-}" ]]; then TABLES="$(absolute_from "$TABLES" "$CALLER_PWD")"
    else TABLES="$(dirname "$OUT")/tables.md"; fi
    if [[ -n "${BASE_ARGS:-}" ]]; then BASE_ARGS="$(absolute_from "$BASE_ARGS" "$CALLER_PWD")"
    else BASE_ARGS="$REPO_ROOT/configs/motrv2.args"; fi
    NUM_GPUS="${NUM_GPUS:-1}"
    MEMORY_PRESET="${MEMORY_PRESET:-official}"
    DRY_RUN="${DRY_RUN:-0}"
    DATASET="${DATASET:-dancetrack}"
    MOT17_COPY="${MOT17_COPY:-FRCNN}"
    # the dataset's folder and its copies come from its registry entry (datasets/registry.py)
    local dataset_info dataset_dir copies
    dataset_info="$(tables dataset "$DATASET")" || exit 2
    dataset_dir="$(sed -n 1p <<<"$dataset_info")"
    copies="$(sed -n 2p <<<"$dataset_info")"
    if [[ -n "$copies" ]]; then
        [[ " $copies all " == *" $MOT17_COPY "* ]] || die "MOT17_COPY must be one of $copies all, got '$MOT17_COPY'"
    fi
    # --dataset flags only off the default, so that DanceTrack runs keep their run folders (keys)
    DATASET_FLAGS=()
    EVAL_FLAGS=(--benchmark "$DATASET")
    if [[ "$DATASET" != dancetrack ]]; then
        DATASET_FLAGS=(--dataset "$DATASET")
        if [[ -n "$copies" ]]; then DATASET_FLAGS+=(--mot17_copy "$MOT17_COPY"); fi
    fi
    read -r -a EXTRA <<<"${EXTRA_ARGS:-}"
    # EXTRA_ARGS' tracker/memory flags (each takes one value) follow a row's own flags, as they do in
    # a row-by-row command line; in the one pass they go on every variant line, the rest on the command.
    # Which flags are the tracker's comes from its config dataclass (tables.py split-extra).
    EXTRA_TRACKER=()
    EXTRA_RUN=()
    if ((${#EXTRA[@]})); then
        local split
        split="$(tables split-extra "${EXTRA[@]}")" || die "cannot sort EXTRA_ARGS into tracker and other flags"
        read -r -a EXTRA_TRACKER <<<"$(sed -n 1p <<<"$split")"
        read -r -a EXTRA_RUN <<<"$(sed -n 2p <<<"$split")"
    fi
    read -r -a SEQ_LIST <<<"${SEQS:-}"
    read -r -a ONLY_LIST <<<"${ONLY:-}"
    [[ "$NUM_GPUS" =~ ^[1-9][0-9]*$ ]] || die "NUM_GPUS must be a positive integer, got '$NUM_GPUS'"
    [[ "$MEMORY_PRESET" == official || "$MEMORY_PRESET" == paper ]] ||
        die "MEMORY_PRESET must be official or paper, got '$MEMORY_PRESET'"
    [[ -f "$BASE_ARGS" ]] || die "BASE_ARGS file not found: $BASE_ARGS"
    # the args file is whitespace-separated flags, as $(cat file) reads it (no glob expansion here)
    read -r -d '' -a BASE <"$BASE_ARGS" || true
    GT_DIR="$MOT_PATH/$dataset_dir/$SPLIT"
    # as submit_dance.py: MOT_PATH may be the dataset folder itself
    if [[ ! -d "$GT_DIR" && -d "$MOT_PATH/$SPLIT" ]]; then GT_DIR="$MOT_PATH/$SPLIT"; fi
    if [[ "$DRY_RUN" != 1 ]]; then
        [[ -f "$CKPT" ]] || die "checkpoint not found: $CKPT (pass CKPT as the first argument)"
        [[ -f "$DET_DB" ]] || die "det_db not found: $DET_DB (pass DET_DB as the third argument)"
        [[ -d "$GT_DIR" ]] || die "split folder not found: $GT_DIR (MOT_PATH and SPLIT)"
        compgen -G "$GT_DIR/*/gt/gt.txt" >/dev/null ||
            die "no <seq>/gt/gt.txt under $GT_DIR: the tables need a split with ground truth (val)"
    fi
    if ((NUM_GPUS > 1)); then
        LAUNCH=("$PYTHON" -m torch.distributed.run --nproc_per_node "$NUM_GPUS")
    else
        LAUNCH=("$PYTHON")
    fi
    ONE_PASS="${ONE_PASS:-1}"
    [[ "$ONE_PASS" == 0 || "$ONE_PASS" == 1 ]] || die "ONE_PASS must be 0 or 1, got '$ONE_PASS'"
    SEQ_FLAGS=()
    if ((${#SEQ_LIST[@]})); then SEQ_FLAGS=(--seqs "${SEQ_LIST[@]}"); fi
    EVAL_CMD=("$PYTHON" tools/evaluate.py --gt_folder "$GT_DIR" "${EVAL_FLAGS[@]}")
    ROWS=()
    PENDING_KEYS=()
    PENDING_LINES=()
    SEQS_EXPECTED=()
    # a dry run too, so that it shows which rows a real run would reuse (none without the data)
    mapfile -t SEQS_EXPECTED < <(expected_sequences)
    if [[ "$DRY_RUN" != 1 ]]; then
        ((${#SEQS_EXPECTED[@]})) || die "no sequences (folders with img1/) in $GT_DIR"
    fi
    echo "== $TABLE: $(basename "$SCRIPT_PATH")"
    echo "   repo      $REPO_ROOT"
    echo "   CKPT      $CKPT"
    echo "   MOT_PATH  $MOT_PATH   SPLIT $SPLIT   DATASET $DATASET"
    echo "   DET_DB    $DET_DB"
    echo "   OUT       $OUT   (tables: $TABLES)"
    echo "   BASE_ARGS $BASE_ARGS   EXTRA_ARGS ${EXTRA[*]:-}"
    echo "   NUM_GPUS  $NUM_GPUS   MEMORY_PRESET $MEMORY_PRESET"
}

print_command() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
}

# Sequence names the run must produce: SEQS, or every sequence folder (with img1/) of the split.
expected_sequences() {
    if ((${#SEQ_LIST[@]})); then
        printf '%s\n' "${SEQ_LIST[@]}"
        return
    fi
    # the copy tracked (--mot17_copy), as submit_dance.py picks it: the registry's rule
    tables sequences "$DATASET" "$GT_DIR" --copy "$MOT17_COPY"
}

# table_rows: run_variant for every row of TABLE (tables.py rows: NAME FLAGS... a line).
table_rows() {
    local listing line
    listing="$(tables rows "$TABLE" --memory_preset "$MEMORY_PRESET")" || die "no rows for table $TABLE"
    local -a words
    while IFS= read -r line; do
        read -r -a words <<<"$line"
        run_variant "${words[@]}"
    done <<<"$listing"
}

# run_key SETTINGS...: the run folder's name, a hash of the settings and of the checkpoint's and
# det_db's size and mtime (a dry run without them hashes what there is: no real run has that key).
run_key() {
    { printf '%s\0' "$@"; stat -L -c '%s %Y' "$CKPT" "$DET_DB" 2>/dev/null || true; } | sha256sum | cut -c1-12
}

# write_file FILE: standard input to FILE, atomically (util/fileio.py, through tables.py).
write_file() {
    tables write "$1"
}

# run_variant NAME FLAGS...: the row NAME of TABLE is BASE_ARGS + FLAGS + EXTRA_ARGS on the split,
# tracked into OUT/TABLE/NAME (a link to the shared run folder) and scored into its eval.json.
# ONE_PASS=1 (default): rows are collected and finish_tables tracks every row still missing a
# result in one pass over the frames (submit_dance.py --variants: each frame is encoded once and
# every row's tracker runs on it); ONE_PASS=0 tracks each row on its own, here.
run_variant() {
    local name="$1"
    shift
    if ((${#ONLY_LIST[@]})) && [[ " ${ONLY_LIST[*]} " != *" $name "* ]]; then
        echo "-- $TABLE/$name: skipped (not in ONLY)"
        return 0
    fi
    local row="$OUT/$TABLE/$name"
    # What decides the output; where it goes (--output_dir, --exp_name) is left out of the key.
    local -a settings=("${BASE[@]}" --resume "$CKPT" --mot_path "$MOT_PATH" --det_db "$DET_DB"
                       --split "$SPLIT" "${DATASET_FLAGS[@]}" "${SEQ_FLAGS[@]}" "$@" "${EXTRA[@]}")
    local -a args=("${settings[@]}" --output_dir "$OUT/$TABLE" --exp_name "$name")
    echo
    echo "-- $TABLE/$name: $*"
    # One folder per distinct setting, OUT/runs/<key>; the row is a relative link to it.
    local key run
    key="$(run_key "${settings[@]}")"
    run="$OUT/runs/$key"
    if [[ "$DRY_RUN" != 1 ]]; then
        mkdir -p "$run" "$OUT/$TABLE"
        if [[ ! -f "$run/command.txt" ]]; then
            { printf '%q ' submit_dance.py "${args[@]}"; echo; } | write_file "$run/command.txt"
        fi
        if [[ -e "$row" && ! -L "$row" ]]; then
            die "$row exists and is not a link made by these scripts; move it away"
        fi
        ln -sfn "../runs/$key" "$row"
        ROWS+=("$row")
    fi
    echo "   run folder: $run"

    if ((${#SEQS_EXPECTED[@]})) && run_complete "$run"; then
        echo "   all ${#SEQS_EXPECTED[@]} sequences tracked already (same settings)"
    elif [[ "$ONE_PASS" == 1 ]]; then
        if [[ " ${PENDING_KEYS[*]:-} " == *" $key "* ]]; then
            echo "   tracked in the one pass at the end (variant $key, as an earlier row)"
        else
            PENDING_KEYS+=("$key")
            local line="$key $*"
            if ((${#EXTRA_TRACKER[@]})); then line+=" ${EXTRA_TRACKER[*]}"; fi
            PENDING_LINES+=("$line")
            echo "   tracked in the one pass at the end (variant $key)"
        fi
    elif [[ " ${PENDING_KEYS[*]:-} " == *" $key "* ]]; then
        echo "   tracked above (same settings)"
    else
        PENDING_KEYS+=("$key")
        print_command "${LAUNCH[@]}" submit_dance.py "${args[@]}"
        if [[ "$DRY_RUN" != 1 ]]; then
            "${LAUNCH[@]}" submit_dance.py "${args[@]}"
            run_complete "$run" || die "submit_dance.py finished but $run lacks a sequence's result"
        fi
    fi
    if [[ "$DRY_RUN" == 1 ]]; then
        print_command "${EVAL_CMD[@]}" --tracker_folder "$row" --json "$row/eval.json"
    elif [[ "$ONE_PASS" != 1 ]]; then
        score_row "$row"
    fi
    return 0
}

# run_complete RUN_FOLDER: every expected sequence has its result file there.
run_complete() {
    local seq
    for seq in "${SEQS_EXPECTED[@]}"; do
        [[ -f "$1/$seq.txt" ]] || return 1
    done
    return 0
}

# score_row ROW: tools/evaluate.py into ROW/eval.json, unless it is newer than every result file.
score_row() {
    local row="$1" run seq stale=0
    run="$(readlink -f "$row")"
    if [[ -f "$run/eval.json" ]]; then
        for seq in "${SEQS_EXPECTED[@]}"; do
            if [[ "$run/$seq.txt" -nt "$run/eval.json" ]]; then stale=1; fi
        done
    else
        stale=1
    fi
    echo "-- score $TABLE/$(basename "$row")"
    if ((stale)); then
        local -a cmd=("${EVAL_CMD[@]}" --tracker_folder "$row" --json "$row/eval.json")
        if ((${#SEQ_LIST[@]})); then
            printf 'name\n%s\n' "${SEQ_LIST[@]}" | write_file "$run/seqmap.txt"
            cmd+=(--seqmap "$row/seqmap.txt")
        fi
        print_command "${cmd[@]}"
        "${cmd[@]}"
    else
        echo "   eval.json is newer than every result file: not re-scored"
    fi
}

# The one pass: every collected row still missing a result, as variants of one submit_dance.py run.
track_pending() {
    ((${#PENDING_LINES[@]})) || return 0
    local -a base=("${BASE[@]}" --resume "$CKPT" --mot_path "$MOT_PATH" --det_db "$DET_DB" --split "$SPLIT"
                   "${DATASET_FLAGS[@]}" "${SEQ_FLAGS[@]}" "${EXTRA_RUN[@]}" --output_dir "$OUT/runs")
    local file="$OUT/runs/variants_$TABLE.txt"
    echo
    echo "-- one pass: ${#PENDING_LINES[@]} variant(s) on each frame's features ($file)"
    if [[ "$DRY_RUN" == 1 ]]; then
        printf '   %s\n' "${PENDING_LINES[@]}"
        print_command "${LAUNCH[@]}" submit_dance.py "${base[@]}" --variants "$file"
        return 0
    fi
    printf '%s\n' "${PENDING_LINES[@]}" | write_file "$file"
    print_command "${LAUNCH[@]}" submit_dance.py "${base[@]}" --variants "$file"
    "${LAUNCH[@]}" submit_dance.py "${base[@]}" --variants "$file"
    local key
    for key in "${PENDING_KEYS[@]}"; do
        run_complete "$OUT/runs/$key" || die "submit_dance.py finished but $OUT/runs/$key lacks a sequence's result"
    done
}

# Track what is pending (one pass), score every row, collect every table into TABLES.
finish_tables() {
    track_pending
    local row
    if [[ "$ONE_PASS" == 1 && "$DRY_RUN" != 1 ]]; then
        for row in "${ROWS[@]}"; do score_row "$row"; done
    fi
    local -a cmd=("$PYTHON" -m tools.make_tables --results "$OUT" --out "$TABLES")
    echo
    if [[ "$DRY_RUN" == 1 ]]; then
        print_command "${cmd[@]}"
        return 0
    fi
    print_command "${cmd[@]}"
    "${cmd[@]}"
}
