"""Fault schedules: what goes wrong, and when, in a simulated run.

A schedule is plain data (a tuple of `Fault`s sorted by tick), so it can be
generated from a seed, printed, written by hand, or generated and shrunk by
Hypothesis. Every fault has an end: the run heals everything at `fault_ticks`
and then checks liveness.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

FAULT_KINDS = ("partition", "crash", "loss", "dup", "reorder")


class Action(enum.Enum):
    ISOLATE = "isolate"  # args: (node,)
    SPLIT = "split"  # args: (group sizes are implied) minority members
    ONE_WAY = "one-way"  # args: (src, dst)
    BRIDGE = "bridge"  # args: left members, then 0, then right members
    HEAL = "heal"
    CRASH = "crash"  # args: (node,)
    CRASH_LEADER = "crash-leader"  # whoever leads at that moment; restarts `args[0]` ticks later
    RESTART = "restart"  # args: (node,)
    LOSS = "loss"  # args: (percent,)
    DUPLICATE = "duplicate"  # args: (percent,)
    REORDER = "reorder"  # args: (max delay in time units,)
    CALM = "calm"  # loss, duplication and reordering back to normal


@dataclass(frozen=True, slots=True)
class Fault:
    tick: int
    action: Action
    args: tuple[int, ...] = ()

    def __str__(self) -> str:
        args = " ".join(map(str, self.args))
        return f"t={self.tick} {self.action.value} {args}".rstrip()


def parse_fault_kinds(text: str) -> frozenset[str]:
    """'partition,crash' -> the kinds; 'all' or '' -> every kind; 'none' -> none."""
    text = text.strip()
    if text in ("", "all"):
        return frozenset(FAULT_KINDS)
    if text == "none":
        return frozenset()
    kinds = frozenset(k.strip() for k in text.split(",") if k.strip())
    unknown = kinds - set(FAULT_KINDS)
    if unknown:
        raise ValueError(f"unknown fault kind(s) {sorted(unknown)}; choose from {', '.join(FAULT_KINDS)}")
    return kinds


def random_schedule(
    rng: random.Random, node_ids: tuple[int, ...], kinds: frozenset[str], fault_ticks: int, mean_gap: int = 40
) -> tuple[Fault, ...]:
    """Faults at random times in [0, fault_ticks), each undone after a while."""
    faults: list[Fault] = []
    kinds_sorted = sorted(kinds)
    if not kinds_sorted:
        return ()
    tick = rng.randint(mean_gap // 2, mean_gap * 2)
    down: dict[int, int] = {}  # node -> tick it restarts
    while tick < fault_ticks:
        kind = rng.choice(kinds_sorted)
        duration = rng.randint(10, 120)
        end = min(tick + duration, fault_ticks)
        if kind == "partition":
            faults.extend(_random_partition(rng, node_ids, tick, end))
        elif kind == "crash":
            candidates = [n for n in node_ids if down.get(n, -1) < tick]
            if rng.random() < 0.5:
                faults.append(Fault(tick, Action.CRASH_LEADER, (end - tick,)))
            elif candidates:
                node = rng.choice(candidates)
                down[node] = end
                faults.append(Fault(tick, Action.CRASH, (node,)))
                faults.append(Fault(end, Action.RESTART, (node,)))
        elif kind == "loss":
            faults.append(Fault(tick, Action.LOSS, (rng.choice((5, 10, 20, 40)),)))
            faults.append(Fault(end, Action.CALM))
        elif kind == "dup":
            faults.append(Fault(tick, Action.DUPLICATE, (rng.choice((5, 20, 50)),)))
            faults.append(Fault(end, Action.CALM))
        else:
            faults.append(Fault(tick, Action.REORDER, (rng.choice((30, 80, 200)),)))
            faults.append(Fault(end, Action.CALM))
        tick += rng.randint(1, 2 * mean_gap)
    return tuple(sorted(faults, key=lambda f: f.tick))


def _random_partition(rng: random.Random, node_ids: tuple[int, ...], start: int, end: int) -> list[Fault]:
    shape = rng.choice(("isolate", "split", "one-way", "bridge"))
    nodes = list(node_ids)
    rng.shuffle(nodes)
    if shape == "isolate" or len(nodes) < 3:
        fault = Fault(start, Action.ISOLATE, (nodes[0],))
    elif shape == "split":
        minority = nodes[: rng.randint(1, (len(nodes) - 1) // 2)]
        fault = Fault(start, Action.SPLIT, tuple(sorted(minority)))
    elif shape == "one-way":
        fault = Fault(start, Action.ONE_WAY, (nodes[0], nodes[1]))
    else:
        rest = nodes[1:]
        half = len(rest) // 2
        fault = Fault(start, Action.BRIDGE, (*sorted(rest[:half]), 0, *sorted(rest[half:])))
    return [fault, Fault(end, Action.HEAL)]
