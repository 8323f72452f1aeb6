"""A local cluster: node processes started in the background, described by
DIR/cluster.json (ids, addresses, pids, data dirs, config and log files).

    DIR/cluster.json
    DIR/node-1.toml   DIR/node-1.log   DIR/data-1/
    ...
    DIR/tls/ca.crt ca.key node-1.crt node-1.key ...   (the cluster's own CA)
    DIR/tokens/admin.token                              (the bootstrap admin token)

Each node has a client port (its `address`: TLS, and a bearer token on every call)
and a peer port (mutual TLS with the members' certificates). `insecure=True` makes a
plaintext cluster instead: one port per node, no certificates, no tokens.

`up()` on a folder that already holds a cluster starts its stopped nodes again,
with their data. Waiting for a leader says what it waits for and gives up with a
reason (a node that exited, with the last line of its log) rather than hang.

Everything here is private to the user running it: the folder is created 0700 and
each file 0600 (they hold the cluster's configuration, its data and logs of its
requests), whatever the umask. A folder an earlier build made keeps its modes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

from raftflow.cluster.client import Client, RaftflowError
from raftflow.cluster.node.config import ConfigError, NodeConfig, load_config
from raftflow.cluster.security import pki
from raftflow.cluster.security.credentials import ADMIN_TOKEN_FILE, DEFAULT_CLUSTER_DIR, TOKENS_DIR, Credentials
from raftflow.cluster.security.tokens import ADMIN_TOKEN_ID, new_token
from raftflow.raft.fs import makedirs_private, open_private, write_private
from raftflow.raft.types import Role

CLUSTER_FILE = "cluster.json"
DEFAULT_DIR = DEFAULT_CLUSTER_DIR
DEFAULT_BASE_PORT = 7001


class LauncherError(Exception):
    """A cluster operation that cannot go ahead; the message says why."""


@dataclass(slots=True)
class Member:
    id: int
    address: str  # where clients reach it
    data_dir: str
    config: str
    log: str
    pid: int = 0
    peer_address: str = ""  # where peers reach it ("": the same as address, insecure)


@dataclass(slots=True)
class ClusterFile:
    dir: str
    cluster_id: str
    members: list[Member]

    @property
    def path(self) -> str:
        return os.path.join(self.dir, CLUSTER_FILE)

    @property
    def endpoints(self) -> list[str]:
        return [m.address for m in self.members]

    def credentials(self, token: str | None = None) -> Credentials:
        """What a client of this cluster shows: its CA and the admin token (or
        `token`); plaintext for a cluster made with insecure=True."""
        return Credentials.from_cluster_dir(self.dir, token)

    def client(self, **options) -> Client:
        """A client of this cluster with the admin's credentials."""
        options.setdefault("credentials", self.credentials())
        return Client(self.endpoints, **options)

    def member(self, node_id: int) -> Member:
        for m in self.members:
            if m.id == node_id:
                return m
        raise LauncherError(f"node {node_id} is not in {self.path}; members are {[m.id for m in self.members]}")

    def save(self) -> None:
        data = {"cluster_id": self.cluster_id, "members": [asdict(m) for m in self.members]}
        write_private(self.path, (json.dumps(data, indent=2) + "\n").encode())

    @classmethod
    def load(cls, directory: str) -> ClusterFile:
        path = os.path.join(directory, CLUSTER_FILE)
        try:
            with open(path) as f:
                data = json.load(f)
            members = [Member(**m) for m in data["members"]]  # peer_address: absent in older files
            return cls(directory, data["cluster_id"], members)
        except FileNotFoundError:
            raise LauncherError(f"no cluster in {directory}: {path} does not exist (start one with `raftflow cluster up`)") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise LauncherError(f"{path} is damaged: {exc}") from None


def open_log(path: str):
    """`path` opened for appending a child's output; created 0600 (a log holds
    request details), an existing log keeps its mode."""
    return os.fdopen(open_private(path, os.O_WRONLY | os.O_APPEND), "ab")


def process_alive(pid: int) -> bool:
    """True while `pid` runs a raftflow node (a zombie or a reused pid is not one)."""
    if pid <= 0:
        return False
    try:
        os.waitpid(pid, os.WNOHANG)  # reap our own child if it exited
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    # `python -m raftflow node run` (launcher.start_node); a node an earlier build
    # started ran `-m cluster.cli`: still one of ours, so `cluster down` stops it.
    return state != "Z" and (b"\0-m\0raftflow\0node\0run\0" in cmdline or b"\0-m\0cluster.cli\0node\0run\0" in cmdline)


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """n distinct ports the OS says are free now (bound together, then released)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


SIZES = (1, 3, 5, 7)


def check_size(nodes: int) -> None:
    """ConfigError unless a local cluster can have this many nodes."""
    if nodes not in SIZES:
        raise ConfigError(f"--nodes {nodes}: a cluster has 1, 3, 5 or 7 nodes (an odd number tolerates the most failures)")


def create(
    directory: str, nodes: int, base_port: int = 0, host: str = "127.0.0.1", *, insecure: bool = False, **settings
) -> ClusterFile:
    """Write the configs of a new cluster (nothing is started), with its CA, node
    certificates and admin token unless `insecure`. Clients reach node i at
    base_port + i - 1 and peers at base_port + nodes + i - 1 (insecure: one port,
    base_port + i - 1); base_port 0 takes ports the OS says are free. Bad input
    (node count, port range) is a ConfigError; ports someone else holds, a
    LauncherError."""
    check_size(nodes)
    settings.setdefault("allow_faults", True)  # a local cluster is for trying partitions out
    count = nodes if insecure else 2 * nodes
    if base_port == 0:
        ports = free_ports(count, host)
    else:
        if not 0 < base_port <= 65536 - count:
            raise ConfigError(f"--base-port {base_port} leaves no room for {count} ports")
        ports = list(range(base_port, base_port + count))
    busy = [p for p in ports if not _port_free(host, p)]
    if busy:
        raise LauncherError(f"port(s) {', '.join(map(str, busy))} on {host} are in use; choose another --base-port")
    makedirs_private(directory)
    directory = os.path.abspath(directory)
    cluster_id = f"raftflow-{uuid.uuid4().hex[:8]}"
    clients = {i: f"{host}:{port}" for i, port in enumerate(ports[:nodes], start=1)}
    peers = clients if insecure else {i: f"{host}:{port}" for i, port in enumerate(ports[nodes:], start=1)}
    if insecure:
        settings["insecure"] = True
    else:
        settings.update(_security(directory, cluster_id, host, nodes), clients=clients)
    members = []
    for node_id in sorted(peers):
        data_dir = os.path.join(directory, f"data-{node_id}")
        config_path = os.path.join(directory, f"node-{node_id}.toml")
        tls = {} if insecure else _tls_settings(directory, node_id)
        config = NodeConfig(id=node_id, peers=peers, data_dir=data_dir, cluster_id=cluster_id, **settings, **tls)
        write_private(config_path, config.to_toml().encode())
        members.append(Member(
            node_id, clients[node_id], data_dir, config_path, os.path.join(directory, f"node-{node_id}.log"),
            peer_address="" if insecure else peers[node_id],
        ))
    cluster = ClusterFile(directory, cluster_id, members)
    cluster.save()
    return cluster


def _security(directory: str, cluster_id: str, host: str, nodes: int) -> dict[str, object]:
    """The cluster's CA and node certificates in DIR/tls, its bootstrap admin token
    in DIR/tokens/admin.token; what every node's config says of them."""
    hosts = [host, "localhost"] if host in ("127.0.0.1", "::1", "localhost") else [host]
    pki.create_local(directory, cluster_id, {node_id: hosts for node_id in range(1, nodes + 1)})
    token = new_token(ADMIN_TOKEN_ID)
    makedirs_private(os.path.join(directory, TOKENS_DIR))
    write_private(os.path.join(directory, TOKENS_DIR, ADMIN_TOKEN_FILE), (token.text + "\n").encode())
    return {"admin_token_sha256": token.secret_sha256.hex()}


def _tls_settings(directory: str, node_id: int) -> dict[str, str]:
    files = pki.local_paths(directory, node_id)
    return {"tls_ca": files.ca, "tls_cert": files.cert, "tls_key": files.key}


def start_node(cluster: ClusterFile, member: Member) -> None:
    if process_alive(member.pid):
        return
    load_config(member.config)  # a broken config fails here, with its reason, not in the log
    with open_log(member.log) as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "raftflow", "node", "run", "--config", member.config],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=cluster.dir,
        )
    member.pid = proc.pid
    cluster.save()
    # Popen returns once exec has begun, a moment before /proc shows the new command
    # line; until then process_alive() says no, and wait_for_leader() would report
    # the node as exited. Wait for the command line (or an exit), briefly.
    deadline = time.monotonic() + 5.0
    while not process_alive(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)  # polling another process's exec: there is no event to wait on


def stop_node(cluster: ClusterFile, member: Member, *, kill: bool = False, timeout: float = 10.0) -> bool:
    """SIGTERM (graceful) or SIGKILL; waits until the process is gone. False if it
    was not running."""
    if not process_alive(member.pid):
        member.pid = 0
        cluster.save()
        return False
    os.kill(member.pid, signal.SIGKILL if kill else signal.SIGTERM)
    if not kill:
        os.kill(member.pid, signal.SIGCONT)  # a paused node (`node pause`) must run to act on SIGTERM
    deadline = time.monotonic() + timeout
    while process_alive(member.pid):
        if time.monotonic() > deadline:
            os.kill(member.pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.01)  # polling another process's exit: there is no event to wait on
    member.pid = 0
    cluster.save()
    return True


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGTERM a child (a worker), SIGKILL it if it has not exited by `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def last_log_line(member: Member) -> str:
    try:
        with open(member.log, "rb") as f:
            f.seek(max(0, os.path.getsize(member.log) - 4096))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "empty log"


def wait_for_leader(
    cluster: ClusterFile,
    status_of: Callable[[list[str]], list[tuple[str, object]]],
    *,
    timeout: float = 20.0,
    say: Callable[[str], None] = lambda text: None,
    exclude: frozenset[int] | set[int] = frozenset(),
) -> int:
    """Wait until a leader is elected and every running node knows it; returns the
    leader's id. `status_of(endpoints)` gives (endpoint, NodeStatus or an error
    string) pairs. Members in `exclude` (say, one just killed) are left out."""
    members = [m for m in cluster.members if m.id not in exclude]
    deadline = time.monotonic() + timeout
    said = ""
    quorum = len(cluster.members) // 2 + 1
    while True:
        for m in members:
            if m.pid and not process_alive(m.pid):
                raise LauncherError(f"node {m.id} exited: {last_log_line(m)} (log: {m.log})")
        answers = dict(status_of([m.address for m in members]))
        statuses = [answers.get(m.address, "no answer") for m in members]
        up = [s for s in statuses if not isinstance(s, str)]
        leaders = {s.leader_id for s in up if s.leader_id}
        leader = next((s.id for s in up if s.role is Role.LEADER), 0)
        if leader and leaders == {leader} and len(up) == len(statuses):
            return leader
        if len(up) < quorum:
            text = f"waiting for quorum: {len(up)} of {len(cluster.members)} nodes up"
        else:
            text = f"waiting for a leader: {len(up)} of {len(cluster.members)} nodes up"
        if text != said:
            say(text)
            said = text
        if time.monotonic() > deadline:
            down = [f"node {m.id} ({last_log_line(m)})" for m, s in zip(members, statuses) if isinstance(s, str)]
            reason = f"; not answering: {', '.join(down)}" if down else ""
            raise LauncherError(f"no leader after {timeout:.0f}s: {text.removeprefix('waiting for ')}{reason}")
        time.sleep(0.05)  # polling other processes' state over RPC


def converged_hashes(
    cluster: ClusterFile, client: Client, timeout: float = 20.0
) -> tuple[int, dict[int, str]]:
    """Wait until every node has applied the same index (its commit index), then
    (that index, each node's state hash); the caller judges whether they agree."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            statuses = [client.status(m.address, timeout=0.5) for m in cluster.members]
            if len({(s.applied_index, s.commit_index) for s in statuses}) == 1:
                hashes = {m.id: client.state_hash(m.address) for m in cluster.members}
                if len({h.applied_index for h in hashes.values()}) == 1:
                    return statuses[0].applied_index, {i: h.hash for i, h in hashes.items()}
        except RaftflowError:
            pass  # a node still starting or electing: ask again
        time.sleep(0.02)  # polling other processes
    raise LauncherError(f"the nodes did not converge within {timeout:.0f} s")
