"""`raftflow check HISTORY.jsonl`: is a recorded key-value history linearizable?

    raftflow check history.jsonl              # exit 0: linearizable, 1: not, 3: undecided
    raftflow check history.jsonl -o json      # the verdict, per key, and the counterexample
    raftflow check - --timeout 30 < history.jsonl

The format and the algorithm are in docs/linearizability.md; the checker itself is
statemachine.linearizability (pure); this module reads the file and prints.
"""

from __future__ import annotations

import argparse
import json
import sys

from raftflow.cluster.cli.common import EXIT_FAILURE, EXIT_USAGE, CommandFailed
from raftflow.cluster.verify.linearizability import (
    MAX_STATES_PER_KEY,
    SHRINK_SECONDS,
    CheckResult,
    HistoryError,
    Verdict,
    check,
    format_timeline,
    operation_to_json,
    parse_history,
)

EXIT_UNDECIDED = 3  # a key hit --timeout or --max-states before the search ended
TIMELINE_LINES_MAX = 60  # of a counterexample, on the terminal (-o json has all of it)


def add_check_command(sub) -> None:
    check_parser = sub.add_parser(
        "check", help="check that a key-value history (JSON lines) is linearizable",
        description="Check a recorded history of put/get/delete/cas operations for linearizability, key by key "
        "(Wing & Gong's search with Lowe's memoization). On a violation, print the key and the smallest failing "
        "sub-history found. Exit 0: linearizable; 1: not linearizable; 2: bad input; 3: a key could not be decided "
        "within --timeout or --max-states. The format is in docs/linearizability.md; `raftflow sim --history FILE` "
        "output is read too.",
    )
    check_parser.add_argument("history", metavar="HISTORY.jsonl", help="one operation per line; - reads stdin")
    check_parser.add_argument("--timeout", type=float, default=60.0, help="seconds the search may spend on one key (default 60)")
    check_parser.add_argument(
        "--max-states", type=int, default=MAX_STATES_PER_KEY,
        help=f"memo entries one key's search may hold (default {MAX_STATES_PER_KEY:,}; ~150 bytes + operations/8 each)",
    )
    check_parser.add_argument(
        "--shrink-timeout", type=float, default=SHRINK_SECONDS,
        help=f"seconds spent shrinking a counterexample (default {SHRINK_SECONDS:g}; 0: show the key's whole history)",
    )
    check_parser.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")
    check_parser.set_defaults(func=_cmd_check)


def _cmd_check(args: argparse.Namespace) -> int:
    if not args.timeout > 0 or args.max_states < 1 or args.shrink_timeout < 0:
        raise CommandFailed(
            f"--timeout {args.timeout:g} must be positive, --max-states {args.max_states} at least 1, "
            f"--shrink-timeout {args.shrink_timeout:g} not negative", EXIT_USAGE,
        )
    try:
        if args.history == "-":
            operations = parse_history(sys.stdin)
        else:
            with open(args.history, encoding="utf-8") as file:
                operations = parse_history(file)
    except OSError as exc:
        raise CommandFailed(f"{args.history}: {exc.strerror}", EXIT_USAGE) from None
    except (HistoryError, UnicodeDecodeError) as exc:
        raise CommandFailed(f"{args.history}: {exc}", EXIT_USAGE) from None
    result = check(operations, timeout_s=args.timeout, max_states=args.max_states, shrink_s=args.shrink_timeout)
    if args.output == "json":
        print(json.dumps(result_to_json(result), indent=2))
    else:
        print("\n".join(report_lines(result)))
    return {Verdict.LINEARIZABLE: 0, Verdict.NOT_LINEARIZABLE: EXIT_FAILURE, Verdict.UNKNOWN: EXIT_UNDECIDED}[result.verdict]


def report_lines(result: CheckResult) -> list[str]:
    """What the terminal shows: one line if linearizable, else the failing key and a
    timeline of the counterexample; keys the search could not decide are named."""
    if result.ok:
        keys = f"{len(result.keys)} key{'' if len(result.keys) == 1 else 's'}"
        return [f"linearizable: {result.operations} operations on {keys} checked in {result.seconds:.2f} s"]
    lines = []
    if result.failing_key is not None:
        failing = next(key for key in result.keys if key.key == result.failing_key)
        shown = result.counterexample[-TIMELINE_LINES_MAX:]
        lines.append(
            f"not linearizable: key {json.dumps(result.failing_key)} ({failing.operations} operations); "
            f"the smallest failing sub-history found has {len(result.counterexample)}:"
        )
        if len(shown) < len(result.counterexample):
            lines.append(f"  ... {len(result.counterexample) - len(shown)} earlier operations (-o json lists them all)")
        lines.extend("  " + line for line in format_timeline(shown))
        others = [key.key for key in result.keys if key.verdict is Verdict.NOT_LINEARIZABLE and key.key != result.failing_key]
        if others:
            lines.append(f"also not linearizable: {', '.join(json.dumps(key) for key in others)}")
    for key in result.keys:
        if key.verdict is Verdict.UNKNOWN:
            lines.append(f"unknown: key {json.dumps(key.key)} ({key.operations} operations): {key.reason} "
                         f"after {key.seconds:.1f} s and {key.states:,} states")
    return lines


def result_to_json(result: CheckResult) -> dict:
    return {
        "verdict": result.verdict.value,
        "operations": result.operations,
        "keys": len(result.keys),
        "seconds": round(result.seconds, 6),
        "operations_per_second": round(result.operations_per_second, 1) if result.seconds > 0 else None,
        "per_key": [
            {"key": key.key, "verdict": key.verdict.value, "operations": key.operations, "states": key.states,
             "seconds": round(key.seconds, 6), **({"reason": key.reason} if key.reason else {})}
            for key in result.keys
        ],
        "failing_key": result.failing_key,
        "counterexample": [
            {**operation_to_json(op), **({"line": op.line} if op.line else {})} for op in result.counterexample
        ],
    }
