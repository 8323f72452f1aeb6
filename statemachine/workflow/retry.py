"""Retry policies for activities, as Temporal users know them, and the pure arithmetic
the engine runs when an attempt fails.

Every replica computes the same delay from the same policy: intervals are whole
milliseconds, the coefficient is a whole number of thousandths, and the delay is
`floor(initial_ms * coefficient ** (attempt - 1))` computed with integers (no float
`pow`, whose last bit may differ between C libraries), then capped at the maximum.

This module is the package's leaf, so it also holds DefinitionError and the field
checks that definitions.py shares (the other modules import from here, never back).
"""

from __future__ import annotations

import datetime
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, TypeAlias

MAX_DURATION_MS = 100 * 365 * 86_400_000  # 100 years: every duration, interval and timeout
MAX_ATTEMPTS = (1 << 31) - 1  # Temporal's int32
MAX_BACKOFF_COEFFICIENT = 1000.0
MAX_NAME_CHARS = 200  # workflow, step, activity, task queue, signal and error type names
MAX_ERROR_TYPES = 100  # non_retryable_error_types entries
_COEFFICIENT_SCALE = 1000  # the coefficient is held as a whole number of thousandths
# Past this exponent even the smallest coefficient above 1 (1.001) has multiplied the
# interval by more than MAX_DURATION_MS (1.001 ** 30_000 > 1e13), so the cap applies.
_EXPONENT_CAP = 30_000
assert (_COEFFICIENT_SCALE + 1) ** _EXPONENT_CAP > MAX_DURATION_MS * _COEFFICIENT_SCALE**_EXPONENT_CAP


class DefinitionError(ValueError):
    """A workflow definition (or part of one) breaks a rule. The message starts with the
    path of the field, e.g. `steps[1].retry.backoff_coefficient=0.5 must be >= 1`."""


# --- field checks shared by the package ------------------------------------------------


def show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@contextmanager
def within(prefix: str) -> Iterator[None]:
    """Re-raises a DefinitionError from the block with `prefix` in front of its path,
    so each part reports paths relative to itself and its parent adds where it sits."""
    try:
        yield
    except DefinitionError as exc:
        message = str(exc)
        joiner = "" if message[:1] in ("[", "=", " ", ":") else "."
        raise DefinitionError(f"{prefix}{joiner}{message}") from None


def check_name(value: object, what: str) -> str:
    if type(value) is not str:
        raise DefinitionError(f"{what}={show(value)} must be a string")
    if not value.strip():
        raise DefinitionError(f"{what}={show(value)} must be non-empty")
    if len(value) > MAX_NAME_CHARS:
        raise DefinitionError(f"{what} is {len(value)} characters; at most {MAX_NAME_CHARS}")
    return value


Duration: TypeAlias = "datetime.timedelta | float"  # a timedelta, or seconds


def check_number(value: object, what: str) -> float:
    # bool is an int subclass, and `true` in a file is never a duration.
    if type(value) not in (int, float) or not math.isfinite(value):
        raise DefinitionError(f"{what}={show(value)} must be a number")
    return value


def _timedelta_ms(value: datetime.timedelta, what: str) -> int:
    """A timedelta -> whole milliseconds, exactly (no float on the way)."""
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if micros % 1000:
        raise DefinitionError(f"{what}={show(value)} must be a whole number of milliseconds")
    return micros // 1000


def seconds_to_ms(value: object, what: str) -> int:
    """A duration as a user writes it (seconds as int or float, or a
    datetime.timedelta) -> whole milliseconds, > 0.

    Rejects what is not a whole number of milliseconds (0.0005) rather than rounding
    it, so a sub-second interval is honoured exactly; float noise below a microsecond
    (0.1 * 3) is tolerated. `x * 1000` is one IEEE multiplication: the same everywhere."""
    if isinstance(value, datetime.timedelta):
        scaled = _timedelta_ms(value, what)
        if scaled <= 0:
            raise DefinitionError(f"{what}={show(value)} must be > 0")
    else:
        seconds = check_number(value, what)
        if seconds <= 0:
            raise DefinitionError(f"{what}={show(value)} must be > 0")
        scaled = seconds * 1000
    if scaled > MAX_DURATION_MS:
        raise DefinitionError(f"{what}={show(value)} must be <= {MAX_DURATION_MS // 1000} (100 years)")
    ms = round(scaled)
    if ms == 0 or abs(scaled - ms) > 0.001:
        raise DefinitionError(f"{what}={show(value)} must be a whole number of milliseconds")
    return ms


def check_ms(value: object, what: str) -> int:
    if type(value) is not int or not 0 < value <= MAX_DURATION_MS:
        raise DefinitionError(f"{what}={show(value)} must be an integer from 1 to {MAX_DURATION_MS}")
    return value


# --- the policy -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How an activity's failed attempts are retried. Intervals are a timedelta or
    seconds, as a user writes them, normalized at construction to seconds of whole
    milliseconds (see `initial_interval_ms`); validation raises DefinitionError
    naming `retry.<field>`."""

    initial_interval: Duration = 1.0  # before the second attempt (seconds once normalized)
    backoff_coefficient: float = 2.0  # >= 1, in steps of 0.001
    maximum_interval: Duration | None = None  # >= initial_interval; None: 100 × initial_interval
    maximum_attempts: int = 0  # attempts in all, the first included; 0: unlimited
    non_retryable_error_types: tuple[str, ...] = ()  # error types that fail at once

    def __post_init__(self) -> None:
        initial_ms = seconds_to_ms(self.initial_interval, "retry.initial_interval")
        if self.maximum_interval is None:
            maximum_ms = min(100 * initial_ms, MAX_DURATION_MS)
        else:
            maximum_ms = seconds_to_ms(self.maximum_interval, "retry.maximum_interval")
            if maximum_ms < initial_ms:
                raise DefinitionError(
                    f"retry.maximum_interval={show(self.maximum_interval)} must be >= "
                    f"retry.initial_interval={show(self.initial_interval)}"
                )
        thousandths = _coefficient_thousandths(self.backoff_coefficient)
        attempts = self.maximum_attempts
        if type(attempts) is not int or not 0 <= attempts <= MAX_ATTEMPTS:
            raise DefinitionError(
                f"retry.maximum_attempts={show(attempts)} must be an integer from 0 (unlimited) to {MAX_ATTEMPTS}"
            )
        error_types = _check_error_types(self.non_retryable_error_types)
        # Normalized, so equal policies compare equal whichever way they were written.
        object.__setattr__(self, "initial_interval", initial_ms / 1000)
        object.__setattr__(self, "maximum_interval", maximum_ms / 1000)
        object.__setattr__(self, "backoff_coefficient", thousandths / _COEFFICIENT_SCALE)
        object.__setattr__(self, "non_retryable_error_types", error_types)

    @property
    def initial_interval_ms(self) -> int:
        return round(self.initial_interval * 1000)  # exact: normalized to whole ms

    @property
    def maximum_interval_ms(self) -> int:
        return round(self.maximum_interval * 1000)


def _coefficient_thousandths(value: object) -> int:
    what = "retry.backoff_coefficient"
    coefficient = check_number(value, what)
    if not 1 <= coefficient <= MAX_BACKOFF_COEFFICIENT:
        rule = ">= 1" if coefficient < 1 else f"<= {MAX_BACKOFF_COEFFICIENT}"
        raise DefinitionError(f"{what}={show(value)} must be {rule}")
    thousandths = round(coefficient * _COEFFICIENT_SCALE)
    if abs(coefficient * _COEFFICIENT_SCALE - thousandths) > 1e-6:
        raise DefinitionError(f"{what}={show(value)} must have at most 3 decimal places")
    return thousandths


def _check_error_types(value: object) -> tuple[str, ...]:
    what = "retry.non_retryable_error_types"
    if type(value) not in (list, tuple):
        raise DefinitionError(f"{what}={show(value)} must be a list of strings")
    if len(value) > MAX_ERROR_TYPES:
        raise DefinitionError(f"{what} has {len(value)} entries; at most {MAX_ERROR_TYPES}")
    for i, error_type in enumerate(value):
        check_name(error_type, f"{what}[{i}]")
    return tuple(value)


def retry_to_dict(policy: RetryPolicy) -> dict:
    """The canonical file form: every field explicit, intervals in seconds."""
    return {
        "initial_interval": policy.initial_interval,
        "backoff_coefficient": policy.backoff_coefficient,
        "maximum_interval": policy.maximum_interval,
        "maximum_attempts": policy.maximum_attempts,
        "non_retryable_error_types": list(policy.non_retryable_error_types),
    }


# --- the arithmetic -------------------------------------------------------------------


def interval_ms(policy: RetryPolicy, attempt: int) -> int:
    """The delay before attempt `attempt + 1`, after attempt `attempt` (from 1) failed:
    floor(initial_ms × coefficient^(attempt-1)), capped at maximum_interval_ms.

    Exact integer arithmetic; non-decreasing in `attempt`; never above the maximum."""
    assert type(attempt) is int and attempt >= 1, attempt
    initial_ms, maximum_ms = policy.initial_interval_ms, policy.maximum_interval_ms
    numerator = round(policy.backoff_coefficient * _COEFFICIENT_SCALE)
    if numerator == _COEFFICIENT_SCALE:
        return initial_ms
    exponent = min(attempt - 1, _EXPONENT_CAP)
    scaled_ms = initial_ms * numerator**exponent  # the delay × SCALE**exponent
    denominator = _COEFFICIENT_SCALE**exponent
    if scaled_ms >= maximum_ms * denominator:  # compare before dividing: cheap when huge
        return maximum_ms
    return scaled_ms // denominator


def should_retry(policy: RetryPolicy, attempt: int, error_type: str, retryable: bool) -> bool:
    """Whether attempt `attempt` (from 1), which failed with `error_type`, gets another.

    No when the failure says it is not retryable, when its type is listed in
    non_retryable_error_types (an exact match), or when `attempt` was the last of
    maximum_attempts. Nothing here bounds unlimited retries but a schedule_to_close
    timeout, which the engine checks."""
    assert type(attempt) is int and attempt >= 1, attempt
    if not retryable or error_type in policy.non_retryable_error_types:
        return False
    return policy.maximum_attempts == 0 or attempt < policy.maximum_attempts
