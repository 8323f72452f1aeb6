"""`raftflow demo [saga|kv|cap]`: narrated runs on a real local cluster."""

from __future__ import annotations

import argparse

from raftflow.cluster.cli.common import EXIT_USAGE, CommandFailed


def add_demo_command(sub) -> None:
    demo = sub.add_parser(
        "demo", help="a narrated run on a real 3-node cluster (saga: the order saga; kv: writes)",
        description="saga (default): 3 nodes and a worker on 127.0.0.1, a batch of order sagas (some compensated, "
        "some retried), the leader SIGKILLed mid-way and restarted; checks every saga's outcome, that each effect "
        "happened once per idempotency key, and that all nodes agree. kv: writes through the client with the "
        "leader SIGKILLed mid-way; checks every acknowledged write is there exactly once on every node.",
    )
    demo.add_argument("which", nargs="?", choices=("saga", "kv", "cap"), default="saga",
                      help="which demo (default saga; cap: a 2|3 split on 5 nodes, the CAP trade-off)")
    demo.add_argument("--plot", metavar="FILE.png", help="cap: draw the timeline (needs matplotlib)")
    demo.add_argument("--dir", help="keep the cluster's files here (default: a temporary folder, removed)")
    demo.add_argument("--writes", type=int, default=300, help="kv: writes in all (default 300)")
    demo.add_argument("--workflows", type=int, default=40, help="saga: order sagas in the batch (default 40)")
    demo.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.which == "cap":
        from raftflow.cluster.demos.cap_demo import run_cap_demo  # noqa: PLC0415

        return run_cap_demo(args.dir, args.plot)
    if args.which == "saga":
        from raftflow.cluster.demos.saga_demo import run_saga_demo  # noqa: PLC0415

        if not 7 <= args.workflows <= 5000:
            raise CommandFailed(f"--workflows {args.workflows}: from 7 to 5000", EXIT_USAGE)
        return run_saga_demo(args.dir, args.workflows)
    from raftflow.cluster.demos.kv_demo import run_demo  # noqa: PLC0415

    if args.writes < 2:
        raise CommandFailed(f"--writes {args.writes}: at least 2", EXIT_USAGE)
    return run_demo(args.dir, args.writes)
