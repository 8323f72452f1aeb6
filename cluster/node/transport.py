"""Raft messages between nodes over gRPC: one long-lived stream per peer.

Outbound, each peer has a `PeerLink`: messages are encoded when sent and gathered
into batches; one task writes the batches on a client stream (`Peer.Send`) and
reopens it when it breaks. Raft tolerates lost messages, so while a peer is
unreachable its messages are dropped rather than queued without bound. Snapshot
chunks go on their own stream (`Peer.InstallSnapshot`) so that a large transfer
never holds up heartbeats.

Inbound, `PeerService` checks every batch (cluster id, addressee, sender) and
hands each decoded message to the node. With TLS (the default) the sender must
also be the node its certificate names: a stream whose certificate says node 2
carries only batches from node 2, and a stream with no member's certificate
carries none.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence

import grpc

from raftflow.cluster.protocol.faults import FaultFilter
from raftflow.cluster.protocol.wire import CHANNEL_OPTIONS
from raftflow.proto import peer_pb2, peer_pb2_grpc
from raftflow.raft.codec import DecodeError, decode_message, encode_message
from raftflow.cluster.node.snapshot_spool import SnapshotSpool, SpoolRefused, remove_leftovers
from raftflow.raft.types import InstallSnapshot, Message

log = logging.getLogger("raftflow.transport")

BATCH_BYTES_MAX = 4 << 20  # one RaftBatch stays under this (at least one message)
PENDING_BYTES_MAX = 32 << 20  # per peer; beyond it, messages are dropped (Raft resends)
RECONNECT_DELAY_S = 0.05
MAX_DELAYED_MESSAGES = 100_000  # per peer and direction, held back by a delay fault; beyond, dropped

Connect = Callable[[str, Sequence[tuple[str, object]]], grpc.aio.Channel]  # (address, options) -> channel


def plaintext(address: str, options: Sequence[tuple[str, object]]) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=options)


class PeerLink:
    """The outbound half of the connection to one peer."""

    def __init__(self, cluster_id: str, self_id: int, peer_id: int, address: str, connect: Connect = plaintext) -> None:
        self.cluster_id = cluster_id
        self.connect = connect
        self.self_id = self_id
        self.peer_id = peer_id
        self.address = address
        self.connected = False  # the last write on the stream succeeded
        self.dropped = 0  # messages dropped while the peer was unreachable
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._wake = asyncio.Event()
        self._snapshots: asyncio.Queue[list[bytes]] = asyncio.Queue(maxsize=1)
        self._channel: grpc.aio.Channel | None = None
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._channel = self.connect(self.address, CHANNEL_OPTIONS)
        self._tasks = [
            asyncio.create_task(self._run(), name=f"peer-{self.peer_id}"),
            asyncio.create_task(self._run_snapshots(), name=f"peer-{self.peer_id}-snapshots"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._channel is not None:
            await self._channel.close()

    async def reconnect(self, connect: Connect) -> None:
        """Reopen the streams over a new channel (a reloaded certificate). What was
        queued is dropped; Raft resends."""
        await self.close()
        self._drop_pending()
        self.connect = connect
        self.connected = False
        self.start()

    def send(self, encoded: bytes) -> None:
        if self._pending_bytes + len(encoded) > PENDING_BYTES_MAX:
            self.dropped += 1
            return
        self._pending.append(encoded)
        self._pending_bytes += len(encoded)
        self._wake.set()

    def send_snapshot(self, chunks: list[bytes]) -> None:
        """All chunks of one snapshot; dropped if a transfer is already queued
        (the leader retries a snapshot it hears nothing about)."""
        try:
            self._snapshots.put_nowait(chunks)
        except asyncio.QueueFull:
            self.dropped += len(chunks)

    def _take_batch(self) -> list[bytes]:
        pending = self._pending
        size, n = 0, 0
        for n, raw in enumerate(pending):  # noqa: B007
            size += len(raw)
            if size > BATCH_BYTES_MAX and n > 0:
                break
        else:
            n = len(pending)
        batch, self._pending = pending[:n], pending[n:]
        self._pending_bytes -= sum(len(raw) for raw in batch)
        if self._pending:
            self._wake.set()
        return batch

    def _drop_pending(self) -> None:
        self.dropped += len(self._pending)
        self._pending = []
        self._pending_bytes = 0

    async def _run(self) -> None:
        stub = peer_pb2_grpc.PeerStub(self._channel)
        while True:
            await self._wake.wait()
            call = stub.Send()
            try:
                while True:
                    await self._wake.wait()
                    self._wake.clear()
                    batch = self._take_batch()
                    if not batch:
                        continue
                    await call.write(
                        peer_pb2.RaftBatch(
                            cluster_id=self.cluster_id, from_id=self.self_id, to_id=self.peer_id, messages=batch
                        )
                    )
                    self.connected = True
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError) as exc:
                self._lost(exc, call)
            except asyncio.CancelledError:
                call.cancel()
                raise
            # Messages queued while the stream was down are stale; Raft resends.
            self._drop_pending()
            await asyncio.sleep(RECONNECT_DELAY_S)  # backoff before reopening the stream

    def _lost(self, exc: BaseException, call: grpc.aio.StreamUnaryCall) -> None:
        if self.connected:
            log.info("stream to node %d at %s lost: %s", self.peer_id, self.address, _describe(exc))
        self.connected = False
        call.cancel()

    async def _run_snapshots(self) -> None:
        stub = peer_pb2_grpc.PeerStub(self._channel)
        while True:
            chunks = await self._snapshots.get()
            requests = [
                peer_pb2.SnapshotChunk(cluster_id=self.cluster_id, from_id=self.self_id, to_id=self.peer_id, message=c)
                for c in chunks
            ]
            try:
                await stub.InstallSnapshot(iter(requests), timeout=60)
            except grpc.aio.AioRpcError as exc:
                log.info("snapshot to node %d failed: %s", self.peer_id, _describe(exc))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return repr(exc)


class Transport:
    """Every outbound link of one node, when each peer was last heard from, and the
    faults injected between them (`cluster/faults.py`)."""

    def __init__(self, cluster_id: str, self_id: int, peers: dict[int, str], connect: Connect = plaintext) -> None:
        self.links = {
            peer_id: PeerLink(cluster_id, self_id, peer_id, address, connect)
            for peer_id, address in peers.items()
            if peer_id != self_id
        }
        self.last_heard: dict[int, float] = {}  # peer id -> time.monotonic()
        self.faults = FaultFilter(self_id, frozenset(self.links))
        self.delayed = {peer_id: 0 for peer_id in self.links}  # messages held back by a delay fault

    def start(self) -> None:
        for link in self.links.values():
            link.start()

    async def close(self) -> None:
        await asyncio.gather(*(link.close() for link in self.links.values()))

    async def reconnect(self, connect: Connect) -> None:
        await asyncio.gather(*(link.reconnect(connect) for link in self.links.values()))

    def send(self, messages: list[Message]) -> None:
        faults = self.faults
        late: dict[int, list[Message]] = {}
        now: list[Message] = []
        for m in messages:
            link = self.links.get(m.dst)
            if link is None:
                continue
            if faults and faults.drops_out(m.dst):
                link.dropped += 1
            elif faults and faults.delay_out_s(m.dst) > 0:
                late.setdefault(m.dst, []).append(m)
            else:
                now.append(m)
        self._send_now(now)
        loop = asyncio.get_running_loop() if late else None
        for dst, held in late.items():
            if self.delayed[dst] + len(held) > MAX_DELAYED_MESSAGES:
                self.links[dst].dropped += len(held)  # bounded like the link's own queue; Raft resends
                continue
            self.delayed[dst] += len(held)
            loop.call_later(faults.delay_out_s(dst), self._send_late, dst, held)

    def _send_now(self, messages: list[Message]) -> None:
        """Encode and queue; a snapshot's chunks travel together on their own stream."""
        snapshots: dict[int, list[bytes]] = {}
        for m in messages:
            if isinstance(m, InstallSnapshot):
                snapshots.setdefault(m.dst, []).append(encode_message(m))
            else:
                self.links[m.dst].send(encode_message(m))
        for dst, chunks in snapshots.items():
            self.links[dst].send_snapshot(chunks)

    def _send_late(self, dst: int, messages: list[Message]) -> None:
        """Delayed messages leave now (together, so a snapshot's chunks stay one
        transfer), unless their peer has been cut meanwhile."""
        self.delayed[dst] -= len(messages)
        if self.faults.drops_out(dst):
            self.links[dst].dropped += len(messages)
        else:
            self._send_now(messages)

    def reachable(self) -> int:
        """Peers whose stream is up and not cut by an injected fault (this node not counted)."""
        return sum(1 for peer, link in self.links.items() if link.connected and not self.faults.cut(peer))


class PeerService(peer_pb2_grpc.PeerServicer):
    """Inbound Raft messages. `deliver(messages)` steps them into the node."""

    def __init__(
        self, cluster_id: str, self_id: int, peers: dict[int, str], deliver: Callable[[list[Message]], None],
        last_heard: dict[int, float], faults: FaultFilter | None = None,
        identity: Callable[[object], list[int]] | None = None,
        spool_dir: str | None = None, max_snapshot_bytes: int = 512 << 20,
        refused: collections.Counter[str] | None = None,
        prepare_snapshot: Callable[[bytes], Awaitable[None]] | None = None,
    ) -> None:
        """`identity(context)`: the node ids the caller's certificate names; None
        in insecure mode (then nothing binds a sender to its connection).
        `spool_dir`: where incoming snapshots are spooled (the data dir); None
        hands each chunk to the node as it comes, which holds them in memory.
        `refused`: streams refused, counted by rule (the node's own counter, so
        that its status shows them beside the core's refusals).
        `prepare_snapshot(data)`: decodes a whole snapshot off the loop before the
        node's core checks it."""
        self.prepare_snapshot = prepare_snapshot
        self.cluster_id = cluster_id
        self.identity = identity
        self.spool_dir = spool_dir
        self.max_snapshot_bytes = max_snapshot_bytes
        self._transfers: dict[int, object] = {}  # sender -> the token of its one snapshot stream
        self._spools = itertools.count(1)
        if spool_dir is not None and os.path.isdir(spool_dir):
            remove_leftovers(spool_dir)
        self.refused = refused if refused is not None else collections.Counter()
        self.self_id = self_id
        self.peers = peers
        self.deliver = deliver
        self.last_heard = last_heard
        self.faults = faults or FaultFilter(self_id, frozenset(p for p in peers if p != self_id))
        self._delayed: dict[int, int] = {}  # peer id -> messages from it held back by a delay fault

    def _check(self, cluster_id: str, from_id: int, to_id: int) -> str | None:
        if cluster_id != self.cluster_id:
            return f"cluster id {cluster_id!r} is not this node's cluster {self.cluster_id!r}"
        if to_id != self.self_id:
            return f"batch for node {to_id} reached node {self.self_id}"
        if from_id not in self.peers or from_id == self.self_id:
            return f"node {from_id} is not a member; members are {sorted(self.peers)}"
        return None

    def _decode(self, raw_messages, from_id: int) -> list[Message]:
        out = []
        for raw in raw_messages:
            m = decode_message(raw)
            if m.src != from_id or m.dst != self.self_id:
                raise DecodeError(f"message from {m.src} to {m.dst} on the stream from node {from_id}")
            out.append(m)
        return out

    async def _sender(self, context) -> list[int] | None:
        """The ids the stream's certificate names (None: not checked); a stream
        without a member's certificate is refused before it carries anything."""
        if self.identity is None:
            return None
        ids = self.identity(context)
        if not any(i in self.peers and i != self.self_id for i in ids):
            problem = (
                f"the peer port takes streams from members only; this one's certificate names "
                f"{', '.join(f'node {i}' for i in ids) or 'no node'} (members: {sorted(self.peers)})"
            )
            self.refused["peer-certificate"] += 1
            log.warning("refused a peer stream: %s", problem)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, problem)
        return ids

    async def _accept(
        self, context, cluster_id: str, from_id: int, to_id: int, raw_messages, what: str, sender: list[int] | None,
    ) -> list[Message]:
        """The batch's messages, checked and decoded; the stream is aborted if not."""
        problem = self._check(cluster_id, from_id, to_id)
        if problem is None and sender is not None and from_id not in sender:
            problem = f"a batch claiming to come from node {from_id} on a stream whose certificate names node(s) {sender}"
        if problem:
            self.refused["peer-stream"] += 1
            log.warning("refused a peer stream: %s", problem)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, problem)
        try:
            return self._decode(raw_messages, from_id)
        except DecodeError as exc:
            self.refused["peer-decode"] += 1
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed {what}: {exc}")

    def _deliver(self, from_id: int, messages: list[Message]) -> None:
        """Into the node, unless an injected fault drops or delays them."""
        faults = self.faults
        if faults:
            if faults.drops_in(from_id):
                return  # as if it never arrived: not even heard from
            delay = faults.delay_in_s(from_id)
            if delay > 0:
                if self._delayed.get(from_id, 0) + len(messages) > MAX_DELAYED_MESSAGES:
                    return  # bounded; Raft resends
                self._delayed[from_id] = self._delayed.get(from_id, 0) + len(messages)
                asyncio.get_running_loop().call_later(delay, self._heard_late, from_id, messages)
                return
        self._heard(from_id, messages)

    def _heard_late(self, from_id: int, messages: list[Message]) -> None:
        self._delayed[from_id] -= len(messages)
        self._heard(from_id, messages)

    def _heard(self, from_id: int, messages: list[Message]) -> None:
        self.last_heard[from_id] = time.monotonic()
        self.deliver(messages)

    async def Send(self, request_iterator, context):
        received = 0
        sender = await self._sender(context)
        async for batch in request_iterator:
            messages = await self._accept(
                context, batch.cluster_id, batch.from_id, batch.to_id, batch.messages, "raft message", sender
            )
            self._deliver(batch.from_id, messages)
            received += 1
        return peer_pb2.StreamClosed(received=received)

    async def InstallSnapshot(self, request_iterator, context):
        """One snapshot per stream. Its chunks are spooled to disk and the node gets
        the whole snapshot at the end; one stream per sender at a time (a newer one
        replaces an older, whose file goes)."""
        received = 0
        sender = await self._sender(context)
        spool: SnapshotSpool | None = None
        spool_from = 0
        stream = object()
        try:
            async for chunk in request_iterator:
                (message,) = await self._accept(
                    context, chunk.cluster_id, chunk.from_id, chunk.to_id, [chunk.message], "snapshot chunk", sender
                )
                received += 1
                if not isinstance(message, InstallSnapshot):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a snapshot stream carries InstallSnapshot only")
                if self.spool_dir is None:
                    self._deliver(chunk.from_id, [message])
                    continue
                if spool is None:
                    spool_from = chunk.from_id
                    spool = SnapshotSpool(self.spool_dir, spool_from, next(self._spools), self.max_snapshot_bytes)
                    self._transfers[spool_from] = stream
                elif self._transfers.get(chunk.from_id) is not stream:
                    await context.abort(grpc.StatusCode.ABORTED, "a newer snapshot transfer from this node replaced it")
                try:
                    whole = await spool.add(message)
                except SpoolRefused as exc:
                    self.refused["snapshot-stream"] += 1
                    log.warning("refused a snapshot stream from node %d: %s", chunk.from_id, exc)
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
                except OSError as exc:  # the data dir's disk (full, failing): this transfer fails, the node goes on
                    log.error("node %d cannot spool a snapshot from node %d: %s", self.self_id, chunk.from_id, exc)
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"cannot spool the snapshot: {exc}")
                if whole is not None:
                    if self.prepare_snapshot is not None:
                        await self.prepare_snapshot(whole.snapshot.data)
                    self._deliver(chunk.from_id, [whole])
        finally:
            if spool is not None:
                spool.discard()
                if self._transfers.get(spool_from) is stream:
                    del self._transfers[spool_from]
        return peer_pb2.StreamClosed(received=received)
