"""Safety checkers: the properties of Raft Figure 3, checked after every event.

Each check is incremental, so checking costs about as much as the work checked:
- Election Safety: at most one leader per term, ever.
- Leader Append-Only: a leader never overwrites or deletes its own entries.
- Log Matching: entries with the same index and term hold the same data and follow
  the same previous term, in every log (so, by induction, identical prefixes).
- Leader Completeness: a new leader holds every entry anyone committed.
- State Machine Safety: every node applies the same entry at each index; checked
  through a hash chain over applied entries, so snapshots are checked too.
"""

from __future__ import annotations

import hashlib

from raftflow.raft.node import Node
from raftflow.raft.types import Entry, Role, Snapshot


class SafetyViolation(AssertionError):
    def __init__(self, prop: str, detail: str) -> None:
        self.prop = prop
        self.detail = detail
        super().__init__(f"{prop}: {detail}")


class LivenessViolation(AssertionError):
    pass


def chain_hash(previous: bytes, entry: Entry) -> bytes:
    h = hashlib.blake2b(previous, digest_size=16)
    h.update(entry.term.to_bytes(8, "little"))
    h.update(entry.data)
    return h.digest()


class SafetyChecker:
    def __init__(self) -> None:
        self.leader_of_term: dict[int, int] = {}
        self.entry_at: dict[tuple[int, int], tuple[bytes, int]] = {}  # (index, term) -> (data, prev term)
        self.committed: dict[int, tuple[int, bytes]] = {}  # index -> (term, chain hash)
        self.max_committed = 0
        self.applied_values: set[bytes] = set()
        self._leader_tail: dict[int, tuple[int, int, Entry | None]] = {}  # node -> (term, index, entry)

    # --- called by the simulation --------------------------------------------

    def after_event(self, node: Node) -> None:
        """Roles and leader logs, after `node` stepped, ticked or proposed."""
        if node.role is not Role.LEADER:
            self._leader_tail.pop(node.id, None)
            return
        holder = self.leader_of_term.setdefault(node.term, node.id)
        if holder != node.id:
            raise SafetyViolation(
                "Election Safety", f"nodes {holder} and {node.id} are both leaders of term {node.term}"
            )
        tail = self._leader_tail.get(node.id)
        if tail is None or tail[0] != node.term:
            self._check_leader_completeness(node)
        else:
            _, index, entry = tail
            if entry is not None and index > node.log.snapshot_index:
                now = node.log.entries[index - node.log.snapshot_index - 1] if index <= node.log.last_index() else None
                if now is not entry:
                    raise SafetyViolation(
                        "Leader Append-Only",
                        f"leader {node.id} of term {node.term} replaced or dropped its entry {index} "
                        f"(was {entry}, now {now})",
                    )
        last = node.log.last_index()
        entry = node.log.entries[-1] if node.log.entries else None
        self._leader_tail[node.id] = (node.term, last, entry)

    def _check_leader_completeness(self, node: Node) -> None:
        c = self.max_committed
        if c == 0 or c <= node.log.snapshot_index:
            return
        term, _ = self.committed[c]
        if node.log.term(c) != term:
            raise SafetyViolation(
                "Leader Completeness",
                f"node {node.id} became leader of term {node.term} without committed entry {c} "
                f"(term {term}); its log has term {node.log.term(c)} there, last index {node.log.last_index()}",
            )

    def on_entries(self, node: Node, entries: list[Entry]) -> None:
        """Log Matching, for entries a node is about to persist."""
        if not entries:
            return
        prev_term = node.log.term(entries[0].index - 1)
        entry_at = self.entry_at
        for e in entries:
            key = (e.index, e.term)
            seen = entry_at.get(key)
            if seen is None:
                entry_at[key] = (e.data, prev_term if prev_term is not None else -1)
            elif seen[0] != e.data or (prev_term is not None and seen[1] not in (prev_term, -1)):
                raise SafetyViolation(
                    "Log Matching",
                    f"node {node.id} holds entry (index {e.index}, term {e.term}) with data {e.data!r} "
                    f"after term {prev_term}; another log has {seen[0]!r} after term {seen[1]}",
                )
            prev_term = e.term

    def on_apply(self, node_id: int, entry: Entry, chain: bytes) -> None:
        """State Machine Safety, for each entry a node applies."""
        seen = self.committed.get(entry.index)
        if seen is None:
            self.committed[entry.index] = (entry.term, chain)
            if entry.index > self.max_committed:
                self.max_committed = entry.index
            if entry.data:
                self.applied_values.add(entry.data)
        elif seen[1] != chain:
            raise SafetyViolation(
                "State Machine Safety",
                f"node {node_id} applied entry {entry.index} (term {entry.term}) over a history that "
                f"differs from another node's (which applied term {seen[0]} there)",
            )

    def on_restore(self, node_id: int, snapshot: Snapshot, chain: bytes) -> None:
        seen = self.committed.get(snapshot.index)
        if seen is not None and seen[1] != chain:
            raise SafetyViolation(
                "State Machine Safety",
                f"node {node_id} restored a snapshot at {snapshot.index} whose history differs",
            )
