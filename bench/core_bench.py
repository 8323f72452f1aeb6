"""Throughput of the pure Raft core: committed entries per second through an
in-process 3-node cluster.

What is measured
----------------
Three `raft.Node` cores, each with a `raft.MemoryStorage` as its "disk", joined by
an instant network: a message sent in one round of the driver loop is stepped into
its destination at the start of the next round, in-process, with no serialization
(unless `--codec`, then every message goes through `raft.codec.encode_message` on
send and `decode_message` on delivery). No ticks are fed during the measured part,
so no heartbeats: only replication traffic.

A leader is elected first (ticks until one wins, then everything settles and its
no-op is applied everywhere). Then the clock starts. Each round the client proposes
`--per-round` batches (default one) of `--batch` payloads of `--payload-size` bytes
to the leader with `Node.propose_batch` (stopping for that round when the leader
answers ProposalDropped: backpressure), then the round delivers what is in flight and
runs every node's Ready; until `--entries` payloads were proposed. The clock stops
when the LEADER has applied the last one, i.e. when `--entries` payloads have come out
of the leader's `Ready.committed`.

With one batch per round, batch=1 pays a whole replication round (three Ready cycles,
the messages) per entry: the per-proposal cost. `--batch 1 --per-round 256` shows
instead what 256 separate propose calls cost when the driver coalesces them into one
Ready cycle.

Every node is driven by the Ready contract exactly, in this order:

    if node.has_ready():
        rd = node.ready()
        send(rd.early_messages)                             # may precede the disk write
        storage.persist(rd.snapshot, rd.entries, rd.hard_state)
        send(rd.messages)                                    # only once durable
        machine.restore(rd.snapshot); machine.apply(rd.committed)
        node.advance(rd)

Reported per configuration (batch size), over `--repeat` runs, min/median/max:
committed entries/s (wall clock, time.perf_counter), CPU seconds per entry
(time.process_time: the whole cluster and the client, all in this one process),
and messages per entry (every message any node sent during the measured part).

After each run (untimed) the cluster is drained and checked: all three logs and
state machines hold exactly the proposed payloads in order, and leadership never
changed. All randomness is seeded (`--seed`).

Python's cyclic GC is left on by default; the GC column says how much of the wall
time it took (it grows with the uncompacted in-memory log). `--gc off` and
`--gc freeze` show what a driver could win back.

    .venv/bin/python bench/core_bench.py                      # batch 256 and 1
    .venv/bin/python bench/core_bench.py --codec              # plus msgpack both ways
    .venv/bin/python bench/core_bench.py --batch 1 --per-round 256
    .venv/bin/python bench/core_bench.py --profile 30 --repeat 1 --batch 256
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import platform
import pstats
import random
import statistics
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from _report import GcTimer, fmt_int, triple
from raftflow.raft import (
    Config,
    Entry,
    EntryKind,
    MemoryStorage,
    Node,
    ProposalDropped,
    Ready,
    Role,
    Snapshot,
)
from raftflow.raft.codec import decode_message, encode_message

NODE_IDS = (1, 2, 3)


class Machine:
    """The state machine: remembers what it applied, and checks the order."""

    __slots__ = ("applied", "entries")

    def __init__(self) -> None:
        self.applied = 0
        self.entries: list[Entry] = []

    def restore(self, snapshot: Snapshot | None) -> None:
        if snapshot is not None:
            self.applied = snapshot.index
            self.entries = []

    def apply(self, committed: list[Entry]) -> int:
        """Apply entries in order; returns how many. (During the measured part they
        are all client payloads: the only no-op is the one from the election, and
        run_once asserts leadership never changed.)"""
        if not committed:
            return 0
        assert committed[0].index == self.applied + 1, (committed[0].index, self.applied)
        self.applied = committed[-1].index
        self.entries.extend(committed)
        return len(committed)


@dataclass
class Peer:
    node: Node
    storage: MemoryStorage
    machine: Machine = field(default_factory=Machine)
    leader: int = 0  # from Ready.soft_state
    role: Role = Role.FOLLOWER


class Cluster:
    """Three cores, their disks and state machines, and an instant network."""

    def __init__(self, seed: int, codec: bool) -> None:
        self.codec = codec
        self.peers: dict[int, Peer] = {}
        for nid in NODE_IDS:
            config = Config(id=nid, voters=NODE_IDS)
            rng = random.Random(seed * 1000 + nid)
            self.peers[nid] = Peer(Node(config, rng), MemoryStorage())
        self.order = [self.peers[nid] for nid in NODE_IDS]
        self.queue: deque = deque()  # messages (or their bytes) in flight
        self.sent = 0  # messages sent
        self.wire_bytes = 0  # bytes sent, with --codec
        self.leader_applied = 0  # payload entries the leader applied (its Ready.committed)

    # --- the network ---------------------------------------------------------

    def send(self, msgs: list) -> None:
        if not msgs:
            return
        self.sent += len(msgs)
        if self.codec:
            for m in msgs:
                raw = encode_message(m)
                self.wire_bytes += len(raw)
                self.queue.append(raw)
        else:
            self.queue.extend(msgs)

    def deliver(self) -> int:
        """Step every message sent so far into its destination."""
        queue, peers = self.queue, self.peers
        n = len(queue)
        if self.codec:
            for _ in range(n):
                m = decode_message(queue.popleft())
                peers[m.dst].node.step(m)
        else:
            for _ in range(n):
                m = queue.popleft()
                peers[m.dst].node.step(m)
        return n

    # --- the driver: the Ready contract, in order ---------------------------------

    def handle_ready(self, peer: Peer) -> bool:
        node = peer.node
        if not node.has_ready():
            return False
        rd: Ready = node.ready()
        if rd.soft_state is not None:
            peer.leader, peer.role = rd.soft_state.leader, rd.soft_state.role
        # 1. leader messages may go before the disk write
        self.send(rd.early_messages)
        # 2. persist snapshot, entries, hard state together
        if rd.must_persist():
            peer.storage.persist(rd.snapshot, rd.entries, rd.hard_state)
        # 3. messages that promise what was just persisted
        self.send(rd.messages)
        # 4. restore the snapshot, then apply committed entries in order
        peer.machine.restore(rd.snapshot)
        applied = peer.machine.apply(rd.committed)
        if peer.role is Role.LEADER:
            self.leader_applied += applied
        # 5. acknowledge
        node.advance(rd)
        return True

    def round(self) -> bool:
        """Deliver what is in flight, then run every node's Ready. False when idle."""
        busy = self.deliver() > 0
        for peer in self.order:
            busy = self.handle_ready(peer) or busy
        return busy

    def settle(self, limit: int = 100_000) -> None:
        for _ in range(limit):
            if not self.round():
                return
        raise RuntimeError("the cluster did not settle")

    def leader(self) -> Peer | None:
        leaders = [p for p in self.order if p.role is Role.LEADER]
        return leaders[0] if len(leaders) == 1 else None

    def elect(self, max_ticks: int = 1000) -> Peer:
        """Tick until a leader exists and has applied its no-op; then settle."""
        for _ in range(max_ticks):
            for peer in self.order:
                peer.node.tick()
            self.settle()
            lead = self.leader()
            if lead is not None and lead.machine.applied >= 1:
                if all(p.machine.applied == lead.machine.applied for p in self.order):
                    return lead
        raise RuntimeError(f"no leader after {max_ticks} ticks")


@dataclass
class RunResult:
    entries: int
    wall: float
    cpu: float
    messages: int
    wire_bytes: int
    stalls: int  # rounds the leader refused the batch (max_uncommitted_entries)
    rounds: int
    gc_seconds: float  # wall time inside the cyclic garbage collector


GC_FREEZE_EVERY = 16  # rounds, with --gc freeze


def run_once(entries: int, batch: int, payload_size: int, seed: int, codec: bool,
             profiler: cProfile.Profile | None = None, per_round: int = 1,
             gc_mode: str = "on") -> RunResult:
    cluster = Cluster(seed, codec)
    lead = cluster.elect()
    # elect() settled the cluster: nothing is in flight when the clock starts.
    rng = random.Random(seed)
    payloads = [rng.randbytes(payload_size) for _ in range(entries)]
    batches = [payloads[i : i + batch] for i in range(0, entries, batch)]
    node = lead.node
    term = node.term
    cluster.sent = cluster.wire_bytes = cluster.leader_applied = 0
    next_batch = stalls = rounds = 0
    nbatches = len(batches)
    gc.collect()
    freeze = gc_mode == "freeze"
    if gc_mode == "off":
        gc.disable()
    if profiler is not None:
        profiler.enable()
    try:
        with GcTimer() as gct:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            while cluster.leader_applied < entries:
                for _ in range(per_round):
                    if next_batch >= nbatches:
                        break
                    try:
                        node.propose_batch(batches[next_batch])
                        next_batch += 1
                    except ProposalDropped:
                        stalls += 1
                        break
                if not cluster.round() and next_batch >= nbatches:
                    raise RuntimeError(f"stuck: leader applied {cluster.leader_applied} of {entries}")
                rounds += 1
                if freeze and rounds % GC_FREEZE_EVERY == 0:
                    gc.freeze()  # what survived so far is never rescanned by the cyclic GC
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        if profiler is not None:
            profiler.disable()
        gc.enable()
        gc.unfreeze()
    result = RunResult(entries, wall, cpu, cluster.sent, cluster.wire_bytes, stalls, rounds,
                       gct.seconds)

    # Untimed: drain, then check that every node agrees and holds exactly the payloads.
    cluster.settle()
    assert cluster.leader() is lead and node.term == term, "leadership changed during the run"
    assert cluster.leader_applied == entries, (cluster.leader_applied, entries)
    expected = lead.storage.state.entries
    for peer in cluster.order:
        got = peer.storage.state.entries
        assert len(got) == len(expected) == entries + 1, (len(got), entries)
        assert [(e.index, e.term, e.data) for e in got] == [
            (e.index, e.term, e.data) for e in expected
        ], "logs differ"
        assert peer.machine.applied == entries + 1
        assert peer.machine.entries[-entries:] == expected[1:], "state machines differ"
    assert expected[0].kind is EntryKind.NOOP
    assert [e.data for e in expected[1:]] == payloads, "payloads lost, duplicated or reordered"
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(
            "Committed entries per second through an in-process 3-node cluster of "
            "raft.Node cores (instant network, MemoryStorage), driven by the Ready "
            "contract. Entries are counted when the leader applies them."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--entries", type=int, default=200_000,
                        help="payload entries to commit per run, after a leader is elected")
    parser.add_argument("--batch", type=int, nargs="+", default=[256, 1], metavar="N",
                        help="proposal batch sizes for Node.propose_batch: one configuration each")
    parser.add_argument("--per-round", type=int, default=1, metavar="K",
                        help="propose_batch calls per driver round (between two Ready cycles)")
    parser.add_argument("--payload-size", type=int, default=100, help="bytes per entry")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per configuration (fresh cluster each); min/median/max reported")
    parser.add_argument("--codec", action="store_true",
                        help="send every message through raft.codec encode_message/decode_message")
    parser.add_argument("--seed", type=int, default=1,
                        help="seeds the nodes' election RNGs and the payloads (run r uses seed+r)")
    parser.add_argument("--gc", choices=("on", "off", "freeze"), default="on",
                        help="Python's cyclic garbage collector during the measured part: on "
                        "(as is), off (gc.disable), or freeze (gc.freeze() every "
                        f"{GC_FREEZE_EVERY} rounds, so the growing log is not rescanned by "
                        "every full collection: a driver-side remedy)")
    parser.add_argument("--profile", type=int, default=0, metavar="TOP",
                        help="run under cProfile and print the TOP functions by tottime and "
                        "cumulative time per configuration (slows the run; figures then not comparable)")
    args = parser.parse_args(argv)
    if args.entries < 1 or args.repeat < 1 or args.payload_size < 0 or min(args.batch) < 1 or args.per_round < 1:
        parser.error("--entries, --repeat, --batch and --per-round must be at least 1, "
                     "--payload-size at least 0")

    random.seed(args.seed)  # nothing uses the global RNG; seeded anyway
    print(
        f"raftflow core bench: 3 nodes, instant in-process network, MemoryStorage, "
        f"{args.payload_size}-byte entries, {args.entries:,} entries/run, {args.repeat} runs/config, "
        f"{args.per_round} propose_batch call(s)/round, "
        f"codec={'msgpack' if args.codec else 'off'}, gc={args.gc}, "
        f"Python {platform.python_version()}"
        + (" [cProfile on: figures inflated]" if args.profile else ""),
        flush=True,
    )
    rows = []
    for batch in args.batch:
        results: list[RunResult] = []
        profiler = cProfile.Profile() if args.profile else None
        for r in range(args.repeat):
            res = run_once(args.entries, batch, args.payload_size, args.seed + r,
                           args.codec, profiler, args.per_round, args.gc)
            results.append(res)
            print(
                f"  batch={batch:<5} run {r + 1}/{args.repeat}: {res.entries / res.wall:>10,.0f} entries/s  "
                f"wall {res.wall:.3f}s  cpu {res.cpu:.3f}s  rounds {res.rounds:,}  "
                f"msgs {res.messages:,}  stalls {res.stalls}  gc {100 * res.gc_seconds / res.wall:.0f}%",
                file=sys.stderr, flush=True,
            )
        rows.append((batch, results))
        if profiler is not None:
            for key in ("tottime", "cumulative"):
                print(f"\n--- cProfile, batch={batch}, sorted by {key} ---")
                pstats.Stats(profiler, stream=sys.stdout).strip_dirs().sort_stats(key).print_stats(args.profile)

    head = (f"{'batch':>6} | {'committed entries/s (min / median / max)':>41} | "
            f"{'CPU us/entry (min / median / max)':>35} | {'msgs/entry':>10} | {'GC % wall':>9}")
    if args.codec:
        head += f" | {'wire B/entry':>12}"
    print()
    print(head)
    print("-" * len(head))
    for batch, results in rows:
        rate = [r.entries / r.wall for r in results]
        cpu_us = [r.cpu / r.entries * 1e6 for r in results]
        msgs = [r.messages / r.entries for r in results]
        line = (f"{batch:>6} | {triple(rate, fmt_int):>41} | "
                f"{triple(cpu_us, lambda x: f'{x:.2f}'):>35} | {statistics.median(msgs):>10.4f} | "
                f"{statistics.median(100 * r.gc_seconds / r.wall for r in results):>9.0f}")
        if args.codec:
            line += f" | {statistics.median(r.wire_bytes / r.entries for r in results):>12.1f}"
        print(line)
    print("\nCPU us/entry = time.process_time() seconds per committed entry x 1e6 "
          "(all 3 nodes + client in this one process).\n"
          "GC % wall = share of the measured wall time spent in Python's cyclic garbage "
          "collector (median).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
