"""The Raft log as the core sees it: a snapshot point plus the entries after it.

Indices (invariants, asserted where they change):
    snapshot_index <= applied <= applying <= commit <= last_index
    stable <= last_index                 # entries durable on this node's disk
    unstable_from <= last_index + 1      # entries not yet handed to the driver

Durable storage (WAL) is the driver's job, told through `Ready.entries` and
acknowledged with `stable_to`. Entries after the snapshot are held in memory from
`cached_from` on; below it (only durable, applied entries) the log keeps just each
entry's term and reads the entry back through `reader` when a lagging follower needs
it:  snapshot_index < cached_from <= min(stable, applied) + 1.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

from raftflow.raft.types import Entry, Snapshot


def _entry_term(entry: Entry | int) -> int:
    return entry if type(entry) is int else entry.term


EntryReader = Callable[[int, int], list[Entry]]  # durable entries [lo, hi) from storage


class RaftLog:
    __slots__ = (
        "snapshot_index",
        "snapshot_term",
        "entries",
        "commit",
        "applied",
        "applying",
        "stable",
        "unstable_from",
        "pending_snapshot",
        "cached_from",
        "reader",
    )

    def __init__(
        self,
        snapshot: Snapshot | None = None,
        entries: list[Entry] | None = None,
        reader: EntryReader | None = None,
    ) -> None:
        """A log restored from durable state: everything given is already stable."""
        self.snapshot_index = snapshot.index if snapshot else 0
        self.snapshot_term = snapshot.term if snapshot else 0
        # Entries, or below cached_from only their terms (ints).
        self.entries: list[Entry | int] = list(entries or [])
        self.cached_from = self.snapshot_index + 1
        self.reader = reader
        if self.entries:
            assert self.entries[0].index == self.snapshot_index + 1, (
                self.entries[0].index,
                self.snapshot_index,
            )
        self.commit = self.snapshot_index
        self.applied = self.snapshot_index  # the driver restored the snapshot
        self.applying = self.snapshot_index  # handed out in a Ready, not yet advanced
        self.stable = self.last_index()
        self.unstable_from = self.stable + 1
        self.pending_snapshot: Snapshot | None = None  # received, not yet handed out

    # --- reading -----------------------------------------------------------

    def first_index(self) -> int:
        return self.snapshot_index + 1

    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    def last_term(self) -> int:
        return _entry_term(self.entries[-1]) if self.entries else self.snapshot_term

    def term(self, index: int) -> int | None:
        """The term of the entry at `index`; None when compacted away or past the end."""
        offset = index - self.snapshot_index
        if offset == 0:
            return self.snapshot_term
        if offset < 0 or offset > len(self.entries):
            return None
        return _entry_term(self.entries[offset - 1])

    def matches(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def slice(self, lo: int, hi: int, max_count: int, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi), at most max_count, and at most max_bytes of data (but
        always at least one entry when the range is not empty)."""
        assert lo > self.snapshot_index, (lo, self.snapshot_index)
        start = lo - self.snapshot_index - 1
        stop = min(hi - self.snapshot_index - 1, start + max_count)
        if lo < self.cached_from:  # a lagging follower: read the old part back
            assert self.reader is not None
            boundary = min(stop, self.cached_from - self.snapshot_index - 1)
            out = self.reader(lo, self.snapshot_index + 1 + boundary)
            assert len(out) == boundary - start and out[0].index == lo, (lo, boundary, len(out))
            out.extend(self.entries[boundary:stop])
        else:
            out = self.entries[start:stop]
        size = 0
        for n, entry in enumerate(out):
            size += len(entry.data)
            if size > max_bytes and n > 0:
                return out[:n]
        return out

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """A candidate's log is at least as up to date as ours (Raft §5.4.1)."""
        ours = self.last_term()
        return last_term > ours or (last_term == ours and last_index >= self.last_index())

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index <= `index` whose term is <= `term`, with its term.

        Both sides of fast backtracking use it: the follower to skip its own entries
        from terms the leader cannot have at that point, the leader to skip its own
        entries from terms the follower does not have. Stops at the snapshot point.
        """
        index = min(index, self.last_index())
        hi = index - self.snapshot_index  # entries[:hi] are the candidates
        if hi <= 0:
            return index, self.term(index) or 0
        pos = bisect.bisect_right(self.entries, term, 0, hi, key=_entry_term)
        found = self.snapshot_index + pos
        return found, self.term(found) or 0

    # --- writing -----------------------------------------------------------

    def append(self, entries: list[Entry]) -> None:
        """The leader's own appends: always right after the last index."""
        if not entries:
            return
        assert entries[0].index == self.last_index() + 1, (entries[0].index, self.last_index())
        self.entries.extend(entries)

    def maybe_append(self, prev_index: int, prev_term: int, entries: list[Entry]) -> int | None:
        """Follower side of AppendEntries. Returns the last index now known to match
        the leader's log, or None when the consistency check fails (Raft §5.3)."""
        if self.term(prev_index) != prev_term:
            return None
        last_new = prev_index + len(entries)
        if not entries:
            return last_new
        last = self.last_index()
        if prev_index == last:  # the common case: a clean append at the end
            self.entries.extend(entries)
            return last_new
        for n, entry in enumerate(entries):
            ours = self.term(entry.index)
            if ours == entry.term:
                continue
            if ours is not None:
                self._truncate(entry.index)
            self.entries.extend(entries[n:])
            break
        return last_new

    def _truncate(self, index: int) -> None:
        """Drop entries >= index (a follower's conflicting suffix)."""
        assert index > self.commit, f"truncating committed entry {index} (commit={self.commit})"
        assert index >= self.cached_from, (index, self.cached_from)
        del self.entries[index - self.snapshot_index - 1 :]
        self.stable = min(self.stable, index - 1)
        self.unstable_from = min(self.unstable_from, index)

    def commit_to(self, index: int) -> bool:
        if index <= self.commit:
            return False
        assert index <= self.last_index(), (index, self.last_index())
        self.commit = index
        return True

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log with a snapshot received from the leader."""
        assert snapshot.index > self.commit, (snapshot.index, self.commit)
        self.snapshot_index = snapshot.index
        self.snapshot_term = snapshot.term
        self.entries = []
        self.commit = snapshot.index
        self.stable = snapshot.index  # persisted with the Ready that carries it
        self.unstable_from = snapshot.index + 1
        self.cached_from = snapshot.index + 1
        self.pending_snapshot = snapshot

    def compact(self, index: int) -> int:
        """Forget entries <= index (now covered by a snapshot). Returns its term."""
        assert self.snapshot_index < index <= self.applied, (self.snapshot_index, index, self.applied)
        assert index <= self.stable, (index, self.stable)
        term = self.term(index)
        assert term is not None
        del self.entries[: index - self.snapshot_index]
        self.snapshot_index = index
        self.snapshot_term = term
        self.cached_from = max(self.cached_from, index + 1)
        return term

    def evict(self, index: int) -> None:
        """Keep only the terms of entries up to `index` (durable and applied); the
        reader brings them back when needed."""
        assert self.reader is not None, "evicting without a reader to read entries back"
        assert index <= min(self.stable, self.applied), (index, self.stable, self.applied)
        base = self.snapshot_index + 1
        entries = self.entries
        for pos in range(self.cached_from - base, index - base + 1):
            entries[pos] = entries[pos].term
        self.cached_from = max(self.cached_from, index + 1)

    # --- handing out to the driver and hearing back --------------------------

    def unstable_entries(self) -> list[Entry]:
        start = self.unstable_from - self.snapshot_index - 1
        return self.entries[start:] if start < len(self.entries) else []

    def committed_to_apply(self) -> list[Entry]:
        assert self.applying + 1 >= self.cached_from, (self.applying, self.cached_from)
        start = self.applying - self.snapshot_index
        stop = self.commit - self.snapshot_index
        return self.entries[start:stop] if stop > start else []

    def stable_to(self, index: int, term: int) -> None:
        """The driver persisted up to (index, term). Ignored when the log changed
        under that index since (a truncation re-queued it for persisting)."""
        if self.term(index) == term:
            self.stable = max(self.stable, min(index, self.unstable_from - 1))
