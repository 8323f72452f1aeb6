"""Network fault plans for a cluster: which node drops or delays which peer's
messages. The CLI's `partition` commands, the CAP demo and the nemesis build them."""

from __future__ import annotations

from raftflow.cluster.protocol.faults import PeerFault

# node id -> {peer id -> fault fields}
Plan = dict[int, dict[int, dict[str, int | bool]]]


def faults_of(peers: dict[int, dict[str, int | bool]]) -> list[PeerFault]:
    """One node's part of a plan, as `set_faults` takes it."""
    return [PeerFault(peer, **fields) for peer, fields in sorted(peers.items())]


def plan_of(faults) -> dict[int, dict[str, int | bool]]:
    """A node's faults (from its status) as its part of a plan."""
    return {
        f.peer_id: {"drop_out": f.drop_out, "drop_in": f.drop_in, "delay_out_ms": f.delay_out_ms,
                    "delay_in_ms": f.delay_in_ms}
        for f in faults
    }


def cut_plan(members: list[int], sides: list[set[int]]) -> Plan:
    """Each node cut, both ways, from every node not on its side."""
    side_of = {node: i for i, side in enumerate(sides) for node in side}
    return {
        node: {peer: {"drop_out": True, "drop_in": True} for peer in members if side_of[peer] != side_of[node]}
        for node in members
    }
