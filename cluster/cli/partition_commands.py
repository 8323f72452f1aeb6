"""`raftflow partition ...`: cut, slow and heal the network between nodes.

    raftflow partition isolate 3            # node 3 hears no peer and no peer hears it
    raftflow partition split "1,2|3,4,5"    # two sides; each node is cut from the other side
    raftflow partition oneway 1 2           # messages from 1 to 2 are lost; 2 to 1 still flow
    raftflow partition delay 2 200          # every message to and from node 2 takes 200 ms longer
    raftflow partition show                 # what each node drops or delays
    raftflow partition heal                 # everything flows again

Only Raft traffic between nodes is cut: clients still reach every node, so you can
ask the minority side what it answers (writes and linearizable reads: a clear error;
stale reads: the old value, marked stale). Each fault is set on both ends where it
applies, and `isolate` and `split` replace whatever was in force; `oneway` and
`delay` add to it. A node that is down when the command runs is named on stdout;
the other end of each of its cuts still holds.
"""

from __future__ import annotations

import argparse
import json

from raftflow.cluster.cli.common import EXIT_USAGE, CommandFailed, add_common, client_for
from raftflow.cluster.client import Client, PermissionDenied, RaftflowError, Unauthenticated
from raftflow.cluster.protocol.faults import MAX_DELAY_MS, describe_faults
from raftflow.cluster.local.partitions import Plan, cut_plan, faults_of, plan_of


def add_partition_commands(sub) -> None:
    partition = sub.add_parser(
        "partition", help="cut, delay and heal the network between nodes (Raft traffic only; clients still connect)"
    )
    ps = partition.add_subparsers(dest="partition_command", metavar="COMMAND", required=True)
    isolate = ps.add_parser("isolate", help="cut node ID from every other node, both ways")
    isolate.add_argument("id", type=int)
    split = ps.add_parser("split", help='cut the cluster into sides, e.g. "1,2|3,4,5" (every node on one side)')
    split.add_argument("sides", metavar="SIDES")
    oneway = ps.add_parser("oneway", help="drop messages from node FROM to node TO (not the other way)")
    oneway.add_argument("source", type=int, metavar="FROM")
    oneway.add_argument("target", type=int, metavar="TO")
    delay = ps.add_parser("delay", help="delay every message to and from node ID by MS milliseconds")
    delay.add_argument("id", type=int)
    delay.add_argument("ms", type=int, metavar="MS")
    heal = ps.add_parser("heal", help="remove every fault: all messages flow again")
    show = ps.add_parser("show", help="the faults each node injects now")
    for cmd in (isolate, split, oneway, delay, heal, show):
        add_common(cmd, output=True)
        cmd.set_defaults(func=_cmd_partition)


# --- planning: node id -> {peer id -> fault fields} -------------------------------------

def parse_sides(text: str, members: list[int]) -> list[set[int]]:
    sides = []
    for part in text.split("|"):
        try:
            side = {int(item) for item in part.split(",") if item.strip()}
        except ValueError:
            raise CommandFailed(f"sides {text!r}: expected node ids like \"1,2|3,4,5\"", EXIT_USAGE) from None
        if not side:
            raise CommandFailed(f"sides {text!r}: a side is empty", EXIT_USAGE)
        sides.append(side)
    if len(sides) < 2:
        raise CommandFailed(f"sides {text!r}: name at least two sides separated by '|'", EXIT_USAGE)
    named = [node for side in sides for node in side]
    unknown = sorted(set(named) - set(members))
    twice = sorted({node for node in named if named.count(node) > 1})
    missing = sorted(set(members) - set(named))
    if unknown:
        raise CommandFailed(f"sides {text!r}: node(s) {unknown} are not members; members are {members}", EXIT_USAGE)
    if twice:
        raise CommandFailed(f"sides {text!r}: node(s) {twice} are on more than one side", EXIT_USAGE)
    if missing:
        raise CommandFailed(f"sides {text!r}: node(s) {missing} are on no side; every member must be on one", EXIT_USAGE)
    return sides


def _check_member(node: int, members: list[int], what: str) -> None:
    if node not in members:
        raise CommandFailed(f"{what} {node} is not a member; members are {members}", EXIT_USAGE)


def plan_for(args: argparse.Namespace, members: list[int], current: Plan) -> Plan:
    command = args.partition_command
    if command == "heal":
        return {node: {} for node in members}
    if command == "isolate":
        _check_member(args.id, members, "node")
        return cut_plan(members, [{args.id}, set(members) - {args.id}])
    if command == "split":
        return cut_plan(members, parse_sides(args.sides, members))
    plan = {node: {peer: dict(fields) for peer, fields in current.get(node, {}).items()} for node in members}
    if command == "oneway":
        _check_member(args.source, members, "FROM node")
        _check_member(args.target, members, "TO node")
        if args.source == args.target:
            raise CommandFailed(f"FROM and TO are both node {args.source}", EXIT_USAGE)
        plan[args.source].setdefault(args.target, {})["drop_out"] = True
        plan[args.target].setdefault(args.source, {})["drop_in"] = True
        return plan
    # delay
    _check_member(args.id, members, "node")
    if not 0 <= args.ms <= MAX_DELAY_MS:
        raise CommandFailed(f"delay {args.ms} ms: from 0 to {MAX_DELAY_MS}", EXIT_USAGE)
    for peer in members:
        if peer != args.id:
            plan[args.id].setdefault(peer, {}).update(delay_out_ms=args.ms, delay_in_ms=args.ms)
    return plan


# --- running ---------------------------------------------------------------------------------


def _members(client: Client) -> tuple[list[int], dict[int, str], Plan, list[str]]:
    """(every member's id, id -> address of those that answer, their faults now, lines
    for the endpoints that do not)."""
    addresses: dict[int, str] = {}
    current: Plan = {}
    down: list[str] = []
    known: dict[int, str] = {}  # every member's address, as the nodes that answer list them
    for endpoint, status in client.cluster_status(timeout=1.0):
        if isinstance(status, str):
            down.append(f"{endpoint}: {status}")
            continue
        addresses[status.id] = endpoint
        known[status.id] = endpoint
        known.update({p.id: p.address for p in status.peers})
        current[status.id] = plan_of(status.faults)
    if not addresses:
        raise CommandFailed("no node answered: " + "; ".join(down))
    for node, address in known.items():  # members not in --endpoints: ask them directly
        if node not in addresses and address not in [d.split(": ")[0] for d in down]:
            try:
                status = client.status(address, timeout=1.0)
            except RaftflowError as exc:
                down.append(f"{address}: {exc}")
                continue
            addresses[node] = address
            current[node] = plan_of(status.faults)
    return sorted(known), addresses, current, down


def _cmd_partition(args: argparse.Namespace) -> int:
    if args.partition_command == "delay" and not 0 <= args.ms <= MAX_DELAY_MS:
        raise CommandFailed(f"delay {args.ms} ms: from 0 to {MAX_DELAY_MS}", EXIT_USAGE)
    with client_for(args) as client:
        members, addresses, current, down = _members(client)
        if args.partition_command == "show":
            return _show(args, members, addresses, current, down)
        plan = plan_for(args, members, current)
        applied: dict[int, str] = {}
        missed: dict[int, str] = {}  # node -> why it did not get its faults
        for node in members:
            if node not in addresses:
                missed[node] = "it does not answer (down or paused)"
                continue
            try:
                in_force = client.set_faults(addresses[node], faults_of(plan[node]), replace=True)
            except (Unauthenticated, PermissionDenied) as exc:
                raise CommandFailed(f"{exc}; fault injection needs an admin token") from None
            except RaftflowError as exc:
                missed[node] = str(exc)
                continue
            applied[node] = describe_faults(in_force)
    if args.output == "json":
        print(json.dumps({"faults": applied, "not_set": missed}, indent=2))
    else:
        for node, faults in applied.items():
            print(f"node {node}: {faults or 'no faults'}")
    if missed:
        node, why = next(iter(missed.items()))
        more = f" (and {len(missed) - 1} more)" if len(missed) > 1 else ""
        raise CommandFailed(f"node {node} did not get its faults: {why}{more}; run the command again once it answers")
    return 0


def _show(args, members: list[int], addresses: dict[int, str], current: Plan, down: list[str]) -> int:
    rows = {node: describe_faults(faults_of(current[node])) for node in members if node in current}
    if args.output == "json":
        print(json.dumps({"faults": rows, "down": down}, indent=2))
        return 0
    for node in members:
        if node in rows:
            print(f"node {node}: {rows[node] or 'no faults'}")
        else:
            print(f"node {node}: down")
    return 0
