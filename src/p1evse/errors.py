"""Errors that end a command with a clear message instead of a traceback."""

from __future__ import annotations


class ConfigError(Exception):
    """The configuration is unusable; each problem is one line for the user."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
