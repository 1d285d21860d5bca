"""Durations on the command line: ``90s``, ``30m``, ``24h``, ``7d``, ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta

import click

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"^(\d+)([smhdw])$")


class Duration(click.ParamType):
    """A click parameter type for durations."""

    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        match = _DURATION.match(str(value).strip().lower())
        if not match:
            self.fail(
                f"{value!r} is not a duration: use a number and s, m, h, d or w, e.g. 24h or 30d", param, ctx
            )
        return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


DURATION = Duration()
