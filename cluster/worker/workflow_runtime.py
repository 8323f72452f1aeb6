"""Workflows as code: the deterministic runtime a worker replays them on.

A workflow class (`@workflow.defn`) runs on `_WorkflowLoop`, an asyncio event loop
with no clock, no I/O and no threads: it runs ready callbacks until every task
waits, and that is all. A run advances by *activations*: what happened to it since
the last one (it started; an activity it scheduled ended; a timer fired; a signal
came; a cancel was asked), each applied in order, then the code runs until it waits
again. What the code asked for meanwhile comes back as *commands*, each numbered in
the order the code gave it (`seq`), so the event that answers a command finds the
`await` waiting for it.

The same history replayed through the same code gives the same commands: that is
the contract, and `replay()` checks it command by command; a mismatch is a
`NonDeterminism` naming the activation, the command and the line of the workflow's
code that gave it. docs/workflows-as-code.md has the design this runtime is step 1
of.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import datetime
import inspect
import logging
import os
import random as _random
import sys
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from raftflow.cluster.client.durations import Duration, optional_seconds, seconds
from raftflow.cluster.worker.activity import name_of
from raftflow.statemachine.workflow.retry import RetryPolicy, seconds_to_ms

log = logging.getLogger("raftflow.workflow")

_DEFN = "__raftflow_workflow__"


# --- commands: what the code asks for ------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduleActivity:
    seq: int
    activity: str
    input: object
    task_queue: str
    start_to_close_ms: int | None
    schedule_to_close_ms: int | None
    heartbeat_ms: int | None
    retry: RetryPolicy | None


@dataclass(frozen=True, slots=True)
class StartTimer:
    seq: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class CancelTimer:
    seq: int
    timer: int  # the seq of the StartTimer it cancels


@dataclass(frozen=True, slots=True)
class RequestCancelActivity:
    """The code stopped waiting for an activity (it was cancelled, or its caller
    was): the engine asks its worker to stop (through the heartbeat)."""

    seq: int
    activity: int  # the seq of the ScheduleActivity


@dataclass(frozen=True, slots=True)
class StartChildWorkflow:
    seq: int
    workflow_type: str
    workflow_id: str
    input: object
    task_queue: str


@dataclass(frozen=True, slots=True)
class ContinueAsNew:
    """Close this run and start a new one of the same workflow with `input` (a
    fresh history: how a long-lived workflow keeps its history bounded)."""

    seq: int
    input: object


@dataclass(frozen=True, slots=True)
class RecordMarker:
    """`workflow.patched(patch_id)` took the new path: later replays must too."""

    seq: int
    patch_id: str


@dataclass(frozen=True, slots=True)
class CompleteWorkflow:
    seq: int
    result: object


@dataclass(frozen=True, slots=True)
class FailWorkflow:
    seq: int
    error_type: str
    message: str


@dataclass(frozen=True, slots=True)
class CancelWorkflow:
    """The code let a cancel request end it (CancelledError left run())."""

    seq: int


Command = (
    ScheduleActivity | RequestCancelActivity | StartTimer | CancelTimer | StartChildWorkflow | RecordMarker
    | CompleteWorkflow | FailWorkflow | CancelWorkflow | ContinueAsNew
)


# --- activations: what happened to the run ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    input: object


@dataclass(frozen=True, slots=True)
class ResolveActivity:
    seq: int
    result: object = None
    error_type: str | None = None  # set: the activity failed for good (or timed out) with this error
    message: str = ""


@dataclass(frozen=True, slots=True)
class ResolveChild:
    """A child workflow closed: its result, or how it failed."""

    seq: int
    result: object = None
    error_type: str | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class FireTimer:
    seq: int


@dataclass(frozen=True, slots=True)
class Signal:
    name: str
    args: tuple = ()


@dataclass(frozen=True, slots=True)
class RequestCancel:
    pass


Job = Start | ResolveActivity | ResolveChild | FireTimer | Signal | RequestCancel


@dataclass(frozen=True, slots=True)
class Activation:
    """What happened, at the leader's time `now_ms` (what `workflow.now()` reads
    while the code runs). `patches`: the patch ids the run's history holds (a
    replay of a run that took a new path takes it again; one whose history
    predates a patch keeps to the old path)."""

    now_ms: int
    jobs: tuple[Job, ...]
    replaying: bool = False
    patches: frozenset[str] = frozenset()


class NonDeterminism(Exception):
    """A replay gave other commands than the history holds: the code changed in a
    way this run cannot follow (branch with `workflow.patched`), or it reads
    something that is not in the history (the clock, randomness, I/O)."""


class _Failed(Exception):
    """Something the workflow awaited failed elsewhere, and the history says how."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


class ChildWorkflowFailed(_Failed):
    """A child workflow the code awaited failed, was cancelled or terminated."""


class _ContinueAsNew(BaseException):
    """Raised by continue_as_new(); ends run() like a return (BaseException, so
    that `except Exception` in workflow code does not swallow it)."""

    def __init__(self, value: object) -> None:
        super().__init__("continue as new")
        self.value = value


class WorkflowError(Exception):
    """A workflow class or its use is wrong (a missing @workflow.run, an unknown
    signal); raised where the mistake is made."""


class ActivityFailed(_Failed):
    """An activity the workflow awaited failed for good (or timed out)."""


# --- the class decorators --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    name: str
    cls: type
    run: str  # the name of the @workflow.run method
    signals: dict[str, str]  # signal name -> method name
    queries: dict[str, str]


def defn(cls: type | None = None, *, name: str | None = None):
    """Mark a class as a workflow: one `@workflow.run` coroutine method, any number of
    `@workflow.signal` and `@workflow.query` methods. `name` defaults to the class's."""

    def wrap(cls: type) -> type:
        runs = [n for n, f in vars(cls).items() if getattr(f, "_raftflow_role", None) == "run"]
        if len(runs) != 1:
            raise WorkflowError(f"workflow {cls.__name__} needs exactly one @workflow.run method; it has {len(runs)}")
        if not inspect.iscoroutinefunction(getattr(cls, runs[0])):
            raise WorkflowError(f"{cls.__name__}.{runs[0]} must be `async def`")
        signals = {getattr(f, "_raftflow_name"): n for n, f in vars(cls).items()
                   if getattr(f, "_raftflow_role", None) == "signal"}
        queries = {getattr(f, "_raftflow_name"): n for n, f in vars(cls).items()
                   if getattr(f, "_raftflow_role", None) == "query"}
        setattr(cls, _DEFN, WorkflowDefinition(name or cls.__name__, cls, runs[0], signals, queries))
        return cls

    return wrap(cls) if cls is not None else wrap


def _marker(role: str):
    def decorator(fn=None, *, name: str | None = None):
        def mark(fn):
            fn._raftflow_role = role
            fn._raftflow_name = name or fn.__name__
            return fn
        return mark(fn) if fn is not None else mark
    return decorator


run = _marker("run")
signal = _marker("signal")
query = _marker("query")


def definition(cls: type) -> WorkflowDefinition:
    found = getattr(cls, _DEFN, None)
    if not isinstance(found, WorkflowDefinition):
        raise WorkflowError(f"{getattr(cls, '__name__', cls)!r} is not a @workflow.defn class")
    return found


# --- the loop -----------------------------------------------------------------------


class _WorkflowLoop(asyncio.AbstractEventLoop):
    """Runs ready callbacks until none is left; `call_later` is a durable timer.

    asyncio's own futures, tasks, gather and wait run on it unchanged. It leans on
    three of asyncio's internals, as other workflow SDKs' loops do: it installs
    itself as the running loop while the code runs (`events._set_running_loop`,
    given back after), and runs `Handle._run` and reads `Handle._cancelled`.
    tests/test_workflow_runtime.py runs it inside another loop, as a worker will."""

    def __init__(self, instance: WorkflowInstance) -> None:
        self._instance = instance
        self._ready: deque[asyncio.Handle] = deque()

    # what asyncio's futures and tasks ask of a loop
    def call_soon(self, callback, *args, context=None):
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_later(self, delay, callback, *args, context=None):
        return self._instance._timer_handle(delay, callback, args, context)

    def call_at(self, when, callback, *args, context=None):
        return self.call_later(when - self.time(), callback, *args, context=context)

    def time(self) -> float:
        return self._instance.now_ms / 1000

    def create_future(self):
        return asyncio.Future(loop=self)

    def create_task(self, coro, *, name=None, context=None):
        return asyncio.Task(coro, loop=self, name=name, context=context)

    def get_debug(self) -> bool:
        return False

    def is_running(self) -> bool:
        return True

    def is_closed(self) -> bool:
        return False

    def call_exception_handler(self, context) -> None:
        self._instance._unhandled.append(context)

    def default_exception_handler(self, context) -> None:
        self._instance._unhandled.append(context)

    def _timer_handle_cancelled(self, handle) -> None:
        pass

    def run_until_idle(self) -> None:
        previous = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self)
        try:
            while self._ready:
                handle = self._ready.popleft()
                if not handle._cancelled:
                    handle._run()
        finally:
            asyncio.events._set_running_loop(previous)


class _TimerHandle(asyncio.TimerHandle):
    def __init__(self, instance: WorkflowInstance, seq: int, when: float, callback, args, loop, context) -> None:
        super().__init__(when, callback, args, loop, context)
        self._instance = instance
        self.seq = seq

    def cancel(self) -> None:
        if not self._cancelled:
            self._instance._cancel_timer(self.seq)
        super().cancel()


# --- one run ------------------------------------------------------------------------


_current: contextvars.ContextVar[WorkflowInstance] = contextvars.ContextVar("raftflow_workflow")


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future
    where: str


class WorkflowInstance:
    """One run of a workflow class, advanced by `activate`."""

    def __init__(self, cls: type, *, workflow_id: str, run_id: int = 1, seed: int = 0, task_queue: str = "default") -> None:
        self.definition = definition(cls)
        self.workflow_id = workflow_id
        self.task_queue = task_queue  # the workflow's; its activities' by default
        self.run_id = run_id
        self.now_ms = 0
        self.replaying = False
        self.patches: frozenset[str] = frozenset()
        self._random = _random.Random(seed)
        self._loop = _WorkflowLoop(self)
        self._context = contextvars.copy_context()
        self._context.run(_current.set, self)
        self._object: object | None = None
        self._main: asyncio.Task | None = None
        self._seq = 0
        self._commands: list[Command] = []
        self._wheres: dict[int, str] = {}  # command seq -> the line of workflow code that gave it
        self._activities: dict[int, _Pending] = {}
        self._children: dict[int, asyncio.Future] = {}
        self._timers: dict[int, _TimerHandle] = {}
        self._conditions: list[tuple[Callable[[], bool], asyncio.Future]] = []
        self._unhandled: list[dict] = []
        self._done = False
        self._marked: set[str] = set()  # patch ids this run has taken (and recorded)
        self.logger = _ReplaySafeLogger(self)

    # --- the engine's side -------------------------------------------------------------

    def activate(self, activation: Activation) -> list[Command]:
        """Apply what happened, run the code until it waits, return its new commands."""
        self.now_ms = max(self.now_ms, activation.now_ms)
        self.replaying = activation.replaying
        self.patches = self.patches | activation.patches
        self._commands = []
        for job in activation.jobs:
            self._context.run(self._apply, job)
            self._run()
        self._run()
        return self._commands

    def query(self, name: str, *args: object) -> object:
        """Answer a query from the current state; a query may not change anything
        the code does (it runs no workflow code but the handler)."""
        method = self.definition.queries.get(name)
        if method is None:
            raise WorkflowError(f"{self.definition.name} has no query {name!r}; it has {sorted(self.definition.queries)}")
        return self._context.run(getattr(self._object, method), *args)

    @property
    def done(self) -> bool:
        return self._done

    def _apply(self, job: Job) -> None:
        match job:
            case Start(value):
                if self._main is not None:
                    raise WorkflowError(f"workflow {self.workflow_id} was started twice")
                self._object = self.definition.cls()
                coro = getattr(self._object, self.definition.run)(value)
                self._main = self._loop.create_task(coro, name=f"workflow {self.workflow_id}")
                self._main.add_done_callback(self._finished)
            case ResolveActivity(seq, result, error_type, message):
                pending = self._activities.pop(seq, None)
                if pending is None:
                    raise NonDeterminism(f"the history resolves activity {seq}, which this code never scheduled")
                if not pending.future.done():
                    if error_type is None:
                        pending.future.set_result(result)
                    else:
                        pending.future.set_exception(ActivityFailed(error_type, message))
            case ResolveChild(seq, result, error_type, message):
                pending = self._children.pop(seq, None)
                if pending is None:
                    raise NonDeterminism(f"the history resolves child workflow {seq}, which this code never started")
                if not pending.done():
                    if error_type is None:
                        pending.set_result(result)
                    else:
                        pending.set_exception(ChildWorkflowFailed(error_type, message))
            case FireTimer(seq):
                handle = self._timers.pop(seq, None)
                if handle is None:
                    raise NonDeterminism(f"the history fires timer {seq}, which this code never started")
                if not handle._cancelled:
                    handle._run()
            case Signal(name, args):
                method = self.definition.signals.get(name)
                if method is None:
                    self.logger.warning("signal %r has no handler in %s; dropped", name, self.definition.name)
                    return
                outcome = getattr(self._object, method)(*args)
                if inspect.isawaitable(outcome):
                    self._loop.create_task(outcome, name=f"signal {name}")
            case RequestCancel():
                if self._main is not None and not self._main.done():
                    self._main.cancel()

    def _run(self) -> None:
        while True:
            self._context.run(self._loop.run_until_idle)
            woke = False
            for condition, future in list(self._conditions):
                if future.done():
                    self._conditions.remove((condition, future))
                elif self._context.run(condition):
                    future.set_result(True)
                    self._conditions.remove((condition, future))
                    woke = True
            if not woke:
                return

    def _finished(self, task: asyncio.Task) -> None:
        self._done = True
        if task.cancelled():
            self._emit(CancelWorkflow(self._next_seq()))
            return
        error = task.exception()
        if isinstance(error, _ContinueAsNew):
            self._emit(ContinueAsNew(self._next_seq(), error.value))
        elif error is None:
            self._emit(CompleteWorkflow(self._next_seq(), task.result()))
        else:
            error_type = getattr(error, "type", None) or type(error).__name__
            self._emit(FailWorkflow(self._next_seq(), error_type, str(error)))

    # --- what the workflow API calls ----------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _emit(self, command: Command) -> None:
        self._commands.append(command)
        self._wheres[command.seq] = _user_frame()

    def schedule_activity(self, activity: str, value: object, *, task_queue: str, start_to_close: Duration | None,
                          schedule_to_close: Duration | None, heartbeat: Duration | None,
                          retry: RetryPolicy | None) -> asyncio.Future:
        if start_to_close is None and schedule_to_close is None:
            raise WorkflowError(f"execute_activity({activity!r}): give start_to_close or schedule_to_close")
        seq = self._next_seq()
        self._emit(ScheduleActivity(
            seq, activity, value, task_queue, _ms(start_to_close, "start_to_close"),
            _ms(schedule_to_close, "schedule_to_close"), _ms(heartbeat, "heartbeat"), retry,
        ))
        future = self._loop.create_future()
        self._activities[seq] = _Pending(future, self._wheres[seq])
        future.add_done_callback(lambda f: self._abandoned(seq, f))
        return future

    def _abandoned(self, seq: int, future: asyncio.Future) -> None:
        """Its awaiter was cancelled before the result came: ask the engine to cancel
        the activity (its worker learns it through the heartbeat)."""
        if future.cancelled() and self._activities.pop(seq, None) is not None and not self._done:
            self._emit(RequestCancelActivity(self._next_seq(), seq))

    def start_child(self, workflow_type: str, value: object, *, workflow_id: str, task_queue: str) -> asyncio.Future:
        seq = self._next_seq()
        self._emit(StartChildWorkflow(seq, workflow_type, workflow_id, value, task_queue))
        future = self._loop.create_future()
        self._children[seq] = future
        return future

    def _timer_handle(self, delay: float, callback, args, context) -> _TimerHandle:
        seq = self._next_seq()
        duration_ms = max(1, round(delay * 1000))
        self._emit(StartTimer(seq, duration_ms))
        handle = _TimerHandle(self, seq, self._loop.time() + delay, callback, args, self._loop, context)
        self._timers[seq] = handle
        return handle

    def _cancel_timer(self, timer: int) -> None:
        if self._timers.pop(timer, None) is not None:
            self._emit(CancelTimer(self._next_seq(), timer))

    def wait_for(self, condition: Callable[[], bool]) -> asyncio.Future:
        future = self._loop.create_future()
        if condition():
            future.set_result(True)
        else:
            self._conditions.append((condition, future))
        return future

    def patched(self, patch_id: str) -> bool:
        if patch_id in self._marked:
            return True
        if self.replaying and patch_id not in self.patches:
            return False  # the history predates the patch: the old path
        self._marked.add(patch_id)
        self._emit(RecordMarker(self._next_seq(), patch_id))  # a replay of a run that took it gives it again
        return True

    def random(self) -> _random.Random:
        return self._random


def _ms(value: Duration | None, what: str) -> int | None:
    """A timeout as a step list's are read (exact for a timedelta, whole
    milliseconds, bounded): the engine will hold both kinds to the same rules."""
    return None if value is None else seconds_to_ms(value, what)


_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep


def _user_frame() -> str:
    """file:line of the innermost frame outside this module and asyncio: the line of
    workflow code that gave a command. Frames are walked, not formatted (reading
    source lines cost most of a replay's time)."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if name != __file__ and not name.startswith(_ASYNCIO_DIR):
            return f"{name}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


def current() -> WorkflowInstance:
    try:
        return _current.get()
    except LookupError:
        raise WorkflowError("this is only for workflow code (inside a @workflow.defn class's run)") from None


class _ReplaySafeLogger:
    """workflow.logger: silent while a run is replayed, so each line is logged once."""

    def __init__(self, instance: WorkflowInstance) -> None:
        self._instance = instance

    def __getattr__(self, level: str):
        method = getattr(log, level)

        def emit(msg, *args, **kwargs):
            if not self._instance.replaying:
                method(f"[{self._instance.workflow_id}] {msg}", *args, **kwargs)
        return emit


# --- the API workflow code calls (raftflow.workflow re-exports it) ----------------------


def _activity_name(activity: Callable | str) -> str:
    if isinstance(activity, str):
        return activity
    found = name_of(activity)
    if found is None:
        raise WorkflowError(f"{activity!r} is not an @activity.defn function or an activity name")
    return found


def start_activity(
    activity: Callable | str, arg: object = None, *, task_queue: str | None = None,
    start_to_close: Duration | None = None, schedule_to_close: Duration | None = None,
    heartbeat: Duration | None = None, retry: RetryPolicy | None = None,
) -> asyncio.Future:
    """Schedule an activity (a function marked @activity.defn, or its name) and
    return its handle: await it for the result, or an ActivityFailed."""
    instance = current()
    return instance.schedule_activity(
        _activity_name(activity), arg, task_queue=task_queue or instance.task_queue, start_to_close=start_to_close,
        schedule_to_close=schedule_to_close, heartbeat=heartbeat, retry=retry,
    )


async def execute_activity(activity: Callable | str, arg: object = None, **options) -> object:
    """Run an activity and wait for its result (options as start_activity's)."""
    return await start_activity(activity, arg, **options)


async def sleep(duration: Duration) -> None:
    """A durable timer: the run waits (no worker holds it) and resumes after it fires."""
    delay = seconds(duration, "duration")
    if delay <= 0:
        raise WorkflowError(f"sleep({duration!r}): a timer needs a positive duration")
    await asyncio.sleep(delay)  # the loop's call_later is a timer command


async def wait_condition(condition: Callable[[], bool], *, timeout: Duration | None = None) -> bool:
    """Wait until `condition()` holds (checked whenever the run moves: a signal, an
    activity's result); True then, False if `timeout` passed first."""
    instance = current()
    limit = optional_seconds(timeout, "timeout")
    met = instance.wait_for(condition)
    if met.done() or limit is None:
        return await met
    loop = asyncio.get_running_loop()
    timer = loop.call_later(limit, lambda: met.done() or met.set_result(False))
    try:
        return await met
    finally:
        timer.cancel()


def _workflow_type(workflow: object) -> str:
    """The type name of a @workflow.defn class, of its run method (the class at a
    module's top level), or a name as it is."""
    if isinstance(workflow, str):
        return workflow
    if isinstance(workflow, type):
        return definition(workflow).name
    owner = getattr(workflow, "__qualname__", "").rpartition(".")[0]
    module = sys.modules.get(getattr(workflow, "__module__", None) or "")
    found = getattr(module, owner, None) if module is not None and owner else None
    if isinstance(found, type):
        return definition(found).name
    raise WorkflowError(
        f"{workflow!r} is not a @workflow.defn class, the run method of one at a module's top level, "
        "or a workflow type name"
    )


def start_child_workflow(workflow: object, arg: object = None, *, workflow_id: str | None = None,
                         task_queue: str | None = None) -> asyncio.Future:
    """Start a child workflow (a @workflow.defn class, its run method, or a type
    name) and return its handle: await it for the child's result, or a
    ChildWorkflowFailed. Its id defaults to "<this workflow's id>/<seq>"."""
    instance = current()
    child_id = workflow_id or f"{instance.workflow_id}/{instance._seq + 1}"
    return instance.start_child(_workflow_type(workflow), arg, workflow_id=child_id,
                                task_queue=task_queue or instance.task_queue)


async def execute_child_workflow(workflow: object, arg: object = None, **options) -> object:
    return await start_child_workflow(workflow, arg, **options)


def continue_as_new(arg: object = None) -> None:
    """End this run and start a new one of the same workflow with `arg`: raises, so
    nothing after it runs."""
    current()
    raise _ContinueAsNew(arg)


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    workflow_id: str
    run_id: int
    workflow_type: str
    task_queue: str


def info() -> WorkflowInfo:
    instance = current()
    return WorkflowInfo(instance.workflow_id, instance.run_id, instance.definition.name, instance.task_queue)


def now() -> datetime.datetime:
    """The run's time: the leader's clock at the event being handled (UTC)."""
    return datetime.datetime.fromtimestamp(current().now_ms / 1000, datetime.timezone.utc)


def random() -> _random.Random:
    """A random.Random seeded per run: the same numbers on every replay."""
    return current().random()


def uuid4() -> uuid.UUID:
    return uuid.UUID(int=current().random().getrandbits(128), version=4)


def patched(patch_id: str) -> bool:
    """True for runs that reach this point with this code (new runs, and runs that
    took the new path before); False for a run whose history predates it: branch
    on it to change a workflow without breaking the runs in flight."""
    return current().patched(patch_id)


class _Logger:
    def __getattr__(self, level: str):
        return getattr(current().logger, level)


logger = _Logger()


class Saga:
    """Compensations to run if the workflow cannot finish: `add_compensation` after
    each step that succeeded, `compensate()` in the `except`. They run in reverse
    order (or all at once with parallel=True), each with its own options; one that
    fails for good does not stop the others unless continue_on_failure=False."""

    def __init__(self, *, parallel: bool = False, continue_on_failure: bool = True) -> None:
        self.parallel = parallel
        self.continue_on_failure = continue_on_failure
        self._steps: list[tuple[Callable | str, object, dict]] = []
        self.failures: list[ActivityFailed] = []

    def add_compensation(self, activity: Callable | str, arg: object = None, **options) -> None:
        if "start_to_close" not in options and "schedule_to_close" not in options:
            raise WorkflowError("add_compensation: give start_to_close or schedule_to_close, as for execute_activity")
        self._steps.append((activity, arg, options))

    async def compensate(self) -> None:
        steps, self._steps = list(reversed(self._steps)), []
        if self.parallel:
            outcomes = await asyncio.gather(
                *(execute_activity(a, arg, **o) for a, arg, o in steps), return_exceptions=True
            )
            self._settle([o for o in outcomes if isinstance(o, ActivityFailed)])
            for outcome in outcomes:
                if isinstance(outcome, BaseException) and not isinstance(outcome, ActivityFailed):
                    raise outcome
            return
        for activity, arg, options in steps:
            try:
                await execute_activity(activity, arg, **options)
            except ActivityFailed as exc:
                self._settle([exc])

    def _settle(self, failed: list[ActivityFailed]) -> None:
        self.failures.extend(failed)
        if failed and not self.continue_on_failure:
            raise failed[0]


# --- replay: the determinism check --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordedTask:
    """One workflow task of a history: what it was told, and the commands it gave."""

    activation: Activation
    commands: tuple[Command, ...]


def replay(cls: type, history: Sequence[RecordedTask], *, workflow_id: str = "replay", seed: int = 0) -> WorkflowInstance:
    """Run `cls` through a recorded history; NonDeterminism at the first command that
    differs from the record, naming the task, the command and the line of code."""
    instance = WorkflowInstance(cls, workflow_id=workflow_id, seed=seed)
    for number, task in enumerate(history, start=1):
        given = instance.activate(dataclasses.replace(task.activation, replaying=True))
        expected = list(task.commands)
        for got, want in zip(given, expected):
            if not _same(got, want):
                where = instance._wheres.get(got.seq, "?")
                raise NonDeterminism(
                    f"workflow task {number}: the code gave {_show(got)} at {where}; the history holds {_show(want)}"
                )
        if len(given) != len(expected):
            if len(given) > len(expected):
                extra = given[len(expected)]
                raise NonDeterminism(
                    f"workflow task {number}: the code gave {_show(extra)} at {instance._wheres.get(extra.seq, '?')}, "
                    "which the history does not hold"
                )
            raise NonDeterminism(f"workflow task {number}: the history holds {_show(expected[len(given)])}, "
                                 "which the code no longer gives")
    return instance


def _same(got: Command, want: Command) -> bool:
    """The same command, as far as determinism goes: kind, seq and what it names
    (an activity's name and queue, a timer's duration); inputs may differ only if
    the code computed them from the history, so they are compared too."""
    return type(got) is type(want) and got == want


def _show(command: Command) -> str:
    match command:
        case ScheduleActivity(seq, activity):
            return f"command {seq}: schedule activity {activity!r}"
        case StartTimer(seq, duration_ms):
            return f"command {seq}: start a {duration_ms} ms timer"
        case RecordMarker(seq, patch_id):
            return f"command {seq}: patched({patch_id!r})"
        case _:
            return f"command {command.seq}: {type(command).__name__}"


__all__ = [
    "Activation", "ActivityFailed", "CancelTimer", "CancelWorkflow", "Command", "CompleteWorkflow", "FailWorkflow",
    "FireTimer", "NonDeterminism", "RecordMarker", "RecordedTask", "RequestCancel", "ResolveActivity",
    "ScheduleActivity", "Signal", "Start", "StartTimer", "WorkflowDefinition", "WorkflowError", "WorkflowInstance",
    "ChildWorkflowFailed", "ContinueAsNew", "RequestCancelActivity", "ResolveChild", "Saga", "StartChildWorkflow",
    "WorkflowInfo", "continue_as_new", "current", "defn", "definition", "execute_activity", "execute_child_workflow",
    "info", "logger", "now", "patched", "query", "random", "replay", "run", "signal", "sleep", "start_activity",
    "start_child_workflow", "uuid4", "wait_condition",
]
