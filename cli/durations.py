"""Durations on the command line: ``90s``, ``30m``, ``24h``, ``7d``, ``2w``, or sums such as ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta

import click

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"(?:\d+[smhdw])+")
_PART = re.compile(r"(\d+)([smhdw])")


def parse_duration(value: str) -> timedelta:
    """``30s``, ``30m``, ``24h``, ``7d``, ``2w`` or a sum such as ``1h30m`` → a timedelta."""
    text = value.strip().lower()
    if not _DURATION.fullmatch(text):
        raise ValueError(f"invalid duration {value!r}: use a number and a unit (s, m, h, d, w), e.g. 24h")
    total = timedelta()
    for amount, unit in _PART.findall(text):
        total += timedelta(**{_UNITS[unit]: int(amount)})
    return total


class Duration(click.ParamType):
    """A click parameter type for durations; a bad one is a usage error (exit 2)."""

    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()
