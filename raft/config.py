"""Every tunable of a Raft node, checked once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

# Deliberate rule breaks, for proving the simulator's checkers can fail. Never set
# them outside tests and `raftflow sim --mutate`.
MUTATIONS = frozenset(
    {
        "commit-old-term",  # count replicas of an old-term entry to commit it (Figure 8)
        "skip-up-to-date-check",  # grant votes to candidates with stale logs (§5.4.1)
        "ack-before-persist",  # leader counts its own unpersisted entries toward quorum
    }
)


class ConfigError(ValueError):
    """A setting is out of range; the message names the setting and the rule."""


@dataclass(frozen=True, slots=True)
class Config:
    id: int
    voters: tuple[int, ...]  # every voting member, this node included
    election_ticks: int = 10  # a follower campaigns after [election_ticks, 2*election_ticks)
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    # A leader answers lease reads locally for lease_ticks after a heartbeat round
    # a quorum acknowledged. Must be below election_ticks (thesis §6.4.1); the gap
    # is the bound on clock drift the lease tolerates. 0 means election_ticks - 1.
    lease_ticks: int = 0
    max_msg_entries: int = 1024  # entries in one AppendEntries
    max_msg_bytes: int = 1 << 20  # payload bytes in one AppendEntries (at least one entry)
    max_inflight_msgs: int = 64  # pipelined AppendEntries per follower
    max_uncommitted_entries: int = 1 << 16  # proposals beyond this are dropped
    max_pending_reads: int = 4096  # ReadIndex requests waiting for a heartbeat round
    max_snapshot_chunk_bytes: int = 1 << 20  # InstallSnapshot sends a snapshot in chunks this big
    # A received snapshot is assembled in memory: a larger one (or chunks claiming to
    # reach past it) is refused, so a hostile sender cannot grow a follower's memory.
    max_snapshot_bytes: int = 512 << 20
    # Entries kept in memory when the node has a reader to fetch older ones back
    # from storage; older entries keep only their term (8 bytes each).
    max_cached_entries: int = 1 << 16
    # True: once the commit index moves, the leader tells each follower at once (an
    # empty AppendEntries when nothing else is due). False: the next append or
    # heartbeat carries it, which saves a message, a follower cycle and a response
    # per commit round when idle; followers then apply up to a heartbeat later.
    eager_commit: bool = True
    mutations: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.voters:
            raise ConfigError("voters is empty; list every voting member, this node included")
        if len(set(self.voters)) != len(self.voters):
            raise ConfigError(f"voters={self.voters} lists a node twice")
        if any(v <= 0 for v in self.voters):
            raise ConfigError(f"voters={self.voters}: node ids must be positive integers")
        if self.id not in self.voters:
            raise ConfigError(f"id={self.id} is not in voters={self.voters}")
        for name in (
            "election_ticks",
            "heartbeat_ticks",
            "max_msg_entries",
            "max_msg_bytes",
            "max_inflight_msgs",
            "max_uncommitted_entries",
            "max_pending_reads",
            "max_snapshot_chunk_bytes",
            "max_snapshot_bytes",
            "max_cached_entries",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be at least 1")
        if self.heartbeat_ticks >= self.election_ticks:
            raise ConfigError(
                f"heartbeat_ticks={self.heartbeat_ticks} must be below "
                f"election_ticks={self.election_ticks}"
            )
        if self.lease_ticks < 0:
            raise ConfigError(f"lease_ticks={self.lease_ticks} must be at least 0 (0 means election_ticks - 1)")
        if self.lease_ticks >= self.election_ticks:
            raise ConfigError(
                f"lease_ticks={self.lease_ticks} must be below election_ticks={self.election_ticks}"
            )
        unknown = set(self.mutations) - MUTATIONS
        if unknown:
            raise ConfigError(f"unknown mutations {sorted(unknown)}; known: {sorted(MUTATIONS)}")

    @property
    def effective_lease_ticks(self) -> int:
        return self.lease_ticks or self.election_ticks - 1

    @property
    def quorum(self) -> int:
        return len(self.voters) // 2 + 1
