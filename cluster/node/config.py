"""A node's settings: read from a TOML file, overridden by flags, checked once.

    id = 1
    cluster_id = "raftflow-5f3c"
    data_dir = "/var/lib/raftflow/1"
    listen = "0.0.0.0:7001"          # where the peer port binds (default: this node's [peers] entry)
    client_listen = "0.0.0.0:7101"   # where the client port binds (default: its [clients] entry)
    tls_ca = "/etc/raftflow/ca.crt"  # the CA that signed every member's certificate
    tls_cert = "/etc/raftflow/node-1.crt"  # this node's: its SANs name raftflow://node/1
    tls_key = "/etc/raftflow/node-1.key"
    admin_token_sha256 = "9f86d0..."  # SHA-256 (hex) of the bootstrap admin token's secret

    [peers]                          # every member's peer port (mutual TLS), this node included
    1 = "10.0.0.1:7001"
    2 = "10.0.0.2:7001"
    3 = "10.0.0.3:7001"

    [clients]                        # every member's client port (TLS and a bearer token)
    1 = "10.0.0.1:7101"
    2 = "10.0.0.2:7101"
    3 = "10.0.0.3:7101"

Peers talk on one port, clients on another: a node demands a member's certificate
on the peer port, which a client (or a browser) does not have. `insecure = true`
(`node run --insecure`) serves both on the [peers] address (and on the [clients]
address too, if set) in plaintext, with no certificates and no tokens; [clients]
and the tls_* keys are then optional.

Every other key is optional; see `NodeConfig` for the defaults. A mistake (unknown
key, wrong type, bad address, this node missing from [peers]) is a `ConfigError`
whose message names the key and the rule.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass

from raftflow.cluster.protocol.wire import parse_address
from raftflow.raft.config import Config, ConfigError
from raftflow.statemachine.workflow.ops import WorkflowLimits


@dataclass(frozen=True, slots=True)
class NodeConfig:
    id: int
    peers: dict[int, str]  # node id -> address of its peer port, this node included
    data_dir: str
    clients: dict[int, str] = dataclasses.field(default_factory=dict)  # node id -> its client port
    cluster_id: str = "raftflow"
    listen: str = ""  # default: this node's address in `peers`
    client_listen: str = ""  # default: this node's address in `clients`
    # Security. Off only with insecure = true: then no TLS and no tokens, and anyone
    # who reaches a port can read and change everything and forge peer messages.
    insecure: bool = False
    tls_ca: str = ""  # PEM file: the CA(s) that signed the members' certificates
    tls_cert: str = ""  # PEM file: this node's certificate (SAN URI raftflow://node/<id>)
    tls_key: str = ""  # PEM file: its private key
    admin_token_sha256: str = ""  # hex SHA-256 of the bootstrap admin token's secret (id "admin")
    tick_ms: int = 10  # one Raft tick
    election_ticks: int = 15  # election timeout: [150, 300) ms at the default tick
    heartbeat_ticks: int = 2
    snapshot_entries: int = 100_000  # applied entries between local snapshots (0: never), as etcd
    max_pending_proposals: int = 10_000  # queued + uncommitted client commands
    fsync: bool = True  # off only for benchmarks: acknowledged writes may be lost on a crash
    session_ttl_s: float = 3600.0  # a client session unused this long (leader time) expires
    max_sessions: int = 100_000
    max_sessions_per_owner: int = 10_000  # per token: opening one more expires that token's least recently used
    max_tokens: int = 10_000  # tokens issued and not revoked; `auth issue` past it is RESOURCE_EXHAUSTED
    seed: int | None = None  # election timer randomness; None: from the OS
    # Workflows. A new leader gives started activities this long to report before
    # their timeouts count (their worker could reach no leader meanwhile).
    rearm_grace_ms: int = 5000
    # Every node must use the same engine limits: they decide which starts are
    # refused and when closed workflows are removed.
    workflow_retention_s: float = 7 * 86400.0  # closed workflows (and their history) kept this long
    max_task_backlog: int = 10_000  # scheduled tasks per task queue; a start beyond it is refused
    max_history_events: int = 10_000  # per workflow run; past it the workflow fails
    max_history_bytes: int = 32 << 20  # payload bytes per workflow run; past it the workflow fails
    max_workflow_types: int = 10_000  # registered workflow types (name, version)
    max_workflow_type_bytes: int = 64 << 20  # their encoded definitions, in all
    max_long_polls: int = 10_000  # PollActivityTasks and WaitWorkflow calls waiting at once
    # Fault injection: every write of log entries takes this much longer (a slow
    # disk under a large write). Tests use it to show that a slow fsync costs no
    # leadership.
    slow_disk_ms: int = 0
    # Admin.SetFaults (`raftflow partition ...`) is refused unless this is on: one
    # call can cut a node off. `cluster up` turns it on for local clusters.
    allow_faults: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.id, int) or self.id <= 0:
            raise ConfigError(f"id={self.id!r} must be a positive integer")
        if self.id not in self.peers:
            raise ConfigError(f"id={self.id} is not in peers {sorted(self.peers)}; list every member, this node included")
        for node_id, address in self.peers.items():
            if not isinstance(node_id, int) or node_id <= 0:
                raise ConfigError(f"peer id {node_id!r} must be a positive integer")
            parse_address(address, what=f"peers.{node_id}")
        if len(set(self.peers.values())) != len(self.peers):
            raise ConfigError(f"peers {self.peers} gives two nodes the same address")
        for name in ("listen", "client_listen"):
            if getattr(self, name):
                parse_address(getattr(self, name), what=name)
        if not self.data_dir:
            raise ConfigError("data_dir is empty; name the folder this node keeps its log in")
        if not self.cluster_id:
            raise ConfigError("cluster_id is empty")
        for name in (
            "tick_ms", "max_pending_proposals", "max_sessions", "max_sessions_per_owner", "max_tokens", "max_long_polls",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be at least 1")
        if self.slow_disk_ms < 0:
            raise ConfigError(f"slow_disk_ms={self.slow_disk_ms} must be 0 (off) or more")
        if self.snapshot_entries < 0:
            raise ConfigError(f"snapshot_entries={self.snapshot_entries} must be 0 (never) or more")
        if not 0 <= self.rearm_grace_ms <= 3_600_000:
            raise ConfigError(f"rearm_grace_ms={self.rearm_grace_ms} must be from 0 to 3600000 (an hour)")
        if self.workflow_retention_s < 0:
            raise ConfigError(f"workflow_retention_s={self.workflow_retention_s} must be 0 or more")
        self.workflow_limits()  # the engine checks max_task_backlog and max_history_events
        if self.session_ttl_s <= 0:
            raise ConfigError(f"session_ttl_s={self.session_ttl_s} must be positive")
        self.raft_config()  # checks election_ticks and heartbeat_ticks
        self._check_clients()
        self._check_security()

    def _check_clients(self) -> None:
        if not self.clients:
            if not self.insecure:
                raise ConfigError(
                    "clients is missing: a [clients] table of id = \"host:port\" (each member's client port), "
                    "or insecure = true to serve clients on the peer port in plaintext"
                )
            return
        if set(self.clients) != set(self.peers):
            raise ConfigError(f"clients names nodes {sorted(self.clients)}; peers names {sorted(self.peers)}: list the same members")
        for node_id, address in self.clients.items():
            parse_address(address, what=f"clients.{node_id}")
        if len(set(self.clients.values())) != len(self.clients):
            raise ConfigError(f"clients {self.clients} gives two nodes the same address")
        if not self.insecure and self.listen and self.listen == self.client_listen:
            raise ConfigError(f"listen and client_listen are both {self.listen}: the two ports must differ")
        shared = set(self.clients.values()) & set(self.peers.values())
        if shared and not self.insecure:
            raise ConfigError(
                f"{sorted(shared)} is both a peer and a client address: peers need a port of their own "
                "(it demands a member's certificate, which clients do not have)"
            )

    def _check_security(self) -> None:
        if self.insecure:
            return
        for name in ("tls_ca", "tls_cert", "tls_key"):
            if not getattr(self, name):
                raise ConfigError(
                    f"{name} is missing: nodes need a CA, a certificate and a key (docs/security.md), "
                    "or insecure = true (--insecure) to run in plaintext with no authentication"
                )
        if self.admin_token_sha256 and not _is_sha256_hex(self.admin_token_sha256):
            raise ConfigError("admin_token_sha256 must be 64 hex digits (the SHA-256 of the admin token's secret)")

    @property
    def address(self) -> str:
        """Where peers reach this node."""
        return self.peers[self.id]

    @property
    def client_address(self) -> str:
        """Where clients reach this node (its peer address in insecure mode)."""
        return self.clients.get(self.id, self.address)

    def client_address_of(self, node_id: int) -> str:
        """Where clients reach node `node_id`: what a leader hint carries."""
        return self.clients.get(node_id) or self.peers.get(node_id, "")

    @property
    def listen_address(self) -> str:
        return self.listen or self.address

    @property
    def client_listen_address(self) -> str:
        return self.client_listen or self.client_address

    def workflow_limits(self) -> WorkflowLimits:
        try:
            return WorkflowLimits(
                max_history_events=self.max_history_events,
                max_history_bytes=self.max_history_bytes,
                max_types=self.max_workflow_types,
                max_type_bytes=self.max_workflow_type_bytes,
                max_backlog=self.max_task_backlog,
                retention_ms=int(self.workflow_retention_s * 1000),
            )
        except ValueError as exc:
            raise ConfigError(str(exc).replace("max_backlog", "max_task_backlog")) from None

    def raft_config(self) -> Config:
        return Config(
            id=self.id,
            voters=tuple(sorted(self.peers)),
            election_ticks=self.election_ticks,
            heartbeat_ticks=self.heartbeat_ticks,
            max_uncommitted_entries=max(self.max_pending_proposals, 1),
            # Followers learn the commit index from the next append or heartbeat
            # (every heartbeat_ticks): one message and one follower cycle less per
            # commit round, which is most of the work of a lightly loaded cluster.
            eager_commit=False,
        )

    def to_toml(self) -> str:
        lines = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _TABLES or value is None:
                continue
            lines.append(f"{f.name} = {_toml_value(value)}")
        for table in _TABLES:
            addresses = getattr(self, table)
            if addresses:
                lines.append("")
                lines.append(f"[{table}]")
                lines.extend(f'{node_id} = "{address}"' for node_id, address in sorted(addresses.items()))
        return "\n".join(lines) + "\n"


def _is_sha256_hex(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text.lower())


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


_TABLES = ("peers", "clients")  # id -> address tables
_FIELDS = {f.name: f for f in dataclasses.fields(NodeConfig)}
_TYPES = {"int": int, "str": str, "bool": bool, "float": (int, float), "int | None": int}


def load_config(path: str | None, overrides: dict[str, object] | None = None) -> NodeConfig:
    """Settings from the TOML file at `path` (if any), then `overrides` (flags)."""
    values: dict[str, object] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                values = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown}; known: {sorted(_FIELDS)}")
    peers = values.get("peers")
    if not isinstance(peers, dict) or not peers:
        raise ConfigError("peers is missing: a [peers] table of id = \"host:port\", this node included")
    for table in _TABLES:
        addresses = values.get(table)
        if addresses is None:
            continue
        if not isinstance(addresses, dict):
            raise ConfigError(f"{table} must be a table of id = \"host:port\"")
        try:
            values[table] = {int(k): v for k, v in addresses.items()}
        except ValueError:
            raise ConfigError(f"{table}: ids must be whole numbers, got {sorted(addresses)}") from None
    for name, value in values.items():
        if name in _TABLES:
            continue
        expected = _TYPES[str(_FIELDS[name].type)]
        if isinstance(value, bool) and expected is not bool or not isinstance(value, expected):
            raise ConfigError(f"{name}={value!r} must be of type {_FIELDS[name].type}")
    for required in ("id", "data_dir"):
        if required not in values:
            raise ConfigError(f"{required} is missing")
    return NodeConfig(**values)  # type: ignore[arg-type]


__all__ = ["ConfigError", "NodeConfig", "load_config"]
