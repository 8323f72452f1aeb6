"""`raftflow workflow ...` and `raftflow worker`: the temporal CLI's conventions.

    raftflow workflow register examples/order_saga/order_saga.yaml
    raftflow workflow start order_saga --id order-1 --input '{"order_id": 1}' --wait
    raftflow workflow describe order-1        # why is it stuck: step, attempt, last error, next retry
    raftflow workflow show order-1            # the history as a timeline (-o json: the events)
    raftflow workflow list --status running
    raftflow workflow signal order-1 approved --input '{"by": "ops"}'
    raftflow workflow cancel order-1          # compensations run
    raftflow workflow terminate order-1       # stops at once
    raftflow worker --activities examples.order_saga.activities --task-queue orders
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import importlib.util
import json
import logging
import os
import signal
import sys

from raftflow.cluster.client import AsyncClient, RaftflowError
from raftflow.cluster.cli.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    CommandFailed,
    add_common,
    client_for,
    credentials,
    endpoints,
)
from raftflow.cluster.client import HistoryEvent
from raftflow.cluster.protocol.workflow_proto import event_attributes, plain
from raftflow.statemachine.workflow.definitions import load_definition
from raftflow.statemachine.workflow.records import Status
from raftflow.statemachine.workflow.retry import DefinitionError

STATUSES = tuple(status.value for status in Status)


def add_workflow_commands(sub) -> None:
    workflow = sub.add_parser("workflow", help="register, start, inspect, signal, cancel and terminate workflows")
    wf = workflow.add_subparsers(dest="workflow_command", metavar="COMMAND", required=True)

    register = wf.add_parser("register", help="register the workflow type defined in FILE (.yaml, .yml or .json)")
    register.add_argument("file")
    add_common(register, output=True)
    register.set_defaults(func=_cmd_register)

    start = wf.add_parser("start", help="start a workflow of type TYPE")
    start.add_argument("type", metavar="TYPE")
    start.add_argument("--id", dest="workflow_id", help="workflow id (default: TYPE-<uuid>); unique among running ones")
    start.add_argument("--input", help="the workflow's input as JSON")
    start.add_argument("--version", type=int, default=0, help="type version (default: the latest registered)")
    start.add_argument("--wait", action="store_true", help="wait until it closes; print the outcome (exit 1 unless completed)")
    start.add_argument(
        "--return-running", action="store_true", help="if a workflow with this id is running, attach to it instead of failing"
    )
    add_common(start, output=True)
    start.set_defaults(func=_cmd_start)

    for name, what, func in (
        ("describe", "the workflow's state: current step, attempt, last error, next retry, timers, signals, heartbeat",
         _cmd_describe),
        ("show", "the workflow's history as a timeline (-o json: the events)", _cmd_show),
    ):
        cmd = wf.add_parser(name, help=what, description=what)
        cmd.add_argument("workflow_id", metavar="ID")
        add_common(cmd, output=True)
        cmd.set_defaults(func=func)

    listing = wf.add_parser("list", help="workflows, newest first")
    listing.add_argument("--status", choices=STATUSES, help="only workflows with this status")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    add_common(listing, output=True)
    listing.set_defaults(func=_cmd_list)

    sig = wf.add_parser("signal", help="send signal NAME to workflow ID")
    sig.add_argument("workflow_id", metavar="ID")
    sig.add_argument("name", metavar="NAME")
    sig.add_argument("--input", help="the signal's payload as JSON")
    add_common(sig, output=True)
    sig.set_defaults(func=_cmd_signal)

    cancel = wf.add_parser("cancel", help="cancel workflow ID: the completed steps' compensations run")
    cancel.add_argument("workflow_id", metavar="ID")
    add_common(cancel, output=True)
    cancel.set_defaults(func=_cmd_cancel)

    terminate = wf.add_parser("terminate", help="stop workflow ID at once, without compensations")
    terminate.add_argument("workflow_id", metavar="ID")
    terminate.add_argument("--reason", default="", help="recorded in the history")
    add_common(terminate, output=True)
    terminate.set_defaults(func=_cmd_terminate)


def add_worker_command(sub) -> None:
    worker = sub.add_parser(
        "worker", help="run activities for a task queue",
        description="Long-poll the cluster for tasks of --task-queue and run them with the @activity.defn "
        "functions of --activities (a module name, or a path to a .py file). Stops on SIGINT/SIGTERM after "
        "the running attempts report.",
    )
    worker.add_argument("--activities", required=True, action="append", help="module (or .py file); repeatable")
    worker.add_argument("--task-queue", required=True)
    worker.add_argument("--concurrency", type=int, default=8, help="attempts run at once (default 8)")
    worker.add_argument("--pollers", type=int, default=2, help="long polls in flight at once (default 2)")
    worker.add_argument("--identity", help="name in the leader's log (default host:pid)")
    worker.add_argument("--verbose", action="store_true", help="log every task taken and every report")
    add_common(worker)
    worker.set_defaults(func=_cmd_worker)


# --- helpers ----------------------------------------------------------------------------

def _json_arg(text: str | None, what: str) -> object:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandFailed(f"{what} is not JSON: {exc}", EXIT_USAGE) from None


def _time(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _show_json(value: object) -> str:
    return json.dumps(value, default=lambda v: v.hex() if isinstance(v, bytes) else str(v), sort_keys=True)


def _emit(args: argparse.Namespace, data: object, text: str) -> None:
    print(_show_json(data) if args.output == "json" else text)


# --- commands ---------------------------------------------------------------------------

def _cmd_register(args: argparse.Namespace) -> int:
    try:
        workflow_type = load_definition(args.file)
    except (DefinitionError, OSError) as exc:
        raise CommandFailed(" ".join(str(exc).split()), EXIT_USAGE) from None  # YAML's messages span lines
    with client_for(args) as client:
        registered = client.workflows.register(workflow_type)
    name, version = registered.name, registered.version
    _emit(args, {"type_name": name, "version": version}, f"registered {name} version {version}")
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    payload = _json_arg(args.input, "--input")
    if args.workflow_id is not None and not args.workflow_id:
        raise CommandFailed("--id is empty; leave it out to get a generated id", EXIT_USAGE)
    if args.version < 0:
        raise CommandFailed(f"--version {args.version} must not be negative", EXIT_USAGE)
    with client_for(args) as client:
        run = client.workflows.start(
            args.type, workflow_id=args.workflow_id, input=payload, version=args.version,
            return_running=args.return_running,
        )
        started = {"workflow_id": run.workflow_id, "run_id": run.run_id, "existing": run.existing}
        if not args.wait:
            verb = "attached to running" if run.existing else "started"
            _emit(args, started, f"{verb} workflow {run.workflow_id} (run {run.run_id})")
            return 0
        if args.output != "json":
            print(f"{'attached to' if run.existing else 'started'} workflow {run.workflow_id} (run {run.run_id}); waiting",
                  flush=True)
        outcome = plain(client.workflows.wait(run.workflow_id, run_id=run.run_id))
    _emit(args, outcome, _outcome_text(outcome))
    return 0 if outcome["status"] == Status.COMPLETED.value else EXIT_FAILURE


def _outcome_text(d: dict) -> str:
    line = f"workflow {d['workflow_id']} {d['status']}"
    if d.get("reason"):
        line += f": {d['reason']}"
    if d["status"] == "completed":
        line += f"\nresult: {_show_json(d.get('result'))}"
    return line


def _cmd_describe(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        d = plain(client.workflows.describe(args.workflow_id))
    _emit(args, d, _describe_text(d))
    return 0


def _describe_text(d: dict) -> str:
    rows = [
        ("workflow", f"{d['workflow_id']} (run {d['run_id']})"),
        ("type", f"{d['type_name']} version {d['version']}"),
        ("status", d["status"]),
        ("started", _time(d["start_ms"])),
        ("closed", _time(d.get("close_ms"))),
    ]
    optional = (
        ("step", "step", str),
        ("task_state", "task", str),
        ("task_queue", "task queue", str),
        ("attempt", "attempt", str),
        ("last_error", "last error", _error_text),
        ("next_retry_ms", "next retry", _time),
        ("last_heartbeat_ms", "last heartbeat", _time),
        ("heartbeat_details", "heartbeat details", _show_json),
        ("timer_fire_ms", "timer fires", _time),
        ("awaited_signal", "waiting for signal", str),
        ("signal_deadline_ms", "signal wait ends", _time),
        ("buffered_signals", "buffered signals", ", ".join),
        ("reason", "reason", str),
    )
    for key, label, render in optional:
        value = d.get(key)
        if value not in (None, [], {}, ""):
            rows.append((label, render(value)))
    tasks = d.get("tasks") or []
    if len(tasks) > 1:  # a parallel group: one line per member
        for task in tasks:
            error = f", last error {_error_text(task['last_error'])}" if task.get("last_error") else ""
            rows.append((f"task {task['task_id']}", f"step {task['step']}: {task['activity']} attempt {task['attempt']} "
                                                    f"{task['state']}{error}"))
    if d["status"] == "completed":
        rows.append(("result", _show_json(d.get("result"))))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def _error_text(error: dict) -> str:
    return f"{error['error_type']}: {error['message']}"


def _cmd_show(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        events = [_event_dict(e) for e in client.workflows.history(args.workflow_id)]
    if args.output == "json":
        print(_show_json(events))
        return 0
    start = events[0]["time_ms"] if events else 0
    for e in events:
        details = []
        if e.get("step"):
            details.append(("undo " if e.get("compensation") else "") + f"step={e['step']}")
        for key in ("activity", "attempt", "error_type", "message"):
            if e.get(key) is not None:
                details.append(f"{key}={e[key]}")
        if e.get("payload") is not None:
            details.append(f"payload={_show_json(e['payload'])}")
        offset = (e["time_ms"] - start) / 1000
        print(f"{e['event_id']:>4}  {_time(e['time_ms'])}  +{offset:8.3f}s  {e['event_type']:<34}  {' '.join(details)}")
    return 0


def _event_dict(event: HistoryEvent) -> dict:
    """An event as `workflow show -o json` prints it: the type as event_type, then
    only the attributes it has."""
    return {"event_id": event.event_id, "time_ms": event.time_ms, "event_type": event.type.value,
            **event_attributes(event)}


def _cmd_list(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 10_000:
        raise CommandFailed(f"--limit {args.limit} must be from 1 to 10000", EXIT_USAGE)
    with client_for(args) as client:
        rows = [plain(row) for row in client.workflows.list(status=args.status, limit=args.limit)]
    if args.output == "json":
        print(_show_json(rows))
        return 0
    print(f"{'WORKFLOW ID':<36}  {'RUN':>5}  {'TYPE':<20}  {'STATUS':<12}  {'STARTED':<24}  CLOSED")
    for r in rows:
        print(f"{r['workflow_id']:<36}  {r['run_id']:>5}  {r['type_name'] + ' v' + str(r['version']):<20}  "
              f"{r['status']:<12}  {_time(r['start_ms']):<24}  {_time(r['close_ms'])}")
    return 0


def _cmd_signal(args: argparse.Namespace) -> int:
    payload = _json_arg(args.input, "--input")
    with client_for(args) as client:
        client.workflows.signal(args.workflow_id, args.name, payload)
    _emit(args, {"workflow_id": args.workflow_id, "signal": args.name}, f"signaled {args.workflow_id}: {args.name}")
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        status = client.workflows.cancel(args.workflow_id).value
    _emit(args, {"workflow_id": args.workflow_id, "status": status},
          f"canceled {args.workflow_id}: {status} (compensations of completed steps run)")
    return 0


def _cmd_terminate(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        status = client.workflows.terminate(args.workflow_id, args.reason).value
    _emit(args, {"workflow_id": args.workflow_id, "status": status}, f"terminated {args.workflow_id}")
    return 0


# --- worker -------------------------------------------------------------------------------

def import_activities(spec: str):
    """A module by name (the working directory is on the path) or by .py path."""
    if spec.endswith(".py") or os.sep in spec:
        if not os.path.isfile(spec):
            raise CommandFailed(f"--activities {spec}: no such file", EXIT_USAGE)
        name = os.path.splitext(os.path.basename(spec))[0]
        module_spec = importlib.util.spec_from_file_location(name, spec)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 (the user's module: say what broke, in one line)
            raise CommandFailed(f"--activities {spec}: cannot load: {type(exc).__name__}: {exc}", EXIT_USAGE) from None
        return module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(spec)
    except Exception as exc:  # noqa: BLE001 (ImportError, or whatever the module raises while loading)
        raise CommandFailed(f"--activities {spec}: cannot import: {type(exc).__name__}: {exc}", EXIT_USAGE) from None


def _cmd_worker(args: argparse.Namespace) -> int:
    from raftflow.cluster.worker.worker import Worker  # noqa: PLC0415

    modules = [import_activities(spec) for spec in args.activities]
    addresses = endpoints(args)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("grpc").setLevel(logging.WARNING)  # its debug lines are about gRPC, not tasks

    async def main() -> int:
        async with AsyncClient(addresses, timeout=args.timeout, credentials=credentials(args)) as client:
            try:
                worker = Worker(
                    client, task_queue=args.task_queue, activities=modules, concurrency=args.concurrency,
                    identity=args.identity, pollers=args.pollers,
                )
            except (TypeError, ValueError) as exc:
                raise CommandFailed(str(exc), EXIT_USAGE) from None
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, worker.shutdown)
            print(f"worker {worker.identity}: task queue {args.task_queue}, activities "
                  f"{', '.join(worker.registry.names())}, concurrency {args.concurrency}", flush=True)
            await worker.run()
            print(f"worker stopped: {worker.completed} completed, {worker.failed} failed", flush=True)
        return 0

    try:
        return asyncio.run(main())
    except RaftflowError as exc:
        raise CommandFailed(str(exc)) from None
