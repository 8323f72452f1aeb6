"""Workflows as code: how fast a worker replays a history (issue 15's aim: a
10,000-event history in at most 1 s on one worker).

A workflow runs N activities one after another (each result feeds the next), so
its history holds 2N events: N scheduled, N completed; it is recorded once, then
replayed through the deterministic runtime (cluster/worker/workflow_runtime.py)
with the determinism check on every command. Reported: the best of --repeats
runs, and the cost per event. Also a fan-out: the same N activities gathered at
once (one workflow task schedules them all).

    python bench/replay_bench.py                 # 5,000 activities: a 10,000-event history
    python bench/replay_bench.py --activities 50000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

if os.path.dirname(os.path.dirname(os.path.abspath(__file__))) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raftflow.cluster.worker import workflow_runtime as wf  # noqa: E402
from raftflow.cluster.worker.workflow_runtime import (  # noqa: E402
    Activation,
    RecordedTask,
    ResolveActivity,
    Start,
    WorkflowInstance,
)


@wf.defn
class Sequential:
    @wf.run
    async def run(self, n: int) -> int:
        total = 0
        for i in range(n):
            total += await wf.execute_activity("step", i, start_to_close=5)
        return total


@wf.defn
class FanOut:
    @wf.run
    async def run(self, n: int) -> int:
        return sum(await asyncio.gather(*(wf.execute_activity("step", i, start_to_close=5) for i in range(n))))


def record(cls: type, n: int) -> list[RecordedTask]:
    """Run `cls` once, answering each activity as it is scheduled (in order)."""
    instance = WorkflowInstance(cls, workflow_id="bench")
    history: list[RecordedTask] = []
    pending: list[int] = []
    activation = Activation(1, (Start(n),))
    now_ms = 1
    while True:
        commands = instance.activate(activation)
        history.append(RecordedTask(activation, tuple(commands)))
        pending.extend(c.seq for c in commands if isinstance(c, wf.ScheduleActivity))
        if instance.done:
            return history
        now_ms += 1
        if cls is FanOut:
            activation = Activation(now_ms, tuple(ResolveActivity(seq, seq) for seq in pending))
            pending = []
        else:
            activation = Activation(now_ms, (ResolveActivity(pending.pop(0), 1),))


def best_replay(cls: type, history: list[RecordedTask], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        wf.replay(cls, history, workflow_id="bench")
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--activities", type=int, default=5000, help="activities in the workflow (events: twice)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = args.activities
    print(f"replaying workflow histories of {n:,} activities ({2 * n:,} events), best of {args.repeats}")
    for cls, shape in ((Sequential, "one after another"), (FanOut, "all at once (gather)")):
        history = record(cls, n)
        seconds = best_replay(cls, history, args.repeats)
        print(f"  {shape:<22} {len(history):>6,} workflow tasks  {seconds * 1000:8.1f} ms  "
              f"{seconds / (2 * n) * 1e6:6.1f} µs per event  (aim: 10,000 events in <= 1 s)")


if __name__ == "__main__":
    main()
