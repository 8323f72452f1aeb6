"""Workers: long-poll a task queue, run activities, report what happened.

    from raftflow import AsyncClient, Worker
    import my_activities

    async with AsyncClient(endpoints) as client:
        worker = Worker(client, task_queue="orders", activities=[my_activities], concurrency=8)
        await worker.run()            # until worker.shutdown()

or from a shell: `raftflow worker --activities my_activities --task-queue orders`.

Each task handed out is started in the log before the worker sees it; the worker runs
the activity (async functions on the loop, sync ones in a thread pool of
`concurrency` threads) and reports CompleteActivity or FailActivity in its session.
A worker that dies, hangs or loses its report is covered by the step's timeouts and
retry policy: delivery is at-least-once, and `activity.info().idempotency_key` makes
an effect exactly-once. A report refused as stale (the attempt timed out, was retried,
or the workflow closed) is dropped: the engine has moved on. Heartbeats are
throttled to one call per `heartbeat_interval` (the latest details win); a refused
heartbeat cancels the attempt (`activity.heartbeat` then raises ActivityCancelled).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from types import ModuleType

from raftflow.cluster.worker.activity import ActivityContext, ActivityInfo, Registry, failure_of
from raftflow.cluster.client import (
    AsyncClient,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutcomeUnknown,
    PermissionDenied,
    RaftflowError,
    Unauthenticated,
    Unavailable,
)
from raftflow.cluster.client.durations import Duration, seconds
from raftflow.cluster.client.workflows import LONG_POLL_S, MAX_POLL_TASKS, MAX_WAIT_MS, Task
from raftflow.statemachine.workflow.ops import MAX_REASON_CHARS, check_plain_data
from raftflow.statemachine.workflow.retry import MAX_NAME_CHARS

log = logging.getLogger("raftflow.worker")

REPORT_PATIENCE_S = 60.0  # keep retrying a report this long while no leader answers
MAX_BACKOFF_S = 1.0


class Worker:
    def __init__(
        self,
        client: AsyncClient,
        *,
        task_queue: str,
        activities: Iterable[Callable | ModuleType],
        concurrency: int = 8,
        identity: str | None = None,
        heartbeat_interval: Duration = 1.0,
        poll_wait: Duration = LONG_POLL_S,
        pollers: int = 2,
    ) -> None:
        """Durations are a `datetime.timedelta` or seconds. `heartbeat_interval`: the
        least time between two heartbeats an attempt sends (0: each at once);
        `poll_wait`: one long poll's wait for tasks."""
        if not task_queue:
            raise ValueError("task_queue is empty")
        if not 1 <= concurrency <= 1000:
            raise ValueError(f"concurrency={concurrency} must be from 1 to 1000")
        heartbeat_interval_s = _seconds(heartbeat_interval, "heartbeat_interval", zero=True)
        poll_wait_s = _seconds(poll_wait, "poll_wait")
        if not 1 <= pollers <= 16:
            raise ValueError(f"pollers={pollers} must be from 1 to 16")
        if not 0 < poll_wait_s <= MAX_WAIT_MS / 1000:
            raise ValueError(f"poll_wait={poll_wait!r} must be above 0 and at most {MAX_WAIT_MS / 1000:.0f} seconds")
        self.client = client
        self.task_queue = task_queue
        self.registry = Registry(activities)
        if not self.registry.functions:
            raise ValueError("no activities given: pass @activity.defn functions or modules holding them")
        self.concurrency = concurrency
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}"
        self.heartbeat_interval_s = heartbeat_interval_s
        self.poll_wait_s = poll_wait_s
        self._threads = concurrent.futures.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="activity")
        self.pollers = min(pollers, concurrency)
        self._running: dict[asyncio.Task, ActivityContext] = {}  # attempts whose activity still runs
        self._reserved = 0  # slots promised to polls in flight
        self._polling = 0  # pollers with a poll in flight
        self._reporting: set[asyncio.Task] = set()  # reports sent after their slot was freed
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        self.completed = 0  # attempts reported, for tests and `raftflow worker` summaries
        self.failed = 0

    # --- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Poll and run tasks until shutdown(); then wait for running attempts and
        their reports. `pollers` long polls are in flight at once, each for a share
        of the free slots, so a busy worker is not one round trip per hand-out."""
        log.info("worker %s polling %r for %s", self.identity, self.task_queue, ", ".join(self.registry.names()))
        pollers = [asyncio.create_task(self._poller()) for _ in range(self.pollers)]
        try:
            await asyncio.gather(*pollers)
        finally:
            for poller in pollers:
                poller.cancel()
            await asyncio.gather(*pollers, return_exceptions=True)
            while self._running or self._reporting:
                await asyncio.gather(*self._running, *self._reporting, return_exceptions=True)
            self._threads.shutdown(wait=False, cancel_futures=True)

    async def _poller(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            free = self.concurrency - len(self._running) - self._reserved
            if free <= 0:
                self._slot_free.clear()
                await self._until(self._slot_free)
                continue
            idle_pollers = max(1, self.pollers - self._polling)
            take = max(1, min(MAX_POLL_TASKS, -(-free // idle_pollers)))  # a fair share, rounded up
            self._reserved += take
            self._polling += 1
            try:
                tasks = await self._poll(take)
            except (PermissionDenied, Unauthenticated) as exc:
                # Its token will not do (wrong queue, revoked, expired): waiting does
                # not change that, so the worker stops and says why.
                log.error("worker %s: %s", self.identity, exc)
                self.shutdown()
                raise
            except RaftflowError as exc:
                tasks = None
                problem = exc
            finally:
                self._reserved -= take
                self._polling -= 1
            if tasks is None:
                # No leader for a while, or a node answered oddly: a worker keeps
                # polling (a deploy, an election) rather than exit with tasks waiting.
                failures += 1
                log.warning("worker %s: poll failed (%s); retrying", self.identity, problem)
                await self._pause(min(MAX_BACKOFF_S, 0.05 * 2 ** min(failures, 5)))
                continue
            failures = 0
            for task in tasks[:take]:
                self._launch(task)

    async def _poll(self, free: int) -> list[Task]:
        poll = asyncio.ensure_future(self.client.workflows.poll(
            self.task_queue, max_tasks=min(free, MAX_POLL_TASKS), wait=self.poll_wait_s, identity=self.identity
        ))
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([poll, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not poll.done():  # stopping, or run() itself cancelled
                poll.cancel()  # a task handed out meanwhile times out and is retried elsewhere
                await asyncio.gather(poll, return_exceptions=True)
        return [] if poll.cancelled() else poll.result()

    async def _until(self, event: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._stopping.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def shutdown(self) -> None:
        """Stop polling; run() returns once the running attempts have reported."""
        self._stopping.set()

    # --- one attempt ----------------------------------------------------------------------

    def _launch(self, task: Task) -> None:
        log.debug("took task %d attempt %d: %s of workflow %s, step %s", task.task_id, task.attempt, task.activity,
                  task.workflow_id, task.step)
        info = ActivityInfo.of(task)
        beats = _Heartbeats(self, task)
        context = ActivityContext(info, beats.report)
        beats.context = context
        runner = asyncio.ensure_future(self._attempt(task, context, beats))
        self._running[runner] = context
        runner.add_done_callback(self._finished)

    def _finished(self, runner: asyncio.Task) -> None:
        self._running.pop(runner, None)
        self._slot_free.set()

    def _free_slot_then(self, report) -> asyncio.Future:
        """The activity returned: its slot goes to the next task while `report` (a
        coroutine) is sent in the background; past 4 x concurrency reports in flight
        the slot waits for the report instead (bounded)."""
        runner = asyncio.current_task()
        if runner in self._running and len(self._reporting) < 4 * self.concurrency:
            self._running.pop(runner)
            self._slot_free.set()
        reporter = asyncio.ensure_future(report)
        self._reporting.add(reporter)
        reporter.add_done_callback(self._reporting.discard)
        return reporter

    async def _attempt(self, task: Task, context: ActivityContext, beats: _Heartbeats) -> None:
        try:
            await self._run_attempt(task, context, beats)
        except Exception:  # noqa: BLE001 (a bug here must not kill the worker; the timeout retries the task)
            log.exception("task %d attempt %d: the worker failed to run or report it", task.task_id, task.attempt)

    async def _run_attempt(self, task: Task, context: ActivityContext, beats: _Heartbeats) -> None:
        where = f"{task.activity} (workflow {task.workflow_id}, step {task.step}, attempt {task.attempt})"
        if task.activity not in self.registry:
            outcome: tuple = ("fail", "ActivityNotRegistered", f"activity {task.activity!r} is not registered on "
                              f"worker {self.identity} (it has {', '.join(self.registry.names())})", True)
        else:
            try:
                outcome = ("complete", await self.registry.run(context, task.input, self._threads))
            except Exception as exc:  # noqa: BLE001 (an activity's failure is data for the engine)
                outcome = ("fail", *failure_of(exc))
            await beats.flush()
        await self._free_slot_then(self._deliver(task, where, outcome))

    async def _deliver(self, task: Task, where: str, outcome: tuple) -> None:
        """Report what the attempt did: CompleteActivity, or FailActivity."""
        if outcome[0] == "fail":
            await self._report_failure(task, where, *outcome[1:])
            return
        result = outcome[1]
        try:
            check_plain_data(result, "the result", ValueError)  # the engine's rule, checked before sending
        except ValueError as exc:
            await self._report_failure(task, where, "ResultInvalid", str(exc), False)
            return
        reported = await self._report(where, "completion", lambda: self.client.workflows.complete_activity(
            task.task_id, task.attempt, result, secret=task.secret
        ))
        if reported is None:  # refused as malformed: fail the step rather than let it time out and rerun
            await self._report_failure(task, where, "ResultInvalid", "the cluster refused the result", False)
        elif reported:
            self.completed += 1

    async def _report_failure(self, task: Task, where: str, error_type: str, message: str, retryable: bool) -> None:
        error_type, message = _clean(error_type, MAX_NAME_CHARS) or "Error", _clean(message, MAX_REASON_CHARS)
        log.info("%s failed: %s: %s%s", where, error_type, message, "" if retryable else " (non-retryable)")
        if await self._report(where, "failure", lambda: self.client.workflows.fail_activity(
            task.task_id, task.attempt, error_type, message, retryable, secret=task.secret
        )):
            self.failed += 1

    async def _report(self, where: str, what: str, send) -> bool | None:
        """Send a report, retrying while no leader answers. True when it applied,
        False when it was dropped (stale, or undeliverable for REPORT_PATIENCE_S),
        None when the cluster refused it as malformed."""
        give_up = time.monotonic() + REPORT_PATIENCE_S
        attempt = 0
        while True:
            try:
                await send()
                return True
            except (FailedPrecondition, NotFound) as exc:
                log.info("%s: %s dropped, the engine has moved on: %s", where, what, exc)
                return False
            except (Unavailable, OutcomeUnknown) as exc:
                # A retried report has a new sequence number: if the first one applied,
                # this one is refused as stale, which is the same outcome.
                if time.monotonic() >= give_up:
                    log.error("%s: %s not delivered for %.0fs (%s); the step's timeout will retry it",
                              where, what, REPORT_PATIENCE_S, exc)
                    return False
                attempt += 1
                await asyncio.sleep(min(MAX_BACKOFF_S, 0.05 * 2 ** min(attempt, 5)))
            except InvalidArgument as exc:
                log.error("%s: %s refused: %s", where, what, exc)
                return None
            except RaftflowError as exc:
                log.error("%s: %s refused: %s", where, what, exc)
                return False


def _seconds(value: Duration, what: str, *, zero: bool = False) -> float:
    """A Worker option as seconds; ValueError naming it (a mistake in code, not input)."""
    try:
        return seconds(value, what, zero=zero)
    except InvalidArgument as exc:
        raise ValueError(str(exc)) from None


def _clean(text: str, max_chars: int) -> str:
    """Text the engine accepts: valid UTF-8 (lone surrogates replaced), at most max_chars."""
    return text.encode("utf-8", "replace").decode("utf-8")[:max_chars]


class _Heartbeats:
    """An attempt's heartbeats: called from the activity (any thread), sent from the
    loop, at most one call in flight and one per interval; the latest details win."""

    def __init__(self, worker: Worker, task: Task) -> None:
        self.worker = worker
        self.task = task
        self.loop = asyncio.get_running_loop()
        self.context: ActivityContext | None = None
        self._pending: tuple[object] | None = None
        self._sender: asyncio.Task | None = None
        self._sending = False  # a heartbeat call is in flight
        self._flushing = False  # the attempt ended: later heartbeats are not sent
        self._last_sent = 0.0

    def report(self, details: object) -> None:
        if _on_loop(self.loop):
            self._queue(details)
        else:
            self.loop.call_soon_threadsafe(self._queue, details)

    def _queue(self, details: object) -> None:
        if self._flushing:
            return
        self._pending = (details,)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        while self._pending is not None:
            wait = self._last_sent + self.worker.heartbeat_interval_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                if self._pending is None:
                    return
            (details,), self._pending = self._pending, None
            self._last_sent = time.monotonic()
            self._sending = True
            try:
                await self.worker.client.workflows.heartbeat_activity(
                    self.task.task_id, self.task.attempt, details, secret=self.task.secret
                )
            except (FailedPrecondition, NotFound):
                assert self.context is not None
                self.context.cancel()  # the attempt is no longer wanted
                return
            except RaftflowError as exc:
                log.debug("heartbeat of task %d not sent: %s", self.task.task_id, exc)
            finally:
                self._sending = False

    async def flush(self) -> None:
        """Drop a throttled heartbeat, and let one in flight finish before the final
        report (order in the log); the report itself counts as the last sign of life."""
        self._pending = None
        self._flushing = True
        if self._sender is not None and not self._sender.done():
            if self._sending:
                await asyncio.gather(self._sender, return_exceptions=True)
            else:
                self._sender.cancel()


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
