"""Workflows: the order saga on a 3-node raftflow cluster, next to the Temporal dev
server and Restate (1 and 3 nodes) measured in the same run on the same machine.

    .venv/bin/python bench/workflow_bench.py            # full: 200 sequential, 3 repeats
    .venv/bin/python bench/workflow_bench.py --quick    # under about two minutes
    .venv/bin/python bench/workflow_bench.py --quick --profile /tmp/prof   # + py-spy
    .venv/bin/python bench/workflow_bench.py --quick --only restate         # Restate alone

The saga (bench/_saga_activities.py): reserve_inventory -> charge_card -> ship_order,
undone by refund_card then release_inventory; activities are plain functions that do
no I/O. A seeded 10% of the orders fail at ship for good and are compensated. raftflow
runs 3 node processes on 127.0.0.1 (fsync on, the default), ONE worker process
(`raftflow worker`, as `raftflow demo-saga` starts it) and the client in this process
(one AsyncClient: one session, commands batched on one stream; each wait is a long
poll).

Measured, each saga from the moment its start is sent to the moment its wait returns:
1. one saga alone: start, wait, the next (p50/p99);
2. throughput at 200 and 1,000 concurrent sagas: start N at once, wait for all;
   sagas/s = N / (first start to last close); repeated, min/median/max;
3. the leader SIGKILLed once a third of a 1,000-saga run has closed: the stall
   (the gap in workflow closes, by the close times the log records) and whether every
   saga closed with its outcome (completed, or compensated for the failing ones);
4. the same 1 and 2 on Temporal (bench/_temporal_ref.py), skipped with one line when
   temporalio or the `temporal` binary is missing or does not start; no kill (the dev
   server is one process: a kill is a total outage, said in the table);
5. the same 1 and 2 on Restate, 1 node and 3 (bench/_restate_ref.py; the server from
   npm by bench/_install_restate.py), skipped with one line likewise; on 3 nodes (log
   and partition replication 2) also 3: the node leading the most partitions SIGKILLed
   once a third of the run has closed, the calls moving to the other ingresses, with
   the close times Restate records. 1,000 sagas, or 300 with --quick (Restate recovers
   in seconds whatever the size; the smaller run keeps quick mode short).

--json FILE: `raftflow`, `temporal` and `restate` hold each system's figures, or a
string saying why it was skipped. Temporal's: {"version", "sdk_version",
"sequential": {"latencies_s": [...], "wrong"}, "throughput": {"200": [run, ...]}}, a
run being {"sagas", "seconds", "sagas_per_s", "latencies_s", "wrong", "open"}.
Restate's: {"1": <the same shape, plus "nodes" and "replication">, "3": ...}, keyed by
node count, each a string instead when that size could not run. "kill" in each system's
figures: raftflow's and Restate 3 nodes' kill run ({"sagas", "kill": {"node", "held",
"wall_ms", "closed"}, "closes_ms", "stall_ms", "longest_gap_after_ms",
"last_close_after_ms", "wrong", "open", ...}), or a string saying why not (Temporal,
Restate on 1 node).

Also in the same run: this machine's floor (fdatasync, a loopback gRPC round trip),
CPU per saga in each process and Raft log entries per saga.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [ROOT, BENCH]

import _saga_activities as saga  # noqa: E402
from _report import percentile  # noqa: E402
from raftflow.cluster.local import launcher  # noqa: E402
from raftflow.cluster.client import AsyncClient, RaftflowError  # noqa: E402
from raftflow.raft.types import Role  # noqa: E402
from cluster_bench import _grpc_rtt, fsync_floor  # noqa: E402

SEED = 20261126
FAIL_FRACTION = 0.10  # orders that fail at ship and are compensated
CONCURRENCY = (200, 1000)
KILL_SAGAS = 1000
KILL_AFTER_FRACTION = 1 / 3  # of the kill run's sagas closed
QUICK_RESTATE_KILL_SAGAS = 300  # --quick: enough to span Restate's recovery, seconds shorter than 1,000
QUICK_KILL_WAIT_S = 60.0  # --quick: a Restate that never recovers still ends inside run_all's limit
NO_KILL = {  # the systems a kill would simply stop: said in the table, not measured
    "temporal": "not applicable: the dev server is one process, so a kill stops every saga until it restarts",
    "restate 1": "not applicable: one node, so a kill stops every saga until it restarts",
}
WORKER_CONCURRENCY = 100  # activity slots in the one worker process, on both systems
WARMUP_SAGAS = 20
WAIT_TIMEOUT_S = 120.0  # one saga, start to close; past it the saga counts as open
AIMS = {"sagas_per_s": 400.0, "one_saga_p50_ms": 10.0, "kill_stall_s": 1.0}
ISSUE_REFERENCE = [  # measured on this machine before, not in this run (from the issue)
    ("Temporal dev server", "13", "199"),
    ("Restate, 3 nodes", "138", "17"),
    ("Restate, 1 node", "313", "-"),
]
RESTATE_NODES = (1, 3)
RESTATE_AIM_RATIO = 2.0  # raftflow's sagas/s over Restate's on 3 nodes (issue 7)


def make_orders(n: int, rng: random.Random) -> list[dict]:
    """n orders, round(n * FAIL_FRACTION) of them (chosen by `rng`) failing at ship."""
    failing = set(rng.sample(range(n), round(n * FAIL_FRACTION)))
    return [{"order_id": i, "items": 1 + i % 3, "amount": 10 * (1 + i % 5), "fail_at_ship": i in failing}
            for i in range(n)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- raftflow ----------------------------------------------------------------------------


class RaftflowSaga:
    """A 3-node cluster with the saga registered and one worker process polling."""

    def __init__(self, directory: str, worker_concurrency: int, **settings) -> None:
        self.directory = directory
        self.cluster = launcher.create(os.path.join(directory, "cluster"), 3, 0, **settings)
        self.worker_log = os.path.join(directory, "worker.log")
        self.worker_concurrency = worker_concurrency
        self.worker: subprocess.Popen | None = None
        self.client: AsyncClient | None = None

    async def __aenter__(self) -> RaftflowSaga:
        try:
            for m in self.cluster.members:
                launcher.start_node(self.cluster, m)
            self.client = AsyncClient(self.cluster.endpoints, credentials=self.cluster.credentials(), timeout=30.0,
                                      no_leader_timeout=10.0)
            await self.leader(timeout=30.0)
            await self.client.workflows.register(saga.SAGA)
            with open(self.worker_log, "ab") as log:
                self.worker = subprocess.Popen(
                    [sys.executable, "-m", "raftflow", "worker", "--activities",
                     os.path.join(BENCH, "_saga_activities.py"), "--task-queue", saga.TASK_QUEUE,
                     "--concurrency", str(self.worker_concurrency), "--endpoints", ",".join(self.cluster.endpoints),
                     "--dir", self.cluster.dir, "--timeout", "10"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
                )
        except BaseException:  # no leader (or Ctrl-C): __aexit__ is not called, so stop what started
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        if self.client is not None:
            await self.client.close()
        if self.worker is not None:
            launcher.stop_process(self.worker)
        for m in self.cluster.members:
            if launcher.process_alive(m.pid):
                launcher.stop_node(self.cluster, m, kill=True)

    async def leader(self, timeout: float = 10.0) -> int:
        """The id of the leader every running node agrees on."""
        deadline = time.monotonic() + timeout
        while True:
            answers = [a for _, a in await self.client.cluster_status(timeout=0.5) if not isinstance(a, str)]
            leaders = {a.leader_id for a in answers}
            if len(leaders) == 1 and 0 not in leaders and any(a.role is Role.LEADER for a in answers):
                return leaders.pop()
            if time.monotonic() > deadline:
                raise launcher.LauncherError(f"no leader agreed on after {timeout:.0f}s")
            await asyncio.sleep(0.05)  # polling the nodes' status over RPC

    async def applied_index(self, node_id: int) -> int:
        return (await self.client.status(self.cluster.member(node_id).address)).applied_index

    async def one(self, order: dict, workflow_id: str, on_close=None) -> dict:
        """Start one saga and wait for it: its timings (perf_counter) and outcome."""
        started = time.perf_counter()
        try:
            await self.client.workflows.start(saga.TYPE_NAME, workflow_id=workflow_id, input=order)
            outcome = await self.client.workflows.wait(workflow_id, timeout=WAIT_TIMEOUT_S)
            status, close_ms = outcome.status.value, outcome.close_ms
        except TimeoutError:
            status, close_ms = "open", None
        except RaftflowError as exc:
            status, close_ms = f"error: {type(exc).__name__}: {exc}", None
        finished = time.perf_counter()
        if on_close is not None:
            on_close()
        return {"workflow_id": workflow_id, "started": started, "finished": finished, "status": status,
                "close_ms": close_ms, "expected": saga.EXPECTED[order["fail_at_ship"]]}

    async def sequential(self, orders: list[dict], prefix: str) -> dict:
        results = [await self.one(o, f"{prefix}-{o['order_id']}") for o in orders]
        return {"sagas": len(orders), "latencies_s": [r["finished"] - r["started"] for r in results],
                **_outcomes(results)}

    async def batch(self, orders: list[dict], prefix: str, on_close=None) -> dict:
        """All of `orders` started at once; CPU and log entries per saga alongside."""
        pids = self._pids()
        leader = await self.leader()
        applied_before = await self.applied_index(leader)
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        first = time.perf_counter()
        results = await asyncio.gather(*(self.one(o, f"{prefix}-{o['order_id']}", on_close) for o in orders))
        last = max(r["finished"] for r in results)
        cpu = {name: (cpu_seconds(pid) - cpu_before[name]) * 1000 / len(orders) for name, pid in pids.items()}
        try:
            entries = (await self.applied_index(leader) - applied_before) / len(orders)
        except RaftflowError:
            entries = float("nan")  # the leader was killed in this run
        closes = sorted(r["close_ms"] for r in results if r["close_ms"] is not None)
        return {
            "sagas": len(orders), "seconds": last - first, "sagas_per_s": len(orders) / (last - first),
            "latencies_s": [r["finished"] - r["started"] for r in results], "cpu_ms_per_saga": cpu,
            "entries_per_saga": entries, "longest_close_gap_ms": max(map(int.__sub__, closes[1:], closes[:-1]), default=0),
            "closes_ms": closes, "last_closed": max(results, key=lambda r: r["close_ms"] or 0)["workflow_id"],
            **_outcomes(results),
        }

    def _pids(self) -> dict[str, int]:
        pids = {f"node {m.id}": m.pid for m in self.cluster.members if launcher.process_alive(m.pid)}
        pids["worker"] = self.worker.pid
        pids["client (this process)"] = os.getpid()
        return pids


def _outcomes(results: list[dict]) -> dict:
    wrong = [r for r in results if r["status"] != r["expected"]]
    return {"wrong": len(wrong), "open": sum(r["status"] == "open" for r in results),
            "wrong_examples": sorted({r["status"] for r in wrong})[:3]}


async def leader_kill_run(rf: RaftflowSaga, orders: list[dict]) -> dict:
    """A batch in which the leader is SIGKILLed once a third has closed."""
    threshold = max(1, int(len(orders) * KILL_AFTER_FRACTION))
    reached = asyncio.Event()
    closed = 0

    def on_close() -> None:
        nonlocal closed
        closed += 1
        if closed >= threshold:
            reached.set()

    # The victim is the leader at the start of the run: asking again at the moment of
    # the kill would queue a status call behind a thousand long polls and kill late.
    victim = await rf.leader()
    kill: dict = {"node": victim, "held": "the leader"}

    async def killer() -> None:
        await reached.wait()
        os.kill(rf.cluster.member(victim).pid, signal.SIGKILL)
        kill.update(wall_ms=time.time() * 1000, closed=closed)

    killing = asyncio.ensure_future(killer())
    result = await rf.batch(orders, "kill", on_close)
    await killing
    result["kill"] = kill
    result.update(stall_figures(result["closes_ms"], kill["wall_ms"]))
    result["new_leader"] = await rf.leader(timeout=30.0)
    history = await rf.client.workflows.history(result["last_closed"])
    result["last_closed_history"] = [
        f"{e.time_ms - kill['wall_ms']:+.0f} ms {e.type.value}"
        + "".join(f" {k}={getattr(e, k)}" for k in ("step", "attempt", "error_type") if getattr(e, k) is not None)
        for e in history
    ]
    assert result["new_leader"] != victim, ("the killed node leads again?", victim)
    return result


def stall_figures(closes_ms: list[int], kill_ms: float) -> dict:
    """From the close times the log recorded (the leaders' clocks, this machine's):
    `stall_ms`, the gap in closes that spans the kill; `first_close_after_ms`, kill to
    the next close; `longest_gap_after_ms`, the longest gap from then on; `last_close_after_ms`,
    kill to the run's last close."""
    before = [c for c in closes_ms if c <= kill_ms]
    after = [c for c in closes_ms if c > kill_ms]
    if not after:
        return {"stall_ms": float("inf"), "first_close_after_ms": float("inf"), "longest_gap_after_ms": float("inf"),
                "last_close_after_ms": float("inf")}
    gaps = [b - a for a, b in zip(after, after[1:])]
    return {
        "stall_ms": after[0] - (before[-1] if before else kill_ms),
        "first_close_after_ms": after[0] - kill_ms,
        "longest_gap_after_ms": max(gaps, default=0),
        "last_close_after_ms": after[-1] - kill_ms,
    }


class Profiler:
    """py-spy recording processes while a run goes on; raw collapsed stacks per process."""

    def __init__(self, directory: str, pids: dict[str, int], rate: int = 100) -> None:
        os.makedirs(directory, exist_ok=True)
        self.procs = []
        for name, pid in pids.items():
            path = os.path.join(directory, re.sub(r"\W+", "-", name).strip("-") + ".txt")
            self.procs.append(subprocess.Popen(
                [os.path.join(os.path.dirname(sys.executable), "py-spy"), "record", "--pid", str(pid), "--rate", str(rate),
                 "--format", "raw", "--nonblocking", "--output", path],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def measure_raftflow(workdir: str, args: argparse.Namespace, rng: random.Random, say) -> dict:
    results: dict = {}
    async with RaftflowSaga(os.path.join(workdir, "raftflow"), args.worker_concurrency) as rf:
        say(f"raftflow: 3 nodes at {', '.join(rf.cluster.endpoints)}, worker pid {rf.worker.pid}")
        await rf.sequential(make_orders(WARMUP_SAGAS, rng), "warmup")
        results["sequential"] = await rf.sequential(make_orders(args.sequential, rng), "seq")
        say(f"  raftflow: one saga p50 {percentile(results['sequential']['latencies_s'], 0.5) * 1000:.1f} ms")
        results["throughput"] = {}
        for n in CONCURRENCY:
            runs = []
            for r in range(args.repeats):
                runs.append(await rf.batch(make_orders(n, rng), f"c{n}-{r}"))
                say(f"  raftflow: {n} concurrent, run {r + 1}: {runs[-1]['sagas_per_s']:,.0f} sagas/s")
            results["throughput"][n] = runs
        if args.profile:
            leader = await rf.leader()
            profiler = Profiler(args.profile, {"leader": rf.cluster.member(leader).pid, "worker": rf.worker.pid,
                                               "client": os.getpid()})
            results["profiled"] = await rf.batch(make_orders(max(CONCURRENCY), rng), "profiled")
            profiler.stop()
            say(f"  raftflow: profiled run {results['profiled']['sagas_per_s']:,.0f} sagas/s; stacks in {args.profile}")
        results["kill"] = await leader_kill_run(rf, make_orders(KILL_SAGAS, rng))
        k = results["kill"]
        say(f"  raftflow: leader kill: stall {k['stall_ms']:.0f} ms, {k['wrong']} sagas with the wrong outcome")
    results["worker_log"] = scan_log(rf.worker_log)
    results["node_logs"] = {m.id: scan_log(m.log) for m in rf.cluster.members}
    return results


LOG_PATTERNS = {
    "errors": re.compile(r"\bERROR\b|Traceback"),
    "warnings": re.compile(r"\bWARNING\b|poll failed"),
    "reports dropped": re.compile(r"dropped, the engine has moved on"),
    "reports not delivered": re.compile(r"not delivered"),
}


def scan_log(path: str) -> dict:
    """How many lines of a process log match each pattern, with the first example."""
    counts = {name: 0 for name in LOG_PATTERNS}
    examples: dict[str, str] = {}
    try:
        with open(path, errors="replace") as f:
            for line in f:
                for name, pattern in LOG_PATTERNS.items():
                    if pattern.search(line):
                        counts[name] += 1
                        examples.setdefault(name, line.strip()[:240])
    except OSError:
        pass
    return {"counts": counts, "examples": examples}


async def measure_temporal(workdir: str, args: argparse.Namespace, rng: random.Random, say) -> dict | str:
    import _temporal_ref as ref  # noqa: PLC0415

    missing = ref.available()
    if missing:
        return missing
    concurrencies = CONCURRENCY if not args.quick else CONCURRENCY[:1]
    try:
        results = await ref.measure(
            workdir, lambda n: make_orders(n, rng), sequential_count=args.reference_sequential,
            concurrencies=concurrencies, repeats=args.repeats, worker_concurrency=args.worker_concurrency, say=say,
        )
    except ref.TemporalUnavailable as exc:
        return str(exc)
    return {**results, "kill": NO_KILL["temporal"]}


async def measure_restate(workdir: str, args: argparse.Namespace, nodes: int, say) -> dict | str:
    import _restate_ref as ref  # noqa: PLC0415

    missing = ref.available()
    if missing:
        return missing
    concurrencies = CONCURRENCY if not args.quick else CONCURRENCY[:1]
    rng = random.Random(args.seed)
    try:
        results = await ref.measure(
            workdir, lambda n: make_orders(n, rng), nodes=nodes, sequential_count=args.reference_sequential,
            concurrencies=concurrencies, repeats=args.repeats, worker_concurrency=args.worker_concurrency,
            kill_sagas=QUICK_RESTATE_KILL_SAGAS if args.quick else KILL_SAGAS,
            kill_after_fraction=KILL_AFTER_FRACTION,
            kill_wait_s=QUICK_KILL_WAIT_S if args.quick else WAIT_TIMEOUT_S, say=say,
        )
    except ref.RestateUnavailable as exc:
        return str(exc)
    if "kill" in results:
        k = results["kill"]
        k.update(stall_figures(k["closes_ms"], k["kill"]["wall_ms"]))
        say(f"  restate {nodes}n: node kill: stall {k['stall_ms']:.0f} ms, longest gap after "
            f"{k['longest_gap_after_ms']:.0f} ms, kill to last close {k['last_close_after_ms'] / 1000:.1f} s")
    else:
        results["kill"] = NO_KILL["restate 1"]
    return results


# --- the report --------------------------------------------------------------------------


def _table(title: str, columns: list[str], rows: list[list[str]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _ms(samples: list[float], q: float) -> float:
    return percentile(samples, q) * 1000


def _rates(runs: list[dict]) -> list[float]:
    return sorted(r["sagas_per_s"] for r in runs)


def _spread(runs: list[dict]) -> str:
    rates = _rates(runs)
    digits = 1 if rates[-1] < 100 else 0
    middle = f"{statistics.median(rates):,.{digits}f}"
    return middle if len(rates) == 1 else f"{middle} ({rates[0]:,.{digits}f}-{rates[-1]:,.{digits}f})"


def _pooled(runs: list[dict]) -> list[float]:
    return [x for r in runs for x in r["latencies_s"]]


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "-"


def report(results: dict) -> str:
    out = []
    floor = results["floor"]
    out.append(f"Machine floor: fdatasync p50 {floor['fsync']['p50_us']:.0f} µs (p99 {floor['fsync']['p99_us']:.0f}), "
               f"loopback gRPC stream round trip p50 {floor['grpc_rtt']['p50_us']:.0f} µs; load average "
               f"{floor['load_average']:.2f} at the start, {results['load_average_end']:.2f} at the end "
               f"({os.cpu_count()} cores: other processes on the machine skew every figure).\n")
    rf = results["raftflow"] if isinstance(results["raftflow"], dict) else None
    if rf is None:
        out.append(f"raftflow: skipped: {results['raftflow']}\n")
    references, notes = _references(results)
    out.extend(notes)
    out.append(_latency_table(rf, references))
    out.append(_throughput_table(rf, references, results["repeats"]))
    out.append(_kill_table(rf, references))
    if rf is not None:
        out.append(_cost_lines(rf))
    out.append(_table(
        "The issue's reference figures (measured on this machine before, not in this run)",
        ["system", "sagas/s", "one saga ms"], [list(r) for r in ISSUE_REFERENCE],
    ))
    if rf is not None:
        out.append(_aims(rf, dict(references).get("Restate, 3 nodes")))
        out.append(_log_lines(rf))
    return "\n".join(out)


def _references(results: dict) -> tuple[list[tuple[str, dict]], list[str]]:
    """The reference systems measured in this run, by their label, and a line about each
    (its versions, or why it was skipped)."""
    references, notes = [], []
    tp = results["temporal"]
    if isinstance(tp, str):
        notes.append(f"Temporal: skipped: {tp}\n")
    else:
        references.append(("Temporal dev server", tp))
        notes.append(f"Temporal: {tp['version']}, Python SDK temporalio {tp['sdk_version']}; one worker process, "
                     f"{results['worker_concurrency']} activity threads (raftflow's worker: as many slots).\n")
    restate = results["restate"]
    if isinstance(restate, str):
        notes.append(f"Restate: skipped: {restate}\n")
        return references, notes
    for nodes, figures in restate.items():
        label = f"Restate, {nodes} node{'s' if int(nodes) > 1 else ''}"
        if isinstance(figures, str):
            notes.append(f"{label}: skipped: {figures}\n")
            continue
        references.append((label, figures))
        notes.append(f"{label}: {figures['version']} (replication {figures['replication']}), Python SDK restate-sdk "
                     f"{figures['sdk_version']} under hypercorn; one service process, {results['worker_concurrency']} "
                     f"threads for the steps.\n")
    return references, notes


def _latency_table(rf: dict | None, references: list[tuple[str, dict]]) -> str:
    ours = rf["sequential"]["latencies_s"] if rf else None
    rows = []
    if rf is not None:
        rows.append(["raftflow (3 nodes, fsync on)", str(len(ours)), f"{_ms(ours, 0.5):.1f}", f"{_ms(ours, 0.99):.1f}",
                     "-", str(rf["sequential"]["wrong"])])
    for label, figures in references:
        theirs = figures["sequential"]["latencies_s"]
        rows.append([label, str(len(theirs)), f"{_ms(theirs, 0.5):.1f}", f"{_ms(theirs, 0.99):.1f}",
                     _ratio(_ms(ours, 0.5), _ms(theirs, 0.5)) if ours else "-", str(figures["sequential"]["wrong"])])
    return _table("One saga alone: start to completion, one after another",
                  ["system", "sagas", "p50 ms", "p99 ms", "raftflow / it (p50)", "wrong outcome"], rows)


def _runs_at(figures: dict, n: int) -> list[dict] | None:
    throughput = figures.get("throughput", {})
    return throughput.get(n) or throughput.get(str(n))


def _throughput_table(rf: dict | None, references: list[tuple[str, dict]], repeats: int) -> str:
    systems = ([("raftflow (3 nodes)", rf)] if rf else []) + references
    sizes = sorted({int(n) for _, figures in systems for n in figures["throughput"]})
    rows = []
    for n in sizes:
        ours = _runs_at(rf, n) if rf else None
        for label, figures in systems:
            runs = _runs_at(figures, n)
            if not runs:
                continue
            latencies = _pooled(runs)
            ratio = "-" if figures is rf or not ours else _ratio(statistics.median(_rates(ours)),
                                                                 statistics.median(_rates(runs)))
            rows.append([f"{n:,}", label, _spread(runs), f"{_ms(latencies, 0.5):.0f} / {_ms(latencies, 0.99):.0f}",
                         ratio, str(sum(r["wrong"] for r in runs))])
    return _table(
        f"Throughput: N sagas started at once, waited for (median of {repeats}; min-max)",
        ["concurrent", "system", "sagas/s", "p50 / p99 ms", "raftflow / it (sagas/s)", "wrong outcome"], rows)


def _kill_table(rf: dict | None, references: list[tuple[str, dict]]) -> str:
    """A row per system: raftflow's leader and Restate's busiest node each SIGKILLed once
    a third of a run has closed; the single-process systems say why they were not."""
    rows = []
    for label, figures in ([("raftflow (3 nodes)", rf)] if rf else []) + references:
        k = figures.get("kill")
        if isinstance(k, str):
            rows.append([label, k] + ["-"] * 7)
        elif isinstance(k, dict):
            ok = "yes" if k["wrong"] == 0 else f"no: {k['wrong']} wrong ({k['open']} open), e.g. {k['wrong_examples']}"
            killed = k["kill"]
            rows.append([label, f"node {killed['node']} ({killed['held']}) after {killed['closed']:,} closed",
                         f"{k['sagas']:,}", f"{k['stall_ms']:.0f}", f"{k['first_close_after_ms']:.0f}",
                         f"{k['longest_gap_after_ms']:.0f}", f"{k['last_close_after_ms'] / 1000:.1f}",
                         f"{k['sagas_per_s']:,.0f}", ok])
    if not rows:
        return ""
    text = _table(
        "A node SIGKILLed in the middle (close times as each system records them)",
        ["system", "killed", "sagas", "stall: gap in closes across the kill, ms", "kill to next close ms",
         "longest gap after ms", "kill to last close s", "sagas/s (whole run)", "every saga right"], rows)
    if rf is not None:
        k = rf["kill"]
        text += (f"\nThe last saga to close on raftflow ({k['last_closed']}), times from the kill: "
                 + "; ".join(k["last_closed_history"]) + "\n")
    return text


def _cost_lines(rf: dict) -> str:
    runs = rf["throughput"][max(rf["throughput"], key=int)]
    cpu: dict[str, list[float]] = {}
    for r in runs:
        for name, ms in r["cpu_ms_per_saga"].items():
            cpu.setdefault(name, []).append(ms)
    parts = ", ".join(f"{name} {statistics.median(v):.2f}" for name, v in cpu.items())
    entries = statistics.median(r["entries_per_saga"] for r in runs)
    gaps = ", ".join(str(r["longest_close_gap_ms"]) for r in runs)
    return (f"Cost at {max(rf['throughput'], key=int):,} concurrent (median of runs): CPU ms per saga: {parts}; "
            f"{entries:.1f} Raft log entries per saga; longest gap between closes without a kill: {gaps} ms.\n")


def _aims(rf: dict, restate3: dict | None) -> str:
    rate = statistics.median(_rates(rf["throughput"][max(rf["throughput"], key=int)]))
    p50 = _ms(rf["sequential"]["latencies_s"], 0.5)
    stall = rf["kill"]["stall_ms"] / 1000
    checks = [
        (f">= {AIMS['sagas_per_s']:.0f} sagas/s on 3 nodes", f"{rate:,.0f} at {max(CONCURRENCY):,} concurrent",
         rate >= AIMS["sagas_per_s"]),
        (f"one saga p50 <= {AIMS['one_saga_p50_ms']:.0f} ms", f"{p50:.1f} ms", p50 <= AIMS["one_saga_p50_ms"]),
        (f"leader kill stall < {AIMS['kill_stall_s']:.0f} s", f"{stall:.2f} s", stall < AIMS["kill_stall_s"]),
    ]
    if restate3 is not None:  # at the largest concurrency both ran
        n = max(int(k) for k in restate3["throughput"] if _runs_at(rf, int(k)))
        ours, theirs = (statistics.median(_rates(_runs_at(f, n))) for f in (rf, restate3))
        checks.append((f"sagas/s >= {RESTATE_AIM_RATIO:.0f}x Restate's on 3 nodes",
                       f"{ours / theirs:.2f}x at {n:,} concurrent ({ours:,.0f} vs {theirs:,.0f})",
                       ours >= RESTATE_AIM_RATIO * theirs))
    return _table("Aims", ["aim", "measured", "met"], [[a, m, "yes" if ok else "NO"] for a, m, ok in checks])


def _log_lines(rf: dict) -> str:
    lines = []
    for name, scan in [("worker", rf["worker_log"])] + [(f"node {i}", s) for i, s in rf["node_logs"].items()]:
        found = {k: v for k, v in scan["counts"].items() if v}
        if found:
            lines.append(f"{name} log: " + ", ".join(f"{v} {k}" for k, v in found.items())
                         + "; first: " + " | ".join(scan["examples"].values()))
    return ("\n".join(lines) if lines else "Worker and node logs: no errors, warnings or dropped reports.") + "\n"


# --- the run -----------------------------------------------------------------------------


def _event_loop_policy() -> None:
    try:  # the same event loop the nodes use when it is installed (raftflow[fast])
        import uvloop  # noqa: PLC0415

        uvloop.install()
    except ImportError:
        pass


SYSTEMS = ("raftflow", "temporal", "restate")


def _skipped(args: argparse.Namespace) -> dict[str, str]:
    """The systems this run leaves out, each with the flag that says so."""
    skipped = {}
    if args.only:
        skipped.update({name: f"--only {args.only}" for name in SYSTEMS if name != args.only})
    if args.no_reference:
        skipped.update(temporal="--no-reference", restate="--no-reference")
    if args.no_restate:
        skipped["restate"] = "--no-restate"
    return skipped


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: every `finally` stops its processes
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="1 repeat, 100 sequential sagas; Temporal and Restate: 20 sequential and 200 concurrent only")
    parser.add_argument("--sequential", type=int, default=None, help="sagas in the one-saga run (default 200)")
    parser.add_argument("--reference-sequential", type=int, default=None, help="Temporal's and Restate's (default 50; --quick 20)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per concurrency (default 3; --quick 1)")
    parser.add_argument("--worker-concurrency", type=int, default=WORKER_CONCURRENCY)
    parser.add_argument("--no-reference", action="store_true", help="skip Temporal and Restate")
    parser.add_argument("--no-restate", action="store_true", help="skip Restate")
    parser.add_argument("--only", choices=SYSTEMS, help="measure this one system (the others: skipped)")
    parser.add_argument("--restate-nodes", default=",".join(map(str, RESTATE_NODES)),
                        help="Restate cluster sizes, comma-separated (default 1,3)")
    parser.add_argument("--profile", metavar="DIR", help="one more 1,000-saga run under py-spy (leader, worker, client)")
    parser.add_argument("--seed", type=int, default=SEED, help="which orders fail at ship")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures here")
    args = parser.parse_args()
    args.sequential = args.sequential or (100 if args.quick else 200)
    args.reference_sequential = args.reference_sequential or (20 if args.quick else 50)
    args.repeats = args.repeats or (1 if args.quick else 3)
    _event_loop_policy()

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    rng = random.Random(args.seed)
    results: dict = {"repeats": args.repeats, "seed": args.seed, "date": time.strftime("%Y-%m-%d %H:%M"),
                     "worker_concurrency": args.worker_concurrency,
                     "command": " ".join(["bench/workflow_bench.py"] + sys.argv[1:])}
    with tempfile.TemporaryDirectory(prefix="raftflow-wfbench-", dir=os.environ.get("BENCH_DIR")) as workdir:
        say("measuring the machine's floor...")
        results["floor"] = {"fsync": fsync_floor(workdir), "grpc_rtt": asyncio.run(_grpc_rtt()),
                            "load_average": os.getloadavg()[0]}
        skipped = _skipped(args)
        if "raftflow" in skipped:
            results["raftflow"] = skipped["raftflow"]
        else:
            results["raftflow"] = asyncio.run(measure_raftflow(workdir, args, rng, say))
        if "temporal" in skipped:
            results["temporal"] = skipped["temporal"]
        else:
            say("Temporal dev server...")
            results["temporal"] = asyncio.run(measure_temporal(workdir, args, random.Random(args.seed), say))
            if isinstance(results["temporal"], str):
                say(f"Temporal: skipped: {results['temporal']}")
        if "restate" not in skipped:
            import _restate_ref  # noqa: PLC0415

            missing = _restate_ref.available()  # said once, not per cluster size
            if missing:
                skipped["restate"] = missing
                say(f"Restate: skipped: {missing}")
        if "restate" in skipped:
            results["restate"] = skipped["restate"]
        else:
            results["restate"] = {}
            for nodes in (int(x) for x in args.restate_nodes.split(",")):
                say(f"Restate, {nodes} node(s)...")
                results["restate"][str(nodes)] = asyncio.run(measure_restate(workdir, args, nodes, say))
                if isinstance(results["restate"][str(nodes)], str):
                    say(f"Restate, {nodes} node(s): skipped: {results['restate'][str(nodes)]}")
    results["load_average_end"] = os.getloadavg()[0]
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
