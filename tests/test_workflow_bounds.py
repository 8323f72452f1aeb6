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


def _type(name: str, steps: int = 1) -> workflow.WorkflowType:
    return workflow.define(name, version=1, steps=[
        workflow.step(f"step_{i:04d}_" + "n" * 180, activity="a" * 150, task_queue="q" * 150) for i in range(steps)
    ])


def test_registered_types_are_bounded_in_count_and_bytes():
    from raftflow.statemachine.workflow.engine import WorkflowEngine
    from raftflow.statemachine.workflow.records import TypeRegistered, WorkflowRejected, WorkflowRejectReason

    engine = WorkflowEngine(max_types=2)
    assert engine.register(_type("a")) == TypeRegistered("a", 1)
    assert engine.register(_type("b")) == TypeRegistered("b", 1)
    refused = engine.register(_type("c"))
    assert isinstance(refused, WorkflowRejected) and refused.reason is WorkflowRejectReason.RESOURCE_EXHAUSTED
    assert "max_types=2" in refused.message
    assert engine.register(_type("a")) == TypeRegistered("a", 1)  # the same type again: a no-op, not a new one

    engine = WorkflowEngine(max_type_bytes=1 << 20)
    large = [_type(f"large{i}", steps=1000) for i in range(2)]  # about 750 KB each, encoded
    results = [engine.register(t) for t in large]
    assert results[0] == TypeRegistered("large0", 1)
    assert isinstance(results[-1], WorkflowRejected) and "max_type_bytes=1048576" in results[-1].message
    restored = WorkflowEngine(max_type_bytes=1 << 20)
    restored.restore_state(engine.snapshot_state())
    again = restored.register(large[-1])  # counted the same after a restore
    assert isinstance(again, WorkflowRejected) and again.message == results[-1].message
