"""Model cards: the settings a checkpoint is meant to be used with, kept beside it.

`weights/synthetic_small.pth` has `weights/synthetic_small.card.json`: the network flags that build its
architecture, the input size rule it tracks at (`--val_width` short side, `--val_max_size` long-side
cap), the tracker settings it was tuned with, what it was trained on and the sha256 of the file it
describes. `Tracker.from_checkpoint`, `tools/track_video.py` and `submit_dance.py --resume` read it
for every setting they were not given; training (`engine.py`) writes one beside each checkpoint.

`settings_for(checkpoint, config, flags)` is the one place that decides where a tracker's settings
come from: an explicit `config`, else the card, else the `args` a training checkpoint holds, else
`configs/motrv2.args` (a released upstream checkpoint has neither card nor args).
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

from util.fileio import write_json_atomic

from .checkpoint import sha256_of
from .config import add_network_args, flags_to_argv, model_args, model_parser, tracker_flags

CARD_SUFFIX = ".card.json"
CARD_VERSION = 1
# A checkpoint with neither card nor training args: upstream's released weights, built as configs/motrv2.args.
FALLBACK_CONFIG = "motrv2"
PathLike = Union[str, os.PathLike]


class CardError(ValueError):
    """A model card that cannot be read, names an unknown or out-of-range flag, or describes another file."""


def network_flag_names() -> Tuple[str, ...]:
    """The dests of every network flag (what builds the architecture)."""
    parser = add_network_args(argparse.ArgumentParser(add_help=False))
    return tuple(a.dest for a in parser._actions if a.option_strings)


def tracking_flag_names() -> Tuple[str, ...]:
    """The dests of the tracker's and the memory's flags (what a card's `tracker` may set)."""
    return tuple(f.dest for f in tracker_flags())


@dataclass(frozen=True)
class ModelCard:
    """What a checkpoint needs to be used as it was meant. Every flag is named by its dest
    (`hidden_dim`, `miss_tolerance`, `memory`) with its parsed value."""
    name: str
    architecture: Dict[str, Any]            # network flags (models.config.add_network_args)
    val_width: int                          # short side of the model input when tracking
    val_max_size: int                       # long-side cap of the model input
    tracker: Dict[str, Any] = field(default_factory=dict)  # tracker / memory flags it was tuned with
    trained_on: str = ""
    sha256: str = ""                        # of the checkpoint file; "" = not recorded
    notes: str = ""
    version: int = CARD_VERSION

    def __post_init__(self):
        network, tracking = set(network_flag_names()), set(tracking_flag_names())
        _check_names(self.architecture, network, "architecture", "network")
        _check_names(self.tracker, tracking, "tracker", "tracker or memory")
        for name in ("val_width", "val_max_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise CardError(f"card field {name!r} must be a positive integer, got {value!r}")
        try:  # every value through the parser: a bad one is refused by flag name
            model_args(None, self.flags())
        except ValueError as exc:
            raise CardError(f"card {self.name!r}: {exc}") from exc

    def flags(self) -> Dict[str, Any]:
        """Every setting of the card as keyword flags (`Tracker.from_checkpoint`'s `**flags`)."""
        return {**self.architecture, "val_width": self.val_width, "val_max_size": self.val_max_size,
                **self.tracker}

    def argv(self) -> list:
        """The same settings as command-line words (`--hidden_dim 128 ... --val_width 192 ...`)."""
        return flags_to_argv(model_parser(), self.flags())

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "<card>") -> "ModelCard":
        if not isinstance(data, Mapping):
            raise CardError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CardError(f"{source}: unknown card field {unknown[0]!r}; known: {', '.join(sorted(known))}")
        if data.get("version", CARD_VERSION) != CARD_VERSION:
            raise CardError(f"{source}: card version {data.get('version')!r}, this code reads {CARD_VERSION}")
        missing = [f.name for f in fields(cls) if f.name not in data and f.name in ("name", "architecture",
                                                                                     "val_width", "val_max_size")]
        if missing:
            raise CardError(f"{source}: card field {missing[0]!r} is missing")
        try:
            return cls(**data)
        except CardError as exc:
            raise CardError(f"{source}: {exc}") from None


def _check_names(values: Any, allowed: Set[str], section: str, kind: str) -> None:
    if not isinstance(values, Mapping):
        raise CardError(f"card field {section!r} must be an object of flag values, got {type(values).__name__}")
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise CardError(f"card field {section!r}: {unknown[0]!r} is not a {kind} flag")


# -- files --------------------------------------------------------------------------------------------
def card_path(checkpoint: PathLike) -> Path:
    """Where a checkpoint's card lives: `model.pth` -> `model.card.json`, beside it."""
    path = Path(checkpoint)
    return path.with_name((path.stem if path.suffix == ".pth" else path.name) + CARD_SUFFIX)


def read_card(checkpoint: PathLike, *, verify: bool = True) -> Optional[ModelCard]:
    """The card beside `checkpoint`, or None when it has none. A malformed card, or (`verify`) one
    whose sha256 is not the checkpoint's, raises CardError naming the card file."""
    path = card_path(checkpoint)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CardError(f"cannot read model card {path}: {exc}") from exc
    card = ModelCard.from_json(data, str(path))
    if verify and card.sha256 and os.path.isfile(checkpoint):
        actual = sha256_of(os.fspath(checkpoint))
        if actual != card.sha256.lower():
            raise CardError(f"model card {path} describes another file (sha256 {card.sha256[:16]}...), not "
                            f"{checkpoint} (sha256 {actual[:16]}...): re-export the card with the checkpoint "
                            "or delete it")
    return card


def write_card(card: ModelCard, checkpoint: PathLike) -> Path:
    """Write `card` beside `checkpoint` (atomically); returns its path."""
    path = card_path(checkpoint)
    write_json_atomic(path, card.to_json())
    return path


def card_from_args(args: Union[argparse.Namespace, Mapping[str, Any]], checkpoint: Optional[PathLike] = None, *,
                   name: Optional[str] = None, trained_on: str = "", tracker: Optional[Mapping[str, Any]] = None,
                   notes: str = "") -> ModelCard:
    """A card for a checkpoint built with `args` (a parsed command line or a training checkpoint's
    `args` dict): its network flags, its `val_width` / `val_max_size` (the defaults where absent),
    `tracker` settings, and the sha256 of `checkpoint` when given."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    defaults = model_args(None)
    architecture = {k: _plain(values[k]) for k in network_flag_names() if k in values}
    return ModelCard(
        name=name or (Path(checkpoint).stem if checkpoint else "model"), architecture=architecture,
        val_width=int(values.get("val_width", defaults.val_width)),
        val_max_size=int(values.get("val_max_size", defaults.val_max_size)),
        tracker=dict(tracker or {}), trained_on=trained_on,
        sha256=sha256_of(os.fspath(checkpoint)) if checkpoint else "", notes=notes)


def _plain(value: Any) -> Any:
    """A JSON-friendly copy (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


# -- where a tracker's settings come from -------------------------------------------------------------
def training_args_card(checkpoint_dict: Any, checkpoint: PathLike) -> Optional[ModelCard]:
    """A card from the `args` a training checkpoint holds (engine.py saves them), or None."""
    held = checkpoint_dict.get("args") if isinstance(checkpoint_dict, Mapping) else None
    if isinstance(held, argparse.Namespace):
        held = vars(held)
    if not isinstance(held, Mapping):
        return None
    try:
        return card_from_args(held, name=Path(checkpoint).stem, trained_on=training_data(held))
    except CardError as exc:
        raise CardError(f"the training args held in {checkpoint}: {exc}") from None


def training_data(args: Mapping[str, Any]) -> str:
    """What a training command line trained on, in one line (a card's `trained_on`)."""
    parts = [f"{k} {args[k]}" for k in ("dataset_file", "dataset", "mot_path", "det_db", "epochs")
             if args.get(k) not in (None, "")]
    return "; ".join(parts)


def export_card(source: PathLike, source_dict: Any, out: PathLike) -> Optional[Path]:
    """The card of an exported copy of checkpoint `source` (contents `source_dict`), written beside
    `out`: the source's card, else one from its training args (None: neither, nothing written). The
    tracker settings and notes of a card already beside `out` for the same architecture are kept."""
    card = read_card(source, verify=False) or training_args_card(source_dict, source)
    if card is None:
        return None
    try:
        previous = read_card(out, verify=False)
    except CardError:
        previous = None
    keep = previous is not None and previous.architecture == card.architecture
    card = replace(card, name=Path(out).stem, sha256=sha256_of(os.fspath(out)),
                   tracker=previous.tracker if keep else card.tracker, notes=previous.notes if keep else card.notes,
                   val_width=previous.val_width if keep else card.val_width,
                   val_max_size=previous.val_max_size if keep else card.val_max_size,
                   trained_on=previous.trained_on if keep and previous.trained_on else card.trained_on)
    return write_card(card, out)


def settings_for(checkpoint: PathLike, config: Union[PathLike, None], flags: Mapping[str, Any],
                 load=None) -> Tuple[argparse.Namespace, str, Any]:
    """(parsed settings, where they came from, the checkpoint dict when it had to be read).

    `config` given: its flags, then `flags` (as before cards). Otherwise the card beside the checkpoint,
    else the `args` of a training checkpoint (read with `load(path)`), else configs/motrv2.args; `flags`
    always win over what the card or args say."""
    model_args(None, flags)  # an unknown or out-of-range flag is refused before any file is read
    if config is not None:
        return model_args(config, flags), f"config {os.fspath(config)}", None
    card = read_card(checkpoint)
    if card is not None:
        return model_args(None, {**card.flags(), **flags}), f"model card {card_path(checkpoint)}", None
    loaded = load(os.fspath(checkpoint)) if load is not None else None
    held = training_args_card(loaded, checkpoint) if loaded is not None else None
    if held is not None:
        return model_args(None, {**held.flags(), **flags}), f"training args in {os.fspath(checkpoint)}", loaded
    return (model_args(FALLBACK_CONFIG, flags),
            f"config {FALLBACK_CONFIG} (no model card {card_path(checkpoint).name} and no training args in "
            f"{os.fspath(checkpoint)})", loaded)


# -- command lines: the card fills the flags a user did not give ------------------------------------------
def given_dests(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Set[str]:
    """The dests of the options `argv` sets on `parser` (parsed with every default suppressed, so a
    flag given at its default value counts as given)."""
    saved = [(a, a.default) for a in parser._actions]
    required = [(a, a.required) for a in parser._actions]
    try:
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        for action, _ in required:
            action.required = False
        namespace, _ = parser.parse_known_args(list(argv))
    finally:
        for action, default in saved:
            action.default = default
        for action, req in required:
            action.required = req
    return set(vars(namespace))


def apply_card_defaults(args: argparse.Namespace, given: Set[str],
                        checkpoint: PathLike) -> Tuple[Optional[ModelCard], List[str]]:
    """Set on `args` every setting of `checkpoint`'s card that is not in `given` (the flags the user
    typed) and differs from what `args` holds; returns (the card or None, the flags it set)."""
    card = read_card(checkpoint)
    if card is None:
        return None, []
    typed = model_args(None, card.flags())  # parsed values, as the flags would give them
    changed = []
    for name in card.flags():
        if name not in given and hasattr(args, name) and getattr(args, name) != getattr(typed, name):
            setattr(args, name, getattr(typed, name))
            changed.append(name)
    return card, changed


def card_note(card: ModelCard, changed: Sequence[str], checkpoint: PathLike) -> str:
    """One line for a command's stderr: which settings the card gave."""
    if not changed:
        return f"note: model card {card_path(checkpoint)}: every setting it holds was given or already agrees"
    return (f"note: settings not given on the command line, from the model card {card_path(checkpoint)}: "
            + ", ".join(f"--{name}" for name in changed))
