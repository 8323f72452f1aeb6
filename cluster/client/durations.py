"""Durations as a caller gives them: a `datetime.timedelta`, or seconds."""

from __future__ import annotations

import datetime
import math

from raftflow.cluster.client.errors import InvalidArgument

Duration = datetime.timedelta | float | int


def seconds(value: Duration, what: str, *, zero: bool = False) -> float:
    """`value` in seconds; InvalidArgument naming `what` unless it is a timedelta or
    a finite number above 0 (or 0 itself, with `zero`)."""
    if isinstance(value, datetime.timedelta):
        number = value.total_seconds()
    elif type(value) in (int, float) and math.isfinite(value):
        number = float(value)
    else:
        raise InvalidArgument(f"{what}={value!r} is not a duration: give a datetime.timedelta or seconds")
    if number < 0 or (number == 0 and not zero):
        raise InvalidArgument(f"{what}={value!r} must be {'0 or more' if zero else 'more than 0'}")
    return number


def optional_seconds(value: Duration | None, what: str) -> float | None:
    return None if value is None else seconds(value, what)
