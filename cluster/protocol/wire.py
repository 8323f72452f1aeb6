"""What a node and its callers agree on beyond the .proto files: gRPC channel
settings, the trailing metadata a node sets on its own errors, and addresses."""

from __future__ import annotations

import grpc

from raftflow.raft.config import ConfigError

# Channel settings: reconnect quickly after a peer restarts (gRPC's default backoff
# grows to two minutes), and allow messages as large as a snapshot chunk batch.
MAX_MESSAGE_BYTES = 64 << 20
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
]
# What a node takes in one request, checked by gRPC before anything is decoded: a
# peer batch (4 MiB and one more message of at most ~1 MiB of entries), a snapshot
# chunk (1 MiB), or a client's CommandBatch, which the client keeps under
# COMMAND_BATCH_BYTES_MAX (every command's payload has a cap of its own, at most
# 1 MiB). Replies may be larger (a long history): the clients take up to
# MAX_MESSAGE_BYTES.
MAX_REQUEST_BYTES = 16 << 20
COMMAND_BATCH_BYTES_MAX = 4 << 20
# The server accepts the clients' keepalive pings (every 10 s, idle or not); with
# gRPC's default policy (one per 5 min without data) it answers an idle client's
# pings with GOAWAY "too_many_pings" and drops the connection.
SERVER_OPTIONS = [option for option in CHANNEL_OPTIONS if option[0] != "grpc.max_receive_message_length"] + [
    ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
]

# Trailing metadata on the errors a node reports itself (the node's services set
# them, the client reads them): which node answered (so not the network), where the
# leader is ("ID ADDRESS"), and that the command is in the log and may still apply.
NODE_METADATA = "raftflow-node"
LEADER_METADATA = "raftflow-leader"
MAYBE_APPLIED_METADATA = "raftflow-maybe-applied"

_STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def status_code(number: int) -> grpc.StatusCode:
    """The gRPC status a CommandReply.code carries."""
    return _STATUS_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def parse_address(text: str, *, what: str = "address") -> tuple[str, int]:
    """'host:port' -> (host, port); IPv6 hosts in brackets: '[::1]:7001'."""
    if not isinstance(text, str) or ":" not in text:
        raise ConfigError(f"{what}={text!r} is not host:port")
    host, _, port_text = text.rpartition(":")
    if not host:
        raise ConfigError(f"{what}={text!r} has no host")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{what}={text!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{what}={text!r}: port {port} is outside 1-65535")
    return host, port
