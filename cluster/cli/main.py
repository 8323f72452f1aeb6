"""The `raftflow` command line.

Conventions (etcdctl, the temporal CLI): subcommands, `--help` everywhere, results on
stdout, one line per error on stderr, exit 0 on success, 1 when a check fails, 2 on
bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from raftflow.cluster.cli.auth_commands import add_auth_commands
from raftflow.cluster.cli.check_command import add_check_command
from raftflow.cluster.cli.cluster_commands import add_cluster_commands, add_kv_commands, add_node_commands
from raftflow.cluster.cli.common import run
from raftflow.cluster.cli.demo_command import add_demo_command
from raftflow.cluster.cli.partition_commands import add_partition_commands
from raftflow.cluster.cli.workflow_commands import add_worker_command, add_workflow_commands
from raftflow.raft.config import MUTATIONS
from raftflow.version import __version__


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must not be negative")
    return value


def _faults(text: str) -> frozenset[str]:
    from raftflow.raft.sim.schedule import parse_fault_kinds

    try:
        return parse_fault_kinds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _mutations(text: str) -> frozenset[str]:
    kinds = frozenset(k.strip() for k in text.split(",") if k.strip())
    unknown = kinds - MUTATIONS
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown mutation(s) {sorted(unknown)}; choose from {', '.join(sorted(MUTATIONS))}"
        )
    return kinds


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="raftflow", description="raftflow: a durable workflow engine on Raft.")
    parser.add_argument("--version", action="version", version=f"raftflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sim = sub.add_parser(
        "sim",
        help="run the deterministic cluster simulator and check Raft's safety properties",
        description=(
            "Simulate a cluster of Raft cores under faults, from one seed, and check Election "
            "Safety, Leader Append-Only, Log Matching, Leader Completeness, State Machine "
            "Safety, linearizable reads and durability of acknowledged writes after every "
            "event; then heal everything and check liveness. The same seed gives the same run."
        ),
    )
    sim.add_argument("--nodes", type=int, default=5, choices=(1, 3, 5, 7), help="cluster size (default 5)")
    sim.add_argument("--seed", type=_positive, default=0, help="seed of every random choice (default 0)")
    sim.add_argument("--steps", type=_positive, default=1000, help="ticks with faults (default 1000)")
    sim.add_argument(
        "--faults",
        type=_faults,
        default=_faults("all"),
        help="comma-separated kinds: partition,crash,loss,dup,reorder; or all / none (default all)",
    )
    sim.add_argument(
        "--mutate",
        type=_mutations,
        default=frozenset(),
        metavar="RULES",
        help=f"break a rule on purpose to see the checkers fail: {', '.join(sorted(MUTATIONS))}",
    )
    sim.add_argument(
        "--compact-every", type=_positive, default=150, help="entries between snapshots, 0 = never (default 150)"
    )
    sim.add_argument(
        "--storage",
        choices=("disk", "memory"),
        default="disk",
        help="disk: the real write-ahead log on a simulated file system that loses unsynced "
        "writes on a crash (default); memory: the in-memory store",
    )
    sim.add_argument("--hostile", action="store_true",
                     help="a hostile peer forges impossible messages during the faults; each must be refused")
    sim.add_argument("--seeds", type=_positive, default=1, help="run this many seeds from --seed (a sweep)")
    sim.add_argument("--jobs", type=_positive, default=os.cpu_count() or 1, help="processes for a sweep")
    show = sim.add_mutually_exclusive_group()
    show.add_argument("--timeline", action="store_true", help="print the narrated timeline (the default)")
    show.add_argument("--trace", action="store_true", help="print every delivered message too")
    show.add_argument("--quiet", action="store_true", help="print only the verdict")
    sim.add_argument("--history", metavar="FILE", help="write the client history as JSON lines")
    sim.set_defaults(func=_cmd_sim)
    add_node_commands(sub)
    add_cluster_commands(sub)
    add_kv_commands(sub)
    add_partition_commands(sub)
    add_check_command(sub)
    add_workflow_commands(sub)
    add_worker_command(sub)
    add_demo_command(sub)
    add_auth_commands(sub)
    return parser


def _cmd_sim(args: argparse.Namespace) -> int:
    from raftflow.raft.sim import SimOptions, run
    from raftflow.raft.sim.sweep import sweep

    options = SimOptions(
        nodes=args.nodes,
        seed=args.seed,
        steps=args.steps,
        faults=args.faults,
        mutations=args.mutate,
        compact_every=args.compact_every,
        storage=args.storage,
        hostile=args.hostile,
    )
    if args.seeds > 1:
        return _sweep(options, args, sweep)
    trace: list[str] | None = [] if args.trace else None
    print(
        f"simulating {options.nodes} nodes, seed {options.seed}, {options.steps} ticks of faults "
        f"({', '.join(sorted(options.faults)) or 'none'})"
        + (f", rules broken on purpose: {', '.join(sorted(options.mutations))}" if options.mutations else "")
    )
    result = run(options, trace=trace)
    if trace is not None:
        print("\n".join(trace))
    if not args.quiet:
        print("\n".join(result.timeline))
    if args.history:
        with open(args.history, "w") as f:
            for op in result.history:
                f.write(json.dumps(op.to_json()) + "\n")
    print(f"trace hash {result.trace_hash}")
    print(result.verdict())
    return 0 if result.ok else 1


def _sweep(options, args: argparse.Namespace, sweep) -> int:
    seeds = range(options.seed, options.seed + args.seeds)
    started = time.monotonic()
    failures = []
    done = 0
    for outcome in sweep(options, seeds, jobs=args.jobs):
        done += 1
        if not outcome.ok:
            failures.append(outcome)
            print(f"seed {outcome.seed}: {outcome.violation}\n  replay: {outcome.replay}", flush=True)
        if done % 1000 == 0 and not args.quiet:
            print(f"{done}/{len(seeds)} seeds, {len(failures)} failed, {time.monotonic() - started:.0f}s", flush=True)
    print(
        f"{len(seeds) - len(failures)} passed, {len(failures)} failed: seeds {seeds.start}..{seeds.stop - 1}, "
        f"{options.nodes} nodes, {options.steps} ticks each, {time.monotonic() - started:.0f}s"
    )
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "sim":
            return args.func(args)
        return run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


