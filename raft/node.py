"""The Raft consensus core: a pure state machine over messages and ticks.

No sockets, clocks, files or global randomness. A driver (the asyncio node process,
or the deterministic simulator) feeds it `tick()`, `step(message)` and `propose()`,
then takes a `Ready` batch of effects, carries it out in the order its contract
gives (the `Ready` docstring in raft/types.py, the one place it is written), and
acknowledges it with `advance()`.

Section references are to the Raft paper (Ongaro & Ousterhout 2014) and Ongaro's
thesis (2014): PreVote §9.6, CheckQuorum §6.2, ReadIndex and leases §6.4,
leadership transfer §3.10, leader writing to disk in parallel §10.2.1.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from raftflow.raft.config import Config
from raftflow.raft.log import EntryReader, RaftLog
from raftflow.raft.progress import Progress, ProgressState
from raftflow.raft.refusals import MessageRefused, check_message
from raftflow.raft.types import (
    NONE,
    AppendEntries,
    AppendResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    LeaseExpired,
    Message,
    NotLeader,
    ProposalDropped,
    RaftError,
    ReadDropped,
    Ready,
    ReadState,
    RequestVote,
    Role,
    Snapshot,
    SoftState,
    TimeoutNow,
    VoteResponse,
)

_FROM_LEADER = (AppendEntries, Heartbeat, InstallSnapshot)


@dataclass(frozen=True, slots=True)
class Status:
    id: int
    role: Role
    term: int
    vote: int
    leader: int
    commit: int
    applied: int
    last_index: int
    snapshot_index: int
    lead_transferee: int
    progress: dict[int, str]  # leader only: follower id -> summary


class _IncomingSnapshot:
    __slots__ = ("key", "chunks", "total", "size")

    def __init__(self, key: tuple[int, int, int, int]) -> None:
        self.key = key  # (sender, its term, snapshot index, snapshot term)
        self.chunks: dict[int, bytes] = {}  # offset -> bytes
        self.total: int | None = None  # known once the last chunk arrived
        self.size = 0  # bytes held in chunks (<= max_snapshot_bytes)


class Node:
    """One Raft peer. Not thread-safe: one driver calls it at a time."""

    def __init__(
        self,
        config: Config,
        rng: random.Random,
        hard_state: HardState = HardState(),
        snapshot: Snapshot | None = None,
        entries: list[Entry] | None = None,
        reader: EntryReader | None = None,
        snapshot_check: Callable[[bytes], None] | None = None,
    ) -> None:
        """Start from durable state (empty for a new node). The driver has already
        restored `snapshot` into its state machine. With a `reader` (the storage's
        `entries(lo, hi)`), at most `max_cached_entries` entries stay in memory.
        `snapshot_check(data)` raises ValueError for snapshot bytes the state machine
        cannot restore: a received snapshot is refused before anything keeps it."""
        self.config = config
        self.id = config.id
        self.peers = tuple(v for v in config.voters if v != config.id)
        self._quorum = config.quorum  # cached: Config.quorum is computed on each access
        self._rng = rng
        self.log = RaftLog(snapshot, entries, reader)
        assert hard_state.commit <= self.log.last_index(), (hard_state.commit, self.log.last_index())
        self.log.commit = max(hard_state.commit, self.log.snapshot_index)
        self.snapshot = snapshot  # the newest snapshot, sent to followers that need it
        self._incoming_snapshot: _IncomingSnapshot | None = None  # chunks being received
        self._snapshot_check = snapshot_check
        self.term = hard_state.term
        self.vote = hard_state.vote
        self.role = Role.FOLLOWER
        self.leader = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_ticks = config.election_ticks
        self.votes: dict[int, bool] = {}
        self.progress: dict[int, Progress] = {}
        self.lead_transferee = NONE
        self._transfer_ticks = 0
        self.ticks = 0  # ticks since start: the leader lease is measured in them
        # A restarted node has forgotten when it last heard from a leader; it refuses
        # votes for one election timeout, or a leader's lease could be cut short. A
        # node that never had a term never acknowledged a leader: no guard.
        restarted = hard_state.term > 0
        self._vote_guard_ticks = config.election_ticks if config.check_quorum and restarted else 0
        # ReadIndex and lease state (leader only).
        self._heartbeat_seq = 0
        self._seq_ticks: deque[tuple[int, int]] = deque(maxlen=4 * config.election_ticks + 16)
        self._lease_start: int | None = None  # tick a quorum-acknowledged round was sent
        self._lease_disabled = False  # a transfer began this term: no more lease reads
        self._lease_floor = 0  # rounds sent before this tick start no lease (expire_lease)
        self._reads: deque[tuple[int, int, bytes]] = deque()  # (seq, index, ctx)
        self._reads_before_commit: list[bytes] = []
        self._read_round_needed = False  # a read waits for a round not sent yet
        # The last round sent, until a quorum acknowledges it (0: none outstanding).
        # A read round waits for it: one round in flight serves every read that
        # arrives meanwhile, instead of one round (four messages) per driver cycle.
        self._round_outstanding = 0
        self._append_needed = False  # broadcast new entries / commit at the next ready()
        # Effects collected for the next Ready.
        self._messages: list[Message] = []
        self._early_messages: list[Message] = []
        self._read_states: list[ReadState] = []
        self._reads_dropped: list[ReadDropped] = []
        self._prev_hard_state = hard_state
        self._prev_soft_state = SoftState(NONE, Role.FOLLOWER)
        self.become_follower(self.term, NONE)

    # --- role transitions (Raft Figure 2, "Rules for Servers") ---------------

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = NONE
        if self.role is Role.LEADER:
            self._drop_reads("leadership lost")
        self.leader = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_ticks = self.config.election_ticks + self._rng.randrange(
            self.config.election_ticks
        )
        self.votes = {}
        self.progress = {}
        self.lead_transferee = NONE
        self._lease_start = None
        self._lease_disabled = False
        self._append_needed = False
        self._read_round_needed = False
        self._round_outstanding = 0

    def become_follower(self, term: int, leader: int) -> None:
        incoming = self._incoming_snapshot
        if incoming is not None and (term, leader) != (incoming.key[1], incoming.key[0]):
            self._incoming_snapshot = None  # its sender no longer leads here: it will not finish
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader

    def become_pre_candidate(self) -> None:
        assert self.role is not Role.LEADER, "a leader cannot become a pre-candidate"
        # Term and vote stay: a pre-election changes nobody's term (thesis §9.6).
        self.votes = {}
        self.leader = NONE
        self.role = Role.PRE_CANDIDATE

    def become_candidate(self) -> None:
        assert self.role is not Role.LEADER, "a leader cannot become a candidate"
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def become_leader(self) -> None:
        assert self.role is Role.CANDIDATE, f"only a candidate becomes leader, not a {self.role.value}"
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.id
        next_index = self.log.last_index() + 1
        self.progress = {v: Progress(next_index) for v in self.config.voters}
        me = self.progress[self.id]
        me.match = self.log.stable  # a leader counts only what is on its own disk
        me.become_replicate()
        me.recent_active = True
        # A no-op in the new term lets the leader commit, and learn the commit
        # point of, everything before it (Raft §8).
        self._append_local([Entry(next_index, self.term, b"", EntryKind.NOOP)])

    # --- inputs ----------------------------------------------------------------

    def tick(self) -> None:
        self.ticks += 1
        if self._vote_guard_ticks:
            self._vote_guard_ticks -= 1
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.election_elapsed >= self.randomized_election_ticks:
            self.election_elapsed = 0
            self.campaign()

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_ticks:
            self.election_elapsed = 0
            if self.config.check_quorum:
                active = sum(1 for pr in self.progress.values() if pr.recent_active)
                if active < self.config.quorum:
                    # CheckQuorum (thesis §6.2): no majority heard us for an election
                    # timeout; stop serving rather than act as a leader in a minority.
                    self.become_follower(self.term, NONE)
                    return
                for voter, pr in self.progress.items():
                    pr.recent_active = voter == self.id
        if self.lead_transferee != NONE:
            self._transfer_ticks += 1
            if self._transfer_ticks >= self.config.election_ticks:
                self.lead_transferee = NONE  # the transfer took too long: abort it
        for pr in self.progress.values():
            if pr.state is ProgressState.SNAPSHOT:
                pr.snapshot_ticks += 1
                if pr.snapshot_ticks >= self.config.election_ticks:
                    pr.become_probe()  # the snapshot was lost: try again
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def campaign(self, *, transfer: bool = False) -> None:
        """Start an election now (a pre-election first, when PreVote is on)."""
        if self.role is Role.LEADER:
            return
        self._campaign(pre=self.config.pre_vote and not transfer, transfer=transfer)

    def _campaign(self, *, pre: bool, transfer: bool) -> None:
        if pre:
            self.become_pre_candidate()
            vote_term = self.term + 1
        else:
            self.become_candidate()
            vote_term = self.term
        if self._poll(self.id, True) is True:  # a cluster of one
            if pre:
                self._campaign(pre=False, transfer=transfer)
            else:
                self.become_leader()
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for peer in self.peers:
            self._messages.append(
                RequestVote(self.id, peer, vote_term, last_index, last_term, pre, transfer)
            )

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append one command; returns its (index, term). It is committed once an
        entry with that index *and term* is applied; if another term's entry shows
        up at that index, the proposal was lost (never applied)."""
        return self.propose_batch([data])

    def propose_batch(self, payloads: list[bytes]) -> tuple[int, int]:
        """Append several commands at once; returns the (index, term) of the first."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.id, self.leader)
        if self.lead_transferee != NONE:
            raise ProposalDropped(f"leadership transfer to node {self.lead_transferee} in progress")
        uncommitted = self.log.last_index() - self.log.commit
        if uncommitted + len(payloads) > self.config.max_uncommitted_entries:
            raise ProposalDropped(
                f"{uncommitted} entries await commit; max_uncommitted_entries="
                f"{self.config.max_uncommitted_entries}"
            )
        first = self.log.last_index() + 1
        term = self.term
        self._append_local([Entry(first + n, term, data) for n, data in enumerate(payloads)])
        return first, term

    def _append_local(self, entries: list[Entry]) -> None:
        self.log.append(entries)
        if "ack-before-persist" in self.config.mutations:
            self.progress[self.id].match = self.log.last_index()
            self._maybe_commit()
        self._append_needed = True  # sent at the next ready(): proposals batch up

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read (thesis §6.4). A `ReadState(ctx, index)` in a
        later Ready says: serve it once the state machine applied `index`; a
        `ReadDropped(ctx, ...)` says it will never be answered here.

        Reads batch: the round confirming this one is the next heartbeat round sent,
        which leaves once the round in flight (if any) is acknowledged by a quorum,
        or at the next heartbeat tick if that one was lost."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.id, self.leader)
        pending = len(self._reads) + len(self._reads_before_commit)
        if pending >= self.config.max_pending_reads:
            raise RaftError(f"{pending} reads pending; max_pending_reads={self.config.max_pending_reads}")
        if not self._committed_in_term():
            self._reads_before_commit.append(ctx)  # the commit point is not known yet
            return
        self._reads.append((self._heartbeat_seq + 1, self.log.commit, ctx))
        self._read_round_needed = True

    def read_lease(self) -> int:
        """A read index the leader vouches for without a round trip, while its lease
        holds (thesis §6.4.1). Safe only if clocks drift less than the gap between
        lease_ticks and election_ticks."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.id, self.leader)
        if not self.config.check_quorum:
            raise LeaseExpired("lease reads need check_quorum=True (a leader must step down when cut off)")
        if not self.lease_valid():
            raise LeaseExpired(f"node {self.id} holds no valid lease in term {self.term}")
        return self.log.commit

    def expire_lease(self) -> None:
        """End the lease now (the driver saw ticks missed: real time ran ahead of
        them). The next heartbeat round sent from now on and acknowledged by a
        quorum starts a new one; a round sent before cannot."""
        self._lease_start = None
        self._lease_floor = self.ticks + 1  # rounds of this tick may predate the stall

    def lease_valid(self) -> bool:
        return (
            self.role is Role.LEADER
            and self.config.check_quorum
            and not self._lease_disabled
            and self._lease_start is not None
            and self.ticks < self._lease_start + self.config.effective_lease_ticks
            and self._committed_in_term()
        )

    def transfer_leadership(self, target: int) -> None:
        """Hand leadership to `target`: catch it up, then send TimeoutNow (thesis
        §3.10). Proposals are refused meanwhile; aborted after an election timeout."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.id, self.leader)
        if target == self.id:
            return
        if target not in self.progress:
            raise RaftError(f"node {target} is not a voter; voters are {self.config.voters}")
        if self.lead_transferee == target:
            return
        self.lead_transferee = target
        self._transfer_ticks = 0  # the transfer gets one election timeout
        self._lease_disabled = True  # the target may win before our lease would end
        if self.progress[target].match == self.log.last_index():
            self._early_messages.append(TimeoutNow(self.id, target, self.term))
        else:
            self._send_appends(target, send_if_empty=False)

    def compact(self, index: int, data: bytes) -> None:
        """The driver saved a snapshot of the state machine as of applied `index`;
        entries up to it are dropped and the snapshot is sent to followers that
        need them."""
        term = self.log.compact(index)
        self.snapshot = Snapshot(index, term, data)

    # --- messages ----------------------------------------------------------------

    def step(self, m: Message) -> None:
        """Take one message in. MessageRefused (changing nothing) for one no correct
        member could send (raft/refusals.py)."""
        check_message(self, m)
        if m.term > self.term:
            if isinstance(m, RequestVote):
                in_lease = self.config.check_quorum and (
                    self._vote_guard_ticks > 0
                    or (self.leader != NONE and self.election_elapsed < self.config.election_ticks)
                )
                if in_lease and not m.transfer:
                    return  # we heard from a live leader: don't let it be deposed
                if m.pre_vote:
                    self._handle_vote_request(m)  # a pre-vote changes no term
                    return
                self.become_follower(m.term, NONE)
            elif isinstance(m, VoteResponse) and m.pre_vote and m.granted:
                pass  # granted for our pre-election term; we are not there yet
            else:
                self.become_follower(m.term, m.src if isinstance(m, _FROM_LEADER) else NONE)
        elif m.term < self.term:
            if isinstance(m, (AppendEntries, Heartbeat)) and (
                self.config.check_quorum or self.config.pre_vote
            ):
                # A stale leader (cut off while we moved on) learns our term and
                # steps down; without this, PreVote could leave it stranded.
                self._messages.append(AppendResponse(self.id, m.src, self.term, False, 0))
            elif isinstance(m, RequestVote) and m.pre_vote:
                self._messages.append(VoteResponse(self.id, m.src, self.term, False, True))
            return

        if isinstance(m, RequestVote):
            self._handle_vote_request(m)
        elif self.role is Role.LEADER:
            self._step_leader(m)
        elif self.role is Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _handle_vote_request(self, m: RequestVote) -> None:
        can_vote = (
            self.vote == m.src
            or (self.vote == NONE and self.leader == NONE)
            or (m.pre_vote and m.term > self.term)
        )
        up_to_date = "skip-up-to-date-check" in self.config.mutations or self.log.is_up_to_date(
            m.last_log_index, m.last_log_term
        )
        if can_vote and up_to_date:
            self._messages.append(VoteResponse(self.id, m.src, m.term, True, m.pre_vote))
            if not m.pre_vote:
                self.election_elapsed = 0
                self.vote = m.src
        else:
            self._messages.append(VoteResponse(self.id, m.src, self.term, False, m.pre_vote))

    def _poll(self, voter: int, granted: bool) -> bool | None:
        """Record a vote; True once won, False once lost, None while undecided."""
        self.votes.setdefault(voter, granted)
        yes = sum(1 for g in self.votes.values() if g)
        if yes >= self.config.quorum:
            return True
        if len(self.votes) - yes >= self.config.quorum:
            return False
        return None

    def _step_candidate(self, m: Message) -> None:
        if isinstance(m, _FROM_LEADER):
            self.become_follower(self.term, m.src)  # a leader exists in our term
            self._step_follower(m)
        elif isinstance(m, VoteResponse):
            pre = self.role is Role.PRE_CANDIDATE
            election_term = self.term + 1 if pre else self.term
            if m.pre_vote != pre or (m.granted and m.term != election_term):
                return  # an answer to an earlier (pre-)election
            result = self._poll(m.src, m.granted)
            if result is True:
                if pre:
                    self._campaign(pre=False, transfer=False)
                else:
                    self.become_leader()
            elif result is False:
                self.become_follower(self.term, NONE)

    def _step_follower(self, m: Message) -> None:
        if isinstance(m, _FROM_LEADER):
            self.election_elapsed = 0
            self.leader = m.src
            if isinstance(m, AppendEntries):
                self._handle_append(m)
            elif isinstance(m, Heartbeat):
                self.log.commit_to(m.commit)
                # It promises nothing about this disk: sent at once, so a slow fsync
                # here never makes the leader think it lost its quorum (CheckQuorum).
                self._early_messages.append(HeartbeatResponse(self.id, m.src, self.term, m.seq))
            else:
                self._handle_snapshot(m)
        elif isinstance(m, TimeoutNow):
            self.campaign(transfer=True)

    def _handle_append(self, m: AppendEntries) -> None:
        log = self.log
        if m.prev_index < log.commit:
            # Duplicated or reordered: everything up to our commit matches anyway.
            self._messages.append(AppendResponse(self.id, m.src, self.term, True, log.commit))
            return
        last_new = log.maybe_append(m.prev_index, m.prev_term, m.entries)
        if last_new is not None:
            log.commit_to(min(m.commit, last_new))
            self._messages.append(AppendResponse(self.id, m.src, self.term, True, last_new))
            return
        hint_index, hint_term = log.find_conflict_by_term(
            min(m.prev_index, log.last_index()), m.prev_term
        )
        self._messages.append(
            AppendResponse(self.id, m.src, self.term, False, m.prev_index, hint_index, hint_term)
        )

    def _handle_snapshot(self, m: InstallSnapshot) -> None:
        snap, log = m.snapshot, self.log
        if snap.index <= log.commit:
            pass  # old news: we are past it
        elif log.matches(snap.index, snap.term):
            log.commit_to(snap.index)  # we have that entry: just learn it is committed
        else:
            whole = self._assemble_snapshot(m)
            if whole is None:
                return  # more chunks to come; answer once the last is in
            if self._snapshot_check is not None:
                try:
                    self._snapshot_check(whole.data)
                except ValueError as exc:
                    raise MessageRefused(
                        "snapshot-parse", f"snapshot {whole.index} from node {m.src} does not restore: {exc}"
                    ) from None
            log.restore(whole)
            log.applying = whole.index
        incoming = self._incoming_snapshot
        if incoming is not None and incoming.key[2] <= log.commit:
            self._incoming_snapshot = None  # a partial snapshot we no longer need
        self._messages.append(AppendResponse(self.id, m.src, self.term, True, log.commit))

    def _assemble_snapshot(self, m: InstallSnapshot) -> Snapshot | None:
        """Collect chunks (in any order, duplicates harmless); the whole snapshot
        once every byte up to the last chunk's end is here."""
        key = (m.src, m.term, m.snapshot.index, m.snapshot.term)
        incoming = self._incoming_snapshot
        if incoming is None or incoming.key != key:
            if incoming is not None and (m.term, m.snapshot.index) < (incoming.key[1], incoming.key[2]):
                return None  # a chunk of an older snapshot than the one being received
            incoming = self._incoming_snapshot = _IncomingSnapshot(key)
        limit = self.config.max_snapshot_bytes
        if m.offset + len(m.snapshot.data) > limit or incoming.size + len(m.snapshot.data) > limit:
            self._incoming_snapshot = None  # what was gathered of it goes too
            raise MessageRefused(
                "snapshot-size", f"snapshot {m.snapshot.index} from node {m.src} reaches past "
                f"max_snapshot_bytes={limit} (chunk at {m.offset}, {len(m.snapshot.data)} bytes)",
            )
        previous = incoming.chunks.get(m.offset)
        incoming.size += len(m.snapshot.data) - (0 if previous is None else len(previous))
        incoming.chunks[m.offset] = m.snapshot.data
        if m.done:
            incoming.total = m.offset + len(m.snapshot.data)
        if incoming.total is None:
            return None
        whole = incoming.chunks.get(0)
        if whole is not None and len(whole) == incoming.total:  # one chunk (a spooled transfer): no copy
            self._incoming_snapshot = None
            return Snapshot(m.snapshot.index, m.snapshot.term, whole)
        data = bytearray()
        for offset in sorted(incoming.chunks):
            if offset != len(data):
                return None
            data += incoming.chunks[offset]
        if len(data) != incoming.total:
            return None
        self._incoming_snapshot = None
        return Snapshot(m.snapshot.index, m.snapshot.term, bytes(data))

    def _step_leader(self, m: Message) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        if isinstance(m, AppendResponse):
            pr.recent_active = True
            if m.success:
                self._handle_append_success(m.src, pr, m.index)
            else:
                self._handle_append_reject(m.src, pr, m)
        elif isinstance(m, HeartbeatResponse):
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state is not ProgressState.SNAPSHOT and pr.match < self.log.last_index():
                if pr.state is ProgressState.REPLICATE and len(pr.inflight) >= self.config.max_inflight_msgs:
                    pr.inflight.popleft()  # an answer may have been lost: make room
                self._send_appends(m.src, send_if_empty=True)
            if m.seq > pr.ack_seq:
                pr.ack_seq = m.seq
                self._advance_reads()

    def _handle_append_success(self, follower: int, pr: Progress, index: int) -> None:
        if pr.maybe_update(index):
            if pr.state is ProgressState.PROBE:
                pr.become_replicate()
            elif pr.state is ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
                pr.become_replicate()
            if pr.match > self.log.commit and self._maybe_commit():
                self._append_needed = True  # tell everyone the new commit index
            if follower == self.lead_transferee and pr.match == self.log.last_index():
                self._early_messages.append(TimeoutNow(self.id, follower, self.term))
        self._send_appends(follower, send_if_empty=False)

    def _handle_append_reject(self, follower: int, pr: Progress, m: AppendResponse) -> None:
        if m.hint_term:
            probe_index, _ = self.log.find_conflict_by_term(m.hint_index, m.hint_term)
        else:
            probe_index = m.hint_index
        if pr.maybe_decrease_to(m.index, probe_index):
            if pr.state is ProgressState.REPLICATE:
                pr.become_probe()
            self._send_appends(follower, send_if_empty=True)

    def _maybe_commit(self) -> bool:
        """Commit the highest index a quorum holds, but only by counting replicas of
        an entry from the current term (Raft §5.4.2, Figure 8)."""
        matches = sorted([pr.match for pr in self.progress.values()], reverse=True)
        index = matches[self._quorum - 1]
        if index <= self.log.commit:
            return False
        if self.log.term(index) != self.term and "commit-old-term" not in self.config.mutations:
            return False
        first_in_term = not self._committed_in_term()
        self.log.commit_to(index)
        if first_in_term and self._reads_before_commit:
            for ctx in self._reads_before_commit:
                self._reads.append((self._heartbeat_seq + 1, self.log.commit, ctx))
            self._reads_before_commit = []
            self._read_round_needed = True
        return True

    def _committed_in_term(self) -> bool:
        return self.log.term(self.log.commit) == self.term

    # --- sending (leader) ---------------------------------------------------------

    def _send_appends(self, to: int, *, send_if_empty: bool) -> None:
        """Send what `to` lacks: one message when probing, a pipeline when replicating."""
        pr = self.progress[to]
        if not self._send_append(to, pr, send_if_empty):
            return
        last = self.log.last_index()
        while pr.state is ProgressState.REPLICATE and pr.next <= last:
            if not self._send_append(to, pr, False):
                return

    def _send_append(self, to: int, pr: Progress, send_if_empty: bool) -> bool:
        if pr.is_paused(self.config.max_inflight_msgs):
            return False
        log = self.log
        prev = pr.next - 1
        prev_term = log.term(prev)
        if prev_term is None:  # the follower needs entries we compacted
            assert self.snapshot is not None and prev < log.snapshot_index, (prev, log.snapshot_index)
            self._send_snapshot(to)
            pr.become_snapshot(self.snapshot.index)
            return True
        last = log.last_index()
        if pr.next <= last:
            entries = log.slice(pr.next, last + 1, self.config.max_msg_entries, self.config.max_msg_bytes)
        elif send_if_empty:
            entries = []
        else:
            return False
        self._early_messages.append(
            AppendEntries(self.id, to, self.term, prev, prev_term, entries, log.commit)
        )
        pr.sent_commit = log.commit
        if entries or pr.state is ProgressState.PROBE:
            pr.sent_entries(prev + len(entries))
        return True

    def _send_snapshot(self, to: int) -> None:
        snap = self.snapshot
        assert snap is not None
        data, chunk = snap.data, self.config.max_snapshot_chunk_bytes
        offsets = range(0, len(data), chunk) if data else range(1)
        for offset in offsets:
            part = Snapshot(snap.index, snap.term, data[offset : offset + chunk])
            done = offset + chunk >= len(data)
            self._early_messages.append(InstallSnapshot(self.id, to, self.term, part, offset, done))

    def _broadcast_heartbeat(self) -> None:
        """Send round `seq`: it confirms every read registered so far (each waits for
        a round numbered above those sent before it), whoever asked for it."""
        self._heartbeat_seq += 1
        seq = self._heartbeat_seq
        self._read_round_needed = False
        self._round_outstanding = seq
        self._seq_ticks.append((seq, self.ticks))
        self.progress[self.id].ack_seq = seq
        commit = self.log.commit
        for peer in self.peers:
            pr = self.progress[peer]
            self._early_messages.append(Heartbeat(self.id, peer, self.term, min(pr.match, commit), seq))
        if not self.peers:
            self._advance_reads()

    def _advance_reads(self) -> None:
        """A quorum acknowledged heartbeat round `acked`: reads registered before it
        was sent may be served, and the lease runs from when it was sent."""
        acked = sorted((pr.ack_seq for pr in self.progress.values()), reverse=True)[
            self.config.quorum - 1
        ]
        seq_ticks = self._seq_ticks
        while seq_ticks and seq_ticks[0][0] < acked:
            seq_ticks.popleft()
        if seq_ticks and seq_ticks[0][0] == acked and seq_ticks[0][1] >= self._lease_floor:
            self._lease_start = seq_ticks[0][1]
        if acked >= self._round_outstanding:
            self._round_outstanding = 0  # the next read round may leave
        reads = self._reads
        while reads and reads[0][0] <= acked:
            _, index, ctx = reads.popleft()
            self._read_states.append(ReadState(ctx, index))

    def _drop_reads(self, reason: str) -> None:
        for _, _, ctx in self._reads:
            self._reads_dropped.append(ReadDropped(ctx, reason))
        for ctx in self._reads_before_commit:
            self._reads_dropped.append(ReadDropped(ctx, reason))
        self._reads.clear()
        self._reads_before_commit = []

    # --- the Ready handshake ------------------------------------------------------

    def _flush(self) -> None:
        if self.role is not Role.LEADER:
            return
        if self._append_needed:
            self._append_needed = False
            commit = self.log.commit
            for peer in self.peers:
                pr = self.progress[peer]
                # an empty AppendEntries only when it tells the follower something
                self._send_appends(
                    peer,
                    send_if_empty=pr.state is not ProgressState.REPLICATE
                    or (self.config.eager_commit and pr.can_bump_commit(commit)),
                )
        if self._read_round_due():
            self._broadcast_heartbeat()

    def _read_round_due(self) -> bool:
        """A read waits for a round, and none is in flight: at most one read round
        is outstanding; a lost one is superseded by the next heartbeat tick."""
        return self._read_round_needed and not self._round_outstanding

    def has_ready(self) -> bool:
        log = self.log
        return bool(
            self._messages
            or self._early_messages
            or self._append_needed
            or self._read_round_due()
            or self._read_states
            or self._reads_dropped
            or log.unstable_from <= log.last_index()
            or log.commit > log.applying
            or log.pending_snapshot is not None
            or self._soft_state_changed()
            or self._hard_state_changed()
        )

    def _soft_state_changed(self) -> bool:
        prev = self._prev_soft_state
        return prev.leader != self.leader or prev.role is not self.role

    def _hard_state_changed(self) -> bool:
        prev = self._prev_hard_state
        return prev.commit != self.log.commit or prev.term != self.term or prev.vote != self.vote

    def ready(self) -> Ready:
        """Collect every pending effect. Call `advance()` with it before the next
        `ready()`; `step`/`tick`/`propose` may be called in between."""
        self._flush()
        log = self.log
        rd = Ready()
        if self._soft_state_changed():  # build SoftState/HardState only on change
            rd.soft_state = self._prev_soft_state = SoftState(self.leader, self.role)
        if self._hard_state_changed():
            rd.hard_state = self._prev_hard_state = HardState(self.term, self.vote, log.commit)
        if log.pending_snapshot is not None:
            rd.snapshot, log.pending_snapshot = log.pending_snapshot, None
        if log.unstable_from <= log.last_index():
            rd.entries = log.unstable_entries()
            log.unstable_from = log.last_index() + 1
        if log.commit > log.applying:
            rd.committed = log.committed_to_apply()
            log.applying = log.commit
        if self._messages:
            rd.messages, self._messages = self._messages, []
        if self._early_messages:
            rd.early_messages, self._early_messages = self._early_messages, []
        if self._read_states:
            rd.read_states, self._read_states = self._read_states, []
        if self._reads_dropped:
            rd.reads_dropped, self._reads_dropped = self._reads_dropped, []
        return rd

    def take_early_messages(self) -> list[Message]:
        """The messages due now, without a Ready: what `ready()` would put in
        `early_messages`. They promise nothing about this node's disk, so a
        driver may send them while it is still persisting an earlier Ready, which
        keeps heartbeats, their responses and replication flowing through a slow
        fsync."""
        self._flush()
        messages, self._early_messages = self._early_messages, []
        return messages

    def advance(self, rd: Ready) -> None:
        """The driver did everything `rd` asked (persisted, sent, applied)."""
        log = self.log
        if rd.snapshot is not None:
            log.applied = max(log.applied, rd.snapshot.index)
            self.snapshot = rd.snapshot
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
        if rd.committed:
            applied = rd.committed[-1].index
            assert applied > log.applied, (applied, log.applied)
            log.applied = applied
        if log.reader is not None:
            evictable = min(log.applied, log.stable, log.last_index() - self.config.max_cached_entries)
            if evictable >= log.cached_from:
                log.evict(evictable)
        if self.role is Role.LEADER:
            me = self.progress[self.id]
            if log.stable > me.match:
                me.match = log.stable
                if me.match > log.commit and self._maybe_commit():
                    self._append_needed = True

    # --- introspection ----------------------------------------------------------

    def status(self) -> Status:
        return Status(
            id=self.id,
            role=self.role,
            term=self.term,
            vote=self.vote,
            leader=self.leader,
            commit=self.log.commit,
            applied=self.log.applied,
            last_index=self.log.last_index(),
            snapshot_index=self.log.snapshot_index,
            lead_transferee=self.lead_transferee,
            progress={v: repr(pr) for v, pr in self.progress.items()} if self.role is Role.LEADER else {},
        )
