"""Activities as plain functions: the decorator, the context an activity runs in, and
the error that tells the engine how a failure should be treated.

    from raftflow import activity, ApplicationError

    @activity.defn
    def charge_card(order: dict) -> dict:
        info = activity.info()          # workflow id, step, attempt, idempotency key
        payments.charge(order["card"], order["amount"], key=info.idempotency_key)
        return {"charge_id": ...}

    @activity.defn(name="ship")
    async def ship_order(order: dict) -> dict:
        activity.heartbeat({"stage": "label printed"})
        ...

The worker (cluster/worker/worker.py) and the test environment (raftflow/testing.py) run the
same functions: sync functions in a thread pool, async ones on the event loop.

Delivery is at-least-once: a worker that dies after the effect but before its report
reaches the leader is followed by a retry. `info().idempotency_key` is the same for
every attempt of a step in one workflow run, and differs between runs, steps and a
step's compensation; an effect keyed by it happens once however often it is delivered.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = [
    "ActivityCancelled",
    "ActivityContext",
    "ActivityInfo",
    "ApplicationError",
    "Registry",
    "defn",
    "heartbeat",
    "info",
    "is_cancelled",
]

_DEFN_ATTR = "__raftflow_activity__"


class ApplicationError(Exception):
    """Raise from an activity to fail it with a chosen error type. `non_retryable`
    fails the step for good at once (the saga then unwinds); otherwise the step's retry
    policy decides, and its `non_retryable_error_types` are matched against `type`.
    Any other exception fails the attempt with its class name as the type."""

    def __init__(self, message: str, *, type: str | None = None, non_retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.type = type or "ApplicationError"
        self.non_retryable = non_retryable


class ActivityCancelled(Exception):
    """Raised by `heartbeat()` when the attempt is no longer wanted (the workflow was
    cancelled or terminated, or the attempt timed out and was superseded)."""


@dataclass(frozen=True, slots=True)
class ActivityInfo:
    workflow_id: str
    run_id: int
    step: str
    activity: str
    attempt: int
    task_id: int
    compensation: bool  # this attempt undoes `step`
    task_queue: str

    @classmethod
    def of(cls, task) -> ActivityInfo:
        """The info of a handed-out task (the worker's Task, or the engine's ActivityTask)."""
        return cls(
            task.workflow_id, task.run_id, task.step, task.activity, task.attempt, task.task_id, task.compensation,
            task.task_queue,
        )

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of this step (or of its compensation) in this
        workflow run; use it to make an effect happen once."""
        kind = "compensation" if self.compensation else "step"
        return f"{self.workflow_id}/{self.run_id}/{self.step}/{kind}"


class ActivityContext:
    """What a running attempt can reach: its info, heartbeats, and whether it was
    cancelled. `report_heartbeat(details)` is the runner's hook (the worker sends a
    HeartbeatActivity; the test environment records it)."""

    def __init__(self, info: ActivityInfo, report_heartbeat: Callable[[object], None]) -> None:
        self.info = info
        self._report = report_heartbeat
        self._cancelled = threading.Event()

    def heartbeat(self, details: object = None) -> None:
        if self._cancelled.is_set():
            raise ActivityCancelled(f"{self.info.activity} attempt {self.info.attempt} of {self.info.workflow_id} was cancelled")
        self._report(details)

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


_current: contextvars.ContextVar[ActivityContext] = contextvars.ContextVar("raftflow_activity")


def _context() -> ActivityContext:
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("not inside an activity: activity.info()/heartbeat() work only while one runs") from None


def info() -> ActivityInfo:
    """The running activity's info."""
    return _context().info


def heartbeat(details: object = None) -> None:
    """Tell the cluster this attempt is alive (resets its heartbeat timeout) and record
    `details` (plain data; the next attempt can read progress from `describe`). Raises
    ActivityCancelled when the attempt is no longer wanted."""
    _context().heartbeat(details)


def is_cancelled() -> bool:
    return _context().cancelled


def defn(fn: Callable | None = None, *, name: str | None = None) -> Any:
    """Mark a function as an activity, registered under `name` (default: the
    function's name). Usable bare (`@activity.defn`) or with arguments."""

    def mark(target: Callable) -> Callable:
        if not callable(target):
            raise TypeError(f"@activity.defn decorates a function; got {target!r}")
        activity_name = name or target.__name__
        if not activity_name or not isinstance(activity_name, str):
            raise TypeError(f"activity name must be a non-empty str; got {activity_name!r}")
        setattr(target, _DEFN_ATTR, activity_name)
        return target

    return mark(fn) if fn is not None else mark


def name_of(fn: object) -> str | None:
    """The name a function was registered under with @activity.defn, or None."""
    return getattr(fn, _DEFN_ATTR, None)


class Registry:
    """Activity name -> function, from decorated functions and modules."""

    def __init__(self, activities: Iterable[Callable | ModuleType] = ()) -> None:
        self.functions: dict[str, Callable] = {}
        for item in activities:
            self.add(item)

    def add(self, item: Callable | ModuleType) -> None:
        if isinstance(item, ModuleType):
            found = [value for value in vars(item).values() if callable(value) and hasattr(value, _DEFN_ATTR)]
            if not found:
                raise ValueError(f"module {item.__name__} has no @activity.defn functions")
            for fn in found:
                self.add(fn)
            return
        if not callable(item):
            raise TypeError(f"expected an @activity.defn function or a module; got {item!r}")
        activity_name = getattr(item, _DEFN_ATTR, None) or item.__name__
        known = self.functions.get(activity_name)
        if known is not None and known is not item:
            raise ValueError(f"two functions are registered as activity {activity_name!r}: {known!r} and {item!r}")
        self.functions[activity_name] = item

    def __contains__(self, name: str) -> bool:
        return name in self.functions

    def names(self) -> list[str]:
        return sorted(self.functions)

    async def run(self, context: ActivityContext, argument: object, executor=None) -> object:
        """Runs the activity named by context.info with `argument`: async functions
        on this loop, sync ones in `executor` (None: the loop's default pool), each
        with the context set. Raises KeyError for an unknown name."""
        fn = self.functions[context.info.activity]
        token = _current.set(context)
        try:
            if inspect.iscoroutinefunction(fn):
                return await fn(argument)
            loop = asyncio.get_running_loop()
            ctx = contextvars.copy_context()
            return await loop.run_in_executor(executor, ctx.run, fn, argument)
        finally:
            _current.reset(token)


def failure_of(exc: BaseException) -> tuple[str, str, bool]:
    """(error_type, message, retryable) to report for an activity's exception."""
    if isinstance(exc, ApplicationError):
        return exc.type, exc.message, not exc.non_retryable
    return type(exc).__name__, str(exc) or repr(exc), True
