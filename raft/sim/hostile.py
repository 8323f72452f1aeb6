"""A hostile peer for the simulator: messages no correct member could send.

It forges, from its own seeded RNG, messages that the core must refuse whatever the
sender claims (`raft/refusals.py`): a non-member's, a term past the limit, entries
that do not follow on or whose terms go backwards, a heartbeat committing past the
target's log, an acknowledgement past the leader's log, TimeoutNow from a member
that does not lead, a snapshot that does not restore; and bytes that are not a
message at all, which the codec must refuse. Each forgery names the rule that must
refuse it, and the simulation fails if one is taken in.

It does not forge what a member could honestly send (a well-formed AppendEntries in
the leader's name, say): Raft is not Byzantine fault tolerant, and that attack is
answered by authenticating members (mTLS), not by the core.
"""

from __future__ import annotations

import random

from raftflow.raft.codec import encode_message
from raftflow.raft.node import Node
from raftflow.raft.refusals import MAX_TERM
from raftflow.raft.types import (
    NONE,
    AppendEntries,
    AppendResponse,
    Entry,
    Heartbeat,
    InstallSnapshot,
    Message,
    RequestVote,
    Role,
    Snapshot,
    TimeoutNow,
)

# 0xc1 is never a valid msgpack byte: no snapshot format can read data starting so.
NOT_A_SNAPSHOT = b"\xc1not a snapshot"


class HostilePeer:
    def __init__(self, rng: random.Random, ids: tuple[int, ...]) -> None:
        self.rng = rng
        self.ids = ids
        self.outsider = max(ids) + 1  # not a member

    def forge(self, target: Node) -> tuple[Message | bytes, str]:
        """A forged message to `target` and the rule that must refuse it ("decode"
        for bytes the codec must refuse)."""
        rng, t = self.rng, target
        other = rng.choice([i for i in self.ids if i != t.id])
        last, term = t.log.last_index(), t.term
        choice = rng.randrange(9)
        if choice == 0:
            return Heartbeat(self.outsider, t.id, term + rng.randint(0, 3), 0, 1), "member"
        if choice == 1:
            return RequestVote(other, t.id, MAX_TERM + rng.randint(1, 1 << 60), last, term), "term-limit"
        if choice == 2:
            gap = rng.randint(2, 1000)
            entries = [Entry(last + gap, term, b"forged")]
            return AppendEntries(other, t.id, term, last, t.log.term(last) or 0, entries, 0), "entries-follow-on"
        if choice == 3:
            entries = [Entry(last + 1, term + rng.randint(1, 5), b"forged")]
            return AppendEntries(other, t.id, term, last, t.log.term(last) or 0, entries, 0), "term-order"
        if choice == 4:
            return Heartbeat(other, t.id, term, last + rng.randint(1, 1000), 1), "commit-past-log"
        if choice == 5:
            sender = rng.choice([i for i in self.ids if i not in (t.id, t.leader)] or [self.outsider])
            return TimeoutNow(sender, t.id, term), "timeout-now" if sender != self.outsider else "member"
        if choice == 6 and t.role is Role.LEADER:
            return AppendResponse(other, t.id, term, True, last + rng.randint(1, 1000)), "ack-past-log"
        if choice == 7 and t.role is Role.FOLLOWER and t.leader != NONE:
            # Past the target's log: an index it holds would be a lie within the rules.
            snapshot = Snapshot(last + rng.randint(1, 50), term, NOT_A_SNAPSHOT)
            return InstallSnapshot(t.leader, t.id, term, snapshot), "snapshot-parse"
        raw = encode_message(Heartbeat(other, t.id, term, 0, 1))
        if rng.random() < 0.5:
            return raw[: rng.randint(0, len(raw) - 1)], "decode"  # cut short
        return bytes([0xC1]) + raw, "decode"  # a byte msgpack never uses
