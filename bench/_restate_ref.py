"""Restate reference figures for bench/workflow_bench.py: the same order saga on
Restate, measured in the same run on the same machine, on 1 node and on 3.

What is measured
----------------
The server is `restate-server` from the npm package @restatedev/restate-server (its
binary ships in a platform package such as @restatedev/restate-server-linux-x64),
installed by bench/_install_restate.py under ~/.cache/raftflow-bench/restate (outside
the repository; RESTATE_SERVER names another binary). Each node runs on 127.0.0.1 with
free ports and its own data directory in the bench's temp directory, with Restate's
defaults otherwise (RocksDB WAL fsync on, 24 partitions). 3 nodes: one cluster (node 1
provisions it, the others join through the metadata servers of all three),
default-replication 2, so each log record is on 2 of the 3 nodes before it counts.
Nothing is downloaded here: a missing binary or SDK is one line and the column is
skipped.

The workflow is a Restate Python SDK (`restate-sdk`) workflow: reserve_inventory,
charge_card, ship_order as `ctx.run` steps (journaled, retried by the SDK with the same
attempts and back-off as the other systems); when ship fails for good (a
TerminalError), run the recorded undos (refund_card, then release_inventory) in reverse
and finish "compensated". The steps call the same plain functions as raftflow's
(bench/_saga_activities.py). One service process (this file run as `worker`: hypercorn
serving the SDK's ASGI app over h2c), with a thread pool of `concurrency` for the sync
steps, as the other workers run them; the client is in the calling process: aiohttp
POSTs to `/<workflow>/<id>/run` on the ingress, which answers when the saga has
finished (spread round robin over the nodes' ingresses).

- `measure(...)`: one-saga latency (one call after another) and throughput at N
  concurrent sagas (N calls at once; sagas/s is N over first start to last result),
  each saga's start-to-result latency.
- `kill_run(...)` (measure's `kill_sagas`, 3 nodes): N sagas at once, and once a third
  have closed the node leading the most partitions (the metadata server's leader among
  equals; both read from the nodes' Prometheus metrics before the load) is SIGKILLed.
  Restate 1.7 on 3 nodes with replication 2 is built to survive that: the metadata
  server is a Raft group of all three, each partition's log is on 2 log servers and
  each partition has a follower processor that takes over as leader, the logs the dead
  node sequenced are sealed and continue on the others. A call whose ingress died goes
  to the next one (409, the run was accepted already: it attaches to it). The close
  times are Restate's own (sys_invocation.completed_at, through the SQL endpoint of a
  surviving node), so the stall is read as for raftflow.

    .venv/bin/python bench/_restate_ref.py run --nodes 1 --sequential 50 --concurrent 200
    .venv/bin/python bench/_restate_ref.py run --nodes 3 --sequential 5 --concurrent 200 --kill 1000
"""

import argparse
import asyncio
import concurrent.futures
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta

try:
    import restate
except ImportError:
    restate = None
try:
    import aiohttp
except ImportError:
    aiohttp = None

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]  # this checkout's raftflow, and _saga_activities

from _report import percentile  # noqa: E402
from _temporal_ref import _orders, _read_line, _stop, _tail, binary_version  # noqa: E402 (process helpers both references share)
HOST = "127.0.0.1"
INSTALL_DIR = os.path.expanduser("~/.cache/raftflow-bench/restate")
BINARY_IN_PREFIX = "node_modules/@restatedev/restate-server-{platform}/bin/restate-server"
SERVER_START_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 60.0  # registration and a first saga through every ingress
READY_TRY_S = 10.0  # one such saga; then the processes are checked and it is tried again
WORKER_START_TIMEOUT_S = 30.0
STDERR_TAIL_BYTES = 2000
RETRY_PAUSE_S = 0.1  # before a call's next try on another ingress
SERVICE_NAME = "BenchOrderSaga"
MISSING_SDK = ("restate-sdk, hypercorn or aiohttp is not installed: run "
               "`.venv/bin/pip install restate-sdk hypercorn aiohttp` (setup.cfg's `bench` extra)")
MISSING_BINARY = ("restate-server is not installed: run `.venv/bin/python bench/_install_restate.py` "
                  f"(npm @restatedev/restate-server into {INSTALL_DIR}) or set RESTATE_SERVER")


class RestateUnavailable(RuntimeError):
    """A server, the cluster or the service could not be started; the message says why."""


def _platform() -> str:
    machine = os.uname().machine
    return f"{sys.platform}-{ {'x86_64': 'x64', 'aarch64': 'arm64'}.get(machine, machine)}"


def find_binary() -> str | None:
    """RESTATE_SERVER, else the installer's npm prefix, else PATH."""
    named = os.environ.get("RESTATE_SERVER")
    if named:
        return named if os.access(named, os.X_OK) else None
    installed = os.path.join(INSTALL_DIR, BINARY_IN_PREFIX.format(platform=_platform()))
    if os.access(installed, os.X_OK):
        return installed
    return shutil.which("restate-server")


def available() -> str | None:
    """None when the SDK, the ASGI server, aiohttp and the binary are there; else why, one line."""
    if restate is None or aiohttp is None:
        return MISSING_SDK
    try:
        import hypercorn  # noqa: F401, PLC0415
    except ImportError:
        return MISSING_SDK
    if find_binary() is None:
        return MISSING_BINARY
    return None


# --- the saga, Restate's way -------------------------------------------------------------

if restate is not None:
    import _saga_activities as saga

    def _options(max_attempts: int, max_interval_s: float | None) -> "restate.RunOptions":
        return restate.RunOptions(
            type_hint=dict, max_attempts=max_attempts, initial_retry_interval=timedelta(seconds=0.1),
            retry_interval_factor=2.0,
            max_retry_interval=None if max_interval_s is None else timedelta(seconds=max_interval_s))

    RETRY = _options(5, 1.0)  # as raftflow's and Temporal's RETRY
    SHIP_RETRY = _options(3, None)

    def ship(data: dict) -> dict:
        try:
            return saga.ship(data)
        except saga.AddressInvalid as exc:
            raise restate.TerminalError(str(exc)) from None  # not retried: compensate

    order_saga = restate.Workflow(SERVICE_NAME)

    @order_saga.main()
    async def run(ctx: restate.WorkflowContext, order: dict) -> str:
        """reserve -> charge -> ship; a failed step undoes the completed ones in reverse."""
        undo = []
        try:
            reservation = await ctx.run_typed("reserve_inventory", saga.reserve, RETRY, order)
            undo.append(("release_inventory", saga.release, reservation))
            charged = await ctx.run_typed("charge_card", saga.charge, RETRY,
                                          {"order": order, "reservation": reservation})
            undo.append(("refund_card", saga.refund, charged))
            await ctx.run_typed("ship_order", ship, SHIP_RETRY, {"order": order, "charge": charged})
            return "completed"
        except restate.TerminalError:
            for name, action, argument in reversed(undo):
                await ctx.run_typed(name, action, RETRY, argument)
            return "compensated"

    app = restate.app(services=[order_saga])


# --- processes ---------------------------------------------------------------------------


class Node:
    """One restate-server process; its ports and data directory."""

    def __init__(self, directory: str, node_id: int, ports: list[int]) -> None:
        self.id = node_id
        self.directory = os.path.join(directory, f"node{node_id}")
        os.makedirs(self.directory, exist_ok=True)
        self.fabric_port, self.ingress_port, self.admin_port, self.pgsql_port = ports
        self.fabric = f"http://{HOST}:{self.fabric_port}"
        self.ingress = f"http://{HOST}:{self.ingress_port}"
        self.admin = f"http://{HOST}:{self.admin_port}"
        self.log = os.path.join(self.directory, "restate-server.log")
        self.proc: subprocess.Popen | None = None

    def start(self, cluster_env: dict[str, str]) -> None:
        env = dict(os.environ, **cluster_env, **{
            "RESTATE_NODE_NAME": f"n{self.id}",
            "RESTATE_BASE_DIR": self.directory,
            "RESTATE_BIND_ADDRESS": f"{HOST}:{self.fabric_port}",
            "RESTATE_ADVERTISED_ADDRESS": self.fabric,
            "RESTATE_INGRESS__BIND_ADDRESS": f"{HOST}:{self.ingress_port}",
            "RESTATE_INGRESS__ADVERTISED_INGRESS_ENDPOINT": self.ingress,
            "RESTATE_ADMIN__BIND_ADDRESS": f"{HOST}:{self.admin_port}",
            "RESTATE_ADMIN__QUERY_ENGINE__PGSQL_BIND_ADDRESS": f"{HOST}:{self.pgsql_port}",
            "RESTATE_LISTEN_MODE": "tcp",
            "RESTATE_DISABLE_TELEMETRY": "true",
            "RESTATE_LOG_FILTER": "warn",
        })
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [find_binary() or "restate-server", "--no-logo", "--force-node-id", str(self.id)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.directory,
                start_new_session=True)

    def check_running(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RestateUnavailable(f"restate-server node {self.id} exited ({self.proc.returncode}): {_tail(self.log)}")

    def stop(self) -> None:
        _stop(self.proc)


class Cluster:
    """`nodes` restate-server processes forming one cluster (1: a single node)."""

    def __init__(self, directory: str, nodes: int) -> None:
        from raftflow.cluster.local.launcher import free_ports  # noqa: PLC0415

        ports = free_ports(4 * nodes, HOST)
        self.nodes = [Node(directory, i + 1, ports[4 * i:4 * i + 4]) for i in range(nodes)]
        self.env = {"RESTATE_CLUSTER_NAME": "raftflow-bench",
                    "RESTATE_DEFAULT_REPLICATION": str(min(2, nodes))}
        if nodes > 1:
            addresses = ",".join(f'"{n.fabric}"' for n in self.nodes)
            self.env["RESTATE_METADATA_CLIENT__ADDRESSES"] = f"[{addresses}]"

    async def start(self, session) -> None:
        for node in self.nodes:  # node 1 provisions the cluster; the others join it
            node.start(dict(self.env, RESTATE_AUTO_PROVISION="true" if node.id == 1 else "false"))
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        for node in self.nodes:
            for url in (f"{node.admin}/health", f"{node.ingress}/restate/health"):
                await _wait_ok(session, url, deadline, node.check_running,
                               f"restate-server node {node.id} did not answer {url} in {SERVER_START_TIMEOUT_S:.0f}s")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


async def _wait_ok(session, url: str, deadline: float, check, message: str) -> None:
    while True:
        check()
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise RestateUnavailable(message)
        await asyncio.sleep(0.2)  # polling another process's start-up


def start_worker(directory: str, port: int, concurrency: int) -> subprocess.Popen:
    """The service process; returns once it serves (it prints a `ready` line)."""
    log_path = os.path.join(directory, "restate-worker.log")
    log = open(log_path, "ab")  # noqa: SIM115 (the child keeps it)
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "worker", "--port", str(port), "--concurrency", str(concurrency)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True,
    )
    log.close()
    line = _read_line(proc, WORKER_START_TIMEOUT_S)
    if line != "ready":
        _stop(proc)
        raise RestateUnavailable(f"the Restate service process did not start: {line or _tail(log_path)}")
    return proc


async def _run_worker(port: int, concurrency: int) -> None:
    import hypercorn.asyncio  # noqa: PLC0415
    import hypercorn.config  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=concurrency))  # the sync steps
    config = hypercorn.config.Config()
    config.bind = [f"{HOST}:{port}"]
    config.loglevel = "WARNING"
    config.keep_alive_timeout = 600
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.ensure_future(hypercorn.asyncio.serve(app, config, shutdown_trigger=stop.wait))
    await asyncio.sleep(0.5)  # hypercorn has no started hook; the caller's registration retries anyway
    print("ready", flush=True)
    await serving


async def register(session, admin: str, service_url: str, deadline: float, check) -> None:
    """The deployment, by the admin API; retried while a new cluster settles."""
    last = ""
    while time.monotonic() < deadline:
        check()
        try:
            async with session.post(f"{admin}/deployments", json={"uri": service_url, "force": True}) as response:
                if response.status in (200, 201):
                    return
                last = f"{response.status}: {(await response.text())[:300]}"
        except aiohttp.ClientError as exc:
            last = repr(exc)
        await asyncio.sleep(0.5)  # a cluster still electing its partition leaders
    raise RestateUnavailable(f"registering {service_url} at {admin} failed: {last}")


# --- measuring ---------------------------------------------------------------------------


class Client:
    """Start-and-wait calls over aiohttp, round robin over the ingresses. A call whose
    ingress fails (refused, reset, a 5xx) goes on to the next ingress until its deadline,
    as raftflow's client moves to another node; a run the cluster already accepted (409:
    the workflow method was already invoked, by a node that then failed) is attached
    to instead, so the call gets that saga's outcome rather than starting a second one."""

    def __init__(self, session, ingresses: list[str], timeout: float) -> None:
        self.session = session
        self.ingresses = ingresses
        self.timeout_s = timeout
        self.calls = 0
        self.retries = 0  # tries on another ingress, over all calls

    async def one(self, order: dict, workflow_id: str) -> tuple[float, float, str]:
        """(started, finished) perf_counter times and the outcome of one saga ("open":
        no outcome by the deadline)."""
        at = self.calls
        self.calls += 1
        started = time.perf_counter()
        deadline = started + self.timeout_s
        method, path = "POST", f"/{SERVICE_NAME}/{workflow_id}/run"
        outcome = "open"
        while (left := deadline - time.perf_counter()) > 0:
            status, body = await self._request(self.ingresses[at % len(self.ingresses)], method, path, order, left)
            if status == 200:
                outcome = json.loads(body)
                break
            if status == 409 and method == "POST":
                method, path = "GET", f"/restate/workflow/{SERVICE_NAME}/{workflow_id}/attach"
                continue
            if status is not None and status < 500:
                outcome = f"error {status}: {body[:200]}"
                break
            self.retries += 1
            at += 1
            await asyncio.sleep(min(RETRY_PAUSE_S, max(0.0, deadline - time.perf_counter())))
        return started, time.perf_counter(), outcome

    async def _request(self, ingress: str, method: str, path: str, order: dict,
                       left_s: float) -> tuple[int | None, str]:
        """The status and body, or None and why when no answer came (refused, reset, timed out)."""
        try:
            async with self.session.request(method, ingress + path, json=order if method == "POST" else None,
                                            timeout=aiohttp.ClientTimeout(total=left_s)) as response:
                return response.status, await response.text()
        except asyncio.TimeoutError:
            return None, "timed out"
        except aiohttp.ClientError as exc:
            return None, repr(exc)


def _wrong(orders: list[dict], outcomes: list[str]) -> dict:
    wrong = [o for order, o in zip(orders, outcomes) if o != saga.EXPECTED[order["fail_at_ship"]]]
    return {"wrong": len(wrong), "open": sum(o == "open" for o in outcomes), "wrong_examples": sorted(set(wrong))[:3]}


async def sequential(client: Client, orders: list[dict], prefix: str) -> dict:
    results = [await client.one(o, f"{prefix}-{o['order_id']}") for o in orders]
    return {"sagas": len(orders), "latencies_s": [f - s for s, f, _ in results],
            **_wrong(orders, [o for _, _, o in results])}


async def concurrent_batch(client: Client, orders: list[dict], prefix: str) -> dict:
    first = time.perf_counter()
    results = await asyncio.gather(*(client.one(o, f"{prefix}-{o['order_id']}") for o in orders))
    last = max(finished for _, finished, _ in results)
    return {
        "sagas": len(orders), "seconds": last - first, "sagas_per_s": len(orders) / (last - first),
        "latencies_s": [f - s for s, f, _ in results], **_wrong(orders, [o for _, _, o in results]),
    }


async def _ready(client: Client, make_orders, deadline: float, check) -> None:
    """A first saga through every ingress: a new cluster's partitions may still be electing."""
    last = ""
    for i, ingress in enumerate(client.ingresses):
        pinned = Client(client.session, [ingress], timeout=READY_TRY_S)  # this ingress, not the next one
        while True:
            check()
            _, _, outcome = await pinned.one(make_orders(1)[0], f"ready-{i}-{time.monotonic_ns()}")
            if outcome in saga.EXPECTED.values():
                break
            last = outcome
            if time.monotonic() > deadline:
                raise RestateUnavailable(f"no saga finished through the ingress in {READY_TIMEOUT_S:.0f}s: {last}")
            await asyncio.sleep(0.5)  # the cluster settling


# --- a node killed in the middle of a run --------------------------------------------------


async def roles(session, nodes: list[Node]) -> dict:
    """What each answering node's Prometheus metrics say: how many partitions it leads,
    and which node leads the metadata server (the Raft group holding the cluster's
    configuration), as most of them see it."""
    partition_leaders: dict[int, int] = {}
    metadata_votes: list[int] = []
    for node in nodes:
        try:
            async with session.get(f"{node.fabric}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as response:
                text = await response.text()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            continue
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if name.startswith("restate_num_active_partition_leaders{"):
                partition_leaders[node.id] = int(float(value))
            elif name.startswith("restate_metadata_server_replicated_leader_id{"):
                metadata_votes.append(int(float(value)))
    metadata_leader = max(set(metadata_votes), key=metadata_votes.count) if metadata_votes else None
    return {"partition_leaders": partition_leaders, "metadata_leader": metadata_leader}


def victim(found: dict, nodes: list[Node]) -> int:
    """The node whose loss costs most: the one leading the most partitions, the metadata
    leader among equals (a fresh cluster spreads the 24 partitions' leaders evenly)."""
    leaders = found["partition_leaders"]
    return max((n.id for n in nodes), key=lambda i: (leaders.get(i, 0), i == found["metadata_leader"], -i))


async def close_times(session, admin: str, prefix: str) -> dict[str, float]:
    """Each finished saga's close time (ms since the epoch, this machine's clock) as
    Restate records it (sys_invocation.completed_at), by workflow id."""
    query = ("SELECT target_service_key, completed_at FROM sys_invocation "
             f"WHERE target_service_name = '{SERVICE_NAME}' AND target_service_key LIKE '{prefix}-%' "
             "AND completed_at IS NOT NULL")
    async with session.post(f"{admin}/query", json={"query": query}, headers={"accept": "application/json"},
                            timeout=aiohttp.ClientTimeout(total=60)) as response:
        if response.status != 200:
            raise RestateUnavailable(f"the close-time query at {admin} answered {response.status}: "
                                     f"{(await response.text())[:200]}")
        rows = (await response.json())["rows"]
    return {r["target_service_key"]: datetime.fromisoformat(r["completed_at"]).timestamp() * 1000 for r in rows}


async def kill_run(session, cluster: Cluster, ingresses: list[str], orders: list[dict], prefix: str,
                   kill_after: int, wait_s: float) -> dict:
    """A batch of `orders` started at once, one node SIGKILLed once `kill_after` sagas
    have closed; the calls move to the surviving ingresses. The figures: each saga's
    close time as Restate records it (or as the client saw it, when the query fails),
    the kill's time and node, the outcomes."""
    client = Client(session, ingresses, timeout=wait_s)
    before = await roles(session, cluster.nodes)  # asked before the load, not behind it
    node = next(n for n in cluster.nodes if n.id == victim(before, cluster.nodes))
    reached = asyncio.Event()
    closed = 0
    leaders = before["partition_leaders"]
    held = f"{leaders.get(node.id, '?')} of {sum(leaders.values())} partition leaders"
    kill: dict = {"node": node.id, **before,
                  "held": held + (", the metadata leader" if before["metadata_leader"] == node.id else "")}

    async def saga_call(order: dict) -> tuple[float, float, str]:
        nonlocal closed
        result = await client.one(order, f"{prefix}-{order['order_id']}")
        closed += 1
        if closed >= kill_after:
            reached.set()
        return result

    async def killer() -> None:
        await reached.wait()
        os.kill(node.proc.pid, signal.SIGKILL)
        kill.update(wall_ms=time.time() * 1000, closed=closed)

    killing = asyncio.ensure_future(killer())
    wall_offset_ms = (time.time() - time.perf_counter()) * 1000
    first = time.perf_counter()
    results = await asyncio.gather(*(saga_call(o) for o in orders))
    last = max(finished for _, finished, _ in results)
    await killing
    survivors = [n for n in cluster.nodes if n is not node]
    ids = [f"{prefix}-{o['order_id']}" for o in orders]
    try:
        recorded = await close_times(session, survivors[0].admin, prefix)
        closes, source = sorted(recorded[i] for i in ids if i in recorded), "restate (sys_invocation.completed_at)"
        last_closed = max(recorded, key=recorded.get, default=None)
    except (RestateUnavailable, aiohttp.ClientError, asyncio.TimeoutError, KeyError, ValueError) as exc:
        closes, source = sorted(f * 1000 + wall_offset_ms for _, f, o in results if o != "open"), f"client ({exc!r})"
        last_closed = ids[max(range(len(ids)), key=lambda k: results[k][1])]
    return {
        "sagas": len(orders), "seconds": last - first, "sagas_per_s": len(orders) / (last - first),
        "latencies_s": [f - s for s, f, _ in results], "closes_ms": closes, "closes_from": source,
        "last_closed": last_closed, "kill": kill, "retries": client.retries,
        "after": await roles(session, survivors), **_wrong(orders, [o for _, _, o in results]),
    }


async def measure(workdir: str, make_orders, *, nodes: int, sequential_count: int, concurrencies: tuple[int, ...],
                  repeats: int, worker_concurrency: int, kill_sagas: int = 0, kill_after_fraction: float = 1 / 3,
                  kill_wait_s: float = 60.0, say=lambda text: None) -> dict:
    """Every Restate figure on `nodes` nodes; raises RestateUnavailable when it cannot run.
    `make_orders(n)` gives n orders (the same mix the raftflow side runs). With
    `kill_sagas` and more than one node, last: a run of that many sagas in which a node
    is SIGKILLed once `kill_after_fraction` of them have closed (kill_run), each saga
    waited for at most `kill_wait_s`."""
    missing = available()
    if missing:
        raise RestateUnavailable(missing)
    from raftflow.cluster.local.launcher import free_ports  # noqa: PLC0415

    directory = os.path.join(workdir, f"restate-{nodes}")
    os.makedirs(directory, exist_ok=True)
    cluster = Cluster(directory, nodes)
    worker = None
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            await cluster.start(session)
            say(f"restate: {nodes} node(s), ingress {', '.join(n.ingress for n in cluster.nodes)}")
            port = free_ports(1, HOST)[0]
            worker = await asyncio.to_thread(start_worker, directory, port, worker_concurrency)

            def check() -> None:
                for node in cluster.nodes:
                    node.check_running()
                if worker.poll() is not None:
                    raise RestateUnavailable(f"the Restate service process exited: {_tail(os.path.join(directory, 'restate-worker.log'))}")

            deadline = time.monotonic() + READY_TIMEOUT_S
            await register(session, cluster.nodes[0].admin, f"http://{HOST}:{port}", deadline, check)
            client = Client(session, [n.ingress for n in cluster.nodes], timeout=300.0)
            await _ready(client, make_orders, deadline, check)
            await sequential(client, make_orders(20), "warmup")
            results: dict = {"nodes": nodes, "replication": min(2, nodes), "version": _version(),
                             "sdk_version": importlib.metadata.version("restate-sdk")}
            results["sequential"] = await sequential(client, make_orders(sequential_count), "seq")
            say(f"  restate {nodes}n: one saga p50 {percentile(results['sequential']['latencies_s'], 0.5) * 1000:.1f} ms")
            results["throughput"] = {}
            for n in concurrencies:
                runs = []
                for r in range(repeats):
                    runs.append(await concurrent_batch(client, make_orders(n), f"c{n}-{r}"))
                    say(f"  restate {nodes}n: {n} concurrent, run {r + 1}: {runs[-1]['sagas_per_s']:.1f} sagas/s"
                        + (f", {runs[-1]['wrong']} wrong" if runs[-1]["wrong"] else ""))
                results["throughput"][n] = runs
            results["calls_retried"] = client.retries  # on another ingress: none while every node runs
            if kill_sagas and nodes > 1:
                results["kill"] = k = await kill_run(
                    session, cluster, client.ingresses, make_orders(kill_sagas), "kill",
                    max(1, int(kill_sagas * kill_after_fraction)), kill_wait_s)
                say(f"  restate {nodes}n: node {k['kill']['node']} SIGKILLed after {k['kill']['closed']} of "
                    f"{kill_sagas} closed; {k['wrong']} wrong ({k['open']} open), {k['retries']} calls retried")
            return results
    finally:
        _stop(worker)
        cluster.stop()


def _version() -> str:
    return binary_version(find_binary() or "restate-server")


# --- command line ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="serve the saga service (the bench starts it)")
    worker.add_argument("--port", type=int, required=True)
    worker.add_argument("--concurrency", type=int, default=100)
    run_ = sub.add_parser("run", help="measure and print JSON")
    run_.add_argument("--nodes", type=int, default=1)
    run_.add_argument("--sequential", type=int, default=50)
    run_.add_argument("--concurrent", default="200")
    run_.add_argument("--repeats", type=int, default=1)
    run_.add_argument("--concurrency", type=int, default=100)
    run_.add_argument("--kill", type=int, default=0, help="sagas in a run with a node SIGKILLed (--nodes > 1)")
    args = parser.parse_args(argv)
    if args.command == "worker":
        asyncio.run(_run_worker(args.port, args.concurrency))
        return 0
    with tempfile.TemporaryDirectory(prefix="restate-bench-") as workdir:
        try:
            results = asyncio.run(measure(
                workdir, _orders, nodes=args.nodes, sequential_count=args.sequential,
                concurrencies=tuple(int(x) for x in args.concurrent.split(",")), repeats=args.repeats,
                worker_concurrency=args.concurrency, kill_sagas=args.kill,
                say=lambda text: print(text, file=sys.stderr, flush=True),
            ))
        except RestateUnavailable as exc:
            print(f"restate: skipped: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
