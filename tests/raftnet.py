"""A small, deterministic, in-memory network of raft Nodes for scenario tests.

Each node is driven by the Ready contract (raft/types.py), with a MemoryStorage.
Nothing happens on its own: tests tick clocks, deliver queued messages (one hop at
a time or all at once with `stabilize()`), cut links and crash nodes.

    net = Network(3)
    leader = net.elect(1)
    net.propose(leader, b"x")
    net.stabilize()
    assert net.applied[3] == [b"x"]

A crash throws the Node away and keeps its storage: whatever it had not persisted
(entries, a granted vote) is lost, exactly as on a real disk.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

import msgpack

from raftflow.raft import (
    Config,
    Entry,
    EntryKind,
    HardState,
    MemoryStorage,
    Message,
    Node,
    ReadDropped,
    Ready,
    ReadState,
    Role,
    SoftState,
)

MAX_STABILIZE_ROUNDS = 10_000


def entries_for_terms(terms: Iterable[int], first_index: int = 1) -> list[Entry]:
    """A log whose entry at `first_index + n` has term `terms[n]` and a payload naming it."""
    return [Entry(first_index + n, t, f"{first_index + n}@{t}".encode()) for n, t in enumerate(terms)]


def log_terms(node: Node) -> list[int]:
    """The term of every entry after the snapshot point, in index order."""
    return [e.term for e in node.log.entries]


def _check_snapshot(data: bytes) -> None:
    """This network's state machine is a msgpack list of payloads: anything else is
    refused before a node keeps it, as a real driver's snapshot_check does."""
    try:
        state = msgpack.unpackb(data)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ValueError(f"not a snapshot: {exc}") from None
    if not isinstance(state, list):
        raise ValueError(f"not a snapshot: a {type(state).__name__}")


class Network:
    """Nodes 1..size, all voters. `config` is passed to every node's Config.

    `logs` presets a node's durable log by the term of each entry (index 1 first),
    `terms` its durable current term (default: its last log term), as if the node
    restarted from that disk.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        seed: int = 0,
        logs: dict[int, list[int]] | None = None,
        terms: dict[int, int] | None = None,
        **config: object,
    ) -> None:
        self.ids = tuple(range(1, size + 1))
        self.seed = seed
        self._config = config
        self.storages: dict[int, MemoryStorage] = {}
        self.nodes: dict[int, Node] = {}  # live nodes only
        self.applied: dict[int, list[bytes]] = {}  # each state machine: applied NORMAL payloads
        self.read_states: dict[int, list[ReadState]] = {i: [] for i in self.ids}
        self.reads_dropped: dict[int, list[ReadDropped]] = {i: [] for i in self.ids}
        self.soft_states: dict[int, list[SoftState]] = {i: [] for i in self.ids}  # as announced
        self.queue: list[Message] = []  # sent, not yet delivered (or dropped)
        self.delivered: list[Message] = []  # everything stepped into a node, in order
        self._pending: dict[int, Ready] = {}  # taken with ready(), not yet persisted
        self._cut: set[tuple[int, int]] = set()  # (src, dst) links that lose messages
        self._incarnation: dict[int, int] = {i: 0 for i in self.ids}
        for i in self.ids:
            storage = MemoryStorage()
            terms_of_log = (logs or {}).get(i, [])
            term = (terms or {}).get(i, max(terms_of_log, default=0))
            assert term >= max(terms_of_log, default=0), (i, term, terms_of_log)
            storage.persist(None, entries_for_terms(terms_of_log), HardState(term=term))
            self.storages[i] = storage
            self.restart(i)

    def config(self, id: int) -> Config:
        return Config(id=id, voters=self.ids, **self._config)  # type: ignore[arg-type]

    # --- time and elections -----------------------------------------------------

    def tick(self, id: int, times: int = 1) -> None:
        for _ in range(times):
            self.nodes[id].tick()

    def tick_all(self, times: int = 1) -> None:
        """Every live node's clock advances; nothing is delivered."""
        for _ in range(times):
            for node in self.nodes.values():
                node.tick()

    def run(self, ticks: int) -> None:
        """Let time pass on a working network: tick everyone, then stabilize, per tick."""
        for _ in range(ticks):
            self.tick_all()
            self.stabilize()

    def tick_until_campaign(self, id: int) -> int:
        """Tick only `id` until its election timer fires; returns the ticks it took."""
        node = self.nodes[id]
        assert node.role is Role.FOLLOWER, node.role
        for ticks in range(1, 2 * node.config.election_ticks + 1):
            node.tick()
            if node.role is not Role.FOLLOWER:
                return ticks
        raise AssertionError(f"node {id} did not campaign within two election timeouts")

    def elect(self, id: int | None = None, *, settle: bool = True) -> int:
        """Elect a leader; returns its id.

        Without `id`, every clock runs until some node's randomized timer fires
        (Raft §5.2). With `id`, that node campaigns now the way a TimeoutNow makes it
        (thesis §3.10): no pre-vote, and neither leader stickiness nor a restart's vote
        guard holds voters back (tests of those rules tick clocks instead); if it
        loses, it tries again in the next term. With settle=False, stop as soon as it
        leads: its no-op is appended but not yet sent.
        """
        if id is not None:
            for _ in range(3):  # a term already used up by another candidate is lost
                self.nodes[id].campaign(transfer=True)
                if settle:
                    self.stabilize()
                else:
                    while self.nodes[id].role is Role.CANDIDATE and self.hop():
                        pass
                if self.nodes[id].role is Role.LEADER:
                    return id
            raise AssertionError(f"node {id} cannot win: {self.nodes[id].status()}")
        for _ in range(100 * self.config(self.ids[0]).election_ticks):
            self.tick_all()
            self.stabilize()
            leader = self.leader()
            if leader is not None and all(n.leader == leader for n in self.nodes.values()):
                return leader
        raise AssertionError("no leader emerged")

    def leader(self) -> int | None:
        """The live leader of the highest term, if any."""
        leaders = sorted((n.term, i) for i, n in self.nodes.items() if n.role is Role.LEADER)
        terms = [t for t, _ in leaders]
        assert len(terms) == len(set(terms)), f"two leaders in one term: {leaders}"
        return leaders[-1][1] if leaders else None

    # --- the Ready loop, done by the book -----------------------------------------

    def ready(self, id: int) -> Ready:
        """Take `id`'s Ready and send its early_messages; the rest waits for persist()."""
        assert id not in self._pending, f"node {id} already holds an unpersisted Ready"
        rd = self.nodes[id].ready()
        self.queue.extend(rd.early_messages)
        self._pending[id] = rd
        return rd

    def persist(self, id: int) -> Ready:
        """Finish the Ready taken with ready(): persist, send, apply, advance."""
        rd = self._pending.pop(id)
        self.storages[id].persist(rd.snapshot, rd.entries, rd.hard_state)
        self.queue.extend(rd.messages)
        if rd.snapshot is not None:
            self.applied[id] = list(msgpack.unpackb(rd.snapshot.data))
        self.applied[id].extend(e.data for e in rd.committed if e.kind is EntryKind.NORMAL)
        if rd.soft_state is not None:
            self.soft_states[id].append(rd.soft_state)
        self.read_states[id].extend(rd.read_states)
        self.reads_dropped[id].extend(rd.reads_dropped)
        self.nodes[id].advance(rd)
        return rd

    def process(self, id: int) -> Ready:
        """One whole Ready cycle for `id` (finishing a Ready taken earlier first)."""
        if id in self._pending:
            self.persist(id)
        self.ready(id)
        return self.persist(id)

    def hop(self, *, hold: Callable[[Message], bool] | None = None) -> bool:
        """One round: every node with something to do runs a whole Ready cycle, then
        every queued message not held back is delivered once. False when nothing moved."""
        moved = False
        for id in sorted(self.nodes):
            if id in self._pending or self.nodes[id].has_ready():
                self.process(id)
                moved = True
        queued = len(self.queue)
        self.deliver(where=None if hold is None else (lambda m: not hold(m)))
        return moved or len(self.queue) < queued

    def stabilize(self, *, hold: Callable[[Message], bool] | None = None) -> None:
        """Hop until nothing moves. Messages matching `hold` stay queued: a later
        stabilize() or deliver() can release them."""
        for _ in range(MAX_STABILIZE_ROUNDS):
            if not self.hop(hold=hold):
                return
        raise AssertionError(f"the network did not settle in {MAX_STABILIZE_ROUNDS} rounds")

    # --- messages -------------------------------------------------------------------

    def take(
        self,
        kind: type | tuple[type, ...] | None = None,
        *,
        src: int | None = None,
        dst: int | None = None,
        where: Callable[[Message], bool] | None = None,
    ) -> list[Message]:
        """Remove and return the queued messages that match (all of them by default)."""

        def matches(m: Message) -> bool:
            return (
                (kind is None or isinstance(m, kind))
                and (src is None or m.src == src)
                and (dst is None or m.dst == dst)
                and (where is None or where(m))
            )

        taken = [m for m in self.queue if matches(m)]
        self.queue = [m for m in self.queue if not matches(m)]
        return taken

    def deliver(
        self,
        kind: type | tuple[type, ...] | None = None,
        *,
        src: int | None = None,
        dst: int | None = None,
        where: Callable[[Message], bool] | None = None,
    ) -> list[Message]:
        """One hop: step the matching queued messages into their destinations, in the
        order sent. Messages over a cut link or to a crashed node are lost. Answers
        are queued, not delivered."""
        arrived = []
        for m in self.take(kind, src=src, dst=dst, where=where):
            if self.lost(m):
                continue
            self.step(m)
            arrived.append(m)
        return arrived

    def lost(self, m: Message) -> bool:
        """Whether `m` would be lost if delivered now: its link is cut or its
        destination is down."""
        return (m.src, m.dst) in self._cut or m.dst not in self.nodes

    def step(self, m: Message) -> None:
        self.delivered.append(m)
        self.nodes[m.dst].step(m)

    def drop(self, kind: type | tuple[type, ...] | None = None, **match: object) -> list[Message]:
        """Lose the matching queued messages."""
        return self.take(kind, **match)  # type: ignore[arg-type]

    # --- faults -----------------------------------------------------------------------

    def cut(self, a: int, b: int) -> None:
        """Lose every message between a and b, both ways, until heal()."""
        self._cut |= {(a, b), (b, a)}

    def isolate(self, id: int) -> None:
        for other in self.ids:
            if other != id:
                self.cut(id, other)

    def heal(self) -> None:
        self._cut.clear()

    def crash(self, id: int) -> None:
        """Throw the node away; its storage survives, an unpersisted Ready does not."""
        del self.nodes[id]
        self._pending.pop(id, None)
        del self.applied[id]

    def restart(self, id: int) -> Node:
        """Rebuild the node from what its storage holds, restoring the snapshot first."""
        assert id not in self.nodes, f"node {id} is running"
        durable = self.storages[id].load()
        self._incarnation[id] += 1
        rng = random.Random(f"{self.seed}/{id}/{self._incarnation[id]}")
        node = Node(
            self.config(id), rng, durable.hard_state, durable.snapshot, durable.entries, snapshot_check=_check_snapshot,
        )
        self.nodes[id] = node
        self.applied[id] = list(msgpack.unpackb(durable.snapshot.data)) if durable.snapshot else []
        return node

    # --- the client side -------------------------------------------------------------

    def propose(self, id: int, *payloads: bytes) -> tuple[int, int]:
        return self.nodes[id].propose_batch(list(payloads))

    def compact(self, id: int, index: int | None = None) -> None:
        """Snapshot `id`'s state machine at `index` (default: its applied index) and
        compact its log up to there."""
        node = self.nodes[id]
        assert id not in self._pending, "finish the Ready before compacting"
        if index is None:
            node.compact(node.log.applied, msgpack.packb(self.applied[id]))
        else:
            assert index <= node.log.applied, f"index {index} is past applied {node.log.applied}"
            state = list(msgpack.unpackb(node.snapshot.data)) if node.snapshot else []
            state.extend(
                e.data
                for e in node.log.entries
                if e.index <= index and e.kind is EntryKind.NORMAL
            )
            node.compact(index, msgpack.packb(state))
        self.storages[id].compact(node.snapshot)

    def count(self, kind: type, *, where: Callable[[Message], bool] | None = None) -> int:
        """How many delivered messages match."""
        return sum(1 for m in self.delivered if isinstance(m, kind) and (where is None or where(m)))
