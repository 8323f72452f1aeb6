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

from raftflow.cluster.node.access import Access
from raftflow.cluster.node.config import NodeConfig
from raftflow.cluster.node.raftnode import RaftNode, wall_ms
from raftflow.cluster.node.services import AdminService, ClientService, WorkflowService
from raftflow.cluster.node.transport import PeerService, Transport, plaintext
from raftflow.cluster.security.node_tls import NodeTls, peer_node_ids
from raftflow.cluster.security.pki import TlsFiles
from raftflow.raft.config import ConfigError
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
    """One node with its gRPC server: the peer port on `listen_address` and, with
    TLS, the client port on `client_listen_address`. `start()` checks the
    certificates, opens the storage, starts the node and serves; `stop()` is
    graceful; `reload_tls()` takes new certificate files (SIGHUP)."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.node: RaftNode | None = None
        self.driver: WorkflowDriver | None = None
        self.server: grpc.aio.Server | None = None
        self.workflow_service: WorkflowService | None = None
        self.peer_service: PeerService | None = None
        self.access: Access | None = None
        self.tls: NodeTls | None = None
        self._reloading = asyncio.Lock()  # one SIGHUP reload at a time

    async def start(self) -> RaftNode:
        cfg = self.config
        loop = asyncio.get_running_loop()
        if not cfg.insecure:
            files = TlsFiles(cfg.tls_ca, cfg.tls_cert, cfg.tls_key)
            self.tls = await loop.run_in_executor(None, NodeTls, files, cfg.id)  # ConfigError: nothing started
        storage = await loop.run_in_executor(None, open_storage, cfg)
        machine = Machine(
            session_ttl_ms=int(cfg.session_ttl_s * 1000), max_sessions=cfg.max_sessions,
            max_sessions_per_owner=cfg.max_sessions_per_owner, max_tokens=cfg.max_tokens,
            workflow_limits=cfg.workflow_limits(),
        )
        transport = Transport(cfg.cluster_id, cfg.id, cfg.peers, self.tls.channel if self.tls else plaintext)
        node = self.node = RaftNode(cfg, machine=machine, transport=transport, storage=storage)
        driver = self.driver = WorkflowDriver(node, rearm_grace_ms=cfg.rearm_grace_ms)
        node.hooks.append(driver)
        access = self.access = Access(
            enabled=not cfg.insecure,
            admin_secret_sha256=bytes.fromhex(cfg.admin_token_sha256) if cfg.admin_token_sha256 else None,
            # Expiry by the later of the log's clock and this node's: the log's moves only
            # when entries apply, so an idle cluster would keep an expired token alive.
            tokens=lambda token_id: machine.auth.token(token_id), now_ms=lambda: max(machine.now_ms, wall_ms()),
        )
        server = self.server = grpc.aio.server(options=SERVER_OPTIONS)
        self.peer_service = PeerService(
            cfg.cluster_id, cfg.id, cfg.peers, node.deliver, transport.last_heard, transport.faults,
            identity=peer_node_ids if self.tls else None,
            spool_dir=cfg.data_dir, max_snapshot_bytes=cfg.raft_config().max_snapshot_bytes, refused=node.refused,
            prepare_snapshot=node.predecode_snapshot,
        )
        peer_pb2_grpc.add_PeerServicer_to_server(self.peer_service, server)
        client_pb2_grpc.add_ClientServicer_to_server(ClientService(node, access), server)
        admin_pb2_grpc.add_AdminServicer_to_server(AdminService(node, access), server)
        self.workflow_service = WorkflowService(node, driver, access)
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
        for address, credentials in self._ports():
            try:
                bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
            except RuntimeError:  # grpcio >= 1.5x raises where older ones returned 0
                bound = 0
            if bound == 0:
                node.closing.clear()  # never started: nothing to stop
                await node.stop()
                raise OSError(f"cannot listen on {address}: the address is in use or not local")
        await server.start()
        return node

    def _ports(self) -> list[tuple[str, grpc.ServerCredentials | None]]:
        """(address, credentials) of each port: the peer port demands a member's
        certificate, the client port none. Insecure: plaintext, and one port
        unless [clients] names another."""
        cfg = self.config
        peer, client = cfg.listen_address, cfg.client_listen_address
        if self.tls is None:
            return [(peer, None)] if client == peer else [(peer, None), (client, None)]
        return [
            (peer, self.tls.server_credentials(require_client_certificate=True)),
            (client, self.tls.server_credentials(require_client_certificate=False)),
        ]

    async def reload_tls(self) -> bool:
        """Read the certificate files again (SIGHUP). New handshakes use them and
        the peer streams reopen with them; if they fail the checks, the node goes
        on with the old ones and says why. True if they were taken."""
        if self.tls is None:
            log.info("node %d runs without TLS (--insecure): nothing to reload", self.config.id)
            return False
        async with self._reloading:
            if self.node is None or self.node.stopping:
                return False
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, self.tls.reload)
            except ConfigError as exc:
                log.error("node %d kept its certificate: the new files fail a check: %s", self.config.id, exc)
                return False
            if not self.node.stopping:
                await self.node.transport.reconnect(self.tls.channel)
            return True

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
    reloads: set[asyncio.Task] = set()

    def reload() -> None:
        task = asyncio.create_task(process.reload_tls())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    if config.insecure:
        log.warning(
            "node %d runs with --insecure: no TLS and no tokens; anyone who reaches %s can read and change "
            "everything, forge peer messages and inject faults", config.id, config.listen_address,
        )
        where = config.listen_address
    else:
        where = f"{config.client_listen_address} (clients, TLS) and {config.listen_address} (peers, mutual TLS)"
    print(f"raftflow node {config.id} serving on {where} (pid {os.getpid()})", flush=True)
    waiter = asyncio.create_task(stop.wait())
    stopped = asyncio.create_task(node.stopped.wait())
    await asyncio.wait([waiter, stopped], return_when=asyncio.FIRST_COMPLETED)
    loop.remove_signal_handler(signal.SIGHUP)
    for task in reloads:
        task.cancel()
    await asyncio.gather(*reloads, return_exceptions=True)
    await process.stop()
    waiter.cancel()
    return 1 if node.failure is not None else 0
