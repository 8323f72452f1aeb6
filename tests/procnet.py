"""Real node processes for tests: a local cluster on 127.0.0.1, on free ports, in a
temporary folder; every process it starts is killed at the end.

Waiting is always for a condition with a deadline (`wait_until`), never a sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from raftflow.cluster.local import launcher
from raftflow.cluster.client import Client, RaftflowError
from raftflow.cluster.security.credentials import Credentials
from raftflow.raft.types import Role


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.02):
    """Poll `condition` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except (RaftflowError, OSError) as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))
        time.sleep(interval)  # polling other processes: there is no event to wait on


def live_statuses(client: Client, members: list[launcher.Member]) -> dict[int, object]:
    """The status of every running member that answers, by node id."""
    out = {}
    for m in members:
        if not launcher.process_alive(m.pid):
            continue
        try:
            out[m.id] = client.status(m.address, timeout=1.0)
        except RaftflowError:
            pass
    return out


_CREDENTIALS: dict[str, Credentials] = {}  # client address -> its cluster's admin credentials


def aio_channel(address: str, options=()) -> grpc.aio.Channel:
    """An asyncio channel to a test cluster's node with its CA and admin token."""
    return _CREDENTIALS[address].channel(address, list(options))


def sync_channel(address: str, options=(), token: str | None = None) -> grpc.Channel:
    """A blocking channel to a test cluster's node with its CA and a token on
    every call (the admin's unless given), for raw calls."""
    creds = _CREDENTIALS[address]
    token = token or creds.token
    if creds.insecure:
        return grpc.insecure_channel(address, options=list(options))
    tls = grpc.ssl_channel_credentials(root_certificates=creds.ca_pem)
    if token:
        tls = grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(token))
    return grpc.secure_channel(address, tls, options=list(options))


class ProcCluster:
    def __init__(self, directory: str, nodes: int, **settings) -> None:
        self.cluster = launcher.create(directory, nodes, 0, **settings)
        credentials = self.cluster.credentials()
        _CREDENTIALS.update({m.address: credentials for m in self.cluster.members})
        self.client = self.cluster.client(timeout=10.0, no_leader_timeout=5.0)

    # --- processes ------------------------------------------------------------------

    def start(self, node_id: int | None = None) -> None:
        members = self.cluster.members if node_id is None else [self.cluster.member(node_id)]
        for m in members:
            launcher.start_node(self.cluster, m)

    def kill(self, node_id: int) -> None:
        launcher.stop_node(self.cluster, self.cluster.member(node_id), kill=True)

    def stop(self, node_id: int) -> None:
        launcher.stop_node(self.cluster, self.cluster.member(node_id))

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            for m in self.cluster.members:
                if launcher.process_alive(m.pid):
                    launcher.stop_node(self.cluster, m, kill=True)

    def address(self, node_id: int) -> str:
        return self.cluster.member(node_id).address

    def client_of(self, addresses: list[str], **options) -> Client:
        """A client of some of the nodes, with the admin's credentials."""
        return Client(addresses, credentials=self.cluster.credentials(), **options)

    # --- observations ---------------------------------------------------------------

    def statuses(self) -> dict[int, object]:
        return live_statuses(self.client, self.cluster.members)

    def leader(self, exclude: set[int] = frozenset()) -> int:
        """The node every live node agrees leads, or 0."""
        statuses = {i: s for i, s in self.statuses().items() if i not in exclude}
        leaders = [i for i, s in statuses.items() if s.role is Role.LEADER]
        if len(leaders) != 1:
            return 0
        known = {s.leader_id for s in statuses.values()}
        return leaders[0] if known == {leaders[0]} else 0

    def wait_leader(self, timeout: float = 15.0, exclude: set[int] = frozenset()) -> int:
        return wait_until(lambda: self.leader(exclude), timeout, "one leader all live nodes agree on")

    def wait_converged(self, timeout: float = 20.0) -> dict[int, str]:
        """Every live node applied the same index; returns each node's state hash."""

        def converged():
            statuses = self.statuses()
            alive = [m.id for m in self.cluster.members if launcher.process_alive(m.pid)]
            if set(statuses) != set(alive):
                return None
            applied = {s.applied_index for s in statuses.values()}
            commits = {s.commit_index for s in statuses.values()}
            if len(applied) != 1 or applied != commits:
                return None
            hashes = {i: self.client.state_hash(self.address(i)) for i in statuses}
            if {h.applied_index for h in hashes.values()} != applied:
                return None
            return {i: h.hash for i, h in hashes.items()}

        return wait_until(converged, timeout, "every live node to apply the same index")
