"""The write-ahead log's framing on its own: records round-trip, and `read_segment`
tells a torn tail (the end of the last segment, cut short by a crash: truncated)
and the zeros of a preallocated segment (its clean end) from corruption (anything
else: WalCorruption naming file and offset)."""

from __future__ import annotations

import zlib

import msgpack
import pytest

from raftflow.raft.wal import (
    HEADER,
    Record,
    RecordType,
    WalCorruption,
    encode_record,
    read_segment,
    segment_name,
    segment_number,
)

PATH = "/data/wal/0000000000000003.wal"


def three_records() -> tuple[bytes, list[Record]]:
    """A META, an ENTRIES and a HARD_STATE record, and what reading them gives."""
    payloads = [  # read back as tuples (msgpack arrays decode to tuples)
        (RecordType.META, (1, "c1", 2, 3)),
        (RecordType.ENTRIES, ((5, 2, 0, b"five"), (6, 2, 1, b""))),
        (RecordType.HARD_STATE, (2, 1, 6)),
    ]
    data, records = b"", []
    for rtype, payload in payloads:
        records.append(Record(rtype, payload, len(data)))
        data += encode_record(rtype, payload)
    return data, records


def flip(data: bytes, offset: int, xor: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= xor
    return bytes(out)


# --- names ----------------------------------------------------------------------------


def test_segment_names_sort_by_number_and_parse_back():
    assert segment_name(3) == "0000000000000003.wal"
    assert [segment_number(segment_name(n)) for n in (0, 7, 10**15)] == [0, 7, 10**15]
    assert sorted([segment_name(10), segment_name(9)]) == [segment_name(9), segment_name(10)]


@pytest.mark.parametrize("name", ["3.wal", "000000000000000x.wal", "0000000000000003.snap",
                                  "0000000000000003.wal.tmp", "0000000000000003"])
def test_other_names_are_not_segments(name):
    assert segment_number(name) is None


# --- reading whole segments -------------------------------------------------------------


def test_records_round_trip_with_their_offsets():
    data, records = three_records()
    assert read_segment(PATH, data, last=False) == (records, len(data))
    assert read_segment(PATH, data, last=True) == (records, len(data))


def test_an_empty_segment_has_no_records():
    assert read_segment(PATH, b"", last=True) == ([], 0)


def test_the_checksum_covers_the_type():
    # A record whose type byte changed is not read as a record of the other type.
    data = encode_record(RecordType.HARD_STATE, [1, 0, 0])
    changed = data[: HEADER.size - 1] + bytes((RecordType.COMPACT,)) + data[HEADER.size :]
    with pytest.raises(WalCorruption, match="checksum mismatch"):
        read_segment(PATH, changed + encode_record(RecordType.HARD_STATE, [1, 0, 0]), last=True)


# --- the torn tail ----------------------------------------------------------------------


def test_a_cut_anywhere_in_the_last_record_of_the_last_segment_is_a_torn_tail():
    data, records = three_records()
    last_start = records[-1].offset
    for cut in range(last_start, len(data)):
        assert read_segment(PATH, data[:cut], last=True) == (records[:-1], last_start), cut


def test_a_cut_in_a_segment_that_is_not_the_last_is_corruption():
    data, records = three_records()
    last_start = records[-1].offset
    for cut in range(last_start + 1, len(data)):
        with pytest.raises(WalCorruption) as caught:
            read_segment(PATH, data[:cut], last=False)
        assert (caught.value.path, caught.value.offset) == (PATH, last_start), cut
        assert f"{PATH} at offset {last_start}" in str(caught.value)


def test_zeros_after_the_data_are_the_clean_end_of_any_segment():
    # A preallocated segment's free space (sealed or not: a crash may come before a
    # sealed segment is truncated), or a file whose size reached the disk before its
    # data: the records are all there, and the valid prefix ends where zeros begin.
    data, records = three_records()
    for zeros in (1, HEADER.size - 1, HEADER.size, 100, 4096):
        for last in (True, False):
            assert read_segment(PATH, data + bytes(zeros), last=last) == (records, len(data)), (zeros, last)
    assert read_segment(PATH, bytes(4096), last=True) == ([], 0)  # preallocated, header not yet written
    blanked = data[: records[-1].offset] + bytes(len(data) - records[-1].offset)
    assert read_segment(PATH, blanked, last=True) == (records[:-1], records[-1].offset)


def test_zeros_are_never_a_record():
    # Nine zero bytes read as a header claim an empty record of type 0 with CRC 0:
    # type 0 is no record type, and that record's CRC is not 0. So zeros followed
    # by data are damage, never an empty record to step over.
    assert 0 not in RecordType._value2member_map_
    assert zlib.crc32(b"", zlib.crc32(bytes(1))) != 0
    data, _ = three_records()
    for zeros in (HEADER.size, 64):
        with pytest.raises(WalCorruption, match=f"{PATH} at offset 0: checksum mismatch"):
            read_segment(PATH, bytes(zeros) + data, last=True)


def test_a_cut_in_the_last_record_of_a_preallocated_segment_is_a_torn_tail():
    # The record was being written over zeros when the power went: any prefix of it
    # reached the disk, zeros after it.
    data, records = three_records()
    last_start = records[-1].offset
    for cut in range(last_start, len(data)):
        torn = data[:cut] + bytes(len(data) - cut + 4096)
        assert read_segment(PATH, torn, last=True) == (records[:-1], last_start), cut
        if cut > last_start:
            with pytest.raises(WalCorruption) as caught:
                read_segment(PATH, torn, last=False)
            assert caught.value.offset == last_start, cut


def test_a_last_record_only_partly_on_disk_in_any_order_is_torn_but_not_before_a_record():
    # Of a write over preallocated zeros, a later page may reach the disk and an
    # earlier one not: zeros, then pieces of the record, then zeros. With no whole
    # record after it, that is a torn tail; with one, corruption.
    data, records = three_records()
    start = records[-1].offset
    piece = data[start + 12 : start + 16]
    torn = data[:start] + bytes(12) + piece + bytes(4096)
    assert read_segment(PATH, torn, last=True) == (records[:-1], start)
    with pytest.raises(WalCorruption, match=f"at offset {start}: checksum mismatch"):
        read_segment(PATH, torn, last=False)
    damaged = flip(data, records[1].offset + HEADER.size) + bytes(4096)
    with pytest.raises(WalCorruption, match=f"at offset {records[1].offset}: checksum mismatch"):
        read_segment(PATH, damaged, last=True)


def test_a_last_record_whose_body_never_reached_the_disk_is_torn():
    data, records = three_records()
    start = records[-1].offset + HEADER.size
    blanked = data[:start] + bytes(len(data) - start)
    assert read_segment(PATH, blanked, last=True) == (records[:-1], records[-1].offset)


def test_a_bad_checksum_on_the_last_record_is_torn_but_on_an_earlier_one_is_corruption():
    data, records = three_records()
    body_of = [r.offset + HEADER.size for r in records]
    assert read_segment(PATH, flip(data, body_of[2]), last=True) == (records[:2], records[2].offset)
    with pytest.raises(WalCorruption, match=f"at offset {records[1].offset}: checksum mismatch"):
        read_segment(PATH, flip(data, body_of[1]), last=True)


@pytest.mark.parametrize("byte", [0, 1, 2, 3])
def test_a_length_flipped_in_a_middle_record_is_corruption_not_a_torn_tail(byte):
    # The records after it were acknowledged: a header claiming to run past the end
    # of the file is torn only when no whole record follows it.
    data, records = three_records()
    middle = records[1]
    for bit in range(8):
        damaged = flip(data, middle.offset + byte, 1 << bit)
        with pytest.raises(WalCorruption) as caught:
            read_segment(PATH, damaged, last=True)
        assert caught.value.offset == middle.offset, (byte, bit)


def test_a_length_flipped_in_the_last_record_is_torn():
    data, records = three_records()
    damaged = flip(data, records[-1].offset + 3, 0x80)  # claims ~2 GiB
    assert read_segment(PATH, damaged, last=True) == (records[:-1], records[-1].offset)


def test_a_short_header_at_the_end_is_torn():
    data, records = three_records()
    stub = data + encode_record(RecordType.HARD_STATE, [3, 0, 6])[:5]
    assert read_segment(PATH, stub, last=True) == (records, len(data))
    with pytest.raises(WalCorruption, match=f"at offset {len(data)}: 5 bytes where a record header needs 9"):
        read_segment(PATH, stub, last=False)


# --- damage no crash explains ---------------------------------------------------------------


def test_an_unknown_record_type_with_a_good_checksum_is_corruption_even_at_the_end():
    body = msgpack.packb([1], use_bin_type=True)
    bogus = HEADER.pack(len(body), zlib.crc32(body, zlib.crc32(bytes((99,)))), 99) + body
    data, _ = three_records()
    with pytest.raises(WalCorruption, match=f"at offset {len(data)}: unknown record type 99"):
        read_segment(PATH, data + bogus, last=True)


def test_an_undecodable_payload_with_a_good_checksum_is_corruption_even_at_the_end():
    body = b"\xc1"  # never used in msgpack
    bogus = HEADER.pack(1, zlib.crc32(body, zlib.crc32(bytes((RecordType.ENTRIES,)))), RecordType.ENTRIES) + body
    with pytest.raises(WalCorruption, match="at offset 0: undecodable payload"):
        read_segment(PATH, bogus, last=True)


# --- commit-only hard states: written without a sync ------------------------------------


def _with_commit_only_tail(*tail: tuple[RecordType, tuple]) -> tuple[bytes, list[int]]:
    """three_records() (its hard state is term 2, vote 1), then `tail`, then the
    zeros of a preallocated segment; and where each tail record starts."""
    data, _ = three_records()
    starts = []
    for rtype, payload in tail:
        starts.append(len(data))
        data += encode_record(rtype, payload)
    return data + bytes(4096), starts


def _lose(data: bytes, start: int, size: int) -> bytes:
    """The page of an unsynced write that did not reach the disk: zeros."""
    return data[:start] + bytes(size) + data[start + size :]


def test_a_lost_commit_only_record_before_a_later_one_is_a_torn_tail():
    """Found by review: commit-only hard states are not synced, so a power cut may
    keep a later one's page and lose an earlier one's. Both are volatile (the commit
    index): that is a torn tail, not corruption that stops the node from starting."""
    data, (first, second) = _with_commit_only_tail(
        (RecordType.HARD_STATE, (2, 1, 7)), (RecordType.HARD_STATE, (2, 1, 8)))
    records, valid = read_segment(PATH, _lose(data, first, second - first), last=True)
    assert valid == first and [r.payload for r in records][-1] == (2, 1, 6)
    header_kept = flip(data, first + HEADER.size + 1)  # its header reached the disk, its body did not
    assert read_segment(PATH, header_kept, last=True)[1] == first
    with pytest.raises(WalCorruption):  # in a sealed segment every record was synced by the next one
        read_segment(PATH, _lose(data, first, second - first), last=False)


def test_damage_before_a_record_that_was_synced_is_still_corruption():
    # A later term or vote, or entries, were synced: the damage before them is not a lost tail.
    for later in ((RecordType.HARD_STATE, (3, 0, 8)), (RecordType.ENTRIES, ((7, 2, 0, b"seven"),))):
        data, (first, second) = _with_commit_only_tail((RecordType.HARD_STATE, (2, 1, 7)), later)
        with pytest.raises(WalCorruption):
            read_segment(PATH, _lose(data, first, second - first), last=True)
    # Damaged entries (synced before anything after them was written) are corruption
    # even when only commit-only records follow.
    data, (first, second) = _with_commit_only_tail(
        (RecordType.ENTRIES, ((7, 2, 0, b"seven"),)), (RecordType.HARD_STATE, (2, 1, 7)))
    with pytest.raises(WalCorruption) as err:
        read_segment(PATH, flip(data, first + HEADER.size + 2), last=True)
    assert err.value.offset == first
