"""Where a node's durable state lives, and an in-memory twin for tests and the
simulator. The durable write-ahead log implements the same interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from raftflow.raft.types import Entry, HardState, Snapshot


@dataclass(slots=True)
class DurableState:
    """Everything a node restarts from."""

    hard_state: HardState = HardState()
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)  # the log after the snapshot


class LogStore(Protocol):
    def persist(self, snapshot: Snapshot | None, entries: list[Entry], hard_state: HardState | None) -> None:
        """Make a Ready's durable part durable, all or nothing, before returning.
        A change of the commit index alone may be made durable later (the commit
        index is volatile state: a restarted node relearns it)."""

    def compact(self, snapshot: Snapshot) -> None:
        """Save a snapshot of the applied state and drop the entries it covers."""

    def load(self) -> DurableState:
        """What survived: the newest snapshot and the entries after it."""

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Durable entries [lo, hi), all after the snapshot: a new list."""


class MemoryStorage:
    """A LogStore whose 'disk' is a Python object: it survives a simulated crash
    because the simulator keeps it while throwing the Node away."""

    def __init__(self) -> None:
        self.state = DurableState()

    def persist(self, snapshot: Snapshot | None, entries: list[Entry], hard_state: HardState | None) -> None:
        st = self.state
        if snapshot is not None:
            st.snapshot = snapshot
            st.entries = []
        if entries:
            base = st.snapshot.index if st.snapshot else 0
            first = entries[0].index
            assert base < first <= base + len(st.entries) + 1, (base, first, len(st.entries))
            del st.entries[first - base - 1 :]
            st.entries.extend(entries)
        if hard_state is not None:
            last = (st.snapshot.index if st.snapshot else 0) + len(st.entries)
            assert hard_state.commit <= last, f"commit {hard_state.commit} past durable log end {last}"
            st.hard_state = hard_state

    def compact(self, snapshot: Snapshot) -> None:
        st = self.state
        base = st.snapshot.index if st.snapshot else 0
        if snapshot.index <= base:
            return
        del st.entries[: snapshot.index - base]
        st.snapshot = snapshot

    def load(self) -> DurableState:
        st = self.state
        return DurableState(st.hard_state, st.snapshot, list(st.entries))

    def entries(self, lo: int, hi: int) -> list[Entry]:
        st = self.state
        base = st.snapshot.index if st.snapshot else 0
        assert base < lo <= hi <= base + len(st.entries) + 1, (base, lo, hi, len(st.entries))
        return st.entries[lo - base - 1 : hi - base - 1]
