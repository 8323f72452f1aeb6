"""Workflow types and retry policies: what the engine runs, as validated data.

A workflow type is a versioned list of steps: activities (with retry, timeouts and an
optional compensation, which has its own retry and timeouts), durable timers, waits
for a signal, and parallel groups of activities. Write one as a file
(`load_definition`, `parse_definition`) or in Python:

    order = workflow("order", version=1, steps=[
        activity("reserve", task_queue="orders", input="$input",
                 retry=RetryPolicy(initial_interval=0.2, maximum_attempts=5),
                 start_to_close=30,
                 compensation=compensate("release", input="$steps.reserve.result")),
        timer("cool_down", duration=0.5),
        signal("approval", timeout=60),
        parallel("notify", [activity("email", task_queue="mail", input="$steps.reserve.result"),
                            activity("sms", task_queue="sms", input="$input.phone")]),
    ])

Both ways run the same checks and give equal objects; errors are DefinitionErrors whose
message starts with the field's path. Durations are whole milliseconds inside.

What the engine puts in `step_results` for `resolve_input`: an activity's result, a
signal's payload, None for a timer, and for a parallel group a dict of member name ->
result (each member's result is also there under its own name).
"""

from __future__ import annotations

from raftflow.statemachine.workflow.definitions import (
    DEFAULT_START_TO_CLOSE_MS,
    DEFINITION_FORMAT,
    MAX_PARALLEL_STEPS,
    MAX_STEPS,
    MAX_TEMPLATE_DEPTH,
    ActivityStep,
    Compensation,
    InputError,
    ParallelStep,
    Reference,
    SignalStep,
    Step,
    TimerStep,
    Timeouts,
    WorkflowType,
    activity,
    compensate,
    decode_definition,
    effective_timeouts,
    encode_definition,
    load_definition,
    parallel,
    parse_definition,
    parse_reference,
    resolve_input,
    signal,
    template_references,
    timer,
    to_dict,
    workflow,
)
from raftflow.statemachine.workflow.retry import (
    MAX_ATTEMPTS,
    MAX_DURATION_MS,
    DefinitionError,
    RetryPolicy,
    interval_ms,
    should_retry,
)

__all__ = [
    "DEFAULT_START_TO_CLOSE_MS",
    "DEFINITION_FORMAT",
    "MAX_ATTEMPTS",
    "MAX_DURATION_MS",
    "MAX_PARALLEL_STEPS",
    "MAX_STEPS",
    "MAX_TEMPLATE_DEPTH",
    "ActivityStep",
    "Compensation",
    "DefinitionError",
    "InputError",
    "ParallelStep",
    "Reference",
    "RetryPolicy",
    "SignalStep",
    "Step",
    "TimerStep",
    "Timeouts",
    "WorkflowType",
    "activity",
    "compensate",
    "decode_definition",
    "effective_timeouts",
    "encode_definition",
    "interval_ms",
    "load_definition",
    "parallel",
    "parse_definition",
    "parse_reference",
    "resolve_input",
    "should_retry",
    "signal",
    "template_references",
    "timer",
    "to_dict",
    "workflow",
]
