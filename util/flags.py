"""Command-line flags generated from dataclass fields, and the dataclass built back from parsed flags.

A field declared with `option(...)` carries its flag name, help text, allowed values and a range
rule; the default is the field's own. Nested dataclass fields are walked (their flags are the
parent's too). The same check runs on the command line (argparse's `type=`), in a file of flag lines
parsed with the same parser, and in the Python API (`check_fields` from `__post_init__`), and gives
the same one-line message: ``argument --flag: VALUE: RULE``.

    @dataclass(frozen=True)
    class Config:
        size: int = option(10, "slots per track", flag="--memory_size", check=positive)
        def __post_init__(self):
            check_fields(self)

This module knows no configuration of the project.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Type

# A rule: (test, description); the description completes "VALUE: must be ...".
Rule = Tuple[Callable[[Any], bool], str]


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def in_range(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Rule:
    """A finite number between `low` and `high` (closed unless told open)."""
    def test(v):
        return _finite(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    return test, f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def at_least(low: float) -> Rule:
    return (lambda v: _finite(v) and v >= low), f"a number >= {low:g}"


positive: Rule = ((lambda v: _finite(v) and v > 0), "a number > 0")
non_negative: Rule = at_least(0)
finite: Rule = (_finite, "a finite number")
probability: Rule = in_range(0, 1)


def option(default: Any, help: str, *, flag: Optional[str] = None, choices: Optional[Sequence[Any]] = None,
           check: Optional[Rule] = None, optional: bool = False) -> Any:
    """A dataclass field that is also a flag. `flag` defaults to `--<field name>`; `optional`: None is a
    value too (off), given on the command line by leaving the flag out."""
    meta = {"flag": flag, "help": help, "choices": tuple(choices) if choices else None, "check": check,
            "optional": optional}
    return dataclasses.field(default=default, metadata={"flags": meta})


@dataclasses.dataclass(frozen=True)
class FlagField:
    """One flag of a (possibly nested) dataclass: `path` is the attribute path from the top class."""
    path: Tuple[str, ...]
    flag: str
    type: type
    default: Any
    help: str
    choices: Optional[Tuple[Any, ...]]
    check: Optional[Rule]
    optional: bool

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-")


def _scalar_type(field: dataclasses.Field, owner: type) -> type:
    import typing
    hint = typing.get_type_hints(owner)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def flag_fields(cls: Type) -> List[FlagField]:
    """Every flag of dataclass `cls`, nested dataclasses included, in declaration order."""
    out: List[FlagField] = []

    def walk(c, prefix):
        for f in dataclasses.fields(c):
            meta = f.metadata.get("flags")
            if meta is None:
                if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
                    walk(f.default_factory, prefix + (f.name,))
                continue
            out.append(FlagField(prefix + (f.name,), meta["flag"] or f"--{f.name}", _scalar_type(f, c), f.default,
                                 meta["help"], meta["choices"], meta["check"], meta["optional"]))
    walk(cls, ())
    return out


def problem(field: FlagField, value: Any) -> Optional[str]:
    """Why `value` is not allowed for `field` ("VALUE: must be ..."), or None."""
    if value is None and field.optional:
        return None
    if field.choices is not None and value not in field.choices:
        return f"{value!r}: must be one of {', '.join(map(str, field.choices))}"
    if field.type in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"{value!r}: must be a number"
    if field.type is int and isinstance(value, float) and not value.is_integer():
        return f"{value!r}: must be a whole number"
    if field.check is not None and not field.check[0](value):
        return f"{value}: must be {field.check[1]}"
    return None


def message(field: FlagField, why: str) -> str:
    """The one-line message of a refused value (argparse's wording, so all three paths read alike)."""
    return f"argument {field.flag}: {why}"


def _argparse_type(field: FlagField) -> Callable[[str], Any]:
    def convert(text: str):
        try:
            value = field.type(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: must be {'a whole number' if field.type is int else 'a number'}")
        why = problem(field, value)
        if why is not None:
            raise argparse.ArgumentTypeError(why)
        return value
    convert.__name__ = field.type.__name__  # argparse names the type in its messages
    return convert


def checked(kind: type, rule: Optional[Rule] = None) -> Callable[[str], Any]:
    """argparse `type=` for a flag that is not a config field: `kind` (int or float) converted and
    checked against `rule` (default: finite), with the config fields' message (``VALUE: must be ...``),
    so a plain flag is refused as a generated one is."""
    return _argparse_type(FlagField((), "", kind, None, "", None, rule or finite, False))


def add_flags(parser: argparse.ArgumentParser, cls: Type, title: Optional[str] = None,
              only: Optional[Sequence[str]] = None, description: Optional[str] = None):
    """Add the flags of dataclass `cls` to `parser` (in a group `title`, if given); `only`: the top-level
    field names to take (nested dataclasses by their field name). Returns the group (or parser)."""
    target = parser.add_argument_group(title, description) if title else parser
    for f in flag_fields(cls):
        if only is not None and f.path[0] not in only:
            continue
        kwargs: Dict[str, Any] = {"default": f.default, "help": f.help, "dest": f.dest}
        if f.type is bool:
            kwargs["action"] = "store_false" if f.default else "store_true"
        else:
            kwargs["type"] = _argparse_type(f)
            if f.choices is not None:
                kwargs["choices"] = f.choices
                kwargs.pop("type")  # argparse's own "invalid choice" message
        target.add_argument(f.flag, **kwargs)
    return target


def check_fields(config: Any) -> None:
    """Raise ValueError (the command line's message) for the first field of `config` out of its range."""
    for f in flag_fields(type(config)):
        why = problem(f, _get(config, f.path))
        if why is not None:
            raise ValueError(message(f, why))


def _set(values: Dict[str, Any], path: Tuple[str, ...], value: Any) -> None:
    for name in path[:-1]:
        values = values.setdefault(name, {})
    values[path[-1]] = value


def _build(cls: Type, values: Mapping[str, Any]):
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        v = values[f.name]
        if isinstance(v, dict) and f.default_factory is not dataclasses.MISSING:
            v = _build(f.default_factory, v)
        kwargs[f.name] = v
    return cls(**kwargs)


def from_namespace(cls: Type, namespace: Any):
    """An instance of `cls` from the attributes of `namespace` named as the flags' destinations (missing
    ones keep the field's default)."""
    values: Dict[str, Any] = {}
    for f in flag_fields(cls):
        if hasattr(namespace, f.dest):
            _set(values, f.path, getattr(namespace, f.dest))
    return _build(cls, values)


def to_namespace(config: Any) -> Dict[str, Any]:
    """{flag destination: value} of every flag of `config`."""
    return {f.dest: value for f, value in iter_values(config)}


def to_argv(config: Any, *, all_fields: bool = False) -> List[str]:
    """Command-line words that give `config` (only the flags whose value is not the default, unless
    `all_fields`)."""
    words: List[str] = []
    for f, value in iter_values(config):
        if value == f.default and not all_fields:
            continue
        if f.type is bool:
            if value != f.default:
                words.append(f.flag)
        elif value is None:
            if f.default is not None:
                raise ValueError(message(f, "None: only the default can be None"))
        else:
            words += [f.flag, repr(value) if isinstance(value, float) else str(value)]
    return words


def iter_values(config: Any) -> Iterator[Tuple[FlagField, Any]]:
    """(flag, value) for every flag of `config`."""
    for f in flag_fields(type(config)):
        yield f, _get(config, f.path)


def _get(config: Any, path: Tuple[str, ...]) -> Any:
    for name in path:
        config = getattr(config, name)
    return config
