"""A run's history is bounded in payload bytes (max_history_bytes), not only in
events: found from outside, 1,000 signals of 256 KiB grew every node by 500 MiB and
made the run's History too large ever to return."""

from __future__ import annotations

import pytest

from raftflow import activity, workflow
from raftflow.statemachine.machine import Machine
from raftflow.statemachine.workflow.ops import WorkflowLimits
from raftflow.testing import WorkflowEnvironment, WorkflowTestError

LIMITS = WorkflowLimits(max_history_bytes=1 << 20)
BIG = "x" * 200_000  # about 200 KB of msgpack


@activity.defn
def big(_: object = None) -> str:
    return BIG


def test_signals_past_the_bound_are_refused_and_the_run_goes_on():
    waiting = workflow.define("waiting", version=1, steps=[workflow.wait_signal("go")])
    with WorkflowEnvironment(activities=[big], limits=LIMITS) as env:
        env.register(waiting)
        run = env.start("waiting")
        for _ in range(4):  # 200 KB each, held as if received too: the fifth would pass 1 MiB
            env.signal(run, "noise", BIG)
        with pytest.raises(WorkflowTestError, match=r"resource_exhausted: .*would pass max_history_bytes=1048576"):
            env.signal(run, "noise", BIG)
        env.signal(run, "go", "small")  # a small one still fits
        outcome = env.run_until_closed(run)
    assert outcome.status == "completed" and outcome.result == "small"


def test_results_that_fill_the_history_fail_the_run_naming_the_bound():
    many = workflow.define("many", version=1, steps=[
        workflow.step(f"s{i}", activity="big", task_queue="q") for i in range(8)
    ])
    with WorkflowEnvironment(activities=[big], limits=LIMITS) as env:
        env.register(many)
        outcome = env.run("many")
    assert outcome.status == "failed"
    assert outcome.reason == "history reached max_history_bytes=1048576"
    assert outcome.event_types()[-1] == "WorkflowExecutionFailed"


def test_a_restored_engine_counts_the_same_bytes():
    # The count is not in the snapshot: it is derived from the events (on first use
    # after a restore), so a replica that caught up by snapshot refuses exactly when
    # the others do.
    waiting = workflow.define("waiting", version=1, steps=[workflow.wait_signal("go")])
    with WorkflowEnvironment(activities=[big], limits=LIMITS) as env:
        env.register(waiting)
        run = env.start("waiting")
        env.signal(run, "noise", BIG)
        restored = Machine(workflow_limits=LIMITS)
        restored.restore(env.machine.snapshot())
        assert restored.snapshot() == env.machine.snapshot()
        engine, twin = env.machine.workflow, restored.workflow
        assert twin._held_bytes(run) == engine._held_bytes(run) > 190_000
        for _ in range(3):
            env.signal(run, "noise", BIG)
            twin.signal(run, "noise", BIG, env.now_ms)
        assert twin.signal(run, "noise", BIG, env.now_ms) == env.machine.workflow.signal(run, "noise", BIG, env.now_ms)
