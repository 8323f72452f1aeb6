"""The write-ahead log: framed, checksummed records in numbered segment files.

Record layout (little-endian): `length u32 | crc32 u32 | type u8 | payload`, where
`length` counts the payload and the CRC covers type and payload. Payloads are msgpack.
A segment `NNNNNNNNNNNNNNNN.wal` starts with a META record (format, cluster id, node
id, segment number) and the HARD_STATE and COMPACT records in force when it was
opened, so every segment can be read on its own terms.

A segment is preallocated (zero-filled to its target size) and its records written
in place, so the log's data ends where zeros begin: zeros from a record boundary to
the end of the file are the clean end of a segment. Zeros are never a record: type 0
is no record type, and the CRC of an empty type-0 record is not 0. A segment written
without preallocation (older builds, file systems that cannot) simply ends at the
end of its file; both forms read the same.

Recovery reads every segment in order and checks every CRC. Only the end of the last
segment may be torn (a write the crash cut short; in a preallocated segment, zeros
or the pieces of that write that did reach the disk follow it): it is truncated
away. A bad record followed by a whole, good one is not a torn end: the records
after it were acknowledged. Except commit-only hard states, which are written
without a sync: a power cut may keep a later one's page and lose an earlier one's,
so damage followed only by commit-only records of the same term and vote (and
itself a hard state, or a lost page of zeros) is a torn tail too. Anything else
that fails a check stops recovery with `WalCorruption`, naming file and offset.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

import msgpack

HEADER = struct.Struct("<IIB")
FORMAT_VERSION = 1
RECORD_BYTES_MAX = 1 << 30


class RecordType(enum.IntEnum):  # never 0: zero-filled space is not a record
    META = 1  # [format, cluster_id, node_id, segment]
    HARD_STATE = 2  # [term, vote, commit]
    ENTRIES = 3  # [[index, term, kind, data], ...]; overwrites any suffix from the first index
    SNAPSHOT = 4  # [index, term]: the log was replaced by a snapshot received from the leader
    COMPACT = 5  # [index, term]: entries up to index are in a local snapshot
    READY = 6  # [[type, payload], ...]: the SNAPSHOT, ENTRIES and HARD_STATE of one persist()
    # under one checksum, so that a torn write keeps all of them or none


class WalCorruption(Exception):
    """The log on disk is damaged where a crash cannot explain it; the node must not
    start on it."""

    def __init__(self, path: str, offset: int, problem: str) -> None:
        self.path = path
        self.offset = offset
        super().__init__(f"{path} at offset {offset}: {problem}")


@dataclass(frozen=True, slots=True)
class Record:
    type: RecordType
    payload: object
    offset: int


def encode_record(rtype: RecordType, payload: object) -> bytes:
    body = msgpack.packb(payload, use_bin_type=True)
    crc = zlib.crc32(body, zlib.crc32(bytes((rtype,))))
    return HEADER.pack(len(body), crc, rtype) + body


def segment_name(number: int) -> str:
    return f"{number:016d}.wal"


def segment_number(name: str) -> int | None:
    stem, dot, ext = name.partition(".")
    if ext != "wal" or not dot or len(stem) != 16 or not stem.isdigit():
        return None
    return int(stem)


def read_segment(path: str, data: bytes, *, last: bool) -> tuple[list[Record], int]:
    """Parse one segment. Returns its records and the length of its valid prefix.
    What follows that prefix is zeros (a preallocated segment's free space, in any
    segment) or, in the last segment only, a torn tail; anything else raises."""
    records: list[Record] = []
    offset, size = 0, len(data)
    while offset < size:
        problem = None
        if size - offset < HEADER.size:
            if _zeros_from(data, offset):
                break  # the clean end of a preallocated segment with a few bytes free
            problem = f"{size - offset} bytes where a record header needs {HEADER.size}"
            torn = True
        else:
            length, crc, rtype = HEADER.unpack_from(data, offset)
            end = offset + HEADER.size + length
            if length == 0 and crc == 0 and rtype == 0 and _zeros_from(data, offset):
                break  # the clean end: preallocated space, or a size that reached the disk before the data
            if length > RECORD_BYTES_MAX or end > size:
                problem = f"record of {length} bytes runs past the end ({size})"
                torn = last and not _record_follows(data, offset + HEADER.size, _unsynced_state(data, offset, records))
            else:
                body = data[offset + HEADER.size : end]
                if zlib.crc32(body, zlib.crc32(bytes((rtype,)))) != crc:
                    problem = "checksum mismatch"
                    # Torn: the last record, cut at the end of the file or partly written
                    # over preallocated zeros (not always a prefix of it: the disk may
                    # persist a later page of the write and not an earlier one).
                    torn = last and not _record_follows(data, offset + HEADER.size, _unsynced_state(data, offset, records))
                elif rtype not in RecordType._value2member_map_:
                    problem, torn = f"unknown record type {rtype}", False
                else:
                    try:
                        payload = msgpack.unpackb(body, raw=False, use_list=False)  # tuples: 40% faster recovery
                    except (ValueError, msgpack.UnpackException) as exc:
                        problem, torn = f"undecodable payload ({exc})", False
                    else:
                        records.append(Record(RecordType(rtype), payload, offset))
                        offset = end
                        continue
        if torn and last:
            return records, offset
        raise WalCorruption(path, offset, problem)
    return records, offset


def _zeros_from(data: bytes, offset: int) -> bool:
    """Whether `data` holds only zero bytes from `offset` on (C speed: no copy)."""
    return data.count(0, offset) == len(data) - offset


def _unsynced_state(data: bytes, offset: int, records: list[Record]) -> tuple[int, int] | None:
    """The (term, vote) in force before a damaged record at `offset`, if that record
    may be a commit-only hard state: written without a sync (the commit index is
    volatile), so a power cut may lose its page and keep a later one's. Its header
    says HARD_STATE, or reads as zeros (a lost page: synced bytes never read back
    as zeros). None otherwise: damage to a record that was synced is corruption."""
    header = data[offset : offset + HEADER.size]
    if any(header) and (len(header) < HEADER.size or HEADER.unpack(header)[2] != RecordType.HARD_STATE):
        return None
    for record in reversed(records):
        if record.type is RecordType.HARD_STATE:
            return tuple(record.payload[:2])
    return None


def _record_follows(data: bytes, start: int, unsynced: tuple[int, int] | None = None) -> bool:
    """Whether a whole record with a good checksum starts anywhere from `start` on. A
    crash only cuts the end of the file short, so damage followed by such a record (a
    flipped length, say) is corruption, not a torn tail. With `unsynced` (term,
    vote), commit-only hard states of that term and vote do not count: they were not
    synced either, so the damage and they are one lost tail."""
    size = len(data)
    # A record's type byte is not 0, so none starts in the zeros that end a
    # preallocated segment: search only up to them (megabytes, else, in Python).
    content_end = len(data.rstrip(b"\0"))
    for offset in range(start, content_end - HEADER.size + 1):
        length, crc, rtype = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + length
        if (
            rtype in RecordType._value2member_map_
            and end <= size
            and zlib.crc32(data[offset + HEADER.size : end], zlib.crc32(bytes((rtype,)))) == crc
        ):
            if unsynced is None or rtype != RecordType.HARD_STATE or not _same_term_vote(data, offset, end, unsynced):
                return True
    return False


def _same_term_vote(data: bytes, offset: int, end: int, term_vote: tuple[int, int]) -> bool:
    try:
        payload = msgpack.unpackb(data[offset + HEADER.size : end], raw=False)
    except (ValueError, msgpack.UnpackException):
        return False
    return isinstance(payload, list) and len(payload) == 3 and tuple(payload[:2]) == term_vote
