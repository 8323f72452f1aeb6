"""Linearizability checker throughput: operations checked per second on a 10,000-
operation key-value history (the figure issue 6 asks for).

The history comes from statemachine.history_gen.random_history: CLIENTS clients
issue put/get/cas/delete on KEYS keys, one after another, each operation taking effect
on a real KvStore at a random point of its window; 5% end with an unknown outcome
(half of those take effect, possibly long after the client gave up) and 5% fail. It is
linearizable by construction, so the checker must search it to the end.

Measured, each the best of --repeats runs: parsing the JSON lines (what `raftflow check`
reads) and checking (per-key search). Then one read is changed to a value no one wrote
and the time to find and shrink that violation is reported too.

    python bench/check_bench.py                 # 10,000 operations, 4 keys, 5 clients
    python bench/check_bench.py --keys 1 --clients 8
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import time

if os.path.dirname(os.path.dirname(os.path.abspath(__file__))) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raftflow.cluster.verify.history_gen import random_history  # noqa: E402
from raftflow.cluster.verify.linearizability import Kind, Outcome, Verdict, check, operation_to_json, parse_history  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--operations", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=4)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--unknown-percent", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    history = random_history(random.Random(args.seed), operations=args.operations, keys=args.keys,
                             clients=args.clients, unknown_percent=args.unknown_percent)
    lines = [json.dumps(operation_to_json(op)) for op in history]
    print(f"history: {len(history):,} operations on {args.keys} keys by {args.clients} clients "
          f"({sum(op.outcome is Outcome.UNKNOWN for op in history)} unknown, "
          f"{sum(op.outcome is Outcome.FAIL for op in history)} failed), seed {args.seed}")

    parse_s = min(_timed(lambda: parse_history(lines))[1] for _ in range(args.repeats))
    runs = [check(history, timeout_s=120) for _ in range(args.repeats)]
    best = min(runs, key=lambda result: result.seconds)
    assert best.verdict is Verdict.LINEARIZABLE, best
    print(f"parse: {parse_s:.3f} s ({len(lines) / parse_s:,.0f} lines/s)")
    print(f"check: {best.seconds:.3f} s, {best.operations_per_second:,.0f} operations checked/s "
          f"(best of {args.repeats}; states per key: {', '.join(f'{key.states:,}' for key in best.keys)})")
    print(f"parse + check: {len(history) / (parse_s + best.seconds):,.0f} operations/s")

    reads = [i for i, op in enumerate(history) if op.kind is Kind.GET and op.outcome is Outcome.OK]
    changed = reads[len(reads) // 2]
    history[changed] = dataclasses.replace(history[changed], result="never-written", revision=None)
    violation, seconds = _timed(lambda: check(history, timeout_s=120))
    print(f"one read changed to a value no one wrote: {violation.verdict.value} in {violation.seconds:.3f} s; "
          f"shrunk to {len(violation.counterexample)} operation(s), {seconds:.3f} s in all")
    return 0


def _timed(work):
    started = time.perf_counter()
    value = work()
    return value, time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
