"""The errors, the Rejected result and the field checks every decoder in the package
shares: commands and results (commands.py), the workflow ops (workflow/ops.py),
definitions and the snapshot rows (workflow/definitions.py, events.py, rows.py),
sessions, the store and the access tokens (auth.py).

It imports nothing from the package, so that the modules above can all import it
without an import cycle: commands.py imports the workflow ops, which use these.
Rejected lives here too, so that a namespace whose ops commands.py imports can
answer it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgpack

MAX_INT = (1 << 64) - 1  # every integer field: msgpack's unsigned range, like raft's indices


class CommandError(ValueError):
    """Entry data or an op that is not a valid command; the message names the field."""


class ResultError(ValueError):
    """Bytes that are not an encoded result; the message names the field."""


class SnapshotError(ValueError):
    """Bytes that are not a snapshot this machine can restore; the message names the field."""


class RejectReason(enum.IntEnum):
    """Codes in session caches and snapshots: append new ones, never renumber
    (tests/test_opcodes.py pins them)."""

    SESSION_UNKNOWN = 0  # never opened, or expired: the client must open a new session
    STALE_SEQUENCE = 1  # seq below the session's ack floor: its reply was delivered and forgotten
    TOO_MANY_PENDING = 2  # the session holds max_results_per_session unacknowledged results
    MALFORMED = 3  # the entry's data is not a command
    ALREADY_EXISTS = 4  # the record the op would create exists: an IssueToken's token_id
    QUOTA_EXCEEDED = 5  # the op would pass a bound of the machine: an IssueToken past max_tokens


@dataclass(frozen=True, slots=True)
class Rejected:
    """The command was not applied and changed nothing (it may be retried)."""

    reason: RejectReason
    message: str


def show(value: object) -> str:
    """`value` for an error message: its repr, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def unpack(data: object, error: type[ValueError], what: str) -> object:
    """msgpack bytes -> Python values, or `error` naming `what`; never anything else."""
    if type(data) is not bytes:
        raise error(f"{what} is {type(data).__name__}; expected bytes")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (msgpack.StackError, RecursionError):  # StackError from the C unpacker, RecursionError from the pure one
        raise error(f"{what} ({len(data)} bytes of msgpack) nests too deep to unpack") from None
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise error(f"{what} is not msgpack ({len(data)} bytes): {type(exc).__name__}: {exc}") from exc


def check_type(value: object, expected: type, what: str, error: type[ValueError]) -> None:
    # Exact types: msgpack gives bool for booleans, and bool is an int subclass.
    if type(value) is not expected:
        raise error(f"{what} is {show(value)}; expected {expected.__name__}")


def check_int(value: object, what: str, error: type[ValueError], minimum: int = 0) -> int:
    if type(value) is not int or not minimum <= value <= MAX_INT:
        raise error(f"{what} is {show(value)}; expected an integer from {minimum} to {MAX_INT}")
    return value


def check_row(value: object, length: int, what: str, error: type[ValueError]) -> list:
    if type(value) is not list or len(value) != length:
        raise error(f"{what} is {show(value)}; expected an array of {length} items")
    return value


def check_version(value: object, version: int, what: str, error: type[ValueError]) -> None:
    """A format number read from data must be the one this build writes: an older or
    newer one is refused, naming both, never read as if it were this one."""
    if type(value) is not int or value != version:
        raise error(f"{what} format is {show(value)}; this build reads format {version}")
