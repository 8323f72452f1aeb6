"""raftflow.testing: the example order saga run in process, with time skipping and
injected failures, the way a user tests a saga; plus the activity API it shares with
the worker (decorator, registry, info, heartbeat, error mapping)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from raftflow.cluster.worker.activity import ActivityCancelled, ActivityContext, ActivityInfo, Registry, failure_of
from raftflow import ApplicationError, activity, workflow
from raftflow.testing import WorkflowEnvironment, WorkflowTestError

ROOT = Path(__file__).resolve().parent.parent
SAGA = ROOT / "examples" / "order_saga" / "order_saga.yaml"


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("RAFTFLOW_LEDGER", str(tmp_path / "ledger"))
    return tmp_path / "ledger"


@pytest.fixture
def env(ledger):
    from examples.order_saga import activities

    with WorkflowEnvironment(activities=[activities]) as environment:
        environment.register(SAGA)
        yield environment


def effects(ledger: Path) -> list[str]:
    return sorted(json.loads(p.read_text())["effect"] for p in ledger.glob("*.json"))


def test_an_order_that_ships_completes_with_each_effect_once(env, ledger):
    outcome = env.run("order_saga", input={"order_id": 1, "address": "1 Main St"}, workflow_id="order-1")
    assert outcome.status == "completed", outcome.reason
    assert outcome.result == {"tracking": "T-1"}
    assert outcome.activities() == ["reserve_inventory", "charge_card", "ship_order"]
    assert effects(ledger) == ["charge", "reserve", "ship"]
    assert outcome.event_types()[0] == "WorkflowExecutionStarted"
    assert outcome.event_types()[-1] == "WorkflowExecutionCompleted"


def test_an_unshippable_order_is_compensated_in_reverse_order(env, ledger):
    outcome = env.run("order_saga", input={"order_id": 7, "address": "nowhere"})
    assert outcome.status == "compensated"
    assert "AddressInvalid" in (outcome.reason or "") or outcome.failures()[-1][2] == "AddressInvalid"
    assert outcome.activities() == ["reserve_inventory", "charge_card", "refund_card", "release_inventory"]
    assert len(outcome.attempts("ship_order")) == 1  # non-retryable: no second attempt
    assert effects(ledger) == ["charge", "refund", "release", "reserve"]


def test_a_gateway_timeout_is_retried_after_the_policys_interval(env):
    outcome = env.run("order_saga", input={"order_id": 3, "address": "3 Main St"})
    assert outcome.status == "completed"
    failed, retried = outcome.attempts("charge_card")
    assert (failed.attempt, retried.attempt) == (1, 2)
    assert outcome.failures() == [("charge_card", 1, "GatewayTimeout", "payment gateway timed out")]
    # initial_interval 0.05 s: attempt 2 starts 50 ms after attempt 1 failed, to the millisecond.
    failure = next(e for e in outcome.history if e.type.value == "ActivityTaskFailed")
    assert retried.time_ms - failure.time_ms == 50


def test_retries_exhausted_unwind_the_saga_and_every_attempt_is_in_the_history(env):
    env.fail("ship_order", error_type="CarrierDown", message="carrier API down")
    outcome = env.run("order_saga", input={"order_id": 2, "address": "2 Main St"})
    assert outcome.status == "compensated"
    assert [f[1] for f in outcome.failures()] == [1, 2, 3]  # maximum_attempts: 3, each attempt its own event
    assert outcome.activities()[-2:] == ["refund_card", "release_inventory"]


def failing_until(attempt: int, calls: list[int]):
    """Activity "flaky": its attempts before `attempt` fail; each appends its number to `calls`."""

    @activity.defn
    def flaky(_):
        calls.append(activity.info().attempt)
        if len(calls) < attempt:
            raise RuntimeError("not yet")
        return "done"

    return flaky


def test_time_skipping_makes_long_timers_and_backoffs_instant(ledger):
    slow = workflow.define("slow", version=1, steps=[
        workflow.step("flaky", activity="flaky", task_queue="q", start_to_close=3600,
                      retry=workflow.RetryPolicy(initial_interval=600, backoff_coefficient=2, maximum_attempts=4)),
    ])
    calls = []
    flaky = failing_until(4, calls)
    started = time.monotonic()
    with WorkflowEnvironment(activities=[flaky]) as env:
        env.register(slow)
        outcome = env.run("slow")
    assert outcome.status == "completed" and outcome.result == "done"
    assert calls == [1, 2, 3, 4]
    starts = [e.time_ms for e in outcome.attempts("flaky")]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert [round(g, -3) for g in gaps] == [600_000, 1_200_000, 2_400_000]  # 10, 20, 40 minutes of workflow time
    assert time.monotonic() - started < 5  # (not a benchmark: it just must not really wait 70 minutes)


HOUR_S = 3600
DAY_S = 24 * HOUR_S


def test_retry_backoffs_adding_to_hours_outlast_the_session_ttl():
    # The environment's session expires after an hour of workflow time unused (the
    # machine's session_ttl_ms); gaps of 80 and 120 minutes between reports must not
    # leave the environment unable to report the next attempt.
    patient = workflow.define("patient", version=1, steps=[
        workflow.step("flaky", activity="flaky", task_queue="q", start_to_close=60,
                      retry=workflow.RetryPolicy(initial_interval=300, backoff_coefficient=2, maximum_interval=2 * HOUR_S)),
    ])
    calls = []
    with WorkflowEnvironment(activities=[failing_until(8, calls)]) as env:
        env.register(patient)
        outcome = env.run("patient")
    assert outcome.status == "completed" and outcome.result == "done", outcome.reason
    assert calls == list(range(1, 9))
    failures = [e.time_ms for e in outcome.history if e.type.value == "ActivityTaskFailed"]
    retries = [e.time_ms for e in outcome.attempts("flaky")][1:]
    gaps_min = [(b - a) // 60_000 for a, b in zip(failures, retries)]
    assert gaps_min == [5, 10, 20, 40, 80, 120, 120]  # capped at maximum_interval: 2 hours


def test_a_timer_of_days_then_a_day_long_signal_wait_completes():
    # Days pass with no command in the environment's session: the signal, the
    # activity's heartbeat and its completion must still be accepted.
    slow = workflow.define("slow_approval", version=1, steps=[
        workflow.timer("cool_off", duration=3 * DAY_S),
        workflow.wait_signal("approval", signal="approved", timeout=2 * DAY_S),
        workflow.step("ship", activity="ship", task_queue="q", input="$steps.approval.result",
                      heartbeat=30, start_to_close=60, retry=workflow.RetryPolicy(maximum_attempts=1)),
    ])

    @activity.defn
    def ship(approval):
        activity.heartbeat({"approved_by": approval["by"]})
        return f"shipped, approved by {approval['by']}"

    with WorkflowEnvironment(activities=[ship]) as env:
        env.register(slow)
        started_ms = env.now_ms
        workflow_id = env.start("slow_approval", input=None)
        env.sleep(4 * DAY_S)  # the timer fired a day ago; the signal wait is a day old
        env.signal(workflow_id, "approved", {"by": "ops"})
        outcome = env.run_until_closed(workflow_id)
    assert outcome.status == "completed", outcome.reason
    assert outcome.result == "shipped, approved by ops"
    fired = next(e for e in outcome.history if e.type.value == "TimerFired")
    received = next(e for e in outcome.history if e.type.value == "SignalReceived")
    assert fired.time_ms - started_ms == 3 * DAY_S * 1000  # at its own time, not when the sleep ended
    assert received.time_ms - started_ms == 4 * DAY_S * 1000


def test_sleep_fires_each_deadline_at_its_time_and_runs_the_tasks_between():
    # As in a cluster with a worker up: the activity runs, the timer fires after a day,
    # and the signal wait armed then times out an hour later, all within one sleep.
    wait = workflow.define("wait_for_ok", version=1, steps=[
        workflow.step("prepare", activity="prepare", task_queue="q"),
        workflow.timer("cool_off", duration=DAY_S),
        workflow.wait_signal("ok", timeout=HOUR_S),
    ])

    @activity.defn
    def prepare(_):
        return "ready"

    with WorkflowEnvironment(activities=[prepare]) as env:
        env.register(wait)
        workflow_id = env.start("wait_for_ok")
        env.sleep(2 * DAY_S)
        outcome = env.outcome(workflow_id)
    assert outcome.status == "compensated", outcome.event_types()
    assert outcome.activities() == ["prepare"]
    fired = next(e for e in outcome.history if e.type.value == "TimerFired")
    timed_out = next(e for e in outcome.history if e.type.value == "SignalWaitTimedOut")
    assert timed_out.time_ms - fired.time_ms == HOUR_S * 1000


def test_a_skip_past_retention_removes_closed_workflows_as_a_cluster_does():
    quick = workflow.define("quick", version=1, steps=[workflow.step("prepare", activity="prepare", task_queue="q")])
    slow = workflow.define("slow_timer", version=1, steps=[workflow.timer("wait", duration=8 * DAY_S)])

    @activity.defn
    def prepare(_):
        return "ready"

    with WorkflowEnvironment(activities=[prepare]) as env:
        env.register(quick)
        env.register(slow)
        kept = env.run("quick", workflow_id="quick-1")
        assert env.run("slow_timer").status == "completed"  # 8 days: past the 7 days of retention
        assert kept.result == "ready"  # the Outcome stays
        with pytest.raises(WorkflowTestError, match="retention_ms=604800000"):
            env.outcome("quick-1")


def test_a_hung_attempt_times_out_and_is_retried(env):
    env.hang("reserve_inventory", attempts=[1])
    outcome = env.run("order_saga", input={"order_id": 4, "address": "4 Main St"})
    assert outcome.status == "completed"
    assert outcome.failures()[0][:3] == ("reserve_inventory", 1, "StartToCloseTimeout")
    first, second = outcome.attempts("reserve_inventory")
    assert second.time_ms - first.time_ms >= 2000  # start_to_close: 2 s, then the retry


def test_heartbeats_reach_the_engine_and_the_idempotency_key_is_stable_across_attempts():
    seen = []
    wf = workflow.define("beats", version=1, steps=[
        workflow.step("work", activity="work", task_queue="q", heartbeat=10, start_to_close=60,
                      retry=workflow.RetryPolicy(initial_interval=1, maximum_attempts=3)),
    ])

    @activity.defn
    def work(_):
        info = activity.info()
        seen.append((info.idempotency_key, info.attempt))
        activity.heartbeat({"progress": info.attempt})
        if info.attempt < 2:
            raise ApplicationError("try again", type="Transient")
        return info.idempotency_key

    with WorkflowEnvironment(activities=[work]) as env:
        env.register(wf)
        outcome = env.run("beats", workflow_id="b-1")
    assert outcome.status == "completed"
    keys = {key for key, _ in seen}
    assert keys == {outcome.result} and len(seen) == 2
    assert outcome.result.startswith("b-1/") and outcome.result.endswith("/work/step")


def test_a_missing_activity_is_named(env):
    with WorkflowEnvironment(activities=[]) as bare:
        bare.register(SAGA)
        with pytest.raises(WorkflowTestError, match="reserve_inventory.*not among"):
            bare.run("order_saga", input={"order_id": 1})


def test_a_refused_command_is_an_error_naming_the_reason(env):
    env.start("order_saga", input={"order_id": 1, "address": "x"}, workflow_id="dup")
    with pytest.raises(WorkflowTestError, match="already_running"):
        env.start("order_saga", input={"order_id": 1, "address": "x"}, workflow_id="dup")
    with pytest.raises(WorkflowTestError, match="unknown_type|not registered"):
        env.start("no_such_type")


# --- the activity API ------------------------------------------------------------------


def test_defn_names_and_registry_rules():
    @activity.defn(name="custom")
    def f(_):
        return 1

    @activity.defn
    def g(_):
        return 2

    registry = Registry([f, g])
    assert registry.names() == ["custom", "g"]

    def other(_):
        return 3

    other.__raftflow_activity__ = "custom"
    with pytest.raises(ValueError, match="two functions are registered as activity 'custom'"):
        registry.add(other)
    with pytest.raises(TypeError):
        activity.defn(42)


def test_info_outside_an_activity_is_a_clear_error():
    with pytest.raises(RuntimeError, match="not inside an activity"):
        activity.info()


def test_failure_mapping():
    assert failure_of(ApplicationError("no", type="CardDeclined", non_retryable=True)) == ("CardDeclined", "no", False)
    assert failure_of(KeyError("k")) == ("KeyError", "'k'", True)


def test_a_cancelled_context_raises_on_heartbeat():
    sent = []
    info = ActivityInfo("w", 1, "s", "a", 1, 9, False, "q")
    context = ActivityContext(info, sent.append)
    context.heartbeat(1)
    context.cancel()
    with pytest.raises(ActivityCancelled):
        context.heartbeat(2)
    assert sent == [1]
    assert info.idempotency_key == "w/1/s/step"
    assert ActivityInfo("w", 1, "s", "a", 2, 9, True, "q").idempotency_key == "w/1/s/compensation"
