"""Command-line options that set a settings model's fields: help, defaults and checks
come from the model, and its errors read as one line per option."""

from __future__ import annotations

import argparse
from typing import Literal

import pytest
from pydantic import Field, model_validator

from p1evse.errors import ConfigError
from p1evse.options import add_option, validated
from p1evse.settings import Section


class Pump(Section):
    rate: float = Field(5.0, ge=0, le=300, description="litres a minute")
    mode: Literal["on", "off"] = "on"
    limit: int = Field(gt=0)

    @model_validator(mode="after")
    def _rate_within_limit(self) -> Pump:
        if self.rate > self.limit:
            raise ValueError(f"rate ({self.rate:g}) is above limit ({self.limit})")
        return self


class Plant(Section):
    pump: Pump
    name: str = "plant"


OPTIONS = {"rate": "--rate", "mode": "--mode", "limit": "--limit"}


def help_of(parser: argparse.ArgumentParser, option: str) -> str | None:
    [action] = [action for action in parser._actions if option in action.option_strings]
    return action.help


def test_help_says_what_the_field_does_allows_and_defaults_to() -> None:
    parser = argparse.ArgumentParser()
    add_option(parser, "--rate", Pump, "rate")
    add_option(parser, "--mode", Pump, "mode", help="run or stop")
    add_option(parser, "--limit", Pump, "limit", help="the most, %", unset="none")
    assert help_of(parser, "--rate") == "litres a minute (at least 0, at most 300; default 5)"
    assert help_of(parser, "--mode") == "run or stop (default on)"
    assert "the most, % (over 0; default none)" in parser.format_help()
    assert "[--mode {on,off}]" in parser.format_usage()
    # not given, an option is None: the model's own default applies
    assert vars(parser.parse_args([])) == {"rate": None, "mode": None, "limit": None}


def test_values_are_parsed_and_checked_by_the_model() -> None:
    pump = validated(Pump, {"rate": "7.5", "mode": "OFF", "limit": "10"}, OPTIONS)
    assert pump == Pump(rate=7.5, mode="off", limit=10)
    assert validated(Pump, {"rate": None, "limit": 10}, OPTIONS).rate == 5.0


def problems(model: type[Section], values: dict[str, object], options: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        validated(model, values, options)
    return raised.value.problems


def test_every_problem_names_its_option_and_the_value_given() -> None:
    assert problems(Pump, {"rate": "-1", "mode": "maybe", "limit": "x"}, OPTIONS) == [
        "--rate '-1': Input should be greater than or equal to 0",
        "--mode 'maybe': Input should be 'on' or 'off'",
        "--limit 'x': Input should be a valid integer, unable to parse string as an integer",
    ]


def test_a_rule_between_fields_names_them_as_options_nested_too() -> None:
    assert problems(Pump, {"rate": "20", "limit": "10"}, OPTIONS) == [
        "--rate (20) is above --limit (10)"
    ]
    nested = {f"pump.{field}": option for field, option in OPTIONS.items()}
    assert problems(Plant, {"pump.rate": "20", "pump.limit": "10"}, nested) == [
        "--rate (20) is above --limit (10)"
    ]


def test_a_field_no_option_sets_is_named_by_its_place() -> None:
    assert problems(Plant, {"pump.rate": "1"}, {"pump.rate": "--rate"}) == [
        "pump.limit: Field required"
    ]
