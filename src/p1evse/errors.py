"""The one error tree: everything p1evse raises on purpose is a `P1evseError`, so a
caller tells p1evse's own refusals from bugs and from the libraries' errors."""

from __future__ import annotations

from p1evse.model import Rejection


class P1evseError(Exception):
    """An error p1evse raises on purpose; its message is meant for the user."""


class ConfigError(P1evseError):
    """The configuration is unusable; each problem is one line for the user."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class InputRejected(P1evseError):
    """Input from outside (a payload, a telegram, an HTTP answer) that holds no usable
    value: why, as a counted reason, and a short detail for the log."""

    def __init__(self, reason: Rejection, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class ChargerError(P1evseError):
    """The charger could not be reached or refused a request; `status` is the HTTP
    status when it answered with an error, None when it did not answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
