"""A snapshot on its way in, spooled to disk chunk by chunk.

A leader sends a snapshot as a stream of chunks (`Peer.InstallSnapshot`, one stream
per snapshot). The node writes each chunk into a private file in its data dir as it
arrives, and hands the core one whole InstallSnapshot once every byte is there: an
unfinished transfer holds disk, not memory, and goes with its stream. The bytes are
bounded by `max_snapshot_bytes` before they are written; the file is written and
read in a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import threading

from raftflow.raft.fs import open_private
from raftflow.raft.types import InstallSnapshot, Snapshot

PARTIAL_SUFFIX = ".snap-in"  # DATA_DIR/from-<node>-<n>.snap-in while a transfer runs


class SpoolRefused(ValueError):
    """A chunk that does not belong to this transfer or goes past the limit."""


def remove_leftovers(directory: str) -> int:
    """Remove the files of transfers a crash interrupted; how many there were."""
    removed = 0
    for name in os.listdir(directory):
        if name.endswith(PARTIAL_SUFFIX):
            os.remove(os.path.join(directory, name))
            removed += 1
    return removed


class SnapshotSpool:
    def __init__(self, directory: str, sender: int, number: int, limit: int) -> None:
        self.path = os.path.join(directory, f"from-{sender}-{number}{PARTIAL_SUFFIX}")
        self.limit = limit
        self._key: tuple[int, int, int, int] | None = None  # (src, term, snapshot index, snapshot term)
        self._spans: dict[int, int] = {}  # offset -> length of each chunk written
        self._total: int | None = None  # known once the last chunk arrived
        self._fd: int | None = None
        # The file is written and read in threads while discard() may come from the
        # loop (the stream was cancelled mid-write): one lock, and no I/O once closed.
        self._lock = threading.Lock()
        self._closed = False

    async def add(self, m: InstallSnapshot) -> InstallSnapshot | None:
        """Write the chunk; the whole snapshot as one message once it is complete."""
        key = (m.src, m.term, m.snapshot.index, m.snapshot.term)
        if self._key is None:
            self._key = key
        elif key != self._key:
            raise SpoolRefused(f"a chunk of snapshot {m.snapshot.index} (term {m.term}) on the stream of {self._key}")
        data = m.snapshot.data
        if m.offset < 0 or m.offset + len(data) > self.limit:
            raise SpoolRefused(
                f"snapshot {m.snapshot.index} reaches past max_snapshot_bytes={self.limit} "
                f"(chunk at {m.offset}, {len(data)} bytes)"
            )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._write, m.offset, data)
        self._spans[m.offset] = len(data)
        if m.done:
            self._total = m.offset + len(data)
        if self._total is None or not self._complete():
            return None
        whole = await loop.run_in_executor(None, self._read)
        return InstallSnapshot(m.src, m.dst, m.term, Snapshot(m.snapshot.index, m.snapshot.term, whole), 0, True)

    def _complete(self) -> bool:
        end = 0
        for offset in sorted(self._spans):
            if offset > end:
                return False
            end = max(end, offset + self._spans[offset])
        return end >= self._total

    def _write(self, offset: int, data: bytes) -> None:
        with self._lock:
            if self._closed:
                raise SpoolRefused("the transfer ended")
            if self._fd is None:
                self._fd = open_private(self.path, os.O_RDWR | os.O_TRUNC)
            os.pwrite(self._fd, data, offset)

    def _read(self) -> bytes:
        with self._lock:
            if self._closed or self._fd is None or self._total is None:
                raise SpoolRefused("the transfer ended")
            return os.pread(self._fd, self._total, 0)

    def discard(self) -> None:
        """Close and remove the file (the transfer finished, broke or was replaced);
        a write running in a thread finishes first, and none starts after."""
        with self._lock:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
