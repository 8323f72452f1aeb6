"""msgpack encoding of messages, entries, hard state and snapshots.

A message is a msgpack array `[kind, src, dst, term, *fields]`; an entry is
`[index, term, kind, data]`. One conversion each way, no string keys on the wire.
"""

from __future__ import annotations

import msgpack

from raftflow.raft.types import (
    AppendEntries,
    AppendResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    RequestVote,
    Snapshot,
    TimeoutNow,
    VoteResponse,
)

_KINDS: tuple[type, ...] = (
    RequestVote,
    VoteResponse,
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    TimeoutNow,
)
_KIND_OF = {cls: n for n, cls in enumerate(_KINDS)}


class DecodeError(ValueError):
    """Bytes that are not a valid encoding; the message says what was wrong."""


_ENTRY_KINDS = {int(k): k for k in EntryKind}  # EntryKind(n) costs ~350 ns


def entries_to_rows(entries: list[Entry]) -> list[list]:
    """Entries as msgpack rows [index, term, kind, data] (msgpack packs the IntEnum
    kind as its int): the one layout on the wire and in the write-ahead log."""
    return [[e.index, e.term, e.kind, e.data] for e in entries]


def entries_from_rows(rows) -> list[Entry]:
    """Rows back to entries, trusting their types (the log checked their CRC);
    network input goes through decode_message, which checks every field."""
    kinds = _ENTRY_KINDS
    return [Entry(i, t, d, kinds[k]) for i, t, k, d in rows]


def encode_message(m: Message) -> bytes:
    kind = _KIND_OF[type(m)]
    if isinstance(m, AppendEntries):
        fields = [m.prev_index, m.prev_term, entries_to_rows(m.entries), m.commit]
    elif isinstance(m, InstallSnapshot):
        s = m.snapshot
        fields = [[s.index, s.term, s.data], m.offset, m.done]
    else:
        fields = [getattr(m, f) for f in type(m).__slots__[3:]]
    return msgpack.packb([kind, m.src, m.dst, m.term, *fields], use_bin_type=True)


# The type of each field after (src, dst, term), for the kinds decoded generically.
_FIELD_TYPES: dict[type, tuple[type, ...]] = {
    RequestVote: (int, int, bool, bool),
    VoteResponse: (bool, bool),
    AppendResponse: (bool, int, int, int),
    Heartbeat: (int, int),
    HeartbeatResponse: (int,),
    TimeoutNow: (),
}


def _check(value: object, expected: type, what: str) -> None:
    # Exact types: msgpack gives bool for booleans, and bool is an int subclass.
    if type(value) is not expected or (expected is int and value < 0):
        raise DecodeError(f"{what} is {value!r}; expected a {'non-negative ' if expected is int else ''}{expected.__name__}")


def decode_message(raw: bytes) -> Message:
    """Bytes from the network -> a message, or DecodeError saying what was wrong:
    every field's type is checked, so the core never sees a malformed message."""
    try:
        v = msgpack.unpackb(raw, raw=False, strict_map_key=True)
        if type(v) is not list or len(v) < 4:
            raise DecodeError(f"expected an array of at least 4 items, got {type(v).__name__}")
        kind, src, dst, term, *fields = v
        if type(kind) is not int or not 0 <= kind < len(_KINDS):  # -1 would index from the end
            raise DecodeError(f"unknown message kind {kind!r}")
        cls = _KINDS[kind]
        for value, what in ((src, "src"), (dst, "dst"), (term, "term")):
            _check(value, int, what)
        if cls is AppendEntries:
            prev_index, prev_term, entries, commit = fields
            for value, what in ((prev_index, "prev_index"), (prev_term, "prev_term"), (commit, "commit")):
                _check(value, int, what)
            _check(entries, list, "entries")
            kinds = _ENTRY_KINDS  # dict lookup instead of EntryKind(kind)
            out = []
            for e in entries:
                i, t, k, d = e
                if type(i) is not int or type(t) is not int or type(d) is not bytes or k not in kinds:
                    raise DecodeError(f"malformed entry {e!r}")
                out.append(Entry(i, t, d, kinds[k]))
            return AppendEntries(src, dst, term, prev_index, prev_term, out, commit)
        if cls is InstallSnapshot:
            snap, offset, done = fields
            index, snap_term, data = snap
            for value, what in ((index, "snapshot index"), (snap_term, "snapshot term"), (offset, "offset")):
                _check(value, int, what)
            _check(data, bytes, "snapshot data")
            _check(done, bool, "done")
            return InstallSnapshot(src, dst, term, Snapshot(index, snap_term, data), offset, done)
        types = _FIELD_TYPES[cls]
        if len(fields) != len(types):
            raise DecodeError(f"{cls.__name__} has {len(types)} fields after the header, got {len(fields)}")
        for value, expected, name in zip(fields, types, cls.__slots__[3:]):
            _check(value, expected, name)
        return cls(src, dst, term, *fields)
    except DecodeError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException) as exc:
        raise DecodeError(f"not a raft message ({len(raw)} bytes): {exc}") from exc


def encode_hard_state(hs: HardState) -> bytes:
    return msgpack.packb([hs.term, hs.vote, hs.commit])


def decode_hard_state(raw: bytes) -> HardState:
    try:
        term, vote, commit = msgpack.unpackb(raw)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise DecodeError(f"not a hard state ({len(raw)} bytes): {exc}") from exc
    for value, what in ((term, "term"), (vote, "vote"), (commit, "commit")):
        _check(value, int, what)
    return HardState(term, vote, commit)
