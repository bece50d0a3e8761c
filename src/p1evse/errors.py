"""The errors p1evse raises on purpose: a configuration it cannot use, and input from
outside that it refuses."""

from __future__ import annotations

from p1evse.model import Rejection


class ConfigError(Exception):
    """The configuration is unusable; each problem is one line for the user."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class InputError(ValueError):
    """Input from outside (a payload, a telegram, an HTTP answer) that holds no usable
    value: why, as a counted reason, and a short detail for the log."""

    def __init__(self, reason: Rejection, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
