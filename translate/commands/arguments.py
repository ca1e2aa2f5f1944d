"""Command lines from function signatures: a subcommand is a function whose keyword arguments are its options
(`max_batch: int = 16` is `--max-batch N`), with their help in its docstring's Args section."""

from __future__ import annotations

import argparse
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal

import docstring_parser  # a dependency of jsonargparse[signatures]


def parser_of(function: Callable[..., object], prog: str) -> argparse.ArgumentParser:
    """An argparse parser with one option per parameter of `function`: named with dashes, typed by its
    annotation, required unless it has a default, helped by the docstring's Args section. A bool is a flag
    (`--name`; `--name/--no-name` when it defaults to True), a Literal a choice, a `list[X]` takes one or
    more values (`--name A B`) and a `tuple[X, ...]` is repeated (`--name A --name B`)."""
    doc = docstring_parser.parse(function.__doc__ or "")
    helps = {param.arg_name: " ".join(param.description.split()) for param in doc.params if param.description}
    parser = argparse.ArgumentParser(prog=prog, description=doc.description)
    hints = typing.get_type_hints(function)
    for name, parameter in inspect.signature(function).parameters.items():
        options = option(hints[name], parameter.default)
        text = helps.get(name, "").replace("%", "%%")
        default = options.get("default")
        if default not in (None, []) and not isinstance(default, bool) and "default" not in text:
            text = f"{text} (default: {default})".strip()
        parser.add_argument(f"--{name.replace('_', '-')}", help=text or None, **options)
    return parser


def option(hint: Any, default: Any) -> dict[str, Any]:
    """The add_argument keywords of a parameter annotated `hint` (`X | None` is X) with `default`."""
    if default is inspect.Parameter.empty:
        given = {"required": True}
    else:  # a tuple default as a list, which argparse copies and appends to; parse() makes it a tuple again
        given = {"default": list(default) if isinstance(default, tuple) else default}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [member for member in typing.get_args(hint) if member is not type(None)]
    origin, members = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return {**given, "action": argparse.BooleanOptionalAction if default is True else "store_true"}
    if origin is Literal:
        return {**given, "choices": members, "type": type(members[0])}
    if origin is list:
        return {**given, "nargs": "+", "type": members[0]}
    if origin is tuple:
        return {**given, "action": "append", "type": members[0]}
    return {**given, "type": hint}


def parse(function: Callable[..., object], prog: str, argv: list[str]) -> dict[str, Any]:
    """The keyword arguments of `function` that the command line `argv` gives (see :func:`parser_of`)."""
    values = vars(parser_of(function, prog).parse_args(argv))
    hints = typing.get_type_hints(function)
    return {name: tuple(value) if typing.get_origin(hints[name]) is tuple else value for name, value in values.items()}


def named_checkpoints(items: Sequence[str]) -> dict[str, str]:
    """--checkpoint NAME=PATH arguments as a dict."""
    malformed = [item for item in items if not all(item.partition("=")[::2])]
    if malformed:
        raise ValueError(f"--checkpoint expects NAME=PATH (e.g. transformer=last.ckpt), got {malformed}")
    return dict(item.split("=", 1) for item in items)
