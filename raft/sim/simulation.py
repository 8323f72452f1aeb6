"""A deterministic simulation of a Raft cluster: N pure cores, a faulty network,
slow disks, crashes and restarts, and clients whose history is checked.

Everything random comes from one seed, so a run is a function of its options: the
same options give the same trace hash, and a failing run prints the command that
replays it. Time is measured in units; a tick is `TICK` units.

Each node handles its Ready the way a real driver does: leader messages go out at
once, the durable part reaches the (simulated) disk after a random delay, and only
then do acknowledgements go out and committed entries get applied. A crash loses
whatever was not yet on that disk.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass, field

import msgpack

from raftflow.raft.config import Config
from raftflow.raft.node import Node
from raftflow.raft.sim.checker import LivenessViolation, SafetyChecker, SafetyViolation, chain_hash
from raftflow.raft.codec import DecodeError, decode_message
from raftflow.raft.refusals import MessageRefused
from raftflow.raft.sim.hostile import HostilePeer
from raftflow.raft.sim.network import Network
from raftflow.raft.sim.schedule import FAULT_KINDS, Action, Fault, random_schedule
from raftflow.raft.disk import DiskStorage
from raftflow.raft.fs import SimFS
from raftflow.raft.storage import LogStore, MemoryStorage
from raftflow.raft.types import (
    NONE,
    EntryKind,
    LeaseExpired,
    Message,
    NotLeader,
    RaftError,
    Ready,
    Role,
)

TICK = 10  # time units per tick
_DEFAULT_COMPACT_EVERY = 150


@dataclass(frozen=True, slots=True)
class SimOptions:
    nodes: int = 5
    seed: int = 0
    steps: int = 1000  # ticks with faults; liveness is checked after them
    faults: frozenset[str] = frozenset(FAULT_KINDS)
    mutations: frozenset[str] = frozenset()
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    clients: int = 3
    read_percent: int = 25  # of client operations; half ReadIndex, half lease
    compact_every: int = _DEFAULT_COMPACT_EVERY  # applied entries between snapshots (0: never compact)
    disk_delay_max: int = 15  # time units a persist may take
    liveness_ticks: int = 300  # after faults end, a leader and a commit within this
    schedule: tuple[Fault, ...] | None = None  # explicit faults (otherwise from the seed)
    hostile: bool = False  # a hostile peer forges impossible messages during the faults (hostile.py)
    # "disk": the real write-ahead log (raft.disk) over a simulated file system that
    # loses what was not fsynced; "memory": raft.storage.MemoryStorage.
    storage: str = "disk"

    def __post_init__(self) -> None:
        if self.nodes not in (1, 3, 5, 7):
            raise ValueError(f"nodes={self.nodes}: the simulator runs 1, 3, 5 or 7 nodes")
        if self.steps < 0:
            raise ValueError(f"steps={self.steps} must not be negative")
        if self.storage not in ("disk", "memory"):
            raise ValueError(f"storage={self.storage!r}: choose disk or memory")
        unknown = self.faults - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kind(s) {sorted(unknown)}; choose from {', '.join(FAULT_KINDS)}")

    def replay_command(self) -> str:
        parts = [f"raftflow sim --nodes {self.nodes} --seed {self.seed} --steps {self.steps}"]
        parts.append(f"--faults {','.join(sorted(self.faults)) or 'none'}")
        if self.mutations:
            parts.append(f"--mutate {','.join(sorted(self.mutations))}")
        if self.compact_every != _DEFAULT_COMPACT_EVERY:
            parts.append(f"--compact-every {self.compact_every}")
        if self.storage != "disk":
            parts.append(f"--storage {self.storage}")
        if self.hostile:
            parts.append("--hostile")
        return " ".join(parts) + " --trace"


@dataclass(slots=True)
class Operation:
    """One client operation and what became of it."""

    client: int
    kind: str  # "write", "read-index", "read-lease"
    value: bytes  # the written value, or the read's context
    node: int
    invoked: int  # time units
    completed: int = -1
    outcome: str = "pending"  # ok | failed | unknown
    index: int = 0  # writes: where it was appended; reads: the applied index it saw
    term: int = 0  # writes: the term it was appended in
    must_see: int = 0  # reads: the least index linearizability lets it see
    detail: str = ""

    def to_json(self) -> dict:
        return {
            "client": self.client,
            "kind": self.kind,
            "value": self.value.decode(),
            "node": self.node,
            "invoked": self.invoked,
            "completed": self.completed,
            "outcome": self.outcome,
            "index": self.index,
            "term": self.term,
            "must_see": self.must_see,
            "detail": self.detail,
        }


@dataclass(slots=True)
class SimResult:
    options: SimOptions
    ok: bool
    violation: str | None
    trace_hash: str
    ticks: int
    timeline: list[str]
    history: list[Operation]
    stats: dict[str, int] = field(default_factory=dict)

    def verdict(self) -> str:
        if self.ok:
            s = self.stats
            return (
                f"OK seed={self.options.seed}: {s['leaders']} leaders over {s['max_term']} terms, "
                f"{s['committed']} entries committed, {s['writes_ok']} writes acknowledged "
                f"({s['writes_failed']} failed, {s['writes_unknown']} unknown), {s['reads_ok']} reads "
                f"checked, {s['snapshots_installed']} snapshots installed; all safety properties held"
            )
        return f"VIOLATION seed={self.options.seed}: {self.violation}\nreplay: {self.options.replay_command()}"


class SimMachine:
    """The replicated state machine of a simulation: a hash chain over every applied
    entry, so equal hashes mean equal histories."""

    __slots__ = ("index", "chain", "writes")

    def __init__(self) -> None:
        self.index = 0
        self.chain = b""
        self.writes = 0

    def apply(self, entry) -> None:
        assert entry.index == self.index + 1, f"applied {entry.index} after {self.index}"
        self.index = entry.index
        self.chain = chain_hash(self.chain, entry)
        if entry.kind is EntryKind.NORMAL:
            self.writes += 1

    def snapshot(self) -> bytes:
        return msgpack.packb([self.index, self.chain, self.writes])

    def restore(self, data: bytes) -> None:
        self.index, self.chain, self.writes = SimMachine.check(data)

    @staticmethod
    def check(data: bytes) -> tuple[int, bytes, int]:
        """The snapshot's fields, or ValueError (the node's snapshot_check)."""
        try:
            index, chain, writes = msgpack.unpackb(data)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise ValueError(f"not a simulation snapshot: {exc}") from None
        if type(index) is not int or type(chain) is not bytes or type(writes) is not int:
            raise ValueError("not a simulation snapshot: fields of the wrong types")
        return index, chain, writes


class _Host:
    """One simulated server: the durable storage outlives the node and machine."""

    def __init__(self, node_id: int, storage: str, rng: random.Random) -> None:
        self.id = node_id
        self.fs = SimFS(rng) if storage == "disk" else None
        self.storage: LogStore = self._open_storage(create=True)
        self.node: Node | None = None
        self.machine = SimMachine()
        self.incarnation = 0
        self.persisting = False
        self.pending_writes: dict[int, Operation] = {}  # index -> op proposed here
        self.pending_reads: dict[bytes, Operation] = {}  # ctx -> op waiting for ReadState
        self.reads_waiting_apply: list[tuple[int, Operation]] = []  # (index, op)

    def _open_storage(self, *, create: bool) -> LogStore:
        if self.fs is None:
            return self.storage if not create else MemoryStorage()
        return DiskStorage(
            f"/node{self.id}", cluster_id="sim", node_id=self.id, create=create, fs=self.fs,
            segment_bytes_max=16 << 10,
        )

    def crash(self) -> None:
        """Power cut: the disk keeps only what was fsynced."""
        self.node = None
        if self.fs is not None:
            self.storage.close()
            self.fs.crash()

    def reopen(self) -> None:
        if self.fs is not None:
            self.storage = self._open_storage(create=False)


class Simulation:
    def __init__(self, options: SimOptions) -> None:
        self.options = o = options
        master = random.Random(o.seed)
        self._node_rng = random.Random(master.getrandbits(64))
        self._disk_rng = random.Random(master.getrandbits(64))
        self._client_rng = random.Random(master.getrandbits(64))
        schedule_rng = random.Random(master.getrandbits(64))
        self.ids = tuple(range(1, o.nodes + 1))
        self.net = Network(self.ids, random.Random(master.getrandbits(64)))
        self.schedule = (
            o.schedule if o.schedule is not None else random_schedule(schedule_rng, self.ids, o.faults, o.steps)
        )
        self.checker = SafetyChecker()
        disk_rng = random.Random(master.getrandbits(64))
        self.hosts = {i: _Host(i, o.storage, random.Random(disk_rng.getrandbits(64))) for i in self.ids}
        self.now = 0
        self._events: list[tuple] = []
        self._seq = 0
        self._trace = hashlib.blake2b(digest_size=16)
        self.timeline: list[str] = []
        self.history: list[Operation] = []
        self.trace_lines: list[str] | None = None
        self._client_busy = [False] * o.clients
        self._client_guess = [NONE] * o.clients
        self._op_seq = 0
        self._acked = 0
        self.stats = {
            "leaders": 0,
            "max_term": 0,
            "crashes": 0,
            "snapshots_installed": 0,
            "messages": 0,
            "hostile_refused": 0,
            "hostile_ignored": 0,
        }
        # Its own stream, so a run with the hostile peer differs from one without only
        # by what it forges.
        self._hostile = HostilePeer(random.Random(f"{o.seed}/hostile"), self.ids) if o.hostile else None
        self._max_acked_index = 0  # over acknowledged writes
        self._max_read_index = 0  # over completed reads
        self._roles: dict[int, tuple[Role, int]] = {}
        for i in self.ids:
            self._start(i)

    # --- event queue -----------------------------------------------------------

    def _at(self, time: int, kind: str, *payload) -> None:
        self._seq += 1
        heapq.heappush(self._events, (time, self._seq, kind, payload))

    def _note(self, text: str) -> None:
        self.timeline.append(f"t={self.now / TICK:8.1f}  {text}")

    def _log_trace(self, text: str) -> None:
        self._trace.update(text.encode())
        if self.trace_lines is not None:
            self.trace_lines.append(f"{self.now:>8} {text}")

    # --- hosts -----------------------------------------------------------------

    def _config(self, node_id: int) -> Config:
        o = self.options
        return Config(
            node_id,
            self.ids,
            election_ticks=o.election_ticks,
            heartbeat_ticks=o.heartbeat_ticks,
            max_msg_entries=64,
            max_inflight_msgs=8,
            max_snapshot_chunk_bytes=8,  # many chunks, to exercise their reassembly
            max_cached_entries=16,  # lagging followers are served from storage
            eager_commit=o.seed % 2 == 0,  # both ways of telling followers the commit index
            mutations=o.mutations,
        )

    def _start(self, node_id: int) -> None:
        host = self.hosts[node_id]
        if host.incarnation:
            host.reopen()
        durable = host.storage.load()
        host.machine = SimMachine()
        if durable.snapshot is not None:
            host.machine.restore(durable.snapshot.data)
        host.node = Node(
            self._config(node_id),
            random.Random(self._node_rng.getrandbits(64)),
            durable.hard_state,
            durable.snapshot,
            durable.entries,
            reader=host.storage.entries,
            snapshot_check=SimMachine.check,
        )
        host.incarnation += 1
        host.persisting = False

    def _crash(self, node_id: int) -> None:
        host = self.hosts[node_id]
        if host.node is None:
            return
        host.crash()
        self.stats["crashes"] += 1
        for op in list(host.pending_writes.values()) + list(host.pending_reads.values()):
            self._finish(op, "unknown", "the node crashed")
        for _, op in host.reads_waiting_apply:
            self._finish(op, "unknown", "the node crashed")
        host.pending_writes.clear()
        host.pending_reads.clear()
        host.reads_waiting_apply.clear()

    # --- the driver: Ready handling as a real node does it ---------------------

    def _drive(self, host: _Host) -> None:
        node = host.node
        if node is None or host.persisting:
            return
        self._observe(host)
        if not node.has_ready():
            return
        rd = node.ready()
        self.checker.on_entries(node, rd.entries)
        for m in rd.early_messages:
            self._send(m)
        host.persisting = True
        delay = self._disk_rng.randint(0, self.options.disk_delay_max) if rd.must_persist() else 0
        if delay == 0:
            self._persisted(host, rd)
        else:
            self._at(self.now + delay, "persisted", host.id, host.incarnation, rd)

    def _persisted(self, host: _Host, rd: Ready) -> None:
        node = host.node
        assert node is not None
        host.storage.persist(rd.snapshot, rd.entries, rd.hard_state)
        for m in rd.messages:
            self._send(m)
        if rd.snapshot is not None:
            host.machine.restore(rd.snapshot.data)
            self.checker.on_restore(host.id, rd.snapshot, host.machine.chain)
            self.stats["snapshots_installed"] += 1
            self._note(f"node {host.id} installed a snapshot at index {rd.snapshot.index}")
        for entry in rd.committed:
            host.machine.apply(entry)
            self.checker.on_apply(host.id, entry, host.machine.chain)
            op = host.pending_writes.pop(entry.index, None)
            if op is not None:
                if entry.term == op.term and entry.data == op.value:
                    self._finish(op, "ok")
                    self._max_acked_index = max(self._max_acked_index, op.index)
                else:
                    self._finish(op, "failed", f"entry {entry.index} was overwritten by term {entry.term}")
        for rs in rd.read_states:
            op = host.pending_reads.pop(rs.ctx, None)
            if op is not None:
                host.reads_waiting_apply.append((rs.index, op))
        for dropped in rd.reads_dropped:
            op = host.pending_reads.pop(dropped.ctx, None)
            if op is not None:
                self._finish(op, "failed", dropped.reason)
        self._serve_reads(host)
        node.advance(rd)
        host.persisting = False
        self._maybe_compact(host)
        self._drive(host)

    def _maybe_compact(self, host: _Host) -> None:
        node = host.node
        every = self.options.compact_every
        if node is None or not every or node.log.applied - node.log.snapshot_index < every:
            return
        assert host.machine.index == node.log.applied, (host.machine.index, node.log.applied)
        node.compact(node.log.applied, host.machine.snapshot())
        assert node.snapshot is not None
        host.storage.compact(node.snapshot)

    def _send(self, m: Message) -> None:
        self.stats["messages"] += 1
        for delay in self.net.route(m):
            self._at(self.now + delay, "deliver", m)

    def _observe(self, host: _Host) -> None:
        """Run the checkers on a node that just changed, and narrate role changes."""
        node = host.node
        assert node is not None
        self.checker.after_event(node)
        state = (node.role, node.term)
        if self._roles.get(host.id) != state:
            self._roles[host.id] = state
            self.stats["max_term"] = max(self.stats["max_term"], node.term)
            if node.role is Role.LEADER:
                self.stats["leaders"] += 1
                self._note(f"node {host.id} became leader of term {node.term} (log ends at {node.log.last_index()})")

    # --- clients -----------------------------------------------------------------

    def _finish(self, op: Operation, outcome: str, detail: str = "") -> None:
        if op.outcome != "pending":
            return
        op.outcome = outcome
        op.detail = detail
        if outcome == "ok" and op.kind == "write":
            self._acked += 1
        op.completed = self.now
        self._client_busy[op.client] = False

    def _client_step(self, client: int) -> None:
        rng = self._client_rng
        live = [i for i in self.ids if self.hosts[i].node is not None]
        if not live:
            return
        guess = self._client_guess[client]
        target = guess if guess in live else rng.choice(live)
        host = self.hosts[target]
        node = host.node
        assert node is not None
        self._op_seq += 1
        roll = rng.randrange(100)
        if roll < self.options.read_percent:
            kind = "read-index" if roll % 2 == 0 else "read-lease"
        else:
            kind = "write"
        op = Operation(client, kind, f"c{client}-{self._op_seq}".encode(), target, self.now)
        op.must_see = max(self._max_acked_index, self._max_read_index)
        self.history.append(op)
        self._client_busy[client] = True
        try:
            if kind == "write":
                op.index, op.term = node.propose(op.value)
                host.pending_writes[op.index] = op
            elif kind == "read-index":
                node.read_index(op.value)
                host.pending_reads[op.value] = op
            else:
                host.reads_waiting_apply.append((node.read_lease(), op))
                self._serve_reads(host)
        except NotLeader as e:
            self._client_guess[client] = e.leader
            self._finish(op, "failed", str(e))
        except (LeaseExpired, RaftError) as e:
            self._finish(op, "failed", str(e))
        self._drive(host)

    def _serve_reads(self, host: _Host) -> None:
        """Reads whose index the machine reached are answered with what it applied;
        linearizability for this machine: a read sees every write acknowledged
        before it began and every read that finished before it began."""
        if not host.reads_waiting_apply:
            return
        applied = host.machine.index
        waiting = []
        for index, op in host.reads_waiting_apply:
            if applied < index:
                waiting.append((index, op))
                continue
            op.index = applied
            self._finish(op, "ok")
            if applied < op.must_see:
                raise SafetyViolation(
                    "Linearizability",
                    f"{op.kind} by client {op.client} on node {host.id} saw index {applied}, but a write "
                    f"or read that finished before it began had seen index {op.must_see}",
                )
            self._max_read_index = max(self._max_read_index, applied)
        host.reads_waiting_apply = waiting

    def _expire_operations(self) -> None:
        """A client gives up on an operation after a while: its outcome is unknown."""
        deadline = self.now - 3 * self.options.election_ticks * TICK
        for host in self.hosts.values():
            for index, op in list(host.pending_writes.items()):
                if op.invoked < deadline:
                    del host.pending_writes[index]
                    self._finish(op, "unknown", "timed out")
            for ctx, op in list(host.pending_reads.items()):
                if op.invoked < deadline:
                    del host.pending_reads[ctx]
                    self._finish(op, "unknown", "timed out")
            keep = []
            for index, op in host.reads_waiting_apply:
                if op.invoked < deadline:
                    self._finish(op, "unknown", "timed out")
                else:
                    keep.append((index, op))
            host.reads_waiting_apply = keep

    # --- faults --------------------------------------------------------------------

    def _apply_fault(self, fault: Fault) -> None:
        net, a = self.net, fault.args
        act = fault.action
        if act is Action.ISOLATE:
            net.isolate(a[0])
            self._note(f"partition: isolate node {a[0]}")
        elif act is Action.SPLIT:
            minority = list(a)
            majority = [n for n in self.ids if n not in minority]
            net.split([minority, majority])
            self._note(f"partition: split {minority} | {majority}")
        elif act is Action.ONE_WAY:
            net.cut_one_way(a[0], a[1])
            self._note(f"partition: one-way, {a[0]} can no longer reach {a[1]}")
        elif act is Action.BRIDGE:
            cut = a.index(0)
            left, right = list(a[:cut]), list(a[cut + 1 :])
            net.bridge(left, right)
            bridges = [n for n in self.ids if n not in left and n not in right]
            self._note(f"partition: bridge {left} | {right}, only {bridges} hear both")
        elif act is Action.HEAL:
            net.heal()
            self._note("partition healed")
        elif act is Action.CRASH:
            if self.hosts[a[0]].node is not None:
                self._crash(a[0])
                self._note(f"node {a[0]} crashed (unsynced writes lost)")
        elif act is Action.CRASH_LEADER:
            leaders = [h.id for h in self.hosts.values() if h.node is not None and h.node.role is Role.LEADER]
            if leaders:
                victim = max(leaders, key=lambda i: self.hosts[i].node.term)
                self._crash(victim)
                self._note(f"node {victim}, the leader, crashed (unsynced writes lost)")
                restart = Fault(fault.tick + a[0], Action.RESTART, (victim,))
                if restart.tick < self.options.steps:
                    self._at(restart.tick * TICK, "fault", restart)
        elif act is Action.RESTART:
            if self.hosts[a[0]].node is None:
                self._start(a[0])
                n = self.hosts[a[0]].node
                self._note(f"node {a[0]} restarted: term {n.term}, log ends at {n.log.last_index()}")
        elif act is Action.LOSS:
            net.faults.loss = a[0] / 100
            self._note(f"network: {a[0]}% message loss")
        elif act is Action.DUPLICATE:
            net.faults.duplicate = a[0] / 100
            self._note(f"network: {a[0]}% duplication")
        elif act is Action.REORDER:
            net.faults.delay_min, net.faults.delay_max = 1, a[0]
            self._note(f"network: delays up to {a[0] / TICK:.1f} ticks, reordering")
        elif act is Action.CALM:
            net.faults.loss = net.faults.duplicate = 0.0
            net.faults.delay_min, net.faults.delay_max = 2, 8
            self._note("network: calm")
        self._log_trace(f"fault {fault}")

    def _end_faults(self) -> None:
        self.net.heal()
        self.net.faults.loss = self.net.faults.duplicate = 0.0
        self.net.faults.delay_min, self.net.faults.delay_max = 2, 8
        for i in self.ids:
            if self.hosts[i].node is None:
                self._start(i)
        self._note("faults end: network healed, every node up; checking liveness")

    # --- the main loop ---------------------------------------------------------------

    def _handle(self, kind: str, payload: tuple) -> None:
        if kind == "deliver":
            (m,) = payload
            host = self.hosts[m.dst]
            if host.node is None:
                return
            self._log_trace(repr(m))
            host.node.step(m)
            self._drive(host)
        elif kind == "persisted":
            node_id, incarnation, rd = payload
            host = self.hosts[node_id]
            if host.node is not None and host.incarnation == incarnation:
                self._persisted(host, rd)
        elif kind == "tick":
            self._log_trace("tick")
            if self.now % (100 * TICK) == 0:
                self._note(
                    f"progress: entries committed through index {self.checker.max_committed}, "
                    f"{self._acked} writes acknowledged, network {self.net.describe()}"
                )
            for i in self.ids:
                host = self.hosts[i]
                if host.node is not None:
                    host.node.tick()
                    self._drive(host)
            if self._hostile is not None and self.now < self.options.steps * TICK:
                self._hostile_step()
            for c in range(self.options.clients):
                if not self._client_busy[c] and self._client_rng.random() < 0.5:
                    self._client_step(c)
            if (self.now // TICK) % 5 == 0:
                self._expire_operations()

    def _hostile_step(self) -> None:
        """Now and then, a forged message to a live node: it must be refused by the
        rule it breaks, and nothing else may come of it."""
        rng = self._hostile.rng
        live = [h for h in self.hosts.values() if h.node is not None]
        if not live or rng.random() >= 0.3:
            return
        host = rng.choice(live)
        forged, rule = self._hostile.forge(host.node)
        if isinstance(forged, bytes):
            try:
                decode_message(forged)
            except DecodeError:
                self.stats["hostile_refused"] += 1
                return
            raise SafetyViolation("Refusal", f"the codec took in forged bytes {forged!r}")
        self._log_trace(f"hostile {forged!r}")
        node = host.node
        before = (node.term, node.vote, node.log.snapshot_index, node.log.last_index(), node.log.commit)
        try:
            node.step(forged)
        except MessageRefused as exc:
            if exc.rule != rule:
                raise SafetyViolation(
                    "Refusal", f"node {host.id} refused {forged!r} by rule {exc.rule}, expected {rule}"
                ) from None
            self.stats["hostile_refused"] += 1
            return
        after = (node.term, node.vote, node.log.snapshot_index, node.log.last_index(), node.log.commit)
        if after != before:
            raise SafetyViolation("Refusal", f"node {host.id} took in a forged message {forged!r} (rule {rule})")
        self.stats["hostile_ignored"] += 1  # e.g. a chunk of a snapshot older than the one arriving

    def _run_until(self, end: int, stop=None) -> bool:
        while self._events and self._events[0][0] <= end:
            time, _, kind, payload = heapq.heappop(self._events)
            self.now = time
            self._handle(kind, payload)
            if stop is not None and kind == "tick" and stop():
                return True
        self.now = end
        return False

    def run(self) -> SimResult:
        o = self.options
        for tick in range(1, o.steps + o.liveness_ticks + 1):
            self._at(tick * TICK, "tick")
        for fault in self.schedule:
            if fault.tick < o.steps:
                self._at(fault.tick * TICK, "fault", fault)
        violation = None
        try:
            self._run_faulty_phase()
            self._end_faults()
            self._check_liveness()
        except (SafetyViolation, LivenessViolation) as exc:
            violation = f"{exc} (at tick {self.now / TICK:.1f})"
            self._note(f"VIOLATION {exc}")
        return self._result(violation)

    def _run_faulty_phase(self) -> None:
        o = self.options
        while self._events and self._events[0][0] < o.steps * TICK:
            time, _, kind, payload = heapq.heappop(self._events)
            self.now = time
            if kind == "fault":
                (fault,) = payload
                self._apply_fault(fault)
            else:
                self._handle(kind, payload)

    def _check_liveness(self) -> None:
        """After the faults end, a leader must emerge and a new write commit on every
        node within liveness_ticks."""
        o = self.options
        start = self.now
        deadline = start + o.liveness_ticks * TICK
        probe: list[Operation] = []

        def settled() -> bool:
            leaders = [h for h in self.hosts.values() if h.node is not None and h.node.role is Role.LEADER]
            if not probe:
                if len(leaders) == 1 and leaders[0].node.log.term(leaders[0].node.log.commit) == leaders[0].node.term:
                    host = leaders[0]
                    self._op_seq += 1
                    op = Operation(-1, "write", f"liveness-probe-{self._op_seq}".encode(), host.id, self.now)
                    try:
                        op.index, op.term = host.node.propose(op.value)
                    except RaftError:
                        return False
                    host.pending_writes[op.index] = op
                    self.history.append(op)
                    probe.append(op)
                    self._drive(host)
                return False
            if probe[0].outcome == "failed":
                probe.clear()  # leadership changed under it: try again
                return False
            target = probe[0].index
            return all(h.machine.index >= target for h in self.hosts.values())

        self._client_busy = [True] * o.clients  # no new client work: quiesce
        if not self._run_until(deadline, settled):
            leaders = [h.id for h in self.hosts.values() if h.node is not None and h.node.role is Role.LEADER]
            applied = {h.id: h.machine.index for h in self.hosts.values()}
            raise LivenessViolation(
                f"Liveness: {o.liveness_ticks} ticks after faults ended, leaders={leaders}, "
                f"applied={applied}, probe={'committed nowhere' if probe else 'not proposed'}"
            )
        self._note(f"liveness: leader elected and a new write applied on every node in {(self.now - start) / TICK:.0f} ticks")
        self._check_final_state()

    def _check_final_state(self) -> None:
        chains = {h.id: (h.machine.index, h.machine.chain) for h in self.hosts.values()}
        target = max(index for index, _ in chains.values())
        for h in self.hosts.values():
            if h.machine.index == target and h.machine.chain != self.checker.committed[target][1]:
                raise SafetyViolation("State Machine Safety", f"node {h.id} ended with a different history")
        for op in self.history:
            if op.kind != "write":
                continue
            if op.outcome == "ok":
                seen = self.checker.committed.get(op.index)
                if seen is None or seen[0] != op.term:
                    raise SafetyViolation(
                        "Durability", f"acknowledged write {op.value!r} at index {op.index} is not committed"
                    )
            elif op.outcome == "failed" and op.value in self.checker.applied_values:
                raise SafetyViolation("Durability", f"write {op.value!r} reported failed was applied")

    def _result(self, violation: str | None) -> SimResult:
        writes = [op for op in self.history if op.kind == "write" and op.client >= 0]
        reads = [op for op in self.history if op.kind != "write"]
        stats = dict(self.stats)
        stats.update(
            committed=self.checker.max_committed,
            writes_ok=sum(op.outcome == "ok" for op in writes),
            writes_failed=sum(op.outcome == "failed" for op in writes),
            writes_unknown=sum(op.outcome in ("unknown", "pending") for op in writes),
            reads_ok=sum(op.outcome == "ok" for op in reads),
            messages_dropped=self.net.dropped,
        )
        return SimResult(
            options=self.options,
            ok=violation is None,
            violation=violation,
            trace_hash=self._trace.hexdigest(),
            ticks=self.now // TICK,
            timeline=self.timeline,
            history=self.history,
            stats=stats,
        )


def run(options: SimOptions, *, trace: list[str] | None = None) -> SimResult:
    """Run one simulation. With `trace`, every delivered message is appended to it."""
    sim = Simulation(options)
    sim.trace_lines = trace
    return sim.run()
