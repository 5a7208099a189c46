"""Track DanceTrack-format sequences with MOTRv2 (+ optional TF-SASM memory) and write
MOTChallenge result files, one `<seq>.txt` per sequence.

    python submit_dance.py $(cat configs/motrv2.args) --resume motrv2_dancetrack.pth \\
        --mot_path data --det_db det_db_motrv2.json --output_dir outputs --exp_name val --split val
    python submit_dance.py ... --variants configs/variants/table2.txt   # several variants, one pass
    python submit_dance.py --demo          # everything built in: synthetic data, shipped small model

Command-compatible with upstream MOTRv2's submit_dance.py; in addition: --split, --seqs,
--overwrite, --missing_detections, --amp, --variants, resumable runs (finished sequences are
skipped), atomic result files, the model card beside --resume for the settings not given
(models/card.py), several GPUs with torchrun (sequences split by rank).
The run itself is `inference.run`; the per-frame step is `models.tracker`.
"""
import signal
import sys
from typing import List, Optional

from datasets.det_db import DetDBError
from datasets.sequences import SequenceError
from inference import VariantError, run, run_variants
from models.card import CardError, apply_card_defaults, card_note, given_dests
from models.checkpoint import CheckpointError
from models.export import BackendError, MissingRuntime
from util.device import AmpError
from main import get_tracking_parser, warn_inert_flags

# The demo takes only these flags; any other is refused rather than silently ignored.
DEMO_FLAGS = ("demo", "device")


def _quiet_after_interrupt() -> None:
    """Ctrl-C can land inside an object's constructor (a progress bar, a DataLoader iterator); its
    destructor then fails during shutdown and Python prints a traceback for it. After an interrupt
    those reports are noise: keep the one-line message only."""
    interrupted = False
    default_hook = sys.unraisablehook

    def on_sigint(signum, frame):
        nonlocal interrupted
        interrupted = True
        raise KeyboardInterrupt

    def unraisable(report):
        if not interrupted:
            default_hook(report)

    signal.signal(signal.SIGINT, on_sigint)
    sys.unraisablehook = unraisable


def _demo_flags_misused(parser, args) -> List[str]:
    return [f"--{name}" for name, value in vars(args).items()
            if name not in DEMO_FLAGS and value != parser.get_default(name)]


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = get_tracking_parser()
    args = parser.parse_args(argv)
    if args.demo:
        unused = _demo_flags_misused(parser, args)
        if unused:
            print(f"error: --demo takes only --device; it does not use {', '.join(unused)}", file=sys.stderr)
            return 2
        from tools.demo import run_demo
        return run_demo(args)
    warn_inert_flags(args)
    try:
        if args.resume:  # the checkpoint's card gives every model / tracker setting not typed here
            card, changed = apply_card_defaults(args, given_dests(get_tracking_parser(), argv), args.resume)
            if card is not None:
                print(card_note(card, changed, args.resume), file=sys.stderr)
        run(args, run_variants(args, parser))
    except (AmpError, CheckpointError, CardError, DetDBError, SequenceError, VariantError, MissingRuntime,
            BackendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nerror: interrupted: finished sequences are kept; run the same command again to track the rest",
              file=sys.stderr)
        return 130
    except OSError as exc:  # a read-only output folder, a full disk (found before any work where possible)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    _quiet_after_interrupt()  # process-wide hooks: only when run as a command
    sys.exit(main())
