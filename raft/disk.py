"""Durable storage for one node: the write-ahead log plus snapshot files.

Layout of a data directory:

    raftflow.meta                 cluster id and node id (one checksummed record)
    wal/0000000000000000.wal ...  segments of the write-ahead log (raft.wal)
    snap/<index>-<term>.snap      snapshots (one checksummed record each)

`persist()` writes one Ready's snapshot mark, entries and hard state as one record
(one checksum), one write and one fdatasync: group commit, never one sync per entry,
and a crash keeps all of the Ready or none of it. A Ready that only moves the commit
index (volatile in Raft's Figure 2) is written without a sync of its own. A snapshot file is written to a
temporary name, synced, renamed and its folder synced before the log refers to it,
and counts only once the log does: recovery deletes a newer snapshot file the log
never mentions (the call that wrote it never returned). A new segment appears whole,
header included, the same way. After a failed write or sync the storage refuses
everything: an fsync error leaves the page cache in an unknown state, so it is not
retried.

Each segment is preallocated to `segment_bytes_max` (posix_fallocate, before it
appears) and records are written in place at the end of its data, which the storage
tracks: the fdatasync of a commit then has no file-size change to journal (on the
development VM's ext4, persist of one entry: p50 ~180 us instead of ~240 us). Where
the file system cannot preallocate, segments grow by their writes as before. A
segment is truncated to its data when the next one starts, so a sealed segment keeps
no zeros; recovery finishes a truncation a crash cut off.
"""

from __future__ import annotations

import bisect
import gc
import os

from raftflow.raft.codec import entries_from_rows, entries_to_rows
from raftflow.raft.fs import FS, File, OsFS
from raftflow.raft.storage import DurableState
from raftflow.raft.types import Entry, HardState, Snapshot
from raftflow.raft.wal import (
    FORMAT_VERSION,
    HEADER,
    Record,
    RecordType,
    WalCorruption,
    encode_record,
    read_segment,
    segment_name,
    segment_number,
)

META_FILE = "raftflow.meta"


class DataDirError(Exception):
    """The data directory is not this node's: another cluster's or node's, or empty
    where this node's data was expected."""


class StorageFailed(Exception):
    """The disk refused a write or a sync. Nothing more is durable; the node stops."""


class DiskStorage:
    """A `raft.storage.LogStore` on disk. `load()` returns what was recovered when it
    was opened."""

    def __init__(
        self,
        path: str,
        *,
        cluster_id: str,
        node_id: int,
        create: bool = False,
        fs: FS | None = None,
        segment_bytes_max: int = 64 << 20,
        snapshots_kept: int = 2,
    ) -> None:
        if segment_bytes_max < 4096:
            raise ValueError(f"segment_bytes_max={segment_bytes_max} is below 4096")
        if snapshots_kept < 1:
            raise ValueError(f"snapshots_kept={snapshots_kept} must be at least 1")
        self.fs = fs or OsFS()
        self.path = path
        self.cluster_id = cluster_id
        self.node_id = node_id
        self.segment_bytes_max = segment_bytes_max
        self.snapshots_kept = snapshots_kept
        self._wal_dir = os.path.join(path, "wal")
        self._snap_dir = os.path.join(path, "snap")
        self._failed: BaseException | None = None
        self._open_or_create(create)
        st = self._recover()
        # Handed over by the first load() and then forgotten: the node owns them, and
        # its entry cache could not free them while we kept a reference.
        self._recovered_entries: list[Entry] | None = st.entries
        self._hard_state = st.hard_state
        self._hard_state_written = self._synced_hard_state = st.hard_state
        self._unsynced = False
        self._snapshot = st.snapshot
        self._snap_index = st.snapshot.index if st.snapshot else 0
        self._snap_term = st.snapshot.term if st.snapshot else 0
        self._last_index = self._snap_index + len(st.entries)

    # --- identity ---------------------------------------------------------------

    def _meta_record(self, newest_segment: int) -> bytes:
        """The meta file also records the newest segment ever started, so that a
        deleted last segment is noticed instead of silently losing the log's tail."""
        return encode_record(RecordType.META, [FORMAT_VERSION, self.cluster_id, self.node_id, newest_segment])

    def _open_or_create(self, create: bool) -> None:
        fs, meta_path = self.fs, os.path.join(self.path, META_FILE)
        if fs.exists(meta_path):
            records, _ = read_segment(meta_path, fs.read(meta_path), last=False)
            if len(records) != 1 or records[0].type is not RecordType.META:
                raise WalCorruption(meta_path, 0, "expected exactly one META record")
            fmt, cluster_id, node_id, self._newest_segment = records[0].payload
            if fmt != FORMAT_VERSION:
                raise DataDirError(f"{self.path} has data format {fmt}; this build reads format {FORMAT_VERSION}")
            if (cluster_id, node_id) != (self.cluster_id, self.node_id):
                raise DataDirError(
                    f"{self.path} belongs to node {node_id} of cluster {cluster_id!r}, "
                    f"not node {self.node_id} of cluster {self.cluster_id!r}"
                )
            return
        if not create:
            raise DataDirError(
                f"{self.path} holds no raftflow data, but node {self.node_id} of cluster "
                f"{self.cluster_id!r} expected its data there; refusing to start with a blank log"
            )
        if fs.exists(self.path) and not self._is_unfinished_creation():
            raise DataDirError(f"{self.path} is not empty and is not a raftflow data directory")
        parent = os.path.dirname(os.path.abspath(self.path))
        for d in (self.path, self._wal_dir, self._snap_dir):
            fs.makedirs(d)
        self._newest_segment = -1
        self._write_atomically(self.path, META_FILE, self._meta_record(-1))
        fs.sync_dir(self._wal_dir)
        fs.sync_dir(self._snap_dir)
        fs.sync_dir(self.path)
        if fs.exists(parent):
            fs.sync_dir(parent)

    def _is_unfinished_creation(self) -> bool:
        """Empty, or what a crash during creation leaves: empty wal/ and snap/ and
        perhaps the meta file's temporary copy, but no meta file."""
        names = set(self.fs.listdir(self.path))
        if not names <= {"wal", "snap", META_FILE + ".tmp"}:
            return False
        return all(not self.fs.listdir(os.path.join(self.path, d)) for d in names & {"wal", "snap"})

    def _write_atomically(self, folder: str, name: str, data: bytes, *, allocate_bytes: int = 0) -> None:
        """temp file, sync, rename, sync the folder: all of it or none survives. The
        file is first preallocated to `allocate_bytes` where the file system can."""
        tmp = os.path.join(folder, name + ".tmp")
        f = self.fs.open_write(tmp)
        try:
            f.truncate(0)
            if allocate_bytes:
                f.allocate(allocate_bytes)
            f.write_at(0, data)
            f.sync()
        finally:
            f.close()
        self.fs.rename(tmp, os.path.join(folder, name))
        self.fs.sync_dir(folder)

    # --- recovery ---------------------------------------------------------------

    def _recover(self) -> DurableState:
        # Recovery builds millions of objects and no reference cycles: with the cyclic
        # collector on, two thirds of restart time went to rescanning them.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._recover_uncollected()
        finally:
            if collecting:
                gc.enable()

    def _recover_uncollected(self) -> DurableState:
        snapshot = self._newest_snapshot()
        hard_state, entries, marked, active_bytes = self._replay(snapshot)
        while snapshot is not None and marked < snapshot.index:
            # A crash fell between saving this snapshot file and logging it: the
            # persist() or compact() that wrote it never returned, so it did not happen.
            self.fs.remove(os.path.join(self._snap_dir, _snapshot_name(snapshot.index, snapshot.term)))
            self.fs.sync_dir(self._snap_dir)
            snapshot = self._newest_snapshot()
            hard_state, entries, marked, active_bytes = self._replay(snapshot)
        snap_index = snapshot.index if snapshot else 0
        last_index = snap_index + len(entries)
        if hard_state.commit > last_index:
            raise WalCorruption(
                self._wal_dir, 0, f"hard state commit {hard_state.commit} is past the last entry {last_index}"
            )
        if snapshot and snapshot.index > hard_state.commit:
            hard_state = HardState(hard_state.term, hard_state.vote, snapshot.index)
        # A process that died between a write and its fsync left data that reads back
        # now but may not be on disk: make what recovery returns durable before the
        # node acts on it (the active segment is synced in _open_active).
        self.fs.sync_dir(self._wal_dir)
        self.fs.sync_dir(self._snap_dir)
        self._open_active(active_bytes, hard_state=hard_state, snapshot=snapshot)
        return DurableState(hard_state, snapshot, entries)

    def _replay(self, snapshot: Snapshot | None) -> tuple[HardState, list[Entry], int, int]:
        """Read every segment on top of `snapshot`: the hard state, the entries after
        the snapshot, the highest snapshot index the log refers to, and the valid
        length of the last segment."""
        snap_index = snapshot.index if snapshot else 0
        hard_state = HardState()
        entries: list[Entry] = []
        marked = 0  # the highest snapshot index the log itself refers to
        active_bytes = 0
        numbers = self._segment_numbers()
        self._segments: list[list[int]] = []  # [number, highest entry index written]
        self._where: list[list[int]] = []  # [first, last, segment, record offset] by index
        for pos, number in enumerate(numbers):
            seg_path = os.path.join(self._wal_dir, segment_name(number))
            data = self.fs.read(seg_path)
            last = pos == len(numbers) - 1
            records, valid = read_segment(seg_path, data, last=last)
            if valid < len(data):
                # A torn tail, or zeros: the last segment is preallocated again when it
                # is opened, and a sealed one ends at its data (a crash came between
                # starting the next segment and this one's truncation).
                self._truncate(seg_path, valid)
            active_bytes = valid
            if not records or records[0].type is not RecordType.META:
                if last and not records:
                    self._segments.append([number, 0])
                    continue  # created, then torn before its header was durable
                raise WalCorruption(seg_path, 0, "segment does not start with a META record")
            fmt, cluster_id, node_id, seg_no = records[0].payload
            if fmt != FORMAT_VERSION:
                # Checked in every segment, not only in the meta file: a segment of
                # another format would be misread, whatever the meta file says.
                raise DataDirError(f"{seg_path} has data format {fmt}; this build reads format {FORMAT_VERSION}")
            if (cluster_id, node_id, seg_no) != (self.cluster_id, self.node_id, number):
                raise WalCorruption(
                    seg_path, 0, f"segment of node {node_id} of {cluster_id!r} numbered {seg_no}, found as {number}"
                )
            top = 0
            for rec in records[1:]:
                for rtype, p in _parts(seg_path, rec):
                    if rtype is RecordType.HARD_STATE:
                        hard_state = HardState(*p)
                    elif rtype is RecordType.ENTRIES:
                        batch = entries_from_rows(p)
                        top = max(top, batch[-1].index)
                        first = batch[0].index
                        self._note_batch(first, batch[-1].index, number, rec.offset)
                        if first > snap_index + len(entries) + 1:
                            raise WalCorruption(
                                seg_path, rec.offset,
                                f"entries jump from {snap_index + len(entries)} to {first}",
                            )
                        # The batch overwrites every entry from its first on, even when
                        # the snapshot covers all of the batch itself.
                        del entries[max(first - snap_index - 1, 0) :]
                        if first > snap_index:
                            entries.extend(batch)
                        else:
                            entries.extend(e for e in batch if e.index > snap_index)
                    elif rtype in (RecordType.SNAPSHOT, RecordType.COMPACT):
                        index, _term = p
                        marked = max(marked, index)
                        if index > snap_index:
                            raise WalCorruption(
                                seg_path, rec.offset,
                                f"the log refers to a snapshot at index {index} but the newest snapshot file "
                                f"is at {snap_index}",
                            )
                        if rtype is RecordType.SNAPSHOT:
                            entries.clear()  # the leader's snapshot replaced the whole log
                            self._where.clear()
                    else:
                        raise WalCorruption(seg_path, rec.offset, f"unexpected {rtype.name} record")
            self._segments.append([number, top])
        if not self._segments:
            self._segments.append([0, 0])
        return hard_state, entries, marked, active_bytes

    def _segment_numbers(self) -> list[int]:
        numbers = []
        for name in self.fs.listdir(self._wal_dir):
            if name.endswith(".tmp"):
                self.fs.remove(os.path.join(self._wal_dir, name))
                continue
            n = segment_number(name)
            if n is not None:
                numbers.append(n)
        numbers.sort()
        if (numbers[-1] if numbers else -1) < self._newest_segment:
            missing = os.path.join(self._wal_dir, segment_name(self._newest_segment))
            raise WalCorruption(missing, 0, "segment missing: the data directory records that it was started")
        for a, b in zip(numbers, numbers[1:]):
            if b != a + 1:
                raise WalCorruption(
                    os.path.join(self._wal_dir, segment_name(a + 1)), 0, f"segment missing between {a} and {b}"
                )
        return numbers

    def _newest_snapshot(self) -> Snapshot | None:
        names = []
        for name in self.fs.listdir(self._snap_dir):
            if name.endswith(".tmp"):
                self.fs.remove(os.path.join(self._snap_dir, name))
            elif name.endswith(".snap"):
                names.append(name)
        if not names:
            return None
        newest = max(names)
        path = os.path.join(self._snap_dir, newest)
        records, _ = read_segment(path, self.fs.read(path), last=False)
        if len(records) != 1 or records[0].type is not RecordType.SNAPSHOT:
            raise WalCorruption(path, 0, "expected exactly one SNAPSHOT record")
        index, term, data = records[0].payload
        if newest != _snapshot_name(index, term):
            raise WalCorruption(path, 0, f"holds the snapshot at index {index}, term {term}")
        return Snapshot(index, term, data)

    def _truncate(self, path: str, size: int) -> None:
        f = self.fs.open_write(path)
        try:
            f.truncate(size)
            f.sync()
        finally:
            f.close()

    def _open_active(self, size: int, *, hard_state: HardState, snapshot: Snapshot | None) -> None:
        """Open the last segment, whose data is `size` bytes long (0: it has no header
        yet and is started again), preallocated, for writing after its data."""
        number = self._segments[-1][0]
        if size == 0:
            self._active_bytes = self._start_segment(number, hard_state, snapshot)
        else:
            self._active_bytes = size
        self._active: File = self.fs.open_write(os.path.join(self._wal_dir, segment_name(number)))
        if size:
            # Recovery cut the segment at its data; a segment an older build wrote
            # gets its preallocation here. The sync also makes durable what a process
            # that died between a write and its fsync left behind.
            self._active.allocate(self.segment_bytes_max)
            self._active.sync()

    def _start_segment(self, number: int, hard_state: HardState, snapshot: Snapshot | None) -> int:
        """Write segment `number`, preallocated, with its header, all of it or none
        (temp file, rename): a torn header could lose the hard state once older
        segments go. Returns the size of its data."""
        header = bytearray(encode_record(RecordType.META, [FORMAT_VERSION, self.cluster_id, self.node_id, number]))
        header += encode_record(RecordType.HARD_STATE, [hard_state.term, hard_state.vote, hard_state.commit])
        if snapshot is not None:
            header += encode_record(RecordType.COMPACT, [snapshot.index, snapshot.term])
        name = segment_name(number)
        self._write_atomically(self._wal_dir, name, bytes(header), allocate_bytes=self.segment_bytes_max)
        if number > self._newest_segment:
            self._newest_segment = number
            self._write_atomically(self.path, META_FILE, self._meta_record(number))
        return len(header)

    # --- the LogStore interface -----------------------------------------------------

    def load(self) -> DurableState:
        """The durable state: what recovery found, handed over on the first call
        (later calls read the entries back from the log)."""
        entries = self._recovered_entries
        self._recovered_entries = None
        if entries is None:
            entries = self.entries(self._snap_index + 1, self._last_index + 1)
        return DurableState(self._hard_state, self._snapshot, entries)

    def persist(self, snapshot: Snapshot | None, entries: list[Entry], hard_state: HardState | None) -> None:
        self._check_usable()
        snap_index, last_index = self._snap_index, self._last_index
        parts: list[list] = []
        if snapshot is not None:
            snap_index = last_index = snapshot.index
            parts.append([RecordType.SNAPSHOT, [snapshot.index, snapshot.term]])
        if entries:
            first = entries[0].index
            assert snap_index < first <= last_index + 1, (snap_index, first, last_index)
            parts.append([RecordType.ENTRIES, entries_to_rows(entries)])
            last_index = entries[-1].index
        if hard_state is not None:
            assert hard_state.commit <= last_index, (
                f"commit {hard_state.commit} past the durable log end {last_index}"
            )
            parts.append([RecordType.HARD_STATE, [hard_state.term, hard_state.vote, hard_state.commit]])
        if not parts:
            return
        record = encode_record(*parts[0]) if len(parts) == 1 else encode_record(RecordType.READY, parts)
        # The commit index is volatile state (Raft Figure 2): a Ready that only moves
        # it is written but not synced; the next synced record makes it durable with
        # it, and losing it in a crash only means relearning the commit point.
        sync = self.needs_sync(snapshot, entries, hard_state)
        try:
            if snapshot is not None:
                self._write_snapshot_file(snapshot)
            self._maybe_rotate(len(record))  # the new header describes the log before this call
            offset = self._active_bytes
            if hard_state is not None:
                self._hard_state_written = hard_state
            self._write_and_sync(record, sync=sync)
            if snapshot is not None:
                self._where.clear()
            if entries:
                self._note_batch(entries[0].index, last_index, self._segments[-1][0], offset)
            self._last_index = last_index
            if hard_state is not None:
                self._hard_state = hard_state
            if entries:
                seg = self._segments[-1]
                seg[1] = max(seg[1], last_index)
            if snapshot is not None:
                self._snap_index, self._snap_term = snapshot.index, snapshot.term
                self._snapshot = snapshot
                self._drop_obsolete()
        except OSError as exc:
            raise self._stop(exc) from exc

    def compact(self, snapshot: Snapshot) -> None:
        """Save a local snapshot of applied state and drop the log it covers."""
        self._check_usable()
        if snapshot.index <= self._snap_index:
            return
        assert snapshot.index <= self._last_index, (snapshot.index, self._last_index)
        try:
            self._write_snapshot_file(snapshot)
            self._write_and_sync(encode_record(RecordType.COMPACT, [snapshot.index, snapshot.term]))
            self._snap_index, self._snap_term = snapshot.index, snapshot.term
            self._snapshot = snapshot
            self._drop_obsolete()
        except OSError as exc:
            raise self._stop(exc) from exc

    def close(self) -> None:
        """Sync what was written without a sync (the commit index) and close. After
        a failure nothing is synced again: the page cache can no longer be trusted."""
        try:
            if self._unsynced and self._failed is None:
                self._sync_active()
        finally:
            self._active.close()

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Durable entries [lo, hi), read back from the log (each record's checksum is
        checked again on the way)."""
        assert self._snap_index < lo <= hi <= self._last_index + 1, (self._snap_index, lo, hi, self._last_index)
        where, out = self._where, []
        pos = bisect.bisect_right(where, lo, key=_first_index) - 1
        while lo < hi:
            first, last, number, offset = where[pos]
            assert first <= lo <= last, (lo, where[pos])
            batch = self._read_batch(number, offset)
            taken = batch[lo - first : min(hi, last + 1) - first]
            out.extend(taken)
            lo += len(taken)
            pos += 1
        return out

    def _note_batch(self, first: int, last: int, segment: int, offset: int) -> None:
        """Entries [first, last] are now in the record at (segment, offset); they
        overwrite whatever older records held from `first` on."""
        where = self._where
        while where and where[-1][0] >= first:
            where.pop()
        if where and where[-1][1] >= first:
            where[-1][1] = first - 1
        where.append([first, last, segment, offset])

    def _read_batch(self, segment: int, offset: int) -> list[Entry]:
        path = os.path.join(self._wal_dir, segment_name(segment))
        header = self.fs.read_range(path, offset, HEADER.size)
        length = HEADER.unpack(header)[0]
        records, _ = read_segment(path, header + self.fs.read_range(path, offset + HEADER.size, length), last=False)
        for rtype, p in _parts(path, records[0]):
            if rtype is RecordType.ENTRIES:
                return entries_from_rows(p)
        raise WalCorruption(path, offset, "expected entries here")

    # --- writing ------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise StorageFailed(f"storage at {self.path} stopped after an earlier failure: {self._failed}")

    def _stop(self, exc: OSError) -> StorageFailed:
        """Any failed change (write, sync, rename, remove) stops the storage for good."""
        self._failed = exc
        return StorageFailed(
            f"writing to {self.path} failed ({exc.strerror or exc}); nothing more is durable, the node must stop"
        )

    def needs_sync(self, snapshot: Snapshot | None, entries: list[Entry], hard_state: HardState | None) -> bool:
        """Whether `persist()` of this will fdatasync: not when only the commit
        index moves (a driver may then call it inline instead of off its loop)."""
        if entries or snapshot is not None:
            return True
        synced = self._synced_hard_state
        return hard_state is not None and (hard_state.term != synced.term or hard_state.vote != synced.vote)

    def _write_and_sync(self, data: bytes, *, sync: bool = True) -> None:
        self._active.write_at(self._active_bytes, data)
        self._active_bytes += len(data)
        if sync:
            self._sync_active()
        else:
            self._unsynced = True

    def _sync_active(self) -> None:
        self._active.sync()
        self._unsynced = False
        self._synced_hard_state = self._hard_state_written

    def _maybe_rotate(self, incoming: int) -> None:
        if self._active_bytes + incoming <= self.segment_bytes_max or self._active_bytes < 512:
            return
        if self._unsynced:  # only the last segment may end torn: sync before a newer one exists
            self._sync_active()
        number = self._segments[-1][0] + 1
        snap = Snapshot(self._snap_index, self._snap_term) if self._snap_index else None
        size = self._start_segment(number, self._hard_state, snap)
        active = self.fs.open_write(os.path.join(self._wal_dir, segment_name(number)))
        # Seal the old segment: drop its unused preallocation. Not synced: a crash
        # that loses the truncation leaves zeros after its data, which recovery reads
        # as its end and truncates then.
        self._active.truncate(self._active_bytes)
        self._active.close()
        self._active, self._active_bytes = active, size
        self._segments.append([number, 0])

    def _write_snapshot_file(self, snapshot: Snapshot) -> None:
        record = encode_record(RecordType.SNAPSHOT, [snapshot.index, snapshot.term, snapshot.data])
        self._write_atomically(self._snap_dir, _snapshot_name(snapshot.index, snapshot.term), record)

    def _drop_obsolete(self) -> None:
        """Delete whole segments the snapshot covers, and all but the newest snapshots."""
        removed = False
        while len(self._segments) > 1 and self._segments[0][1] <= self._snap_index:
            number, _ = self._segments.pop(0)
            self.fs.remove(os.path.join(self._wal_dir, segment_name(number)))
            removed = True
        if removed:
            self.fs.sync_dir(self._wal_dir)
        while self._where and self._where[0][1] <= self._snap_index:
            self._where.pop(0)
        snaps = sorted(n for n in self.fs.listdir(self._snap_dir) if n.endswith(".snap"))
        for name in snaps[: -self.snapshots_kept]:
            self.fs.remove(os.path.join(self._snap_dir, name))


def _first_index(location: list[int]) -> int:
    return location[0]


def _snapshot_name(index: int, term: int) -> str:
    return f"{index:016d}-{term:016d}.snap"


def _parts(path: str, rec: Record) -> list[tuple[RecordType, object]]:
    """The parts of a READY record in order, or the record itself."""
    if rec.type is not RecordType.READY:
        return [(rec.type, rec.payload)]
    parts = []
    for rtype, payload in rec.payload:
        if rtype not in (RecordType.SNAPSHOT, RecordType.ENTRIES, RecordType.HARD_STATE):
            raise WalCorruption(path, rec.offset, f"a READY record holds a part of type {rtype}")
        parts.append((RecordType(rtype), payload))
    return parts
