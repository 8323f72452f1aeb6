"""A node's settings: TOML plus flags, every mistake named."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from raftflow.cluster.node.config import ConfigError, NodeConfig, load_config
from raftflow.cluster.protocol.wire import parse_address

PEERS = {"1": "10.0.0.1:7001", "2": "10.0.0.2:7001", "3": "10.0.0.3:7001"}
CLIENTS = {"1": "10.0.0.1:7101", "2": "10.0.0.2:7101", "3": "10.0.0.3:7101"}
TLS = {"tls_ca": "/etc/raftflow/ca.crt", "tls_cert": "/etc/raftflow/n.crt", "tls_key": "/etc/raftflow/n.key"}


def write(tmp_path, text: str) -> str:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return str(path)


def test_a_config_written_by_to_toml_loads_back_the_same(tmp_path):
    config = load_config(None, {
        "id": 2, "data_dir": "/var/lib/raftflow/2", "peers": PEERS, "clients": CLIENTS, "tick_ms": 20,
        "admin_token_sha256": "ab" * 32, **TLS,
    })
    assert load_config(write(tmp_path, config.to_toml())) == config
    assert config.address == "10.0.0.2:7001"
    assert config.listen_address == "10.0.0.2:7001"  # nothing assumes 127.0.0.1
    assert config.client_address == config.client_listen_address == "10.0.0.2:7101"
    assert config.client_address_of(3) == "10.0.0.3:7101"  # what a leader hint carries
    insecure = load_config(None, {"id": 2, "data_dir": "/d", "peers": PEERS, "insecure": True})
    assert load_config(write(tmp_path, insecure.to_toml())) == insecure
    assert insecure.client_address == insecure.address and insecure.client_address_of(3) == "10.0.0.3:7001"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "clients is missing: a [clients] table"),
        ({"clients": CLIENTS}, "tls_ca is missing: nodes need a CA, a certificate and a key"),
        ({"clients": CLIENTS, **TLS, "tls_key": ""}, "tls_key is missing"),
        ({"clients": {"1": "10.0.0.1:7101"}, **TLS}, "clients names nodes [1]; peers names [1, 2, 3]"),
        ({"clients": {**CLIENTS, "3": "10.0.0.3:7001"}, **TLS}, "is both a peer and a client address"),
        ({"clients": CLIENTS, **TLS, "admin_token_sha256": "xyz"}, "admin_token_sha256 must be 64 hex digits"),
    ],
)
def test_security_settings_are_checked_and_plaintext_needs_asking(settings, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, {"id": 1, "data_dir": "/d", "peers": PEERS, **settings})
    assert message in str(err.value)


def test_flags_override_the_file(tmp_path):
    path = write(tmp_path, 'id = 1\ndata_dir = "/d"\ninsecure = true\nelection_ticks = 20\n[peers]\n1 = "h1:1"\n2 = "h2:1"\n3 = "h3:1"\n')
    config = load_config(path, {"election_ticks": 30, "listen": "0.0.0.0:1", "tick_ms": None})
    assert (config.election_ticks, config.listen_address, config.tick_ms) == (30, "0.0.0.0:1", 10)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('id = 1\ndata_dir = "/d"\n', "peers is missing"),
        ('id = 4\ndata_dir = "/d"\n[peers]\n1 = "h:1"\n', "id=4 is not in peers"),
        ('id = 1\ndata_dir = "/d"\nbogus = 3\n[peers]\n1 = "h:1"\n', "unknown setting(s) ['bogus']"),
        ('id = 1\ndata_dir = "/d"\ntick_ms = "fast"\n[peers]\n1 = "h:1"\n', "tick_ms='fast' must be of type int"),
        ('id = 1\ndata_dir = "/d"\n[peers]\n1 = "nohostport"\n', "peers.1='nohostport' is not host:port"),
        ('id = 1\ndata_dir = "/d"\n[peers]\n1 = "h:99999"\n', "port 99999 is outside 1-65535"),
        ('id = 1\ndata_dir = "/d"\n[peers]\n1 = "h:1"\n2 = "h:1"\n', "gives two nodes the same address"),
        ('id = 1\ndata_dir = "/d"\nheartbeat_ticks = 20\n[peers]\n1 = "h:1"\n', "heartbeat_ticks=20 must be below"),
        ('id = 1\n[peers]\n1 = "h:1"\n', "data_dir is missing"),
        ("id = = 1\n", "is not valid TOML"),
    ],
)
def test_a_bad_config_names_the_setting_and_the_rule(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert message in str(err.value)


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.toml"))


def test_ipv6_addresses_in_brackets_parse():
    assert parse_address("[::1]:7001") == ("[::1]", 7001)


def test_node_run_with_a_bad_config_prints_one_line_and_exits_2(tmp_path):
    path = write(tmp_path, 'id = 1\ndata_dir = "/d"\n[peers]\n1 = "h:0"\n')
    result = subprocess.run(
        [sys.executable, "-m", "raftflow", "node", "run", "--config", path],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["raftflow: config: peers.1='h:0': port 0 is outside 1-65535"]


def test_node_run_on_a_port_in_use_names_the_address_and_exits_1(tmp_path):
    # gRPC raises (it no longer returns 0) when the bind fails: that was a traceback.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "raftflow", "node", "run", "--id", "1", "--peers", f"1=127.0.0.1:{port}",
             "--data-dir", str(tmp_path / "d"), "--insecure"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"raftflow: node 1: cannot listen on 127.0.0.1:{port}: the address is in use or not local"
    )


def test_node_config_defaults_keep_the_lease_and_election_rules():
    config = NodeConfig(id=1, peers={1: "h:1"}, data_dir="/d", insecure=True)
    raft = config.raft_config()
    assert raft.heartbeat_ticks < raft.election_ticks
    assert config.snapshot_entries == 100_000 and config.fsync


def test_every_setting_is_documented():
    import dataclasses
    import pathlib

    docs = pathlib.Path(__file__).resolve().parents[1] / "docs"
    text = (docs / "cluster.md").read_text() + (docs / "workflow-guide.md").read_text()
    undocumented = [f.name for f in dataclasses.fields(NodeConfig) if f.name not in text]
    assert undocumented == [], f"settings missing from docs/cluster.md and docs/workflow-guide.md: {undocumented}"
