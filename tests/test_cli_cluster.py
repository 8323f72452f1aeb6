"""The `raftflow` CLI end to end: real node processes on 127.0.0.1, driven the way a
user drives them, one `python -m raftflow ...` subprocess per command.

Most checks share one 3-node cluster (the `shared` fixture, started once with
`cluster up`); the tests that break a cluster (no quorum, down and up again) start
their own. Every cluster is torn down even when a test fails: `cluster down`, then
SIGKILL for any pid still listed in DIR/cluster.json.

The CLI's contract under test: results on stdout (`-o json` parses), exit 0 on
success, and a failure is a non-zero exit with exactly one line on stderr that
names the problem, never a traceback.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raftflow.cluster.local import launcher
from raftflow.cluster.client import Client, NodeStatus, RaftflowError
from raftflow.cluster.security.credentials import Credentials
from raftflow.raft.types import Role
from procnet import live_statuses, wait_until

ROOT = Path(__file__).resolve().parent.parent
CLI_TIMEOUT_S = 60.0  # no CLI call may hang the suite
WAIT_S = 20.0  # deadline of every wait for a cluster condition
_ports_rng = random.Random(os.getpid())


# --- running the CLI -----------------------------------------------------------------


def raftflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `raftflow ARGS` as a user would; RAFTFLOW_ENDPOINTS only when `env` sets it."""
    environment = {k: v for k, v in os.environ.items() if k != "RAFTFLOW_ENDPOINTS"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "raftflow", *args], stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=CLI_TIMEOUT_S, cwd=ROOT, env=environment,
    )


def _shown(result: subprocess.CompletedProcess) -> str:
    return f"{result.args[3:]} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"


def succeeded(result: subprocess.CompletedProcess) -> str:
    """stdout of a call that must exit 0."""
    assert result.returncode == 0, _shown(result)
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess, *words: str, code: int | None = None) -> str:
    """The single stderr line of a call that must fail, naming every one of `words`."""
    assert result.returncode != 0, _shown(result)
    if code is not None:
        assert result.returncode == code, _shown(result)
    assert "Traceback" not in result.stderr, _shown(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, _shown(result)
    for word in words:
        assert word in lines[0], _shown(result)
    return lines[0]


def table(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


# --- ports and clusters ----------------------------------------------------------------


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port(nodes: int, tries: int = 20) -> int:
    """A port P with P..P+nodes-1 all free on 127.0.0.1 now."""
    for _ in range(tries):
        base = _ports_rng.randrange(20_000, 60_000)
        if all(_bindable(port) for port in range(base, base + nodes)):
            return base
    raise AssertionError(f"no {nodes} consecutive free ports on 127.0.0.1 in {tries} tries")


class LocalCluster:
    """A cluster in `dir` run through the CLI, with in-process eyes on its nodes."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.base_port = 0
        self._client: Client | None = None

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return raftflow(*args, "--dir", str(self.dir), env=env)

    def up(self, nodes: int = 3) -> subprocess.CompletedProcess:
        """`cluster up --nodes N` on a fresh base port; another try if a port was taken meanwhile."""
        for _ in range(3):
            self.base_port = free_base_port(nodes)
            result = self.cli("cluster", "up", "--nodes", str(nodes), "--base-port", str(self.base_port))
            if "in use" not in result.stderr or (self.dir / launcher.CLUSTER_FILE).exists():
                break
        return result

    def file(self) -> launcher.ClusterFile:
        return launcher.ClusterFile.load(str(self.dir))

    @property
    def endpoints(self) -> list[str]:
        return self.file().endpoints

    def address(self, node_id: int) -> str:
        return self.file().member(node_id).address

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.endpoints, timeout=5.0, credentials=Credentials.from_cluster_dir(str(self.dir)))
        return self._client

    def close(self) -> None:
        """Stop everything this cluster started, whatever state the test left it in."""
        started = (self.dir / launcher.CLUSTER_FILE).exists()
        try:
            if self._client is not None:
                self._client.close()
            if started:
                raftflow("cluster", "down", "--dir", str(self.dir))
        finally:
            if started:
                cluster = self.file()
                for member in cluster.members:
                    if launcher.process_alive(member.pid):
                        launcher.stop_node(cluster, member, kill=True)

    # --- observations, in-process (cheaper than a CLI call per poll) -------------------

    def statuses(self) -> dict[int, NodeStatus]:
        """The status of every running node that answers."""
        return live_statuses(self.client, self.file().members)

    def leader(self) -> int:
        """The node every answering node agrees leads, or 0."""
        statuses = self.statuses()
        leaders = [i for i, s in statuses.items() if s.role is Role.LEADER]
        if len(leaders) != 1 or {s.leader_id for s in statuses.values()} != {leaders[0]}:
            return 0
        return leaders[0]

    def wait_leader(self, *, other_than: int = 0) -> int:
        def new_leader() -> int:
            leader = self.leader()
            return 0 if leader == other_than else leader

        return wait_until(new_leader, WAIT_S, f"one leader (not node {other_than}) that every live node agrees on")

    def wait_applied(self, index: int, node_ids: list[int]) -> None:
        wait_until(
            lambda: all(self.client.status(self.address(i)).applied_index >= index for i in node_ids), WAIT_S,
            f"nodes {node_ids} to apply index {index}",
        )

    def wait_converged(self, nodes: int = 3) -> dict[int, str]:
        """All `nodes` nodes applied the same index; returns each one's state hash."""

        def converged():
            statuses = self.statuses()
            applied = {s.applied_index for s in statuses.values()}
            if len(statuses) != nodes or len(applied) != 1:
                return None
            hashes = {i: self.client.state_hash(self.address(i)) for i in statuses}
            if {h.applied_index for h in hashes.values()} != applied:
                return None
            return {i: h.hash for i, h in hashes.items()}

        return wait_until(converged, WAIT_S, f"all {nodes} nodes to apply the same index")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One 3-node cluster for the checks that leave it whole. `up_result` is the
    `cluster up` call that started it."""
    cluster = LocalCluster(tmp_path_factory.mktemp("shared"))
    try:
        cluster.up_result = cluster.up(3)
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def new_cluster(tmp_path):
    """Makes clusters of the test's own, torn down at its end."""
    clusters: list[LocalCluster] = []

    def make(name: str = "cluster") -> LocalCluster:
        cluster = LocalCluster(tmp_path / name)
        clusters.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.close()


def status_json(cluster: LocalCluster) -> list[dict]:
    return json.loads(succeeded(cluster.cli("cluster", "status", "-o", "json")))


# --- cluster up and status -------------------------------------------------------------


def test_cluster_up_prints_the_members_with_one_leader_and_writes_the_cluster_file(shared):
    rows = table(succeeded(shared.up_result))
    assert rows[0] == ["ID", "ADDRESS", "STATUS", "ROLE", "TERM", "LEADER", "LAST", "COMMIT", "APPLIED", "NETWORK"]
    assert [r[:3] for r in rows[1:4]] == [[str(i), f"127.0.0.1:{shared.base_port + i - 1}", "up"] for i in (1, 2, 3)]
    assert [r[3] for r in rows[1:4]].count("leader") == 1
    assert " ".join(rows[4]) == "security: TLS, peers mutual TLS, a token on every call"

    members = shared.file().members
    assert [m.id for m in members] == [1, 2, 3]
    for m in members:
        assert m.address == f"127.0.0.1:{shared.base_port + m.id - 1}"
        assert launcher.process_alive(m.pid), m
        assert os.path.isdir(m.data_dir), m


def test_cluster_status_as_json_and_as_a_table(shared):
    def settled():
        # On a loaded CI machine an election may be in progress; wait until it settles.
        rows = status_json(shared)
        leaders = {r.get("leader") for r in rows}
        return rows if len(leaders) == 1 and len({r.get("term") for r in rows}) == 1 else None

    rows = wait_until(settled, 10, "every node to report the same leader and term")
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert all(r["up"] for r in rows), rows
    assert [r["role"] for r in rows].count("leader") == 1, rows
    leader = next(r["id"] for r in rows if r["role"] == "leader")
    assert {r["leader"] for r in rows} == {leader}, rows
    assert len({r["term"] for r in rows}) == 1, rows

    assert all(r["tls"] and r["peer_address"] != r["address"] for r in rows), rows
    lines = table(succeeded(shared.cli("cluster", "status")))
    assert lines[0] == ["ID", "ADDRESS", "STATUS", "ROLE", "TERM", "LEADER", "LAST", "COMMIT", "APPLIED", "NETWORK"]
    assert len(lines) == 5 and lines[4][0] == "security:"


# --- kv --------------------------------------------------------------------------------


def test_kv_put_and_get_in_table_and_json(shared):
    assert re.fullmatch(r"OK \(revision \d+\)\n", succeeded(shared.cli("kv", "put", "colour", "blue")))
    assert succeeded(shared.cli("kv", "get", "colour")) == "blue\n"

    put = json.loads(succeeded(shared.cli("kv", "put", "colour", "green", "-o", "json")))
    assert put["succeeded"] is True and put["index"] > 0 and put["revision"] > 0, put
    assert put["prev"]["value"] == "blue" and put["current"] is None, put

    got = json.loads(succeeded(shared.cli("kv", "get", "colour", "-o", "json")))
    assert got["found"] is True and got["stale"] is False, got
    assert got["kv"]["value"] == "green" and got["kv"]["version"] == 2, got
    assert got["kv"]["mod_revision"] == put["revision"] and got["applied_index"] >= put["index"], got


def test_kv_get_lease_and_stale_reads(shared):
    put = json.loads(succeeded(shared.cli("kv", "put", "fruit", "plum", "-o", "json")))
    shared.wait_applied(put["index"], [1, 2, 3])  # a stale read may lag; wait so it cannot

    assert succeeded(shared.cli("kv", "get", "fruit", "--consistency", "lease")) == "plum\n"

    stale = json.loads(succeeded(shared.cli("kv", "get", "fruit", "--consistency", "stale", "-o", "json")))
    assert stale["stale"] is True and stale["kv"]["value"] == "plum", stale

    from_two = shared.cli("kv", "get", "fruit", "--consistency", "stale", "--node", "2", "-o", "json")
    from_two = json.loads(succeeded(from_two))
    assert from_two["node"] == 2 and from_two["stale"] is True and from_two["kv"]["value"] == "plum", from_two


def test_kv_cas_swaps_only_when_the_value_matches(shared):
    succeeded(shared.cli("kv", "put", "door", "closed"))

    assert re.fullmatch(r"OK \(revision \d+\)\n", succeeded(shared.cli("kv", "cas", "door", "closed", "open")))

    refused = shared.cli("kv", "cas", "door", "closed", "ajar")
    assert refused.returncode == 1, _shown(refused)
    assert refused.stdout == "not swapped: door holds 'open'\n", _shown(refused)

    refused_json = shared.cli("kv", "cas", "door", "closed", "ajar", "-o", "json")
    assert refused_json.returncode == 1, _shown(refused_json)
    refused_json = json.loads(refused_json.stdout)
    assert refused_json["succeeded"] is False and refused_json["current"]["value"] == "open", refused_json
    swapped = json.loads(succeeded(shared.cli("kv", "cas", "door", "open", "shut", "-o", "json")))
    assert swapped["succeeded"] is True and swapped["current"]["value"] == "shut", swapped


def test_kv_delete_then_get_and_delete_again(shared):
    succeeded(shared.cli("kv", "put", "temp", "x"))

    deleted = json.loads(succeeded(shared.cli("kv", "delete", "temp", "-o", "json")))
    assert deleted["succeeded"] is True and deleted["prev"]["value"] == "x", deleted
    one_line_error(shared.cli("kv", "get", "temp"), "'temp'", "not found", code=1)

    again = shared.cli("kv", "delete", "temp")
    assert again.returncode == 1 and again.stdout == "temp did not exist\n", _shown(again)


def test_endpoints_from_the_flag_or_the_environment_need_no_cluster_file(shared, tmp_path):
    endpoints = ",".join(shared.endpoints)
    no_cluster = str(tmp_path)  # holds no cluster.json: what a client on another host has
    ca_file, token_file = str(shared.dir / "tls" / "ca.crt"), str(shared.dir / "tokens" / "admin.token")
    security = {"RAFTFLOW_CA_FILE": ca_file, "RAFTFLOW_TOKEN_FILE": token_file}

    succeeded(raftflow("kv", "put", "via", "flag", "--endpoints", endpoints, "--dir", no_cluster,
                       "--ca-file", ca_file, "--token-file", token_file))
    got = raftflow("kv", "get", "via", "--dir", no_cluster, env={"RAFTFLOW_ENDPOINTS": endpoints, **security})
    assert succeeded(got) == "flag\n"
    rows = json.loads(succeeded(raftflow(
        "cluster", "status", "-o", "json", "--dir", no_cluster, env={"RAFTFLOW_ENDPOINTS": endpoints, **security}
    )))
    assert [r["address"] for r in rows] == shared.endpoints and all(r["up"] for r in rows), rows


# --- leadership and node lifecycle ------------------------------------------------------


def test_transfer_leader_moves_leadership(shared):
    leader = shared.wait_leader()
    target = 3 if leader != 3 else 1

    assert succeeded(shared.cli("cluster", "transfer-leader", str(target))).startswith(f"node {target} leads")

    assert shared.wait_leader() == target
    rows = status_json(shared)
    assert {r["leader"] for r in rows} == {target}, rows


def test_killed_leader_is_replaced_and_restarted_nodes_catch_up(shared):
    old = shared.wait_leader()

    assert succeeded(shared.cli("node", "kill", str(old))) == f"node {old} killed\n"
    new = shared.wait_leader(other_than=old)
    rows = {r["id"]: r for r in status_json(shared)}
    assert rows[old]["up"] is False and rows[new]["role"] == "leader", rows
    succeeded(shared.cli("kv", "put", "after-kill", "1"))

    assert succeeded(shared.cli("node", "start", str(old))).startswith(f"node {old} started")
    shared.wait_converged()

    follower = next(i for i in (1, 2, 3) if i != shared.wait_leader())
    assert succeeded(shared.cli("node", "stop", str(follower))) == f"node {follower} stopped\n"
    succeeded(shared.cli("kv", "put", "after-stop", "2"))
    succeeded(shared.cli("node", "start", str(follower)))

    hashes = shared.wait_converged()
    assert len(set(hashes.values())) == 1, hashes
    assert succeeded(shared.cli("kv", "get", "after-stop")) == "2\n"


# --- errors: one line on stderr, a non-zero exit ---------------------------------------


def test_error_unknown_flag(shared):
    one_line_error(shared.cli("kv", "put", "k", "v", "--bogus"), "unrecognized arguments: --bogus", code=2)


def test_error_get_of_a_missing_key(shared):
    one_line_error(shared.cli("kv", "get", "never-written"), "'never-written'", "not found", code=1)


def test_error_endpoint_that_is_not_host_port():
    one_line_error(raftflow("kv", "put", "k", "v", "--endpoints", "nonsense"), "'nonsense'", "host:port", code=2)


def test_error_endpoint_where_nothing_listens():
    result = raftflow("kv", "put", "k", "v", "--endpoints", "127.0.0.1:1")
    one_line_error(result, "127.0.0.1:1", "not reachable", code=1)


def test_error_status_of_a_folder_without_a_cluster(tmp_path):
    one_line_error(raftflow("cluster", "status", "--dir", str(tmp_path)), "no cluster in", str(tmp_path), code=1)


def test_error_stop_of_a_node_that_is_not_a_member(shared):
    one_line_error(shared.cli("node", "stop", "9"), "node 9 is not in", "members are [1, 2, 3]", code=1)


def test_error_unknown_consistency(shared):
    one_line_error(shared.cli("kv", "get", "k", "--consistency", "bogus"), "--consistency", "'bogus'", code=2)


@pytest.mark.parametrize("nodes", ["4", "0", "-3", "9"])
def test_error_cluster_of_an_unsupported_size(new_cluster, nodes):
    # Found trying it as a new user: --nodes 0 started three nodes (`args.nodes or 3`).
    cluster = new_cluster()  # torn down should the command start anything after all
    result = cluster.cli("cluster", "up", "--nodes", nodes, "--base-port", "20000")
    one_line_error(result, f"--nodes {nodes}", "1, 3, 5 or 7", code=2)
    assert not (cluster.dir / launcher.CLUSTER_FILE).exists()


def test_error_cluster_up_on_ports_in_use(new_cluster):
    cluster = new_cluster()
    base = free_base_port(3)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", base))
        taken.listen()
        result = cluster.cli("cluster", "up", "--nodes", "3", "--base-port", str(base))
    one_line_error(result, f"port(s) {base} on 127.0.0.1 are in use", code=1)
    assert not (cluster.dir / launcher.CLUSTER_FILE).exists()


# --- tests with a cluster of their own ----------------------------------------------------


def test_kv_put_without_quorum_fails_fast(new_cluster):
    cluster = new_cluster()
    succeeded(cluster.up(3))
    leader = cluster.wait_leader()
    follower = next(i for i in (1, 2, 3) if i != leader)
    # The follower first: the survivor then stays a follower (pre-vote wins it no
    # election alone). A surviving leader is the case of the next test.
    succeeded(cluster.cli("node", "kill", str(follower)))
    succeeded(cluster.cli("node", "kill", str(leader)))

    started = time.monotonic()
    result = cluster.cli("kv", "put", "k", "v")
    elapsed = time.monotonic() - started

    line = one_line_error(result, code=1)
    assert "no quorum" in line or "not reachable" in line, line
    assert elapsed < 5.0, f"a put without quorum took {elapsed:.1f}s to fail: {line}"


def test_put_to_a_leader_that_just_lost_quorum_fails_fast(new_cluster):
    """In-process, not through the CLI: a CLI process starts too slowly to be sure
    its put reaches the leader before check-quorum makes it step down (~150 ms)."""
    cluster = new_cluster()
    succeeded(cluster.up(3))
    leader = cluster.wait_leader()
    followers = [m for m in cluster.file().members if m.id != leader]
    with Client([cluster.address(leader)], timeout=4.0, credentials=Credentials.from_cluster_dir(str(cluster.dir))) as client:
        client.put("warm", b"session open")
        for m in followers:  # both at once, so the put below reaches a node that still leads
            os.kill(m.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(RaftflowError):
            client.put("k", b"v")
        elapsed = time.monotonic() - started

    assert elapsed < 3.0, f"a put to a leader without quorum took {elapsed:.1f}s to fail"


def test_cluster_down_then_up_restarts_with_the_data(new_cluster):
    cluster = new_cluster()
    succeeded(cluster.up(3))
    succeeded(cluster.cli("kv", "put", "kept", "yes"))
    pids = [m.pid for m in cluster.file().members]

    assert succeeded(cluster.cli("cluster", "down")) == "".join(f"node {i} stopped\n" for i in (1, 2, 3))
    assert not any(launcher.process_alive(pid) for pid in pids), pids
    assert [m.pid for m in cluster.file().members] == [0, 0, 0]

    again = cluster.cli("cluster", "up")
    assert "restarting" in again.stderr, _shown(again)
    assert [r[3] for r in table(succeeded(again))[1:]].count("leader") == 1
    assert succeeded(cluster.cli("kv", "get", "kept")) == "yes\n"
