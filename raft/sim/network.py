"""A simulated network between Raft cores: seeded delay, loss, duplication and
reordering, and partitions of any shape as a set of cut directed links."""

from __future__ import annotations

import random
from dataclasses import dataclass

from raftflow.raft.types import Message


@dataclass(slots=True)
class LinkFaults:
    loss: float = 0.0  # probability a message is dropped
    duplicate: float = 0.0  # probability a message is delivered twice
    delay_min: int = 2  # delivery delay, in simulation time units (a tick is 10)
    delay_max: int = 8


class Network:
    """Decides what becomes of each message; the simulation schedules deliveries."""

    def __init__(self, node_ids: tuple[int, ...], rng: random.Random) -> None:
        self.node_ids = node_ids
        self.rng = rng
        self.faults = LinkFaults()
        self.cut: set[tuple[int, int]] = set()  # (src, dst) links that drop everything
        self.sent = 0
        self.dropped = 0

    # --- partitions ------------------------------------------------------------

    def heal(self) -> None:
        self.cut.clear()

    def isolate(self, node: int) -> None:
        for other in self.node_ids:
            if other != node:
                self.cut.add((node, other))
                self.cut.add((other, node))

    def split(self, groups: list[list[int]]) -> None:
        """Only nodes in the same group hear each other."""
        group_of = {n: g for g, members in enumerate(groups) for n in members}
        for a in self.node_ids:
            for b in self.node_ids:
                if a != b and group_of.get(a, -1 - a) != group_of.get(b, -1 - b):
                    self.cut.add((a, b))

    def cut_one_way(self, src: int, dst: int) -> None:
        self.cut.add((src, dst))

    def bridge(self, left: list[int], right: list[int]) -> None:
        """Two sides that cannot hear each other; nodes in neither hear both."""
        for a in left:
            for b in right:
                self.cut.add((a, b))
                self.cut.add((b, a))

    def describe(self) -> str:
        if not self.cut:
            return "fully connected"
        return f"partitioned ({len(self.cut)} directed links cut)"

    # --- delivery --------------------------------------------------------------

    def route(self, m: Message) -> list[int]:
        """Delivery delays for one send: [] when lost, two when duplicated."""
        self.sent += 1
        rng, f = self.rng, self.faults
        if (m.src, m.dst) in self.cut or (f.loss and rng.random() < f.loss):
            self.dropped += 1
            return []
        delays = [rng.randint(f.delay_min, f.delay_max)]
        if f.duplicate and rng.random() < f.duplicate:
            delays.append(rng.randint(f.delay_min, f.delay_max))
        return delays
