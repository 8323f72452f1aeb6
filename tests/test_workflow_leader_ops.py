"""The leader's own ops (ActivityTaskStarted, Tick, RearmTimeouts): carried outside any
session, applied without the session table, safe to apply twice; and RearmTimeouts'
grace period for tasks that were running while there was no leader."""

import re

import msgpack
import pytest

from raftflow.statemachine import Machine
from raftflow.statemachine.commands import Command, CommandError, OpenSession, Rejected, RejectReason, decode_command, encode_command
from raftflow.statemachine.workflow import RetryPolicy, activity, encode_definition, workflow
from raftflow.statemachine.workflow.engine import (
    ActivityTask,
    Rearmed,
    Status,
    TaskAccepted,
    Ticked,
    WorkflowEngine,
    WorkflowRejected,
    WorkflowRejectReason,
)
from raftflow.statemachine.workflow.ops import (
    LEADER_OPS,
    WORKFLOW_OPS,
    ActivityTaskStarted,
    CompleteActivity,
    RearmTimeouts,
    RegisterWorkflowType,
    StartWorkflow,
    Tick,
)

RETRY = RetryPolicy(initial_interval=1.0, maximum_attempts=2)
SLOW = workflow("slow", version=1, steps=[
    activity("work", task_queue="q", input="$input", retry=RETRY, start_to_close=10, heartbeat=2),
    activity("more", task_queue="q", retry=RETRY),
])  # fmt: skip


def test_leader_ops_are_exactly_the_three_the_leader_proposes():
    assert LEADER_OPS == (ActivityTaskStarted, Tick, RearmTimeouts)
    assert set(LEADER_OPS) <= set(WORKFLOW_OPS)


@pytest.mark.parametrize("op", [ActivityTaskStarted(1, 1), Tick(), RearmTimeouts(5000)], ids=lambda op: type(op).__name__)
@pytest.mark.parametrize("envelope", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (3, 2, 1)])
def test_a_leader_op_inside_a_session_is_malformed(op, envelope):
    data = encode_command(Command(10, *envelope, op))
    with pytest.raises(CommandError, match=re.escape("carries 0 (the leader proposes it, outside any session)")):
        decode_command(data)
    machine = Machine()
    before = machine.snapshot()
    rejected = machine.apply(1, data)
    assert type(rejected) is Rejected and rejected.reason is RejectReason.MALFORMED
    assert machine.snapshot() != before and machine.applied_index == 1  # only the index moved
    fresh = Machine()
    fresh.apply_noop(1)
    assert machine.snapshot() == fresh.snapshot()


@pytest.mark.parametrize("op", [StartWorkflow("w1", "slow", 1, None), CompleteActivity(1, 1, None)], ids=lambda op: type(op).__name__)
def test_a_client_op_without_a_session_is_malformed(op):
    data = encode_command(Command(10, 0, 0, 0, op))
    with pytest.raises(CommandError, match=f"session_id is 0; a {type(op).__name__} needs an open session"):
        decode_command(data)
    assert Machine().apply(1, data).reason is RejectReason.MALFORMED


class Leader:
    """A client session for the workflow's client ops, and the leader's own proposals."""

    def __init__(self):
        self.machine = Machine()
        self.seq = 0
        self.session_id = self.apply(Command(0, 0, 0, 0, OpenSession())).session_id
        self.client(RegisterWorkflowType(encode_definition(SLOW)), 0)

    def apply(self, cmd):
        return self.machine.apply(self.machine.applied_index + 1, encode_command(cmd))

    def client(self, op, now_ms):
        self.seq += 1
        return self.apply(Command(now_ms, self.session_id, self.seq, 0, op))

    def leader(self, op, now_ms):
        return self.apply(Command(now_ms, 0, 0, 0, op))


def test_leader_ops_apply_through_the_machine_without_touching_sessions():
    leader = Leader()
    leader.client(StartWorkflow("w1", "slow", 1, "x"), 10)
    sessions = leader.machine.session_count
    started = leader.leader(ActivityTaskStarted(1, 1), 20)
    assert started == ActivityTask(1, 1, "w1", "work", "x", False, 1, "work", "q")
    # A duplicate proposal (say, by a leader that did not see the first commit) is fenced.
    again = leader.leader(ActivityTaskStarted(1, 1), 21)
    assert type(again) is WorkflowRejected and again.reason is WorkflowRejectReason.STALE_TASK
    assert leader.leader(Tick(), 21) == Ticked(0, 0)
    assert leader.leader(Tick(), 21) == Ticked(0, 0)  # the same time fires nothing
    assert leader.leader(RearmTimeouts(0), 21) == Rearmed(0)
    assert leader.machine.session_count == sessions
    assert leader.client(CompleteActivity(1, 1, "done"), 30) == TaskAccepted(1, 1)


def test_rearm_moves_overdue_started_deadlines_to_now_plus_grace():
    engine = WorkflowEngine()
    engine.register(SLOW)
    engine.start("w1", "slow", 1, "x", 0)
    engine.task_started(1, 1, 100)  # start_to_close due 10_100, heartbeat 2_100
    # No leader from 500 to 9_000: the new leader gives running tasks 3 s of grace.
    assert engine.rearm_timeouts(3000, 9000) == Rearmed(1)
    assert engine.next_deadline_ms() == 2100  # the old heap entry is stale now
    assert engine.tick(11_999) == Ticked(0, 0)
    assert engine.describe("w1").task_state.value == "started"
    assert engine.rearm_timeouts(3000, 11_999) == Rearmed(1)  # a second leader, later: moved again
    assert engine.rearm_timeouts(3000, 11_999) == Rearmed(0)  # applied twice: nothing more moves
    assert engine.tick(14_998).fired == 0
    assert engine.tick(14_999).fired == 1  # heartbeat (kind 2) and start_to_close: one attempt, one timeout
    described = engine.describe("w1")
    assert described.task_state.value == "backoff" and described.last_error.error_type == "StartToCloseTimeout"


def test_rearm_leaves_deadlines_after_the_grace_and_tasks_not_started_alone():
    engine = WorkflowEngine()
    engine.register(SLOW)
    engine.start("a", "slow", 1, "x", 0)
    engine.start("b", "slow", 1, "y", 0)
    engine.task_started(1, 1, 1000)  # a: start_to_close 11_000, heartbeat 3_000
    before = engine.snapshot_state()
    assert engine.rearm_timeouts(500, 1000) == Rearmed(0)  # nothing due before 1_500
    assert engine.snapshot_state() == before
    assert engine.rearm_timeouts(5000, 1000) == Rearmed(1)  # heartbeat only: 3_000 -> 6_000
    assert engine.tick(5999).fired == 0 and engine.tick(6000).fired == 1
    assert [t.workflow_id for t in engine.pending_tasks("q", 10)] == ["b"]  # b was never started: untouched


def test_rearm_refuses_a_bad_grace_and_the_op_validates_it():
    engine = WorkflowEngine()
    for grace_ms in (-1, 3_600_001, 1.0, True):
        refused = engine.rearm_timeouts(grace_ms, 0)
        assert refused.reason is WorkflowRejectReason.INVALID and "grace_ms=" in refused.message
    data = msgpack.packb([1, 5, 0, 0, 0, [13, 3_600_000]], use_bin_type=True)
    assert decode_command(data).op == RearmTimeouts(3_600_000)


def test_rearm_through_the_machine_replays_to_the_same_state():
    leader = Leader()
    leader.client(StartWorkflow("w1", "slow", 1, "x"), 10)
    leader.leader(ActivityTaskStarted(1, 1), 20)
    assert leader.leader(RearmTimeouts(4000), 5000) == Rearmed(1)
    assert leader.machine.workflow.describe("w1").status is Status.RUNNING
    replica = Machine()
    replica.restore(leader.machine.snapshot())
    assert leader.leader(Tick(), 8999) == Ticked(0, 0)
    assert leader.leader(Tick(), 9000) == Ticked(1, 0)
    replica_leader = Leader.__new__(Leader)
    replica_leader.machine = replica
    assert replica_leader.leader(Tick(), 8999) == Ticked(0, 0)
    assert replica_leader.leader(Tick(), 9000) == Ticked(1, 0)
    assert replica.snapshot() == leader.machine.snapshot()
