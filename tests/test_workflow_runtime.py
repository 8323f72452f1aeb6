"""Workflows as code, step 1: the deterministic runtime (docs/workflows-as-code.md).

A workflow class runs on a loop with no clock or I/O; activations in, commands out;
the same history through the same code gives the same commands, and a replay that
does not is a NonDeterminism naming the task, the command and the line."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftflow import activity
from raftflow.cluster.worker import workflow_runtime as wf
from raftflow.cluster.worker.workflow_runtime import (
    Activation,
    CancelTimer,
    CancelWorkflow,
    CompleteWorkflow,
    FailWorkflow,
    FireTimer,
    NonDeterminism,
    RecordedTask,
    RecordMarker,
    ContinueAsNew,
    RequestCancel,
    RequestCancelActivity,
    ResolveActivity,
    ResolveChild,
    StartChildWorkflow,
    ScheduleActivity,
    Signal,
    Start,
    StartTimer,
    WorkflowError,
    WorkflowInstance,
)


@activity.defn
def reserve(order): ...


@activity.defn
def release(hold): ...


@activity.defn
def pick(line): ...


@activity.defn
def charge(order): ...


@wf.defn
class Order:
    def __init__(self):
        self.approved = False
        self.picked: list = []

    @wf.signal
    def approve(self, by: str) -> None:
        self.approved = True

    @wf.query
    def progress(self) -> dict:
        return {"approved": self.approved, "picked": self.picked}

    @wf.run
    async def run(self, order: dict) -> dict:
        saga = wf.Saga()
        try:
            hold = await wf.execute_activity(reserve, order, start_to_close=timedelta(seconds=5))
            saga.add_compensation(release, hold, start_to_close=5)
            if order.get("big") and not await wf.wait_condition(lambda: self.approved, timeout=timedelta(days=1)):
                raise RuntimeError("not approved in time")
            self.picked = await asyncio.gather(*(wf.execute_activity(pick, line, start_to_close=5)
                                                 for line in order["lines"]))
            await wf.execute_activity(charge, order, start_to_close=5)
            await wf.sleep(timedelta(minutes=10))
            return {"picked": self.picked}
        except BaseException:
            await saga.compensate()
            raise


def step(instance: WorkflowInstance, now_ms: int, *jobs) -> list:
    return instance.activate(Activation(now_ms, tuple(jobs)))


def activity_command(seq: int, name: str, value: object) -> ScheduleActivity:
    return ScheduleActivity(seq, name, value, "default", 5000, None, None, None)


ORDER = {"lines": ["a", "b"], "big": True}


def run_order() -> tuple[WorkflowInstance, list[RecordedTask]]:
    """The happy path, recorded as a history of workflow tasks."""
    instance = WorkflowInstance(Order, workflow_id="order-1")
    history = []
    for now_ms, jobs in [
        (1_000, (Start(ORDER),)),
        (2_000, (ResolveActivity(1, "H1"),)),
        (3_000, (Signal("approve", ("ops",)),)),
        (4_000, (ResolveActivity(4, "A"), ResolveActivity(5, "B"))),
        (5_000, (ResolveActivity(6, "charged"),)),
        (605_000, (FireTimer(7),)),
    ]:
        activation = Activation(now_ms, jobs)
        history.append(RecordedTask(activation, tuple(instance.activate(activation))))
    return instance, history


def test_a_run_gives_commands_in_order_and_completes():
    instance, history = run_order()
    assert [list(task.commands) for task in history] == [
        [activity_command(1, "reserve", ORDER)],
        [StartTimer(2, 86_400_000)],  # wait_condition's timeout is a durable timer
        [CancelTimer(3, 2), activity_command(4, "pick", "a"), activity_command(5, "pick", "b")],
        [activity_command(6, "charge", ORDER)],
        [StartTimer(7, 600_000)],
        [CompleteWorkflow(8, {"picked": ["A", "B"]})],
    ]
    assert instance.done and instance.query("progress") == {"approved": True, "picked": ["A", "B"]}


def test_a_replay_gives_the_same_commands_and_state():
    _, history = run_order()
    replayed = wf.replay(Order, history)
    assert replayed.done and replayed.query("progress")["picked"] == ["A", "B"]


def test_a_failed_step_compensates_what_succeeded_in_reverse_order_then_fails():
    instance = WorkflowInstance(Order, workflow_id="order-2")
    step(instance, 1, Start({"lines": ["a"]}))
    step(instance, 2, ResolveActivity(1, "H1"))
    step(instance, 3, ResolveActivity(2, "A"))  # picked; charge is scheduled as 3
    commands = step(instance, 4, ResolveActivity(3, error_type="CardDeclined", message="declined"))
    assert commands == [activity_command(4, "release", "H1")]
    assert step(instance, 5, ResolveActivity(4, "released")) == [
        FailWorkflow(5, "ActivityFailed", "CardDeclined: declined")
    ]


def test_a_cancel_raises_in_the_code_which_compensates_then_ends_canceled():
    instance = WorkflowInstance(Order, workflow_id="order-3")
    step(instance, 1, Start({"lines": ["a"]}))
    step(instance, 2, ResolveActivity(1, "H1"))
    commands = step(instance, 3, RequestCancel())  # while it waits for the pick (seq 2)
    assert commands == [RequestCancelActivity(3, 2), activity_command(4, "release", "H1")]
    assert step(instance, 4, ResolveActivity(4, None)) == [CancelWorkflow(5)]


@wf.defn
class OrderChanged(Order):
    """The same workflow after a careless edit: charge before picking."""

    @wf.run
    async def run(self, order: dict) -> dict:
        await wf.execute_activity(reserve, order, start_to_close=5)
        await wf.execute_activity(charge, order, start_to_close=5)  # the changed line
        return {}


def test_a_changed_workflow_is_caught_on_replay_with_the_task_the_command_and_the_line():
    _, history = run_order()
    with pytest.raises(NonDeterminism) as caught:
        wf.replay(OrderChanged, history)
    message = str(caught.value)
    assert message.startswith("workflow task 2: the code gave command 2: schedule activity 'charge' at ")
    assert "test_workflow_runtime.py:" in message and "the history holds command 2: start a 86400000 ms timer" in message


@wf.defn
class Patched:
    @wf.run
    async def run(self, value: int) -> int:
        if wf.patched("double-first"):
            value = await wf.execute_activity(charge, value * 2, start_to_close=5)
        else:
            value = await wf.execute_activity(charge, value, start_to_close=5)
        return value


def test_patched_keeps_old_runs_on_the_old_path_and_new_ones_on_the_new():
    fresh = WorkflowInstance(Patched, workflow_id="p")
    assert step(fresh, 1, Start(3)) == [RecordMarker(1, "double-first"), activity_command(2, "charge", 6)]
    old = [RecordedTask(Activation(1, (Start(3),)), (activity_command(1, "charge", 3),)),
           RecordedTask(Activation(2, (ResolveActivity(1, 3),)), (CompleteWorkflow(2, 3),))]
    assert wf.replay(Patched, old).done  # the history predates the patch: the old path, no mismatch
    new = [RecordedTask(Activation(1, (Start(3),), patches=frozenset({"double-first"})),
                        (RecordMarker(1, "double-first"), activity_command(2, "charge", 6)))]
    wf.replay(Patched, new)


@wf.defn
class Chance:
    @wf.run
    async def run(self, _: object) -> dict:
        wf.logger.info("rolling")
        return {"n": wf.random().randint(1, 10**9), "id": str(wf.uuid4()), "at": wf.now().isoformat()}


def test_time_randomness_and_logs_are_the_same_on_every_replay(caplog):
    with caplog.at_level(logging.INFO, logger="raftflow.workflow"):
        first = step(WorkflowInstance(Chance, workflow_id="c", seed=7), 1_700_000_000_000, Start(None))
        history = [RecordedTask(Activation(1_700_000_000_000, (Start(None),)), tuple(first))]
        wf.replay(Chance, history, workflow_id="c", seed=7)
    assert first[0].result["at"] == "2023-11-14T22:13:20+00:00"
    assert [r.getMessage() for r in caplog.records] == ["[c] rolling"]  # once: silent on replay


@wf.defn
class CompensateAll:
    @wf.run
    async def run(self, _: object) -> str:
        saga = wf.Saga(parallel=True)
        saga.add_compensation("undo-a", 1, start_to_close=5)
        saga.add_compensation("undo-b", 2, start_to_close=5)
        await saga.compensate()
        return f"{len(saga.failures)} failed"


def test_a_parallel_saga_runs_every_compensation_at_once_and_goes_on_past_a_failure():
    instance = WorkflowInstance(CompensateAll, workflow_id="s")
    assert step(instance, 1, Start(None)) == [activity_command(1, "undo-b", 2), activity_command(2, "undo-a", 1)]
    assert step(instance, 2, ResolveActivity(1, error_type="Boom", message="x"), ResolveActivity(2, None)) == [
        CompleteWorkflow(3, "1 failed")
    ]


def test_mistakes_are_named_where_they_are_made():
    with pytest.raises(WorkflowError, match="needs exactly one @workflow.run"):
        @wf.defn
        class NoRun:
            pass
    with pytest.raises(WorkflowError, match="must be `async def`"):
        @wf.defn
        class SyncRun:
            @wf.run
            def run(self, x):
                return x
    with pytest.raises(WorkflowError, match="only for workflow code"):
        wf.now()
    with pytest.raises(WorkflowError, match="is not a @workflow.defn class"):
        WorkflowInstance(dict, workflow_id="x")

    @wf.defn
    class NoTimeout:
        @wf.run
        async def run(self, x):
            return await wf.execute_activity(charge, x)

    instance = WorkflowInstance(NoTimeout, workflow_id="t")
    assert step(instance, 1, Start(1)) == [FailWorkflow(1, "WorkflowError", "execute_activity('charge'): give start_to_close or schedule_to_close")]
    with pytest.raises(NonDeterminism, match="resolves activity 9, which this code never scheduled"):
        step(WorkflowInstance(Order, workflow_id="o"), 1, ResolveActivity(9, None))


def test_a_run_can_be_advanced_from_inside_another_event_loop():
    """A worker advances runs from its own asyncio loop: the workflow's loop stands
    in for it while the code runs, and gives it back."""
    async def worker() -> list:
        outer = asyncio.get_running_loop()
        instance = WorkflowInstance(Order, workflow_id="inside")
        commands = step(instance, 1, Start({"lines": []}))
        assert asyncio.get_running_loop() is outer
        await asyncio.sleep(0)  # the outer loop still runs
        return commands

    assert asyncio.run(worker()) == [activity_command(1, "reserve", {"lines": []})]


@wf.defn
class Shipment:
    @wf.run
    async def run(self, order: dict) -> str:
        return "shipped"


@wf.defn
class Parent:
    @wf.run
    async def run(self, batch: int) -> dict:
        info = wf.info()
        try:
            shipped = await wf.execute_child_workflow(Shipment.run, {"batch": batch})
        except wf.ChildWorkflowFailed as failed:
            shipped = f"child failed: {failed.error_type}"
        try:
            await asyncio.wait_for(wf.execute_activity(pick, batch, start_to_close=60), timeout=5)
        except asyncio.TimeoutError:
            pass  # gave up waiting: the activity is asked to stop
        if batch < 2:
            wf.continue_as_new(batch + 1)
        return {"shipped": shipped, "id": info.workflow_id, "type": info.workflow_type}


def test_children_continue_as_new_info_and_abandoned_activities():
    instance = WorkflowInstance(Parent, workflow_id="p-1")
    assert step(instance, 1, Start(1)) == [StartChildWorkflow(1, "Shipment", "p-1/1", {"batch": 1}, "default")]
    commands = step(instance, 2, ResolveChild(1, error_type="Terminated", message="by ops"))
    # asyncio.wait_for arms its timer (a durable one here) before the activity's task runs.
    assert commands == [StartTimer(2, 5000), ScheduleActivity(3, "pick", 1, "default", 60_000, None, None, None)]
    assert step(instance, 7_000, FireTimer(2)) == [RequestCancelActivity(4, 3), ContinueAsNew(5, 2)]
    last = WorkflowInstance(Parent, workflow_id="p-1", run_id=2)
    step(last, 8_000, Start(2))
    step(last, 9_000, ResolveChild(1, "shipped"))
    assert step(last, 10_000, ResolveActivity(3, "picked")) == [
        CancelTimer(4, 2), CompleteWorkflow(5, {"shipped": "shipped", "id": "p-1", "type": "Parent"})
    ]


# --- property: whatever the program and the order things happen in, a replay agrees ------



@wf.defn
class Interpreter:
    """Runs a program given as its input, so Hypothesis can write workflows."""

    def __init__(self):
        self.log: list = []

    @wf.signal
    def note(self, value) -> None:
        self.log.append(("signal", value))

    @wf.query
    def seen(self) -> list:
        return self.log

    @wf.run
    async def run(self, program: list) -> list:
        for op, arg in program:
            if op == "activity":
                self.log.append(await wf.execute_activity(f"a{arg}", arg, start_to_close=5))
            elif op == "gather":
                self.log.append(await asyncio.gather(*(wf.execute_activity("g", i, start_to_close=5) for i in range(arg))))
            elif op == "sleep":
                await wf.sleep(arg / 1000)
            elif op == "wait":
                self.log.append(await wf.wait_condition(lambda: len(self.log) > arg, timeout=1))
            elif op == "random":
                self.log.append(wf.random().randint(0, 100))
        return self.log


PROGRAMS = st.lists(st.one_of(
    st.tuples(st.just("activity"), st.integers(0, 3)),
    st.tuples(st.just("gather"), st.integers(1, 3)),
    st.tuples(st.just("sleep"), st.integers(1, 5000)),
    st.tuples(st.just("wait"), st.integers(0, 4)),
    st.tuples(st.just("random"), st.just(0)),
), max_size=8)


def drive(program: list, choices: st.DataObject) -> list[RecordedTask]:
    """Play the engine: after each activation, resolve one of the pending commands
    (or send a signal), in an order Hypothesis picks, until the run closes."""
    instance = WorkflowInstance(Interpreter, workflow_id="prop", seed=3)
    history: list[RecordedTask] = []
    pending: list = []
    jobs: tuple = (Start(program),)
    now_ms = 0
    for _ in range(200):
        now_ms += 10
        activation = Activation(now_ms, jobs)
        commands = instance.activate(activation)
        history.append(RecordedTask(activation, tuple(commands)))
        for command in commands:
            if isinstance(command, (ScheduleActivity, StartTimer)):
                pending.append(command)
            elif isinstance(command, CancelTimer):
                pending = [p for p in pending if p.seq != command.timer]
        if instance.done:
            return history
        pick = choices.draw(st.integers(0, len(pending)))  # len(pending): a signal instead
        if pick == len(pending):
            jobs = (Signal("note", (now_ms,)),)
            continue
        command = pending.pop(pick)
        if isinstance(command, StartTimer):
            jobs = (FireTimer(command.seq),)
        elif choices.draw(st.booleans()):
            jobs = (ResolveActivity(command.seq, command.seq * 10),)
        else:
            jobs = (ResolveActivity(command.seq, error_type="Boom", message=str(command.seq)),)
    raise AssertionError("the run did not close in 200 activations")


@settings(max_examples=150, deadline=None)
@given(program=PROGRAMS, choices=st.data())
def test_any_program_in_any_order_replays_to_the_same_commands_and_state(program, choices):
    history = drive(program, choices)
    original = history[-1].commands[-1]
    assert isinstance(original, (CompleteWorkflow, FailWorkflow))
    replayed = wf.replay(Interpreter, history, workflow_id="prop", seed=3)
    assert replayed.done
    if isinstance(original, CompleteWorkflow):
        assert replayed.query("seen") == original.result
