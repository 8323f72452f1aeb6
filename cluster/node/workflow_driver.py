"""The leader's duties toward the workflow engine, and the long polls that wait on it.

The engine (statemachine/workflow) is pure: time moves only when an entry carries
it. This module is the edge that makes time and hand-outs happen, on the leader:

- **Ticks.** When the engine's earliest deadline (a retry timer, a timeout, a
  durable timer, a retention removal) has passed by this leader's clock, it proposes
  a Tick carrying its time; every replica then fires the same timers at the same log
  position. One Tick is in flight at a time.
- **Re-arming after an election.** A new leader first proposes RearmTimeouts: a
  started activity whose timeout fell while no leader could hear its worker gets
  `rearm_grace_ms` to report before it counts as lost.
- **Task hand-out.** A worker's long poll takes the queue's oldest scheduled tasks
  not already being handed out and proposes ActivityTaskStarted for each. A leader
  whose state is current replies at once, while the starts commit (one commit round
  less per activity); otherwise it replies with what committed. A start that fails
  while this node still leads is proposed again (the task stays reserved for the
  worker that has it); one lost with the leadership leaves the task scheduled, and
  that worker's report is refused as stale, so the next leader hands it out again.
  A reply lost on the way leaves a started task nobody runs: its start-to-close
  timeout and retry policy cover it, as for a worker that dies. Either way delivery
  is at-least-once.
- **Waiting.** Polls sleep until the next applied batch (any change); `wait_closed`
  until the engine's close count moves and its workflow is closed; never on a timer,
  and each gives up at its deadline.

Leader ops carry no session (session_id 0): they are fenced by the engine itself (a
repeated ActivityTaskStarted is refused as stale, a repeated Tick fires nothing).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass

from raftflow.cluster.node.errors import NodeError
from raftflow.cluster.node.raftnode import RaftNode, wall_ms
from raftflow.raft.types import Role
from raftflow.statemachine.workflow.records import CLOSED, TASK_SECRET_BYTES, ActivityTask, WorkflowDescription
from raftflow.statemachine.workflow.ops import ActivityTaskStarted, RearmTimeouts, Tick

log = logging.getLogger("raftflow.workflows")

TICK_MIN_INTERVAL_S = 0.005  # two Ticks at least this far apart, however many deadlines fall
RETRY_S = 0.05  # after a leader op could not be proposed
IDLE_CHECK_S = 1.0  # with no deadline armed, look again this often (a leader change may add some)


@dataclass(frozen=True, slots=True)
class Grant:
    """A task handed to one worker, with the secret its reports must carry."""

    task: ActivityTask
    secret: bytes


class WorkflowDriver:
    """One of a RaftNode's hooks (NodeHooks): started and stopped with it, told of
    role changes and applied batches by its driver."""

    def __init__(self, node: RaftNode, *, rearm_grace_ms: int) -> None:
        self.node = node
        self.rearm_grace_ms = rearm_grace_ms
        self._applied = asyncio.Event()  # set (and replaced) after every applied batch
        self._leader_wake = asyncio.Event()
        self._handing_out: set[int] = set()  # task ids with an ActivityTaskStarted in flight (reserved)
        self._close_waiters: dict[str, list[asyncio.Future]] = {}  # workflow id -> WaitWorkflow calls
        self._closes_seen = 0  # the engine's close count when the waiters were last checked
        self._task: asyncio.Task | None = None
        self._last_tick = 0.0  # monotonic time of the last Tick proposed
        self._stopped = False

    # --- hooks ----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._lead(), name="workflow-leader")
        self._task.add_done_callback(self._lead_ended)

    def _lead_ended(self, task: asyncio.Task) -> None:
        # stop() both sets the flag and cancels; on 3.11 the cancel may be swallowed
        # and the loop return through the flag: that is a clean end too.
        if task.cancelled() or self._stopped or task.exception() is None:
            return
        # A bug: without this loop no timer, timeout or retention fires while this
        # node leads. Stop the node (as the driver does) rather than lead without it.
        log.critical("node %d: the workflow leader loop failed: %r", self.node.id, task.exception(),
                     exc_info=task.exception())
        self.node.fail(task.exception())

    async def stop(self) -> None:
        # A flag, not only cancel(): on Python 3.11 asyncio.wait_for swallows a cancel
        # that arrives as its awaitable completes, and this loop's wake is set by every
        # applied batch, so under load a cancelled _lead could go round forever.
        self._stopped = True
        self._leader_wake.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._wake_polls()
        self._wake_closed(everyone=True)

    def _wake_polls(self) -> None:
        event, self._applied = self._applied, asyncio.Event()
        event.set()

    def on_applied(self, snapshot: bool = False) -> None:
        self._wake_polls()
        self._leader_wake.set()
        if snapshot:  # a new engine: its close count starts again
            self._wake_closed(everyone=True)
        elif self._close_waiters:
            self._wake_closed(everyone=False)

    def on_role(self, role: Role) -> None:
        self._leader_wake.set()
        if role is not Role.LEADER:
            self._wake_closed(everyone=True)  # they re-check and answer "not the leader"

    async def changed(self, timeout: float) -> bool:
        """Wait for the next applied batch; False when `timeout` passed first."""
        event = self._applied
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    # --- leader duties ----------------------------------------------------------------

    async def _lead(self) -> None:
        rearmed_term = 0
        while not self._stopped:
            self._leader_wake.clear()
            raft = self.node.node
            timeout = IDLE_CHECK_S
            if raft is not None and raft.role is Role.LEADER and not self.node.stopping:
                if rearmed_term != raft.term:
                    term = raft.term
                    if await self._propose(RearmTimeouts(self.rearm_grace_ms)) is not None:
                        rearmed_term = term
                        continue
                    timeout = RETRY_S  # refused (queue full, leadership lost): look again shortly
                else:
                    timeout = await self._tick_if_due()
            if timeout <= 0:
                continue
            try:
                await asyncio.wait_for(self._leader_wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def _tick_if_due(self) -> float:
        """Propose a Tick if a deadline has passed (at most one per
        TICK_MIN_INTERVAL_S); the seconds to wait before looking again."""
        due = self.node.machine.workflow.next_deadline_ms()
        if due is None:
            return IDLE_CHECK_S
        now = wall_ms()
        if due > now:
            return min(IDLE_CHECK_S, (due - now) / 1000)
        since = time.monotonic() - self._last_tick
        if since < TICK_MIN_INTERVAL_S:
            return TICK_MIN_INTERVAL_S - since
        self._last_tick = time.monotonic()
        if await self._propose(Tick()) is None:
            return RETRY_S
        return 0.0

    async def _propose(self, op) -> object | None:
        """A leader op through the log; None if it could not be (leadership lost,
        stopping): the next leader does it instead."""
        try:
            _, result = await self.node.submit(op)
        except NodeError as error:
            log.debug("node %d: %s not applied: %s", self.node.id, type(op).__name__, error.message)
            return None
        return result

    # --- long polls -------------------------------------------------------------------

    async def poll(self, task_queue: str, max_tasks: int, wait_s: float, identity: str = "") -> list[Grant]:
        """Hand out up to `max_tasks` tasks of the queue, waiting up to `wait_s` for
        one. Raises NodeError when this node is not (or stops being) the leader."""
        deadline = time.monotonic() + wait_s
        while True:
            self.node.check_leader()
            handed = await self._hand_out(task_queue, max_tasks)
            if handed:
                log.debug("node %d handed %s of %r to %s", self.node.id,
                          ", ".join(f"task {g.task.task_id} attempt {g.task.attempt}" for g in handed), task_queue,
                          identity or "?")
                return handed
            remaining = deadline - time.monotonic()
            woke = remaining > 0 and await self.changed(remaining)
            if asyncio.current_task().cancelling():
                raise asyncio.CancelledError  # the poll was cancelled as the wait ended (3.11's wait_for)
            if not woke:
                self.node.check_leader()
                return []

    async def _hand_out(self, task_queue: str, max_tasks: int) -> list[Grant]:
        """Propose ActivityTaskStarted for the queue's oldest tasks not already being
        handed out. When this leader's state is current (everything committed is
        applied, and it has committed in its term), the tasks go to the worker at once
        while their starts commit: a start that never commits (the leader dies) leaves
        the task scheduled, and the worker's report is then refused as stale, so the
        task runs again elsewhere: at-least-once either way, one commit round less per
        activity. Otherwise each start is awaited and only what committed is handed out.
        Each hand-out gets a fresh random secret: the task token a worker reports with
        is (task id, attempt, secret), which no other caller can guess."""
        pending = self.node.machine.workflow.pending_tasks(task_queue, max_tasks + len(self._handing_out))
        chosen = [task for task in pending if task.task_id not in self._handing_out][:max_tasks]
        if not chosen:
            return []
        current = self.node.state_is_current()
        term = self.node.node.term
        futures = []
        grants = []
        for task in chosen:
            grant = Grant(task, secrets.token_bytes(TASK_SECRET_BYTES))
            future = self._propose_start(grant, term)
            if future is None:
                break  # not the leader any more, or the queue is full: hand out what was proposed
            self._handing_out.add(task.task_id)
            futures.append(future)
            grants.append(grant)
        if current:
            return grants
        # Shielded: a poll cancelled meanwhile must not cancel the starts it proposed.
        results = await asyncio.shield(asyncio.gather(*futures, return_exceptions=True))
        return [
            Grant(r[1], grant.secret) for grant, r in zip(grants, results)
            if isinstance(r, tuple) and type(r[1]) is ActivityTask
        ]

    def _propose_start(self, grant: Grant, term: int) -> asyncio.Future | None:
        task = grant.task
        try:
            future = self.node.submit(ActivityTaskStarted(task.task_id, task.attempt, grant.secret))
        except NodeError:
            return None
        future.add_done_callback(lambda f: self._started(grant, term, f))
        return future

    def _started(self, grant: Grant, term: int, future: asyncio.Future) -> None:
        """A start applied (or was refused): the task leaves the reservation. A start
        that failed while this node still leads in the same term may have been handed
        out already: propose it again, so that no other worker gets the same token."""
        failed = future.cancelled() or future.exception() is not None
        if failed and self._leads_in(term):
            asyncio.get_running_loop().call_later(RETRY_S, self._start_again, grant, term)
            return
        self._handing_out.discard(grant.task.task_id)
        if failed:
            self._wake_polls()  # the task is free again: a waiting poll may take it

    def _start_again(self, grant: Grant, term: int) -> None:
        """The same grant, secret and all: the worker may already hold it."""
        if not self._leads_in(term):
            self._handing_out.discard(grant.task.task_id)
            self._wake_polls()
        elif self._propose_start(grant, term) is None:  # the queue is still full
            asyncio.get_running_loop().call_later(RETRY_S, self._start_again, grant, term)

    def _leads_in(self, term: int) -> bool:
        raft = self.node.node
        return raft is not None and raft.role is Role.LEADER and raft.term == term and not self.node.stopping

    async def wait_closed(self, workflow_id: str, run_id: int, wait_s: float) -> WorkflowDescription | None:
        """The workflow once closed, or as it is when `wait_s` passed; None when no
        run with that id (and run_id, unless 0) exists. Raises NodeError if this node
        stops leading first (the client re-attaches to the next leader)."""
        engine = self.node.machine.workflow
        deadline = time.monotonic() + wait_s
        while True:
            self.node.check_leader()
            status = engine.run_status(workflow_id)
            if status is None or (run_id and status[0] != run_id):
                return None
            remaining = deadline - time.monotonic()
            if status[1] in CLOSED or remaining <= 0:
                return engine.describe(workflow_id)
            future = asyncio.get_running_loop().create_future()
            self._close_waiters.setdefault(workflow_id, []).append(future)
            try:
                await asyncio.wait_for(future, remaining)
            except asyncio.TimeoutError:
                pass
            finally:
                waiters = self._close_waiters.get(workflow_id)
                if waiters is not None and future in waiters:
                    waiters.remove(future)
                    if not waiters:
                        del self._close_waiters[workflow_id]
            engine = self.node.machine.workflow  # a snapshot install replaces the engine

    def _wake_closed(self, everyone: bool) -> None:
        """Wake the waiters whose workflow closed (all of them if `everyone`: they
        look again themselves)."""
        engine = self.node.machine.workflow
        if not everyone and engine.closes == self._closes_seen:
            return
        self._closes_seen = engine.closes
        for workflow_id in list(self._close_waiters):
            status = engine.run_status(workflow_id)
            if everyone or status is None or status[1] in CLOSED:
                for future in self._close_waiters.pop(workflow_id):
                    if not future.done():
                        future.set_result(None)
