"""Durable storage for one node: the write-ahead log plus snapshot files.

Layout of a data directory:

    raftflow.meta                 cluster id and node id (one checksummed record)
    wal/0000000000000000.wal ...  segments of the write-ahead log (raft.wal)
    snap/<index>-<term>.snap      snapshots (one checksummed record each)

`persist()` writes one Ready's snapshot mark, entries and hard state as one write
and one fdatasync: group commit, never one sync per entry. A snapshot file is
written to a temporary name, synced, renamed and its folder synced before the log
refers to it. After a failed write or sync the storage refuses everything: an
fsync error leaves the page cache in an unknown state, so it is not retried.
"""

from __future__ import annotations

import os

from raft.fs import FS, File, OsFS
from raft.storage import DurableState
from raft.types import Entry, EntryKind, HardState, Snapshot
from raft.wal import FORMAT_VERSION, RecordType, WalCorruption, encode_record, read_segment, segment_name, segment_number

META_FILE = "raftflow.meta"
_KINDS = {int(k): k for k in EntryKind}


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
        self._recovered = self._recover()
        st = self._recovered
        self._hard_state = st.hard_state
        self._snap_index = st.snapshot.index if st.snapshot else 0
        self._snap_term = st.snapshot.term if st.snapshot else 0
        self._last_index = self._snap_index + len(st.entries)

    # --- identity ---------------------------------------------------------------

    def _meta_record(self) -> bytes:
        return encode_record(RecordType.META, [FORMAT_VERSION, self.cluster_id, self.node_id, -1])

    def _open_or_create(self, create: bool) -> None:
        fs, meta_path = self.fs, os.path.join(self.path, META_FILE)
        if fs.exists(meta_path):
            records, _ = read_segment(meta_path, fs.read(meta_path), last=False)
            if len(records) != 1 or records[0].type is not RecordType.META:
                raise WalCorruption(meta_path, 0, "expected exactly one META record")
            fmt, cluster_id, node_id, _ = records[0].payload
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
        if fs.exists(self.path) and fs.listdir(self.path):
            raise DataDirError(f"{self.path} is not empty and is not a raftflow data directory")
        parent = os.path.dirname(os.path.abspath(self.path))
        for d in (self.path, self._wal_dir, self._snap_dir):
            fs.makedirs(d)
        self._write_atomically(self.path, META_FILE, self._meta_record())
        fs.sync_dir(self._wal_dir)
        fs.sync_dir(self._snap_dir)
        fs.sync_dir(self.path)
        if fs.exists(parent):
            fs.sync_dir(parent)

    def _write_atomically(self, folder: str, name: str, data: bytes) -> None:
        """temp file, sync, rename, sync the folder: all of it or none survives."""
        tmp = os.path.join(folder, name + ".tmp")
        f = self.fs.open_append(tmp)
        try:
            f.truncate(0)
            f.write(data)
            f.sync()
        finally:
            f.close()
        self.fs.rename(tmp, os.path.join(folder, name))
        self.fs.sync_dir(folder)

    # --- recovery ---------------------------------------------------------------

    def _recover(self) -> DurableState:
        snapshot = self._newest_snapshot()
        snap_index = snapshot.index if snapshot else 0
        hard_state = HardState()
        entries: list[Entry] = []
        marked = 0  # the highest snapshot index the log itself refers to
        term_at_snapshot = 0  # the log's own term at the snapshot's index
        active_bytes = 0
        numbers = self._segment_numbers()
        self._segments: list[list[int]] = []  # [number, highest entry index written]
        for pos, number in enumerate(numbers):
            seg_path = os.path.join(self._wal_dir, segment_name(number))
            data = self.fs.read(seg_path)
            last = pos == len(numbers) - 1
            records, valid = read_segment(seg_path, data, last=last)
            if valid < len(data):
                self._truncate(seg_path, valid)
            active_bytes = valid
            if not records or records[0].type is not RecordType.META:
                if last and not records:
                    self._segments.append([number, 0])
                    continue  # created, then torn before its header was durable
                raise WalCorruption(seg_path, 0, "segment does not start with a META record")
            fmt, cluster_id, node_id, seg_no = records[0].payload
            if (cluster_id, node_id, seg_no) != (self.cluster_id, self.node_id, number):
                raise WalCorruption(
                    seg_path, 0, f"segment of node {node_id} of {cluster_id!r} numbered {seg_no}, found as {number}"
                )
            top = 0
            for rec in records[1:]:
                p = rec.payload
                if rec.type is RecordType.HARD_STATE:
                    hard_state = HardState(*p)
                elif rec.type is RecordType.ENTRIES:
                    batch = [Entry(i, t, d, _KINDS[k]) for i, t, k, d in p]
                    top = max(top, batch[-1].index)
                    if batch[0].index <= snap_index <= batch[-1].index:
                        term_at_snapshot = batch[snap_index - batch[0].index].term
                    batch = [e for e in batch if e.index > snap_index]
                    if batch:
                        first = batch[0].index
                        if first > snap_index + len(entries) + 1:
                            raise WalCorruption(
                                seg_path, rec.offset,
                                f"entries jump from {snap_index + len(entries)} to {first}",
                            )
                        del entries[first - snap_index - 1 :]
                        entries.extend(batch)
                elif rec.type in (RecordType.SNAPSHOT, RecordType.COMPACT):
                    index, _term = p
                    marked = max(marked, index)
                    if index > snap_index:
                        raise WalCorruption(
                            seg_path, rec.offset,
                            f"the log refers to a snapshot at index {index} but the newest snapshot file "
                            f"is at {snap_index}",
                        )
                    if rec.type is RecordType.SNAPSHOT:
                        entries.clear()  # the leader's snapshot replaced the whole log
                else:
                    raise WalCorruption(seg_path, rec.offset, f"unexpected {rec.type.name} record")
            self._segments.append([number, top])
        if snapshot and marked < snapshot.index and term_at_snapshot != snapshot.term:
            # A crash fell between saving the leader's snapshot and logging it: the
            # entries on disk belong to a history the snapshot replaced.
            entries.clear()
        last_index = snap_index + len(entries)
        if hard_state.commit > last_index:
            raise WalCorruption(
                self._wal_dir, 0, f"hard state commit {hard_state.commit} is past the last entry {last_index}"
            )
        if snapshot and snapshot.index > hard_state.commit:
            hard_state = HardState(hard_state.term, hard_state.vote, snapshot.index)
        if not self._segments:
            self._segments.append([0, 0])
        self._open_active(active_bytes, hard_state=hard_state, snapshot=snapshot)
        return DurableState(hard_state, snapshot, entries)

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
        f = self.fs.open_append(path)
        try:
            f.truncate(size)
            f.sync()
        finally:
            f.close()

    def _open_active(self, size: int, *, hard_state: HardState, snapshot: Snapshot | None) -> None:
        number = self._segments[-1][0]
        path = os.path.join(self._wal_dir, segment_name(number))
        self._active: File = self.fs.open_append(path)
        self._active_bytes = size
        if size == 0:
            self._write_segment_header(number, hard_state, snapshot)

    def _write_segment_header(self, number: int, hard_state: HardState, snapshot: Snapshot | None) -> None:
        header = bytearray(encode_record(RecordType.META, [FORMAT_VERSION, self.cluster_id, self.node_id, number]))
        header += encode_record(RecordType.HARD_STATE, [hard_state.term, hard_state.vote, hard_state.commit])
        if snapshot is not None:
            header += encode_record(RecordType.COMPACT, [snapshot.index, snapshot.term])
        self._write_and_sync(bytes(header))
        self.fs.sync_dir(self._wal_dir)

    # --- the LogStore interface -----------------------------------------------------

    def load(self) -> DurableState:
        st = self._recovered
        return DurableState(st.hard_state, st.snapshot, list(st.entries))

    def persist(self, snapshot: Snapshot | None, entries: list[Entry], hard_state: HardState | None) -> None:
        self._check_usable()
        buf = bytearray()
        if snapshot is not None:
            self._write_snapshot_file(snapshot)
            buf += encode_record(RecordType.SNAPSHOT, [snapshot.index, snapshot.term])
            self._snap_index, self._snap_term = snapshot.index, snapshot.term
            self._last_index = snapshot.index
        if entries:
            first = entries[0].index
            assert self._snap_index < first <= self._last_index + 1, (self._snap_index, first, self._last_index)
            buf += encode_record(RecordType.ENTRIES, [[e.index, e.term, e.kind, e.data] for e in entries])
            self._last_index = entries[-1].index
        if hard_state is not None:
            assert hard_state.commit <= self._last_index, (
                f"commit {hard_state.commit} past the durable log end {self._last_index}"
            )
            buf += encode_record(RecordType.HARD_STATE, [hard_state.term, hard_state.vote, hard_state.commit])
        if not buf:
            return
        self._maybe_rotate(len(buf))
        self._write_and_sync(bytes(buf))
        if hard_state is not None:
            self._hard_state = hard_state
        if entries:
            seg = self._segments[-1]
            seg[1] = max(seg[1], self._last_index)
        if snapshot is not None:
            self._drop_obsolete()

    def compact(self, snapshot: Snapshot) -> None:
        """Save a local snapshot of applied state and drop the log it covers."""
        self._check_usable()
        if snapshot.index <= self._snap_index:
            return
        assert snapshot.index <= self._last_index, (snapshot.index, self._last_index)
        self._write_snapshot_file(snapshot)
        self._write_and_sync(encode_record(RecordType.COMPACT, [snapshot.index, snapshot.term]))
        self._snap_index, self._snap_term = snapshot.index, snapshot.term
        self._drop_obsolete()

    def close(self) -> None:
        self._active.close()

    # --- writing ------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise StorageFailed(f"storage at {self.path} stopped after an earlier failure: {self._failed}")

    def _write_and_sync(self, data: bytes) -> None:
        try:
            self._active.write(data)
            self._active.sync()
        except OSError as exc:
            self._failed = exc
            raise StorageFailed(
                f"writing the log in {self._wal_dir} failed ({exc.strerror or exc}); nothing more is "
                f"durable, the node must stop"
            ) from exc
        self._active_bytes += len(data)

    def _maybe_rotate(self, incoming: int) -> None:
        if self._active_bytes + incoming <= self.segment_bytes_max or self._active_bytes < 512:
            return
        self._active.close()
        number = self._segments[-1][0] + 1
        self._segments.append([number, 0])
        self._active = self.fs.open_append(os.path.join(self._wal_dir, segment_name(number)))
        self._active_bytes = 0
        snap = Snapshot(self._snap_index, self._snap_term) if self._snap_index else None
        self._write_segment_header(number, self._hard_state, snap)

    def _write_snapshot_file(self, snapshot: Snapshot) -> None:
        record = encode_record(RecordType.SNAPSHOT, [snapshot.index, snapshot.term, snapshot.data])
        try:
            self._write_atomically(self._snap_dir, _snapshot_name(snapshot.index, snapshot.term), record)
        except OSError as exc:
            self._failed = exc
            raise StorageFailed(f"writing a snapshot in {self._snap_dir} failed ({exc.strerror or exc})") from exc

    def _drop_obsolete(self) -> None:
        """Delete whole segments the snapshot covers, and all but the newest snapshots."""
        removed = False
        while len(self._segments) > 1 and self._segments[0][1] <= self._snap_index:
            number, _ = self._segments.pop(0)
            self.fs.remove(os.path.join(self._wal_dir, segment_name(number)))
            removed = True
        if removed:
            self.fs.sync_dir(self._wal_dir)
        snaps = sorted(n for n in self.fs.listdir(self._snap_dir) if n.endswith(".snap"))
        for name in snaps[: -self.snapshots_kept]:
            self.fs.remove(os.path.join(self._snap_dir, name))


def _snapshot_name(index: int, term: int) -> str:
    return f"{index:016d}-{term:016d}.snap"
