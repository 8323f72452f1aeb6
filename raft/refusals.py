"""What a message from the network may not claim: the rules `Node.step` checks first.

The codec already checked every field's type and sign. These rules refuse what no
correct member can send, whatever it knows: a term or index past the limit, entries
that do not follow on from `prev_index`, entry terms that go backwards or past the
message's term, a heartbeat's commit past this log's end (the leader sends
min(commit, what this follower acknowledged)), an acknowledgement of entries the
leader never had, a TimeoutNow not from this term's leader. A refused message
changes nothing; the node counts and logs it (`MessageRefused.rule`) and goes on.

What they cannot catch is a member that lies within the rules (Raft is not
Byzantine fault tolerant): that needs its identity bound to its key (mTLS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftflow.raft.types import (
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    RaftError,
    RequestVote,
    Role,
    TimeoutNow,
)

if TYPE_CHECKING:
    from raftflow.raft.node import Node

# Far past any real term or index (2^62: a term a nanosecond for 146 years), and far
# below what a uint64 holds, so term + 1 and index + n never overflow on the wire.
MAX_TERM = 1 << 62
MAX_INDEX = 1 << 62


class MessageRefused(RaftError):
    """A message no correct member could send; `rule` names the rule, for counting."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def check_message(node: Node, m: Message) -> None:
    """MessageRefused unless `m` is possible from a correct member, as `node` sees it."""
    if m.dst != node.id:
        raise MessageRefused("addressee", f"{type(m).__name__} for node {m.dst} reached node {node.id}")
    if m.src == node.id or m.src not in node.config.voters:
        raise MessageRefused("member", f"{type(m).__name__} from node {m.src}, not a member {node.config.voters}")
    if m.term > MAX_TERM:
        raise MessageRefused("term-limit", f"{type(m).__name__} from node {m.src} has term {m.term} > {MAX_TERM}")
    if isinstance(m, AppendEntries):
        _check_append(node, m)
    elif isinstance(m, Heartbeat):
        if m.term >= node.term and m.commit > node.log.last_index():
            raise MessageRefused(
                "commit-past-log",
                f"Heartbeat from node {m.src} commits {m.commit}, past this log's last index {node.log.last_index()}",
            )
    elif isinstance(m, AppendResponse):
        _within("index", m.index, m)
        _within("hint_index", m.hint_index, m)
        if m.success and m.term == node.term and node.role is Role.LEADER and m.index > node.log.last_index():
            raise MessageRefused(
                "ack-past-log",
                f"AppendResponse from node {m.src} acknowledges index {m.index}, past this log's last index "
                f"{node.log.last_index()}",
            )
    elif isinstance(m, RequestVote):
        _within("last_log_index", m.last_log_index, m)
        if m.last_log_term > m.term:
            raise MessageRefused(
                "term-order", f"RequestVote from node {m.src} has last_log_term {m.last_log_term} > term {m.term}"
            )
    elif isinstance(m, InstallSnapshot):
        snap = m.snapshot
        _within("snapshot index", snap.index, m)
        _within("offset", m.offset, m)
        if snap.term > m.term or (snap.index == 0) != (snap.term == 0):
            raise MessageRefused(
                "term-order", f"InstallSnapshot from node {m.src}: snapshot ({snap.index}, term {snap.term}) "
                f"in a message of term {m.term}",
            )
    elif isinstance(m, TimeoutNow):
        if m.term != node.term or m.src != node.leader:
            raise MessageRefused(
                "timeout-now", f"TimeoutNow from node {m.src} in term {m.term}; only this term's leader "
                f"(node {node.leader}, term {node.term}) may hand over",
            )
    elif isinstance(m, HeartbeatResponse):
        _within("seq", m.seq, m)


def _within(what: str, value: int, m: Message) -> None:
    if value > MAX_INDEX:
        raise MessageRefused("index-limit", f"{type(m).__name__} from node {m.src} has {what} {value} > {MAX_INDEX}")


def _check_append(node: Node, m: AppendEntries) -> None:
    _within("prev_index", m.prev_index, m)
    _within("commit", m.commit, m)
    if m.prev_term > m.term:
        raise MessageRefused("term-order", f"AppendEntries from node {m.src}: prev_term {m.prev_term} > term {m.term}")
    index, term = m.prev_index, m.prev_term
    for entry in m.entries:
        if entry.index != index + 1:
            raise MessageRefused(
                "entries-follow-on",
                f"AppendEntries from node {m.src}: entry {entry.index} after {index} (prev_index {m.prev_index})",
            )
        if not term <= entry.term <= m.term:
            raise MessageRefused(
                "term-order",
                f"AppendEntries from node {m.src}: entry {entry.index} has term {entry.term}, not from {term} "
                f"to the message's term {m.term}",
            )
        index, term = entry.index, entry.term
    _within("last entry index", index, m)
