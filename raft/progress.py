"""What a leader knows about each follower's log (etcd calls it the tracker).

States (thesis §10.2 and etcd's design):
- PROBE: we do not know where the follower's log diverges; one AppendEntries at a
  time, then wait for its answer (or the next heartbeat answer).
- REPLICATE: the follower is in sync; AppendEntries are pipelined, bounded by
  `max_inflight_msgs` outstanding messages.
- SNAPSHOT: the follower needs entries we compacted; an InstallSnapshot is on its
  way and nothing else is sent until it is acknowledged (or times out).
"""

from __future__ import annotations

import enum
from collections import deque


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Progress:
    __slots__ = (
        "match",
        "next",
        "state",
        "probe_sent",
        "inflight",
        "pending_snapshot",
        "snapshot_ticks",
        "recent_active",
        "ack_seq",
        "sent_commit",
    )

    def __init__(self, next_index: int) -> None:
        self.match = 0  # match < next
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False  # PROBE: an AppendEntries is outstanding
        self.inflight: deque[int] = deque()  # REPLICATE: last index of each message in flight
        self.pending_snapshot = 0  # SNAPSHOT: the index of the snapshot sent
        self.snapshot_ticks = 0  # SNAPSHOT: ticks since it was sent
        self.recent_active = False  # heard from within this election timeout (CheckQuorum)
        self.ack_seq = 0  # highest heartbeat round acknowledged (ReadIndex, lease)
        self.sent_commit = 0  # highest commit index sent in an AppendEntries

    def can_bump_commit(self, commit: int) -> bool:
        """(etcd's Progress.CanBumpCommit): an empty AppendEntries carrying
        `commit` could still advance the follower's commit index."""
        return commit > self.sent_commit and self.sent_commit < self.next - 1

    def __repr__(self) -> str:
        return (
            f"Progress(match={self.match}, next={self.next}, state={self.state.value}, "
            f"inflight={len(self.inflight)})"
        )

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.inflight.clear()
        self.pending_snapshot = 0

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()

    def become_snapshot(self, index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = index
        self.snapshot_ticks = 0
        self.probe_sent = False
        self.inflight.clear()

    def is_paused(self, max_inflight: int) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return len(self.inflight) >= max_inflight
        return True

    def sent_entries(self, last_index: int) -> None:
        """An AppendEntries whose last entry is `last_index` went out."""
        if self.state is ProgressState.REPLICATE:
            self.next = last_index + 1
            self.inflight.append(last_index)
        else:
            self.probe_sent = True

    def maybe_update(self, index: int) -> bool:
        """The follower matches up to `index`. False when that is old news."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        inflight = self.inflight
        while inflight and inflight[0] <= index:
            inflight.popleft()
        return updated

    def maybe_decrease_to(self, rejected: int, probe_index: int) -> bool:
        """The follower rejected AppendEntries at prev_index=`rejected`; try again
        from probe_index + 1. False when the rejection is stale (duplicated or
        reordered) and must be ignored."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1  # the pipeline broke: probe from what we know
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, probe_index + 1), self.match + 1)
        self.probe_sent = False
        return True
