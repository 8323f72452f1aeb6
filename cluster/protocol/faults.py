"""Network fault injection between nodes: what `raftflow partition ...` sets.

Each node holds a `FaultFilter`: per peer, whether Raft messages to it (out) or from
it (in) are dropped, and how long each is delayed. Only peer traffic is filtered:
clients still reach every node, so a user can watch what a node cut off from the
majority answers. The launcher's CLI sets the same cut on both ends (a split is a
drop both ways on every node), so a partition holds even if one end restarts with
no faults.

The filter is plain state with no clock or I/O; the transport asks it per message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from raftflow.proto import admin_pb2

MAX_DELAY_MS = 60_000


@dataclass(frozen=True, slots=True)
class PeerFault:
    peer_id: int
    drop_out: bool = False  # messages to the peer are dropped
    drop_in: bool = False  # messages from the peer are dropped
    delay_out_ms: int = 0  # each message to the peer leaves this much later
    delay_in_ms: int = 0  # each message from the peer is stepped in this much later

    def __post_init__(self) -> None:
        for name in ("delay_out_ms", "delay_in_ms"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= MAX_DELAY_MS:
                raise ValueError(f"{name}={value!r} must be a whole number of ms from 0 to {MAX_DELAY_MS}")

    @property
    def active(self) -> bool:
        return self.drop_out or self.drop_in or self.delay_out_ms > 0 or self.delay_in_ms > 0

    def describe(self) -> str:
        return describe_faults([self])

    def _kinds(self) -> list[str]:
        """What this fault does, without the peer: 'cut from', 'drops to', '+100ms with'..."""
        kinds = []
        if self.drop_out and self.drop_in:
            kinds.append("cut from")
        elif self.drop_out:
            kinds.append("drops to")
        elif self.drop_in:
            kinds.append("drops from")
        if self.delay_out_ms and self.delay_out_ms == self.delay_in_ms:
            kinds.append(f"+{self.delay_out_ms}ms both ways with")
        else:
            if self.delay_out_ms:
                kinds.append(f"+{self.delay_out_ms}ms to")
            if self.delay_in_ms:
                kinds.append(f"+{self.delay_in_ms}ms from")
        return kinds


def describe_faults(faults: Iterable[PeerFault]) -> str:
    """One line for a node's faults, peers grouped: 'cut from 3,4,5; +100ms both ways with 1'
    (`raftflow cluster status` and `partition show` print it)."""
    peers_of: dict[str, list[int]] = {}
    for fault in sorted(faults, key=lambda f: f.peer_id):
        for kind in fault._kinds():
            peers_of.setdefault(kind, []).append(fault.peer_id)
    return "; ".join(f"{kind} {','.join(map(str, peers))}" for kind, peers in peers_of.items())


class FaultFilter:
    def __init__(self, self_id: int, peers: frozenset[int]) -> None:
        self.self_id = self_id
        self.peers = peers
        self._faults: dict[int, PeerFault] = {}

    def set(self, faults: list[PeerFault], *, replace: bool) -> None:
        """Add (or with `replace`, set exactly) these faults; ValueError naming a
        peer that is not a member, or this node itself, and nothing changes."""
        for fault in faults:
            if fault.peer_id == self.self_id:
                raise ValueError(f"node {self.self_id} cannot have a fault toward itself")
            if fault.peer_id not in self.peers:
                raise ValueError(f"node {fault.peer_id} is not a member; members are {sorted(self.peers | {self.self_id})}")
        merged = {} if replace else dict(self._faults)
        for fault in faults:
            merged[fault.peer_id] = fault
        self._faults = {peer: fault for peer, fault in merged.items() if fault.active}

    def clear(self) -> None:
        self._faults = {}

    def faults(self) -> list[PeerFault]:
        return [self._faults[peer] for peer in sorted(self._faults)]

    def drops_out(self, peer_id: int) -> bool:
        fault = self._faults.get(peer_id)
        return fault is not None and fault.drop_out

    def drops_in(self, peer_id: int) -> bool:
        fault = self._faults.get(peer_id)
        return fault is not None and fault.drop_in

    def delay_out_s(self, peer_id: int) -> float:
        fault = self._faults.get(peer_id)
        return 0.0 if fault is None else fault.delay_out_ms / 1000

    def delay_in_s(self, peer_id: int) -> float:
        fault = self._faults.get(peer_id)
        return 0.0 if fault is None else fault.delay_in_ms / 1000

    def cut(self, peer_id: int) -> bool:
        """Messages are dropped in at least one direction: the peer cannot take part
        in a quorum round with this node."""
        return self.drops_out(peer_id) or self.drops_in(peer_id)

    def __bool__(self) -> bool:
        return bool(self._faults)


def fault_to_proto(fault: PeerFault) -> admin_pb2.PeerFault:
    return admin_pb2.PeerFault(
        peer_id=fault.peer_id, drop_out=fault.drop_out, drop_in=fault.drop_in,
        delay_out_ms=fault.delay_out_ms, delay_in_ms=fault.delay_in_ms,
    )


def fault_from_proto(message: admin_pb2.PeerFault) -> PeerFault:
    """ValueError if a delay is out of range (PeerFault checks its fields)."""
    return PeerFault(message.peer_id, message.drop_out, message.drop_in, message.delay_out_ms, message.delay_in_ms)
