"""RaftNode: the asyncio driver around the pure Raft core.

One event loop owns the `raft.Node`. Inputs (ticks, peer messages, client
commands and reads) are stepped in as they arrive; one driver task takes each
`Ready` and carries it out in the order its contract gives (`raft.types.Ready`,
written there once). What this driver adds to that contract:

- the persist goes to a disk thread (one write, one fdatasync) while the loop goes
  on: ticks, heartbeats and incoming messages keep flowing through a slow fsync,
  and the messages due meanwhile leave at once (`Node.take_early_messages`); a
  small Ready on a fast disk is synced on the loop instead (`_persist_inline`);
- applying answers the clients waiting on each entry and the reads waiting for
  their index;
- after `advance()`, a local snapshot when the policy says so: the state machine
  is captured on the loop (pointer copies), encoded in a thread of its own, and
  the log compacted to it once the bytes are ready.

Client commands are queued (bounded: beyond `max_pending_proposals` a client gets
RESOURCE_EXHAUSTED) and proposed together, one `propose_batch` per driver cycle,
so everything that arrived during one fsync is written by the next one.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import gc
import heapq
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import grpc

from raftflow.cluster.node.config import NodeConfig
from raftflow.cluster.node.errors import NodeError
from raftflow.cluster.node.transport import Transport
from raftflow.raft.disk import DiskStorage, StorageFailed
from raftflow.raft.node import Node
from raftflow.raft.refusals import MessageRefused
from raftflow.version import __version__
from raftflow.raft.types import NONE, AppendEntries, EntryKind, Heartbeat, InstallSnapshot, LeaseExpired, Message, NotLeader, ProposalDropped, RaftError, Ready, Role
from raftflow.statemachine.machine import DecodedSnapshot, Machine
from raftflow.statemachine.commands import Command, Op, encode_command, validate_op

log = logging.getLogger("raftflow.node")

VERSION = __version__
GC_FREEZE_ENTRIES = 50_000  # applied entries between two gc.freeze() calls
APPLY_CHUNK = 1024  # entries applied between two turns of the event loop
LEADER_MESSAGES = (AppendEntries, Heartbeat, InstallSnapshot)
REFUSAL_LOG_S = 1.0  # at most one log line a second per refusal rule
LEASE_STALL_TICKS = 3  # a gap this many ticks long between two ticks ends the leader's lease
# A small Ready is written and synced on the loop itself (no hop to the disk thread
# and back, no wait for the GIL: ~0.1-0.3 ms off every commit here) while syncs stay
# this fast. A leader only when it is nearly idle: under load its loop has better to
# do during a sync (acks, replies, the next batch) than wait. One slower sync sends
# every sync to the disk thread for a while: a disk that stalls once tends to again,
# and a stall on the loop holds back heartbeats (an election timeout is 150 ms).
INLINE_PERSIST_ENTRIES = 64
INLINE_LEADER_ENTRIES = 4
INLINE_SYNC_MAX_S = 0.002
INLINE_BACKOFF_S = 10.0


@dataclass(slots=True)
class _Proposal:
    data: bytes
    future: asyncio.Future
    command: Command  # what `data` encodes: applied as is when this entry commits here


def wall_ms() -> int:
    """The leader's clock for the entries it proposes (statemachine: "now")."""
    return int(time.time() * 1000)


class NodeHooks(Protocol):
    """What runs beside the node and follows it: started with it, stopped before it
    stops, told when the role changes and when entries (or a snapshot) applied."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    def on_role(self, role: Role) -> None: ...

    def on_applied(self, snapshot: bool = False) -> None: ...


class RaftNode:
    """One member of the cluster, running in this process's event loop. It is given
    its parts: the state machine, the transport to its peers and its open log
    storage (the node process builds them: cluster/node/server.py), and owns them
    from then on (stop() closes the transport and the storage)."""

    def __init__(
        self, config: NodeConfig, *, machine: Machine, transport: Transport, storage: DiskStorage,
        hooks: Iterable[NodeHooks] = (),
    ) -> None:
        self.config = config
        self.id = config.id
        self.tick_s = config.tick_ms / 1000
        self.machine = machine
        self.transport = transport
        self.storage = storage
        self.hooks: list[NodeHooks] = list(hooks)  # more may be added before start()
        # Run by stop() once every waiter has its answer, before the transport and the
        # log close: the node process stops its gRPC server here, so the answers leave.
        self.closing: list[Callable[[], Awaitable[None]]] = []
        self._disk = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"disk-{config.id}")
        self._storage_lock = threading.Lock()  # the disk thread writes, the loop reads back
        self.node: Node | None = None
        self._wake = asyncio.Event()
        self._driver_waiting = False  # on the disk thread or in a yield: inputs send early messages
        self._inline_from = 0.0  # time.monotonic() from which small Readys may sync on the loop again
        self._encoder = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"snap-{config.id}")
        self._snapshotting = False  # a snapshot is being encoded
        self._next_gc_freeze = 0  # applied index at which to move live objects out of the collector's way
        self._snapshot_encoded: tuple[int, bytes] | None = None  # (index, bytes) ready to compact to
        self._stopping = False
        self._queued: list[_Proposal] = []
        self._waiting: dict[int, tuple[int, asyncio.Future, Command]] = {}  # index -> (term, future, command)
        self._reads: dict[bytes, asyncio.Future] = {}  # ReadIndex ctx -> future of the read index
        self._applied_waiters: list[tuple[int, int, asyncio.Future]] = []  # heap of (index, n, future)
        self._read_ids = itertools.count(1)
        self._leader_unknown_since: float = time.monotonic()
        self._last_leader_contact: float | None = None
        self._tasks: list[asyncio.Task] = []
        self.refused: collections.Counter[str] = collections.Counter()  # messages refused, by rule
        self._refusal_logged: dict[str, float] = {}  # rule -> when a refusal of it was last logged
        self._checked_snapshot: tuple[bytes, DecodedSnapshot] | None = None  # a received snapshot, decoded
        # A received snapshot decoded in a thread before the core sees it: (its bytes,
        # the state or the SnapshotError), so that a large one never holds the loop.
        self._predecoded: tuple[bytes, DecodedSnapshot | ValueError] | None = None
        self.stopped = asyncio.Event()
        self.failure: BaseException | None = None

    # --- start and stop -----------------------------------------------------------

    async def start(self) -> None:
        """Load the log, start the driver and the ticks, then the transport and the
        hooks. The caller serves the node's gRPC services (PeerService delivers here)."""
        cfg = self.config
        durable = self.storage.load()
        if durable.snapshot is not None:
            self.machine.restore(durable.snapshot.data)
        seed = cfg.seed if cfg.seed is not None else int.from_bytes(os.urandom(8), "big")
        self.node = Node(
            cfg.raft_config(), random.Random(seed), durable.hard_state, durable.snapshot, durable.entries,
            reader=self._read_entries, snapshot_check=self._check_snapshot,
        )
        log.info(
            "node %d starting: cluster %s, term %d, log (%d, %d], commit %d, %s, %s event loop",
            cfg.id, cfg.cluster_id, durable.hard_state.term, self.node.log.snapshot_index,
            self.node.log.last_index(), durable.hard_state.commit, "fsync on" if cfg.fsync else "FSYNC OFF",
            type(asyncio.get_running_loop()).__module__.split(".")[0],
        )
        self.transport.start()
        self._tasks = [
            asyncio.create_task(self._drive(), name="driver"),
            asyncio.create_task(self._tick(), name="ticker"),
        ]
        for hook in self.hooks:
            hook.start()
        self._wake.set()

    async def stop(self) -> None:
        """Graceful: refuse new work, finish the Ready in progress (its fsync
        included), close the log."""
        if self._stopping:
            await self.stopped.wait()
            return
        self._stopping = True
        self._wake.set()
        ticker = self._tasks[1] if len(self._tasks) > 1 else None
        if ticker is not None:
            ticker.cancel()
        for hook in self.hooks:
            await hook.stop()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            self._fail_everything(NodeError(grpc.StatusCode.UNAVAILABLE, f"node {self.id} is stopping"))
            for close in self.closing:
                await close()
            await self.transport.close()
            await asyncio.get_running_loop().run_in_executor(self._disk, self.storage.close)
        except Exception as exc:  # noqa: BLE001 (a failed close must not leave the process hanging)
            log.error("node %d: error while stopping: %s", self.id, exc)
        finally:
            self._disk.shutdown(wait=True)
            self._encoder.shutdown(wait=True, cancel_futures=True)
            log.info("node %d stopped", self.id)
            self.stopped.set()

    def _refused(self, exc: MessageRefused) -> None:
        """Count a refused message; log it, at most once a second per rule (a flood of
        forged messages must not become a flood of log lines)."""
        self.refused[exc.rule] += 1
        now = time.monotonic()
        if now - self._refusal_logged.get(exc.rule, -REFUSAL_LOG_S) >= REFUSAL_LOG_S:
            self._refusal_logged[exc.rule] = now
            log.warning("node %d refused a message (%s, %d so far): %s", self.id, exc.rule, self.refused[exc.rule], exc)

    def _check_snapshot(self, data: bytes) -> None:
        """The core's snapshot_check: a received snapshot must decode before anything
        keeps it (a bad one written to disk would stop the node at every restart).
        The decoded state is kept for the Ready that installs it. A snapshot the
        transport decoded already (`predecode_snapshot`) is not decoded again."""
        predecoded, self._predecoded = self._predecoded, None
        if predecoded is not None and predecoded[0] is data:
            decoded = predecoded[1]
            if isinstance(decoded, ValueError):
                raise decoded
        else:
            decoded = self.machine.decode_snapshot(data)
        self._checked_snapshot = (data, decoded)

    async def predecode_snapshot(self, data: bytes) -> None:
        """Decode a received snapshot in a thread, for the core's check to find (the
        transport calls it before it hands the snapshot in)."""
        def decode() -> DecodedSnapshot | ValueError:
            try:
                return self.machine.decode_snapshot(data)
            except ValueError as exc:
                return exc

        decoded = await asyncio.get_running_loop().run_in_executor(None, decode)
        self._predecoded = (data, decoded)

    def _read_entries(self, lo: int, hi: int):
        with self._storage_lock:
            return self.storage.entries(lo, hi)

    def _persist(self, rd: Ready) -> None:
        started = time.perf_counter()
        if self.config.slow_disk_ms and rd.entries:
            time.sleep(self.config.slow_disk_ms / 1000)  # fault injection: slow log writes (disk thread only)
        with self._storage_lock:
            self.storage.persist(rd.snapshot, rd.entries, rd.hard_state)
        self._note_sync(time.perf_counter() - started, time.monotonic())

    def _note_sync(self, took_s: float, now: float) -> None:
        if took_s > INLINE_SYNC_MAX_S:
            self._inline_from = now + INLINE_BACKOFF_S

    def _persist_inline(self, rd: Ready) -> bool:
        """Whether to write and sync this Ready on the loop rather than the disk
        thread: a small one while the disk is fast. A follower's ack waits for the
        sync either way, and nothing else on a follower is urgent for that long; a
        leader's commit waits for its own sync too, but under load its loop has work
        to overlap with the sync, so it syncs inline only a few entries."""
        limit = INLINE_LEADER_ENTRIES if self.node.role is Role.LEADER else INLINE_PERSIST_ENTRIES
        return (
            rd.snapshot is None
            and len(rd.entries) <= limit
            and time.monotonic() >= self._inline_from
            and not self.config.slow_disk_ms
        )

    def _compact(self, snapshot) -> None:
        with self._storage_lock:
            self.storage.compact(snapshot)

    # --- inputs ---------------------------------------------------------------------

    def deliver(self, messages: list[Message]) -> None:
        node = self.node
        if node is None or self._stopping:
            return
        for m in messages:
            try:
                node.step(m)
            except MessageRefused as exc:  # impossible from a correct member: counted, logged, not fatal
                self._refused(exc)
                continue
            except RaftError as exc:
                log.warning("node %d refused %s: %s", self.id, type(m).__name__, exc)
                continue
            # Heard from the leader: only a leader's message (append, heartbeat,
            # snapshot) in this term from the node it now knows as leader; a pre-vote
            # (even from the old leader, on the minority side) is not.
            if isinstance(m, LEADER_MESSAGES) and m.src == node.leader and m.term == node.term:
                self._last_leader_contact = time.monotonic()
        self._poke()

    def _poke(self) -> None:
        """New input: wake the driver; if it is waiting (on the disk, or yielding in a
        long apply), send what is due now instead of after the wait."""
        if self._driver_waiting:
            self._send_early()
        self._wake.set()

    def _send_early(self) -> None:
        """Send the messages due now that promise nothing about this node's disk."""
        if self.node is not None:
            messages = self.node.take_early_messages()
            if messages:
                self.transport.send(messages)

    async def _tick(self) -> None:
        """One `tick()` per tick_ms. A late loop does not catch up missed ticks:
        a stalled process then waits longer before campaigning, never less. But the
        leader's lease is counted in ticks, so missed ticks would stretch it past the
        real time the others wait before electing another leader: a leader that was
        stalled (paused, swapped out, a long collection) gives its lease up and earns
        it again with the next acknowledged heartbeat round."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        last = loop.time()
        while True:
            deadline += self.tick_s
            delay = deadline - loop.time()
            if delay < 0:
                deadline = loop.time()
                delay = 0
            await asyncio.sleep(delay)
            assert self.node is not None
            now = loop.time()
            if now - last > LEASE_STALL_TICKS * self.tick_s:
                self.node.expire_lease()
            last = now
            self.node.tick()
            self._poke()

    # --- client requests ------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping

    def check_leader(self) -> None:
        """NodeError unless this node leads and is serving."""
        if self._stopping or self.node is None:
            raise NodeError(grpc.StatusCode.UNAVAILABLE, f"node {self.id} is stopping")
        if self.node.role is not Role.LEADER:
            raise self.leader_error()

    def state_is_current(self) -> bool:
        """This leader's state machine reflects everything committed, and it has
        committed in its own term (so nothing a predecessor committed is missing)."""
        node = self.node
        if node is None or node.role is not Role.LEADER:
            return False
        log = node.log
        return self.machine.applied_index >= log.commit and log.term(log.commit) == node.term

    def leader_error(self) -> NodeError:
        node = self.node
        assert node is not None
        if node.leader not in (NONE, self.id):
            address = self.config.client_address_of(node.leader)
            return NodeError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"node {self.id} is not the leader; the leader is node {node.leader} at {address}",
                node.leader, address,
            )
        return NodeError(grpc.StatusCode.UNAVAILABLE, self.no_leader_reason())

    def no_leader_reason(self) -> str:
        total = len(self.config.peers)
        reachable = 1 + self.transport.reachable()
        since = time.monotonic() - self._leader_unknown_since
        if self.node is not None and self.node.role is Role.LEADER:
            return f"node {self.id} leads but has not yet committed in its term"
        quorum = total // 2 + 1
        what = "no quorum" if reachable < quorum else "no leader yet"
        return f"{what}: {reachable} of {total} nodes reachable from node {self.id} (leader unknown since {since:.1f}s)"

    def pending_proposals(self) -> int:
        """Commands queued here or in the log, not yet applied."""
        return len(self._queued) + len(self._waiting)

    def submit(
        self, op: Op, *, session_id: int = 0, seq: int = 0, ack_floor: int = 0, timestamp_ms: int | None = None,
    ) -> asyncio.Future:
        """Queue a command for the log; the future gets (index, result) once it is
        applied. It fails with NodeError if it cannot be proposed here. A client's op
        rides in its session (session_id, seq, ack_floor: thesis §6.3); the node's own
        ops (OpenSession, the leader ops) carry none. `timestamp_ms` is the leader's
        clock unless given. A command whose future is dropped (deadline) may still
        commit: the session makes a retry safe."""
        node = self.node
        if self._stopping or node is None:
            raise NodeError(grpc.StatusCode.UNAVAILABLE, f"node {self.id} is stopping")
        if node.role is not Role.LEADER:
            raise self.leader_error()
        pending = self.pending_proposals()
        if pending >= self.config.max_pending_proposals:
            raise NodeError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"node {self.id} has {pending} commands pending; max_pending_proposals="
                f"{self.config.max_pending_proposals}: retry with backoff",
            )
        if session_id == 0:
            validate_op(op)  # the node's own ops (leader ops, OpenSession): client ops were checked at the edge
        elif not self.machine.has_session(session_id) and self.state_is_current():
            # Applied as of everything committed, so every session a client was told of
            # is here unless it expired: refused before it takes a place in the log.
            raise NodeError(
                grpc.StatusCode.NOT_FOUND,
                f"SESSION_UNKNOWN: session {session_id} is unknown or expired; open a new session",
            )
        now_ms = wall_ms() if timestamp_ms is None else timestamp_ms
        command = Command(now_ms, session_id, seq, ack_floor, op)
        data = encode_command(command)
        future = asyncio.get_running_loop().create_future()
        self._queued.append(_Proposal(data, future, command))
        self._wake.set()
        return future

    async def read_index(self, consistency: str) -> int:
        """The index a read must wait for: ReadIndex (a heartbeat round) or the lease."""
        node = self.node
        assert node is not None
        if self._stopping:
            raise NodeError(grpc.StatusCode.UNAVAILABLE, f"node {self.id} is stopping")
        if node.role is not Role.LEADER:
            raise self.leader_error()
        if consistency == "lease":
            try:
                return node.read_lease()
            except LeaseExpired as exc:
                raise NodeError(grpc.StatusCode.UNAVAILABLE, f"lease read refused: {exc}") from None
        ctx = next(self._read_ids).to_bytes(8, "big")
        try:
            node.read_index(ctx)
        except RaftError as exc:
            raise NodeError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        future = asyncio.get_running_loop().create_future()
        self._reads[ctx] = future
        self._poke()
        try:
            return await future
        finally:
            self._reads.pop(ctx, None)

    async def wait_applied(self, index: int) -> None:
        if self.machine.applied_index >= index:
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._applied_waiters, (index, id(future), future))
        await future

    def since_leader_s(self) -> float:
        node = self.node
        if node is not None and node.role is Role.LEADER:
            return 0.0
        if self._last_leader_contact is None:
            return -1.0
        return time.monotonic() - self._last_leader_contact

    def leader_unknown_s(self) -> float:
        node = self.node
        if node is not None and node.leader != NONE:
            return 0.0
        return time.monotonic() - self._leader_unknown_since

    # --- the driver -----------------------------------------------------------------

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        node = self.node
        assert node is not None
        try:
            while not self._stopping:
                await self._wake.wait()
                self._wake.clear()
                while not self._stopping:
                    self._propose_queued()
                    if node.has_ready():
                        await self._handle_ready(loop, node.ready())
                    elif self._snapshot_encoded is None:
                        break
                    await self._maybe_snapshot(loop)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 (StorageFailed, or a bug: either way the node cannot go on)
            # The disk refused a write (nothing more is durable), or the driver hit a
            # bug: stop serving rather than accept work nobody will answer.
            log.critical("node %d stops: %s", self.id, exc, exc_info=not isinstance(exc, StorageFailed))
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        """The node cannot go on (a failed disk, a bug): answer everything waiting
        and stop, rather than accept work nobody will answer."""
        if self.failure is None:
            self.failure = exc
        self._fail_everything(NodeError(grpc.StatusCode.UNAVAILABLE, f"node {self.id} failed: {exc}"))
        asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self.stop()))

    def _propose_queued(self) -> None:
        if not self._queued:
            return
        node = self.node
        assert node is not None
        queued, self._queued = self._queued, []
        try:
            first, term = node.propose_batch([p.data for p in queued])
        except NotLeader:
            _fail_all((p.future for p in queued), self.leader_error())
            return
        except ProposalDropped as exc:
            _fail_all((p.future for p in queued), NodeError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"proposal dropped: {exc}"))
            return
        for n, p in enumerate(queued):
            self._waiting[first + n] = (term, p.future, p.command)

    async def _handle_ready(self, loop: asyncio.AbstractEventLoop, rd: Ready) -> None:
        node = self.node
        assert node is not None
        if rd.soft_state is not None:
            self._on_soft_state(rd)
        if rd.early_messages:
            self.transport.send(rd.early_messages)
        # Committed entries already durable here (always so on a leader, which
        # counts itself only once its write is synced) need not wait for this
        # Ready's fsync, which only adds newer entries or the commit index: applying
        # them first takes one fsync off every client's wait.
        # A follower syncing on the loop acks first and applies after: nobody waits
        # on its apply, the leader's commit waits on its ack.
        inline = rd.must_persist() and self._persist_inline(rd)
        applied_early = (
            not (inline and node.role is not Role.LEADER)
            and rd.snapshot is None and bool(rd.committed) and rd.committed[-1].index <= node.log.stable
        )
        if applied_early:
            await self._apply(rd)
            self._wake_applied_waiters()
        if rd.must_persist() and not self.storage.needs_sync(rd.snapshot, rd.entries, rd.hard_state):
            with self._storage_lock:  # only the commit index moved: a write, no fsync; not worth a thread hop
                self.storage.persist(rd.snapshot, rd.entries, rd.hard_state)
        elif inline:
            if rd.early_messages or applied_early:
                await self._yield_to_loop()  # the appends and replies due leave before the loop blocks on the sync
            self._persist(rd)
        elif rd.must_persist():
            await self._on_disk(loop, self._persist, rd)
        if rd.messages:
            self.transport.send(rd.messages)
        if rd.snapshot is not None:
            checked, self._checked_snapshot = self._checked_snapshot, None
            if checked is not None and checked[0] is rd.snapshot.data:
                self.machine.adopt(checked[1])  # decoded when it arrived: not twice
            else:
                self.machine.restore(rd.snapshot.data)
            log.info("node %d installed a snapshot at index %d", self.id, rd.snapshot.index)
            self._fail_waiting_through(rd.snapshot.index)
        if not applied_early:
            await self._apply(rd)
        for rs in rd.read_states:
            future = self._reads.get(rs.ctx)
            if future is not None and not future.done():
                future.set_result(rs.index)
        for dropped in rd.reads_dropped:
            future = self._reads.get(dropped.ctx)
            if future is not None:
                _fail(future, NodeError(grpc.StatusCode.UNAVAILABLE, f"read dropped: {dropped.reason}"))
        node.advance(rd)
        self._wake_applied_waiters()
        if rd.committed or rd.snapshot is not None:
            for hook in self.hooks:
                hook.on_applied(snapshot=rd.snapshot is not None)

    async def _apply(self, rd: Ready) -> None:
        """Apply the committed entries in order, answering the proposals waiting on
        them. Every APPLY_CHUNK entries the loop gets a turn: a large batch must not
        hold back ticks and heartbeats for longer than an election timeout."""
        machine = self.machine
        waiting = self._waiting
        for n, entry in enumerate(rd.committed, start=1):
            if n % APPLY_CHUNK == 0:
                await self._yield_to_loop()
            slot = waiting.get(entry.index)
            if entry.kind is EntryKind.NOOP:
                machine.apply_noop(entry.index)
                result = None
            elif slot is not None and slot[0] == entry.term:
                # Our own proposal (same index and term: the same entry, Raft's Log
                # Matching): apply the command we encoded instead of decoding it again.
                result = machine.apply(entry.index, entry.data, decoded=slot[2])
            else:
                result = machine.apply(entry.index, entry.data)
            if slot is None:
                continue
            del waiting[entry.index]  # after apply: a failing apply leaves it for _fail_everything
            term, future, _ = slot
            if future.done():
                continue
            if term == entry.term:
                future.set_result((entry.index, result))
            else:
                _fail(future, NodeError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"the command at index {entry.index} was lost in a leader change (term {term} -> {entry.term}); "
                    "retrying with the same session and sequence is safe",
                ))

    async def _yield_to_loop(self) -> None:
        """Give the loop a turn in the middle of a long apply; as during a disk wait,
        inputs meanwhile send the messages due (heartbeats, their responses)."""
        previous, self._driver_waiting = self._driver_waiting, True
        try:
            self._send_early()
            await asyncio.sleep(0)
        finally:
            self._driver_waiting = previous

    def _fail_waiting_through(self, index: int) -> None:
        """A snapshot replaced the log through `index`: proposals there have an
        unknown outcome (the client's retry gets the session's cached result)."""
        replaced = [self._waiting.pop(i)[1] for i in [i for i in self._waiting if i <= index]]
        _fail_all(replaced, NodeError(
            grpc.StatusCode.UNAVAILABLE, "outcome unknown after a snapshot install; retry with the same session",
            maybe_applied=True,
        ))

    def _wake_applied_waiters(self) -> None:
        applied = self.machine.applied_index
        waiters = self._applied_waiters
        while waiters and waiters[0][0] <= applied:
            _, _, future = heapq.heappop(waiters)
            if not future.done():
                future.set_result(None)

    def _on_soft_state(self, rd: Ready) -> None:
        soft = rd.soft_state
        assert soft is not None and self.node is not None
        now = time.monotonic()
        if soft.leader == NONE:
            self._leader_unknown_since = now
        else:
            self._last_leader_contact = now
        log.info("node %d is %s in term %d; leader %s", self.id, soft.role.value, self.node.term, soft.leader or "unknown")
        for hook in self.hooks:
            hook.on_role(soft.role)
        if soft.role is not Role.LEADER:
            # Proposed here but not yet applied: they may still commit under the next
            # leader, or be overwritten. Waiting here could take as long as there is
            # no quorum, so answer now; a retry with the same (session, seq) is safe.
            self._fail_pending(self.leader_error(), in_log=NodeError(
                grpc.StatusCode.UNAVAILABLE,
                f"node {self.id} lost leadership before the command committed; it may still commit "
                "(retrying with the same session and sequence is safe)",
                maybe_applied=True,
            ))

    async def _on_disk(self, loop: asyncio.AbstractEventLoop, fn, *args):
        """Run `fn` in the disk thread. Meanwhile the loop goes on: ticks, incoming
        messages, heartbeats and their responses, the leader's appends (`_poke`)."""
        self._driver_waiting = True
        try:
            return await loop.run_in_executor(self._disk, fn, *args)
        finally:
            self._driver_waiting = False
            self._send_early()  # what was queued during the wait leaves now

    async def _maybe_snapshot(self, loop: asyncio.AbstractEventLoop) -> None:
        """The snapshot policy: every `snapshot_entries` applied entries, capture the
        state machine (cheap, here), encode it in its own thread while the node
        goes on, then compact the log to it."""
        node = self.node
        assert node is not None
        if self._snapshot_encoded is not None:
            index, data = self._snapshot_encoded
            self._snapshot_encoded = None
            if index > node.log.snapshot_index:  # not overtaken by a leader's snapshot
                node.compact(index, data)
                snapshot = node.snapshot
                await self._on_disk(loop, self._compact, snapshot)
                log.info("node %d took a snapshot at index %d (%d bytes)", self.id, index, len(data))
            return
        if node.log.applied >= self._next_gc_freeze:
            # Long-lived state (log entries, keys, sessions) would otherwise be rescanned
            # by every full cyclic collection; it holds no cycles, so refcounting still
            # frees whatever of it is dropped later (bench/core_bench.py --gc freeze).
            gc.freeze()
            self._next_gc_freeze = node.log.applied + GC_FREEZE_ENTRIES
        every = self.config.snapshot_entries
        if self._snapshotting or not every or node.log.applied - node.log.snapshot_index < every:
            return
        view = self.machine.capture()
        assert view.applied_index == node.log.applied, (view.applied_index, node.log.applied)
        self._snapshotting = True
        encoding = loop.run_in_executor(self._encoder, view.encode)
        encoding.add_done_callback(lambda f: self._encoded(view.applied_index, f))

    def _encoded(self, index: int, future: asyncio.Future) -> None:
        self._snapshotting = False
        if future.cancelled():
            return
        if future.exception() is not None:
            log.error("node %d could not encode a snapshot at %d: %r", self.id, index, future.exception())
            return
        self._snapshot_encoded = (index, future.result())
        self._wake.set()

    def _fail_everything(self, error: NodeError) -> None:
        """The node stops: everything waiting on it is answered."""
        self._fail_pending(error, in_log=NodeError(
            error.code, f"{error.message}; the command is in the log and may still be applied", maybe_applied=True
        ))
        waiters, self._applied_waiters = self._applied_waiters, []
        _fail_all((future for _, _, future in waiters), error)

    def _fail_pending(self, error: NodeError, *, in_log: NodeError) -> None:
        """Answer what waits on this node as the leader: queued proposals and reads
        get `error`, proposals already in the log `in_log` (they may still commit).
        The reads stay registered: read_index() removes its own when answered."""
        queued, self._queued = self._queued, []
        waiting, self._waiting = self._waiting, {}
        _fail_all((p.future for p in queued), error)
        _fail_all((future for _, future, _ in waiting.values()), in_log)
        _fail_all(self._reads.values(), error)


def _fail_all(futures: Iterable[asyncio.Future], error: BaseException) -> None:
    for future in futures:
        _fail(future, error)


def _fail(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
