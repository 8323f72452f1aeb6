"""`raftflow node|cluster|kv ...`: the subcommands that run and talk to a cluster."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

from raftflow.cluster.cli.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    CommandFailed,
    add_common,
    client_for,
)
from raftflow.cluster.client import Client
from raftflow.cluster.local import launcher
from raftflow.cluster.protocol.faults import describe_faults
from raftflow.cluster.node.config import ConfigError, load_config

# --- node ---------------------------------------------------------------------------


def add_node_commands(sub) -> None:
    node = sub.add_parser("node", help="run one node, or stop/kill/start a node of a local cluster")
    node_sub = node.add_subparsers(dest="node_command", metavar="COMMAND", required=True, parser_class=type(node))
    run = node_sub.add_parser(
        "run", help="run a node in the foreground",
        description="Run one raftflow node. Settings come from --config (TOML) and are overridden by flags.",
    )
    run.add_argument("--config", help="TOML file with id, peers, data_dir, ... (see docs/cluster.md)")
    run.add_argument("--id", type=int, help="this node's id (a key of [peers])")
    run.add_argument("--peers", help="every member as ID=HOST:PORT,... (this node included)")
    run.add_argument("--listen", help="address to bind (default: this node's address in peers)")
    run.add_argument("--data-dir", help="folder for the write-ahead log and snapshots")
    run.add_argument("--cluster-id", help="name shared by the members (default raftflow)")
    run.add_argument("--tick-ms", type=int, help="one Raft tick in ms (default 10)")
    run.add_argument("--election-ticks", type=int, help="election timeout in ticks (default 15)")
    run.add_argument("--heartbeat-ticks", type=int, help="heartbeat interval in ticks (default 2)")
    run.add_argument("--snapshot-entries", type=int, help="applied entries between snapshots (default 100000)")
    run.add_argument("--max-pending-proposals", type=int, help="commands queued before RESOURCE_EXHAUSTED")
    run.add_argument("--no-fsync", action="store_true", help="benchmarks only: never fsync (may lose acked writes)")
    run.add_argument("--allow-faults", action="store_true",
                     help="accept Admin.SetFaults (raftflow partition ...): anyone who reaches the node can cut it off")
    run.add_argument("--seed", type=int, help="seed of the election timer (default: random)")
    run.add_argument("--clients", help="every member's client port as ID=HOST:PORT,... (TLS mode)")
    run.add_argument("--client-listen", help="address the client port binds (default: this node's address in clients)")
    run.add_argument("--tls-ca", help="PEM file: the CA that signed every member's certificate")
    run.add_argument("--tls-cert", help="PEM file: this node's certificate (its SANs name raftflow://node/ID)")
    run.add_argument("--tls-key", help="PEM file: this node's private key")
    run.add_argument(
        "--insecure", action="store_true",
        help="plaintext on one port with no certificates and no tokens: anyone who reaches the node "
        "can read and change everything and forge messages from its peers",
    )
    run.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    run.set_defaults(func=_cmd_node_run)
    for name, what in (
        ("stop", "stop a node gracefully (SIGTERM: finish the batch, fsync, close)"),
        ("kill", "kill a node (SIGKILL: a crash)"),
        ("start", "start a stopped node again, with its data"),
        ("pause", "freeze a node (SIGSTOP): it holds its state and its sockets but answers nothing"),
        ("resume", "let a paused node run again (SIGCONT)"),
    ):
        cmd = node_sub.add_parser(name, help=what, description=what)
        cmd.add_argument("id", type=int, help="node id")
        cmd.add_argument("--dir", default=launcher.DEFAULT_DIR, help="cluster folder (default ./.raftflow)")
        cmd.set_defaults(func=_cmd_node_signal, action=name)


def _parse_peers(text: str, flag: str) -> dict[str, str]:
    peers = {}
    for part in text.split(","):
        node_id, sep, address = part.strip().partition("=")
        if not sep:
            raise CommandFailed(f"{flag}: {part.strip()!r} is not ID=HOST:PORT", EXIT_USAGE)
        peers[node_id.strip()] = address.strip()
    return peers


def _cmd_node_run(args: argparse.Namespace) -> int:
    from raftflow.cluster.node.server import serve  # noqa: PLC0415 (grpc server imports only when needed)

    overrides = {
        "id": args.id, "listen": args.listen, "data_dir": args.data_dir, "cluster_id": args.cluster_id,
        "tick_ms": args.tick_ms, "election_ticks": args.election_ticks, "heartbeat_ticks": args.heartbeat_ticks,
        "snapshot_entries": args.snapshot_entries, "max_pending_proposals": args.max_pending_proposals,
        "seed": args.seed, "fsync": False if args.no_fsync else None, "allow_faults": True if args.allow_faults else None,
        "peers": _parse_peers(args.peers, "--peers") if args.peers else None,
        "clients": _parse_peers(args.clients, "--clients") if args.clients else None,
        "client_listen": args.client_listen, "tls_ca": args.tls_ca, "tls_cert": args.tls_cert,
        "tls_key": args.tls_key, "insecure": True if args.insecure else None,
    }
    if args.config is None and args.id is None:
        raise CommandFailed("give --config FILE or --id with --peers and --data-dir", EXIT_USAGE)
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        raise CommandFailed(f"config: {exc}", EXIT_USAGE) from None
    logging.basicConfig(
        level=args.log_level, format=f"%(asctime)s node {config.id} %(levelname)s %(message)s", stream=sys.stderr
    )
    if os.environ.get("RAFTFLOW_EVENT_LOOP", "auto") != "asyncio":
        try:
            import uvloop  # noqa: PLC0415 (optional: pip install raftflow[fast])

            uvloop.install()
        except ImportError:
            pass
    try:
        return asyncio.run(serve(config))
    except OSError as exc:
        raise CommandFailed(f"node {config.id}: {exc}") from None
    except ConfigError as exc:  # the certificate files fail a check
        raise CommandFailed(f"node {config.id}: {exc}", EXIT_USAGE) from None


def _cmd_node_signal(args: argparse.Namespace) -> int:
    cluster = launcher.ClusterFile.load(args.dir)
    member = cluster.member(args.id)
    if args.action == "start":
        if launcher.process_alive(member.pid):
            print(f"node {member.id} is already running (pid {member.pid})")
            return 0
        launcher.start_node(cluster, member)
        print(f"node {member.id} started (pid {member.pid}) at {member.address}")
        return 0
    if args.action in ("pause", "resume"):
        if not launcher.process_alive(member.pid):
            raise CommandFailed(f"node {member.id} is not running; start it with `raftflow node start {member.id}`")
        try:
            os.kill(member.pid, signal.SIGSTOP if args.action == "pause" else signal.SIGCONT)
        except ProcessLookupError:
            raise CommandFailed(f"node {member.id} exited just now; start it with `raftflow node start {member.id}`") from None
        print(f"node {member.id} {'paused (SIGSTOP)' if args.action == 'pause' else 'resumed (SIGCONT)'}")
        return 0
    was_running = launcher.stop_node(cluster, member, kill=args.action == "kill")
    if not was_running:
        print(f"node {member.id} was not running")
    else:
        print(f"node {member.id} {'killed' if args.action == 'kill' else 'stopped'}")
    return 0


# --- cluster ------------------------------------------------------------------------


def add_cluster_commands(sub) -> None:
    cluster = sub.add_parser("cluster", help="start, inspect and stop a local cluster")
    cluster_sub = cluster.add_subparsers(dest="cluster_command", metavar="COMMAND", required=True, parser_class=type(cluster))
    up = cluster_sub.add_parser(
        "up", help="start a local cluster in the background (or restart a stopped one)",
        description="Start N nodes as background processes, write DIR/cluster.json, wait for a leader "
        "and print the members. On a folder holding a stopped cluster, start it again with its data.",
    )
    up.add_argument("--nodes", type=int, default=None, help="3 or 5 (default 3; 1 and 7 work too)")
    up.add_argument("--dir", default=launcher.DEFAULT_DIR, help="cluster folder (default ./.raftflow)")
    up.add_argument("--base-port", type=int, default=launcher.DEFAULT_BASE_PORT,
                    help="client port of node 1 (default 7001); the peer ports follow the client ports")
    up.add_argument(
        "--insecure", action="store_true",
        help="no certificates and no tokens: plaintext, one port per node; anyone who reaches a port "
        "can read and change everything",
    )
    up.add_argument("--host", default="127.0.0.1", help="address the nodes listen on (default 127.0.0.1)")
    up.add_argument("--no-fsync", action="store_true", help="benchmarks only: never fsync")
    up.add_argument("--snapshot-entries", type=int, default=None, help="applied entries between snapshots")
    up.add_argument("--wait", type=float, default=20.0, help="seconds to wait for a leader (default 20)")
    up.add_argument("-o", "--output", choices=("table", "json"), default="table")
    up.set_defaults(func=_cmd_cluster_up)

    status = cluster_sub.add_parser("status", help="per node: address, up/down, role, term, leader, log indexes")
    add_common(status, output=True)
    status.set_defaults(func=_cmd_cluster_status)

    down = cluster_sub.add_parser("down", help="stop every node of the local cluster (SIGTERM)")
    down.add_argument("--dir", default=launcher.DEFAULT_DIR, help="cluster folder (default ./.raftflow)")
    down.set_defaults(func=_cmd_cluster_down)

    transfer = cluster_sub.add_parser("transfer-leader", help="hand leadership to node ID")
    transfer.add_argument("id", type=int, help="the node to lead")
    add_common(transfer)
    transfer.set_defaults(func=_cmd_transfer)


def _cmd_cluster_up(args: argparse.Namespace) -> int:
    settings = {}
    if args.no_fsync:
        settings["fsync"] = False
    if args.snapshot_entries is not None:
        settings["snapshot_entries"] = args.snapshot_entries
    if args.nodes is not None:
        try:
            launcher.check_size(args.nodes)
        except ConfigError as exc:
            raise CommandFailed(str(exc), EXIT_USAGE) from None
    if os.path.exists(os.path.join(args.dir, launcher.CLUSTER_FILE)):
        cluster = launcher.ClusterFile.load(args.dir)
        if args.nodes is not None and args.nodes != len(cluster.members):
            raise CommandFailed(
                f"{args.dir} holds a {len(cluster.members)}-node cluster; drop --nodes to restart it, "
                "or use another --dir for a new one"
            )
        print(f"restarting the cluster in {args.dir} ({cluster.cluster_id})", file=sys.stderr)
    else:
        try:
            cluster = launcher.create(
                args.dir, 3 if args.nodes is None else args.nodes, args.base_port, args.host,
                insecure=args.insecure, **settings,
            )
        except ConfigError as exc:
            raise CommandFailed(str(exc), EXIT_USAGE) from None
    for member in cluster.members:
        launcher.start_node(cluster, member)
    with cluster.client(timeout=2.0) as client:
        launcher.wait_for_leader(
            cluster, lambda endpoints: client.cluster_status(timeout=0.5), timeout=args.wait,
            say=lambda text: print(text, file=sys.stderr, flush=True),
        )
        rows = _status_rows(client, cluster)
    _print_status(rows, args.output)
    return 0


def _status_rows(client: Client, cluster: launcher.ClusterFile | None) -> list[dict]:
    rows = []
    pids = {m.address: m.pid for m in cluster.members} if cluster else {}
    for endpoint, status in client.cluster_status(timeout=1.0):
        if isinstance(status, str):
            rows.append({"id": _member_id(cluster, endpoint), "address": endpoint, "up": False, "error": status})
            continue
        rows.append({
            "id": status.id, "address": status.address, "up": True, "role": status.role.value, "term": status.term,
            "leader": status.leader_id, "last_index": status.last_index, "commit_index": status.commit_index,
            "applied_index": status.applied_index, "snapshot_index": status.snapshot_index,
            "pid": status.pid or pids.get(endpoint, 0),
            "network": describe_faults(status.faults), "refused": status.refused,
            "peer_address": status.peer_address, "tls": not status.insecure, "calls_refused": status.calls_refused,
        })
    return rows


def _member_id(cluster: launcher.ClusterFile | None, endpoint: str) -> int | None:
    if cluster is None:
        return None
    return next((m.id for m in cluster.members if m.address == endpoint), None)


def _print_status(rows: list[dict], output: str) -> None:
    if output == "json":
        print(json.dumps(rows, indent=2))
        return
    header = ("ID", "ADDRESS", "STATUS", "ROLE", "TERM", "LEADER", "LAST", "COMMIT", "APPLIED", "NETWORK")
    table = [header]
    for r in rows:
        if r["up"]:
            table.append((str(r["id"]), r["address"], "up", r["role"], str(r["term"]), str(r["leader"] or "-"),
                          str(r["last_index"]), str(r["commit_index"]), str(r["applied_index"]),
                          r["network"] or "-"))
        else:
            table.append((str(r["id"] or "?"), r["address"], "down", "-", "-", "-", "-", "-", "-", "-"))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    up = [r for r in rows if r["up"]]
    if up:
        print(_security_line(up))


def _security_line(rows: list[dict]) -> str:
    """One line under the table: how the nodes that answered are secured."""
    plain = [str(r["id"]) for r in rows if not r["tls"]]
    refused = sum(sum(r["calls_refused"].values()) for r in rows)
    refusals = f"; {refused} call(s) refused for their token since start" if refused else ""
    if not plain:
        return f"security: TLS, peers mutual TLS, a token on every call{refusals}"
    return f"security: node(s) {', '.join(plain)} run --insecure: plaintext, nothing checked{refusals}"


def _cmd_cluster_status(args: argparse.Namespace) -> int:
    cluster = None
    if not (args.endpoints or os.environ.get("RAFTFLOW_ENDPOINTS")):
        cluster = launcher.ClusterFile.load(args.dir)
    with client_for(args) as client:
        rows = _status_rows(client, cluster)
    _print_status(rows, args.output)
    if not any(r["up"] for r in rows):
        raise CommandFailed("no node reachable: " + "; ".join(f"{r['address']} {r['error']}" for r in rows))
    return 0


def _cmd_cluster_down(args: argparse.Namespace) -> int:
    cluster = launcher.ClusterFile.load(args.dir)
    for member in cluster.members:
        if launcher.stop_node(cluster, member):
            print(f"node {member.id} stopped")
        else:
            print(f"node {member.id} was not running")
    return 0


def _cmd_transfer(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        reply = client.transfer_leader(args.id)
    print(f"node {reply.leader_id} leads in term {reply.term}")
    return 0


# --- kv -----------------------------------------------------------------------------


def add_kv_commands(sub) -> None:
    kv = sub.add_parser("kv", help="put, get, delete and compare-and-swap keys")
    kv_sub = kv.add_subparsers(dest="kv_command", metavar="COMMAND", required=True, parser_class=type(kv))
    put = kv_sub.add_parser("put", help="set KEY to VALUE")
    put.add_argument("key")
    put.add_argument("value")
    add_common(put, output=True)
    put.set_defaults(func=_cmd_kv_put)
    get = kv_sub.add_parser("get", help="read KEY")
    get.add_argument("key")
    get.add_argument(
        "--consistency", choices=("linearizable", "lease", "stale"), default="linearizable",
        help="linearizable (ReadIndex, default), lease (leader lease), stale (any node's applied state)",
    )
    get.add_argument("--node", type=int, help="stale reads: ask this node (by id, from the cluster file)")
    add_common(get, output=True)
    get.set_defaults(func=_cmd_kv_get)
    delete = kv_sub.add_parser("delete", help="delete KEY")
    delete.add_argument("key")
    add_common(delete, output=True)
    delete.set_defaults(func=_cmd_kv_delete)
    cas = kv_sub.add_parser("cas", help="set KEY to NEW if its value is EXPECTED")
    cas.add_argument("key")
    cas.add_argument("expected", help="the value KEY must hold now")
    cas.add_argument("new")
    add_common(cas, output=True)
    cas.set_defaults(func=_cmd_kv_cas)


def _kv_json(kv) -> dict | None:
    if kv is None:
        return None
    return {"key": kv.key, "value": kv.value.decode(errors="replace"), "create_revision": kv.create_revision,
            "mod_revision": kv.mod_revision, "version": kv.version}


def _print_write(args: argparse.Namespace, result, text: str) -> None:
    if args.output == "json":
        print(json.dumps({"index": result.index, "revision": result.revision, "succeeded": result.succeeded,
                          "prev": _kv_json(result.prev), "current": _kv_json(result.current)}))
    else:
        print(text)


def _cmd_kv_put(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        result = client.put(args.key, args.value.encode())
    _print_write(args, result, f"OK (revision {result.revision})")
    return 0


def _cmd_kv_delete(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        result = client.delete(args.key)
    _print_write(args, result, f"deleted {args.key}" if result.succeeded else f"{args.key} did not exist")
    return 0 if result.succeeded else EXIT_FAILURE


def _cmd_kv_cas(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        result = client.cas(args.key, args.new.encode(), expected_value=args.expected.encode())
    if result.succeeded:
        _print_write(args, result, f"OK (revision {result.revision})")
        return 0
    now = "does not exist" if result.current is None else f"holds {result.current.value.decode(errors='replace')!r}"
    _print_write(args, result, f"not swapped: {args.key} {now}")
    return EXIT_FAILURE


def _cmd_kv_get(args: argparse.Namespace) -> int:
    endpoint = None
    if args.node is not None:
        if args.consistency != "stale":
            raise CommandFailed("--node works with --consistency stale; other reads go to the leader", EXIT_USAGE)
        endpoint = launcher.ClusterFile.load(args.dir).member(args.node).address
    with client_for(args) as client:
        result = client.get(args.key, consistency=args.consistency, endpoint=endpoint)
    if args.output == "json":
        print(json.dumps({
            "key": args.key, "found": result.kv is not None, "kv": _kv_json(result.kv),
            "applied_index": result.applied_index, "node": result.node_id, "stale": result.stale,
            "leader": result.leader_id, "since_leader_s": round(result.since_leader_s, 3),
        }))
    elif result.kv is None:
        raise CommandFailed(f"key {args.key!r} not found")
    else:
        print(result.kv.value.decode(errors="replace"))
        if result.stale:
            print(f"(stale read from node {result.node_id} at index {result.applied_index}; "
                  f"last heard from the leader {result.since_leader_s:.2f}s ago)", file=sys.stderr)
    return 0 if result.kv is not None else EXIT_FAILURE


