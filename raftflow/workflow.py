"""Workflow types in Python, equal to their YAML/JSON file form:

    from raftflow import workflow

    order_saga = workflow.define("order_saga", version=1, steps=[
        workflow.step("reserve", activity="reserve_inventory", task_queue="orders", input="$input",
                      compensation=workflow.compensate("release_inventory", input="$steps.reserve.result")),
        workflow.step("charge", activity="charge_card", task_queue="orders", input="$input",
                      retry=workflow.RetryPolicy(initial_interval=0.05, maximum_attempts=5),
                      start_to_close=5),
        workflow.timer("cool_off", duration=0.5),
        workflow.wait_signal("approval", signal="approved", timeout=60),
    ])

Mistakes fail at construction with the field's path and the rule
(DefinitionError); docs/workflows.md has the file form and the input templates.
"""

from raftflow.statemachine.workflow.definitions import (
    ActivityStep,
    Compensation,
    ParallelStep,
    SignalStep,
    TimerStep,
    Timeouts,
    WorkflowType,
    compensate,
    load_definition as load,
    parallel,
    timer,
    to_dict,
)
from raftflow.statemachine.workflow.definitions import activity as step
from raftflow.statemachine.workflow.definitions import signal as wait_signal
from raftflow.statemachine.workflow.definitions import workflow as define
from raftflow.statemachine.workflow.retry import DefinitionError, RetryPolicy

__all__ = [
    "ActivityStep",
    "Compensation",
    "DefinitionError",
    "ParallelStep",
    "RetryPolicy",
    "SignalStep",
    "TimerStep",
    "Timeouts",
    "WorkflowType",
    "compensate",
    "define",
    "load",
    "parallel",
    "step",
    "timer",
    "to_dict",
    "wait_signal",
]
