"""The node process: a RaftNode built from its config, with its parts (state machine,
peer transport, log storage, the workflow driver) and its gRPC services."""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import signal
import stat

import grpc

from raftflow.cluster.node.config import NodeConfig
from raftflow.cluster.node.raftnode import RaftNode
from raftflow.cluster.node.services import AdminService, ClientService, WorkflowService
from raftflow.cluster.node.transport import PeerService, Transport
from raftflow.cluster.node.workflow_driver import WorkflowDriver
from raftflow.cluster.protocol.wire import SERVER_OPTIONS
from raftflow.proto import admin_pb2_grpc, client_pb2_grpc, peer_pb2_grpc, workflow_pb2_grpc
from raftflow.raft.disk import DiskStorage
from raftflow.raft.fs import OsFS
from raftflow.statemachine.machine import Machine

log = logging.getLogger("raftflow.node")


class _NoSyncFS(OsFS):
    """For benchmarks only (`fsync = false`): writes reach the page cache, never
    the disk, so a machine crash may lose acknowledged writes."""

    def open_write(self, path: str):
        return _NoSyncFile(super().open_write(path))

    def sync_dir(self, path: str) -> None:
        pass


class _NoSyncFile:
    def __init__(self, file) -> None:
        self._file = file
        self.write_at, self.allocate = file.write_at, file.allocate
        self.truncate, self.close = file.truncate, file.close

    def sync(self) -> None:
        pass


def open_storage(config: NodeConfig) -> DiskStorage:
    """The node's log storage in `data_dir`, created on first start (blocking I/O)."""
    create = not os.path.exists(os.path.join(config.data_dir, "raftflow.meta"))
    fs = OsFS() if config.fsync else _NoSyncFS()
    storage = DiskStorage(config.data_dir, cluster_id=config.cluster_id, node_id=config.id, create=create, fs=fs)
    warn_if_open_to_others(config.data_dir)
    return storage


def warn_if_open_to_others(data_dir: str) -> None:
    """One warning line when other users may enter `data_dir` (it holds the whole
    application state). A folder this build creates is 0700; one an earlier build
    created (0755) keeps working as it is: changing its mode unasked could lock out
    whatever else reads it (a backup job), so the warning says how instead."""
    mode = stat.S_IMODE(os.stat(data_dir).st_mode)
    if mode & 0o077:
        log.warning(
            "data dir %s is open to other users (mode %03o); it holds the whole cluster state: "
            "make it private with `chmod -R go-rwx %s`", data_dir, mode, shlex.quote(data_dir),
        )


class NodeServer:
    """One node with its gRPC server on `listen_address`. `start()` opens the
    storage, starts the node and serves; `stop()` is graceful."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.node: RaftNode | None = None
        self.driver: WorkflowDriver | None = None
        self.server: grpc.aio.Server | None = None
        self.workflow_service: WorkflowService | None = None

    async def start(self) -> RaftNode:
        cfg = self.config
        storage = await asyncio.get_running_loop().run_in_executor(None, open_storage, cfg)
        machine = Machine(
            session_ttl_ms=int(cfg.session_ttl_s * 1000), max_sessions=cfg.max_sessions,
            workflow_limits=cfg.workflow_limits(),
        )
        transport = Transport(cfg.cluster_id, cfg.id, cfg.peers)
        node = self.node = RaftNode(cfg, machine=machine, transport=transport, storage=storage)
        driver = self.driver = WorkflowDriver(node, rearm_grace_ms=cfg.rearm_grace_ms)
        node.hooks.append(driver)
        server = self.server = grpc.aio.server(options=SERVER_OPTIONS)
        peer_pb2_grpc.add_PeerServicer_to_server(
            PeerService(cfg.cluster_id, cfg.id, cfg.peers, node.deliver, transport.last_heard, transport.faults), server
        )
        client_pb2_grpc.add_ClientServicer_to_server(ClientService(node), server)
        admin_pb2_grpc.add_AdminServicer_to_server(AdminService(node), server)
        self.workflow_service = WorkflowService(node, driver)
        workflow_pb2_grpc.add_WorkflowsServicer_to_server(self.workflow_service, server)
        # The server stops inside node.stop(), after every waiter has its answer and
        # before the log closes: on a graceful stop and when the node fails alike.
        node.closing.append(lambda: server.stop(0.2))
        try:
            await node.start()  # loads the log: a damaged data dir fails here, before any port opens
        except BaseException:
            self.node = self.server = None  # nothing was started: nothing to stop
            await asyncio.get_running_loop().run_in_executor(None, storage.close)
            raise
        try:
            bound = server.add_insecure_port(cfg.listen_address)
        except RuntimeError:  # grpcio >= 1.5x raises where older ones returned 0
            bound = 0
        if bound == 0:
            node.closing.clear()  # never started: nothing to stop
            await node.stop()
            raise OSError(f"cannot listen on {cfg.listen_address}: the address is in use or not local")
        await server.start()
        return node

    async def stop(self) -> None:
        """Graceful: the node refuses new work, finishes the Ready in progress, answers
        every waiter, stops the server, then closes its transport and log."""
        if self.node is not None:
            await self.node.stop()  # the server stops inside it (node.closing)


async def serve(config: NodeConfig) -> int:
    """Run a node until SIGTERM/SIGINT (graceful stop) or a storage failure."""
    process = NodeServer(config)
    node = await process.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"raftflow node {config.id} serving on {config.listen_address} (pid {os.getpid()})", flush=True)
    waiter = asyncio.create_task(stop.wait())
    stopped = asyncio.create_task(node.stopped.wait())
    await asyncio.wait([waiter, stopped], return_when=asyncio.FIRST_COMPLETED)
    await process.stop()
    waiter.cancel()
    return 1 if node.failure is not None else 0
