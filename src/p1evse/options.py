"""Command-line options that set a settings model's fields.

Such an option states nothing of its own: its default, what it allows and its help come
from the field, and its value is checked by building the model, so each is stated once,
in the model. A value reaches the model as the text typed, and is parsed as the same key
in a file or the environment is. A model's errors become the command line's one-line
messages: the option, the value given, what is allowed.
"""

from __future__ import annotations

import argparse
import enum
import re
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from p1evse.errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)

# pydantic's bounds (annotated_types' Gt, Ge, Lt, Le) in words
_BOUNDS = (("gt", "over"), ("ge", "at least"), ("lt", "under"), ("le", "at most"))


def add_option(
    parser: argparse._ActionsContainer,
    option: str,
    model: type[BaseModel],
    name: str,
    *,
    help: str | None = None,
    unset: str | None = None,
    metavar: str | None = None,
) -> None:
    """`option` for the field `name` of `model`; not given, it is None and the model's
    default applies. Its help: `help` (else the field's description), then what the field
    allows and its default, or `unset`: what not giving it means."""
    field = model.model_fields[name]
    default = unset if unset is not None else _default(model, name)
    notes = "; ".join(
        note for note in (_allowed(model, name), default and f"default {default}") if note
    )
    text = " ".join(part for part in (help or field.description, notes and f"({notes})") if part)
    choices = _choices(field.annotation)
    if metavar is None and choices:
        metavar = "{" + ",".join(str(choice) for choice in choices) + "}"
    parser.add_argument(option, metavar=metavar, help=text.replace("%", "%%"))


def validated(model: type[Model], values: Mapping[str, Any], options: Mapping[str, str]) -> Model:
    """`model` from `values` by field, a nested one as `section.field`; a value None is
    left out (an option not given). Raises ConfigError with a line per problem: the
    option (`options`: a field's path -> its option) and the value given, or for a rule
    between fields, its message with the fields named as options."""
    data: dict[str, Any] = {}
    for path, value in values.items():
        if value is None:
            continue
        *sections, name = path.split(".")
        within = data
        for section in sections:
            within = within.setdefault(section, {})
        within[name] = value
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_problem(error, options) for error in exc.errors()]) from None


def _allowed(model: type[BaseModel], name: str) -> str:
    """What the field `name` of `model` allows, in words: "at least 0, at most 300"."""
    bounds = [
        f"{word} {_show(getattr(bound, attribute))}"
        for bound in model.model_fields[name].metadata
        for attribute, word in _BOUNDS
        if getattr(bound, attribute, None) is not None
    ]
    return ", ".join(bounds)


def _show(value: Any) -> str:
    """A value as it is typed: `5` for 5.0, `pause` for a choice."""
    if isinstance(value, enum.Enum):
        value = value.value
    return f"{value:g}" if isinstance(value, float) else str(value)


def _default(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    return "" if field.is_required() or field.get_default() is None else _show(field.get_default())


def _choices(annotation: Any) -> tuple[Any, ...]:
    """A fixed choice's values (a Literal's, an enum's), else ()."""
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return tuple(member.value for member in annotation)
    return ()


def _problem(error: ErrorDetails, options: Mapping[str, str]) -> str:
    message = error["msg"].removeprefix("Value error, ")
    where = ".".join(str(part) for part in error["loc"])
    if where in options:
        return f"{options[where]} {error['input']!r}: {message}"
    if error["type"] == "value_error":  # a rule between the fields of the model at `where`
        within = f"{where}." if where else ""
        return re.sub(r"\w+", lambda word: options.get(within + word[0], word[0]), message)
    return f"{where}: {message}"
