"""The config reference of ``docs/cli.md``, generated from the models of :mod:`diffrl_core.config`.

Each key's type, default and constraints come from its pydantic field, its meaning from the
field's ``description``; the defaults that depend on ``algo`` come from ``DEFAULT_HEADS`` and
``DEFAULT_LOSSES``. The table sits in ``docs/cli.md`` between the lines :data:`START` and
:data:`END`; after changing a field, rewrite it with::

    python -m diffrl_core.config_reference          # or --check: exit 1 when the page is stale

Imports pydantic and the config module only (no torch).
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from diffrl_core.algo_kwargs import ALGO_KWARGS
from diffrl_core.config import DEFAULT_HEADS, Config, default_losses

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"
#: the page holding the reference, in a source checkout
PAGE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
COMMAND = "python -m diffrl_core.config_reference"

#: key path -> algo -> the default a config gets when it leaves the key unset
ALGO_DEFAULTS: dict[str, dict[str, Any]] = {
    "policy.head": dict(DEFAULT_HEADS),
    "policy.losses": {algo: [{"name": name, "weight": weight} if weight != 1.0 else {"name": name}
                             for name, weight in default_losses(algo)] for algo in DEFAULT_HEADS},
}

_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", Any: "any"}


def rows(model: type[BaseModel] = Config, prefix: str = "") -> Iterator[tuple[str, str, str, str]]:
    """``(key path, type, default, description)`` for each key of ``model``, depth first.

    A section that is always a mapping (``policy``, ``eval``, ...) has no row of its own, only
    its keys; an optional or repeated one (``action_noise``, ``policy.losses``) has both.
    """
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        if not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            yield path, type_of(field), default_of(path, field), field.description or ""
        for sub in _models(field.annotation):
            repeated = typing.get_origin(_without_none(field.annotation)) is list
            yield from rows(sub, f"{path}[]." if repeated else f"{path}.")
        if path == "algo_kwargs":
            yield from algo_kwargs_rows()


#: algo_kwargs whose check is a validator function: their type as the reference states it
_CHECKED_TYPES: dict[str | tuple[str, str], str] = {
    "learning_rate": "number > 0",
    "train_freq": "integer >= 1, or `[N, step]` / `[N, episode]`",
    "gradient_steps": "integer >= -1",
    ("ent_coef", "sac"): "number > 0, `auto` or `auto_<number > 0>`",
    "clip_range": "number > 0",
    "clip_range_vf": "number > 0",
    "target_entropy": "number or `auto`",
    "sde_sample_freq": "integer >= 1, or -1",
    "device": "`auto`, `cpu`, `cuda`, `cuda:<N>`, `mps` or `xpu`",
}


def algo_kwargs_rows() -> Iterator[tuple[str, str, str, str]]:
    """A row per keyword of stable-baselines3's algorithms that ``algo_kwargs`` may set (checked as documented).

    A keyword that means or takes something else under some algorithms (``n_steps``, ``ent_coef``,
    ``batch_size``) gets one row per meaning, naming its algorithms.
    """
    variants: dict[str, dict[tuple[str, str], list[str]]] = {}
    for algo, model in ALGO_KWARGS.items():
        for name, field in model.model_fields.items():
            text = _CHECKED_TYPES.get((name, algo)) or _CHECKED_TYPES.get(name) or type_of(field)
            variants.setdefault(name, {}).setdefault((text, field.description or ""), []).append(algo)
    for name, meanings in variants.items():
        for (text, description), algos in meanings.items():
            only = "" if len(algos) == len(ALGO_KWARGS) else f" ({', '.join(algos)} only)"
            yield f"algo_kwargs.{name}", text, "stable-baselines3's", description + only


def type_of(field: FieldInfo) -> str:
    """The field's type in YAML words, with its constraints: ``integer >= 1 or null``."""
    annotation = _without_none(field.annotation)
    text = _type(annotation) + _constraints(field.metadata)
    return text + (" or null" if annotation is not field.annotation else "")


def _constraints(metadata: Iterable[Any]) -> str:
    """`` >= 1 <= 65536`` for the annotated-types constraints in ``metadata`` (a FieldInfo's included)."""
    text = ""
    for constraint in metadata:
        if isinstance(constraint, FieldInfo):
            text += _constraints(constraint.metadata)
        for attribute, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if isinstance(constraint, getattr(annotated_types, attribute.capitalize())):
                text += f" {symbol} {getattr(constraint, attribute)}"
        if isinstance(constraint, annotated_types.MinLen):
            text += f" (at least {constraint.min_length})"
        if isinstance(constraint, annotated_types.MaxLen):
            text += f" (at most {constraint.max_length})"
    return text


def default_of(path: str, field: FieldInfo) -> str:
    if path in ALGO_DEFAULTS:
        if field.get_default(call_default_factory=True) is not None:
            raise ValueError(f"{path} has a fixed default now: remove it from ALGO_DEFAULTS")
        return ", ".join(f"`{yaml_value(value)}` ({algo})" for algo, value in ALGO_DEFAULTS[path].items())
    if field.is_required():
        return "required"
    return f"`{yaml_value(field.get_default(call_default_factory=True))}`"


def yaml_value(value: Any) -> str:
    """``value`` as a YAML flow value: ``null``, ``true``, ``[256, 256]``, ``{name: bc}``."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {yaml_value(item)}" for key, item in value.items()) + "}"
    return str(value)


def table() -> str:
    """The reference: a markdown table of every config key."""
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for path, type_text, default, description in rows():
        cells = (f"`{path}`", type_text, default, description)
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def section() -> str:
    """What goes between :data:`START` and :data:`END` (both included)."""
    note = f"<!-- generated from the fields of diffrl_core/config.py by `{COMMAND}`: edit the descriptions there -->"
    return f"{START}\n{note}\n\n{table()}\n{END}"


def render(page: str) -> str:
    """``page`` with the text between the markers replaced by :func:`section`."""
    start, end = page.find(START), page.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the page has no {START} ... {END} section")
    return page[:start] + section() + page[end + len(END):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description="Rewrite the config reference of docs/cli.md.")
    parser.add_argument("page", nargs="?", type=Path, default=PAGE, help="the page (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when the page is stale")
    args = parser.parse_args(argv)
    old = args.page.read_text(encoding="utf-8")
    new = render(old)
    if args.check:
        if new != old:
            print(f"{args.page}'s config reference is stale: run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    if new != old:
        args.page.write_text(new, encoding="utf-8")
        print(f"rewrote the config reference of {args.page}")
    return 0


def _type(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:  # a constrained item type, e.g. a layer size
        return _type(args[0]) + _constraints(args[1:])
    if origin in (typing.Union, types.UnionType):
        options = [_type(arg) for arg in args if arg is not type(None)]
        return " or ".join(options) + (" or null" if type(None) in args else "")
    if origin is Literal:
        values = [f"`{value}`" for value in args]
        return " or ".join(values) if len(values) <= 2 else "one of " + ", ".join(values)
    if origin is list:
        item = _type(args[0])
        noun, _, rest = item.partition(" ")
        plural = noun in (*_SCALARS.values(), "mapping")
        return f"list of {noun}s{' ' + rest if rest else ''}" if plural else f"list of {item}"
    if origin is dict:
        keys, values = args
        if typing.get_origin(keys) is Literal:
            return f"mapping of {', '.join(f'`{key}`' for key in typing.get_args(keys))} to {_type(values)}"
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return _SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models inside ``annotation`` (itself, an optional one, a list of them)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models(arg)]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


if __name__ == "__main__":
    sys.exit(main())
