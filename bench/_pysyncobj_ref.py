"""PySyncObj reference figures for bench/cluster_bench.py: the same workload as our
cluster bench, run on a 3-node PySyncObj cluster on this machine, in the same run.

What is measured
----------------
Three PySyncObj nodes on 127.0.0.1, each its own OS process (this file run as
`node`), each hosting a replicated dict (`@replicated def set(key, value)`), 100-byte
values over a bounded key space. PySyncObj's journal is on (`journalFile`, plus
`fullDumpFile`, without which a restarted node cannot reload a compacted log).
PySyncObj writes its journal into an mmap and never fsyncs it, nor its meta file:
a "committed" write is in the page cache of two processes, not on disk. Every result
says so (`journal_fsync: False`); compare with raftflow run with fsync off.

PySyncObj has no client protocol: a command is a method call on a node, and a
follower forwards it to the leader. So the load runs inside the leader's process
("proposals at the leader"), sharing that process's GIL with its Raft tick thread.
By default (appendEntriesUseBatch) a leader sends new entries only with its next
heartbeat, every 0.1 s, so at low `inflight` a write takes ~100 ms whatever the
machine; `Tuning(append_entries_use_batch=False)` sends each at once.

- `throughput(inflight, seconds)`: a closed loop keeps exactly `inflight` commands
  outstanding (`obj.set(k, v, callback=cb)`; each success callback issues the next).
  The first min(1 s, seconds/4) is warm-up. A command counts when it was issued in the
  measured window and its callback said FAIL_REASON.SUCCESS; its latency runs from the
  call to the callback. Same counting as bench/_loadgen.py.
- `failover(kills)`: each round SIGKILLs the leader's process, then one survivor tries
  writes until one succeeds; the sample is that success's wall-clock time minus the
  kill's (one machine, one clock). The killed node then restarts on its journal, and
  the next round waits until it is back: every node agrees on the leader, is caught
  up (PySyncObj's isReady), and every node is connected to both partners. No load
  runs during failover: the cluster carries only heartbeats and the probe's writes.

Driver and nodes talk over each node's stdin/stdout, one JSON object a line; a request's
"id" comes back in its reply, so a late reply is never taken for the next one:

    {"cmd": "status"}  -> {"self", "leader", "is_leader", "ready", "term",
                           "commit_index", "last_applied", "connected"}
    {"cmd": "load", "inflight": N, "seconds": S, "value_bytes": 100}
                       -> the throughput fields below
    {"cmd": "probe", "deadline_s": D, "attempt_timeout_s": A}
                       -> {"ok", "success_time", "attempts", "failures"}

Once its port is bound a node prints {"event": "bound", ...}; a node that cannot bind
or start exits 2 with the reason on stderr (kept in its temp dir, quoted in errors).

    .venv/bin/python bench/_pysyncobj_ref.py run                      # all figures
    .venv/bin/python bench/_pysyncobj_ref.py run --inflight 1,64 --seconds 3 --kills 3
    .venv/bin/python bench/_pysyncobj_ref.py run --kills 5 --raft-min-timeout 0.35 \\
        --raft-max-timeout 0.7
    .venv/bin/python bench/_pysyncobj_ref.py run --no-append-entries-batch
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import importlib.util
import itertools
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from _report import percentile, quantiles_ms  # a sibling module: bench/ is on the path here and in its node processes

MISSING_MESSAGE = (
    "pysyncobj is not installed: run `.venv/bin/pip install pysyncobj` "
    "(it is in setup.cfg's `bench` extra; `make bench` installs it)"
)
DURABILITY = "journal written to an mmap, never fsynced (PySyncObj FileJournal)"

HOST = "127.0.0.1"
NODES = 3
KEY_SPACE = 1000                 # keys cycle, so the replicated dict stays small
WARMUP_S_MAX = 1.0
DRAIN_S_MAX = 30.0               # after the window, outstanding commands get this long
BIND_RETRIES_MAX = 10            # × PySyncObj's bindRetryTime (1 s), then a node gives up
START_TIMEOUT_S = 20.0           # process start to "bound"
STATUS_TIMEOUT_S = 5.0
HEALTHY_TIMEOUT_S = 30.0         # election at start, or rejoin after a restart (PySyncObj
                                 # reconnects to a peer every connectionRetryTime = 5 s)
PROBE_DEADLINE_S = 30.0
PROBE_ATTEMPT_TIMEOUT_S = 0.1    # a write forwarded to the dead leader may never answer
PROBE_RETRY_PAUSE_S = 0.01       # after a failed attempt, so failures cannot spin
POLL_INTERVAL_S = 0.05
STDERR_TAIL_BYTES = 2000

try:
    import pysyncobj
    from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
except ImportError:
    pysyncobj = None


class PySyncObjMissing(RuntimeError):
    """pysyncobj is not importable in this interpreter."""


class NodeError(RuntimeError):
    """A node process failed to start, died, or did not answer in time."""


@dataclass(frozen=True, slots=True)
class Tuning:
    """The PySyncObj settings a caller may change; None means PySyncObj's default
    (SyncObjConf: raftMinTimeout 0.4 s, raftMaxTimeout 1.4 s). appendEntriesUseBatch
    (default on) sends new entries with the next heartbeat, every appendEntriesPeriod
    = 0.1 s; off, the leader sends each entry as it comes."""

    raft_min_timeout_s: float | None = None
    raft_max_timeout_s: float | None = None
    append_entries_use_batch: bool = True


def available() -> bool:
    """True when pysyncobj can be imported by this interpreter (and so by the nodes,
    which run under the same one)."""
    return importlib.util.find_spec("pysyncobj") is not None


def _require() -> None:
    if not available():
        raise PySyncObjMissing(MISSING_MESSAGE)


# ---------------------------------------------------------------------------
# Node side: one PySyncObj node, driven over stdin/stdout.
# ---------------------------------------------------------------------------

if pysyncobj is not None:

    class _ReplicatedDict(SyncObj):
        """The replicated state machine: a dict, one replicated command."""

        def __init__(self, self_address: str, partner_addresses: list[str], conf: SyncObjConf):
            super().__init__(self_address, partner_addresses, conf)
            # Set after SyncObj.__init__ (PySyncObj's own pattern): attributes set
            # before it are taken for its internals and left out of the full dump.
            self._data: dict[str, bytes] = {}

        @replicated
        def set(self, key: str, value: bytes) -> None:
            self._data[key] = value


def _reason_name(error: int) -> str:
    names = {v: k for k, v in vars(FAIL_REASON).items() if k.isupper()}
    return names.get(error, str(error))


def _closed_loop(node: _ReplicatedDict, inflight: int, seconds: float, value_bytes: int) -> dict:
    """Keep `inflight` writes outstanding on `node` for warm-up + `seconds`.

    Success callbacks run on PySyncObj's tick thread and issue the next write there.
    Failures and retired slots go back to this thread through `handback`: a failure
    can be reported synchronously inside `set` (QUEUE_FULL), and re-issuing from
    there would recurse."""
    value = b"v" * value_bytes
    warmup_end = time.perf_counter() + min(WARMUP_S_MAX, seconds / 4)
    end = warmup_end + seconds
    latencies: list[float] = []       # only the tick thread appends
    errors: collections.Counter[str] = collections.Counter()
    errors_lock = threading.Lock()
    handback: queue.SimpleQueue[None] = queue.SimpleQueue()
    numbers = itertools.count()       # next() on a count is atomic under the GIL

    def issue() -> None:
        started = time.perf_counter()
        key = f"k{next(numbers) % KEY_SPACE}"
        node.set(key, value, callback=functools.partial(on_result, started))

    def on_result(started: float, _result: object, error: int) -> None:
        if error != FAIL_REASON.SUCCESS:
            with errors_lock:
                errors[_reason_name(error)] += 1
            handback.put(None)
            return
        now = time.perf_counter()
        if warmup_end <= started < end:
            latencies.append(now - started)
        if now < end:
            issue()
        else:
            handback.put(None)

    for _ in range(inflight):
        issue()
    outstanding = inflight
    drain_deadline = end + DRAIN_S_MAX
    while outstanding:
        try:
            handback.get(timeout=max(0.0, drain_deadline - time.perf_counter()))
        except queue.Empty:
            break
        if time.perf_counter() < end:
            issue()                   # the slot's last write failed: try again
        else:
            outstanding -= 1
    return {
        "inflight": inflight, "ops": len(latencies), "ops_per_s": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 0.50) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": sum(errors.values()), "error_reasons": dict(errors), "undrained": outstanding,
        "quantiles_ms": quantiles_ms(latencies),
    }


def _probe(node: _ReplicatedDict, deadline_s: float, attempt_timeout_s: float) -> dict:
    """Write until one write succeeds; report its wall-clock time (time.time(), so the
    driver can compare it with the time of the kill).

    A new attempt starts when the previous one failed or has not answered within
    `attempt_timeout_s`; an earlier attempt that succeeds later still counts, as the
    first success is what is measured."""
    succeeded = threading.Event()
    lock = threading.Lock()
    first_success: list[float] = []
    failures: collections.Counter[str] = collections.Counter()

    def on_result(answered: threading.Event, _result: object, error: int) -> None:
        now = time.time()
        with lock:
            if error == FAIL_REASON.SUCCESS and not first_success:
                first_success.append(now)
            elif error != FAIL_REASON.SUCCESS:
                failures[_reason_name(error)] += 1
        if error == FAIL_REASON.SUCCESS:
            succeeded.set()
        answered.set()

    deadline = time.monotonic() + deadline_s
    attempts = 0
    while not succeeded.is_set() and time.monotonic() < deadline:
        attempts += 1
        answered = threading.Event()
        node.set("probe", attempts, callback=functools.partial(on_result, answered))
        if answered.wait(attempt_timeout_s) and not succeeded.is_set():
            succeeded.wait(PROBE_RETRY_PAUSE_S)
    with lock:
        return {
            "ok": bool(first_success), "success_time": first_success[0] if first_success else None,
            "attempts": attempts, "failures": dict(failures),
        }


def _status(node: _ReplicatedDict) -> dict:
    leader = node._getLeader()
    return {
        "self": node.selfNode.id,
        "leader": leader.id if leader is not None else None,
        "is_leader": node._isLeader(),
        "ready": node.isReady(),
        "term": node.raftCurrentTerm,
        "commit_index": node.raftCommitIndex,
        "last_applied": node.raftLastApplied,
        "connected": sorted(n.id for n in node.otherNodes if node.isNodeConnected(n)),
    }


def _answer(node: _ReplicatedDict, request: dict) -> dict:
    command = request.get("cmd")
    if command == "status":
        return _status(node)
    if command == "load":
        return _closed_loop(node, int(request["inflight"]), float(request["seconds"]),
                            int(request.get("value_bytes", 100)))
    if command == "probe":
        return _probe(node, float(request["deadline_s"]), float(request["attempt_timeout_s"]))
    return {"error": f"unknown cmd={command!r}: expected status, load or probe"}


def _node_conf(journal_dir: str, tuning: Tuning) -> SyncObjConf:
    overrides = {}
    if tuning.raft_min_timeout_s is not None:
        overrides["raftMinTimeout"] = tuning.raft_min_timeout_s
    if tuning.raft_max_timeout_s is not None:
        overrides["raftMaxTimeout"] = tuning.raft_max_timeout_s
    return SyncObjConf(
        journalFile=os.path.join(journal_dir, "journal.bin"),
        fullDumpFile=os.path.join(journal_dir, "dump.bin"),
        maxBindRetries=BIND_RETRIES_MAX,
        appendEntriesUseBatch=tuning.append_entries_use_batch,
        **overrides,
    )


def _node_main(args: argparse.Namespace) -> int:
    if pysyncobj is None:
        print(MISSING_MESSAGE, file=sys.stderr)
        return 2
    conf = _node_conf(args.journal, _tuning_from(args))
    partners = [f"{HOST}:{port}" for port in args.partners.split(",")]
    try:
        node = _ReplicatedDict(f"{HOST}:{args.self}", partners, conf)
        node.waitBinded()
    except Exception as error:  # noqa: BLE001 (reported to the driver, then exit)
        hint = (f" (port in use? gave up after {BIND_RETRIES_MAX} bind attempts)"
                if "BindError" in repr(error) else "")
        print(f"node {HOST}:{args.self} failed to start: {error!r}{hint}", file=sys.stderr)
        return 2
    _reply({"event": "bound", "self": node.selfNode.id, "pid": os.getpid(),
            "pysyncobj_version": pysyncobj.version.VERSION,
            "raft_min_timeout_s": conf.raftMinTimeout, "raft_max_timeout_s": conf.raftMaxTimeout,
            "append_entries_use_batch": conf.appendEntriesUseBatch})
    for line in sys.stdin:        # EOF (the driver went away) ends the node
        request = json.loads(line)
        _reply({"id": request.get("id"), **_answer(node, request)})
    node.destroy()
    return 0


def _reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------
# Driver side: start, watch and stop the node processes.
# ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _NodeSpec:
    port: int
    partner_ports: tuple[int, ...]
    journal_dir: str
    tuning: Tuning

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def argv(self) -> list[str]:
        argv = [sys.executable, os.path.abspath(__file__), "node", "--self", str(self.port),
                "--partners", ",".join(map(str, self.partner_ports)), "--journal", self.journal_dir]
        return argv + _tuning_argv(self.tuning)


class _NodeProcess:
    """One node's OS process, in its own process group (PySyncObj forks to write its
    full dump; killing the group takes such a child too). Requests are answered one
    at a time; every wait has a timeout."""

    def __init__(self, spec: _NodeSpec):
        self.spec = spec
        self._stderr_path = os.path.join(spec.journal_dir, "stderr.log")
        self._ids = itertools.count()
        with open(self._stderr_path, "ab") as stderr:   # appends across restarts
            self._process = subprocess.Popen(
                spec.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                text=True, bufsize=1, start_new_session=True,
            )
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put(None)         # EOF: the process exited

    def _next_message(self, deadline: float, waiting_for: str) -> dict:
        try:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise self._error(f"no answer to {waiting_for} in time") from None
        if line is None:
            self._lines.put(None)     # stays at EOF for any later reader
            raise self._error(f"exited (rc={self._process.wait(timeout=5)}) before answering {waiting_for}")
        return json.loads(line)

    def wait_bound(self, timeout_s: float) -> dict:
        return self._next_message(time.monotonic() + timeout_s, "start-up (bind)")

    def request(self, command: dict, timeout_s: float) -> dict:
        request_id = next(self._ids)
        try:
            self._process.stdin.write(json.dumps({"id": request_id, **command}) + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise self._error(f"cannot send {command['cmd']}: {error!r}") from None
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self._next_message(deadline, command["cmd"])
            if reply.get("id") == request_id:    # older ids: replies that came too late
                if "error" in reply:
                    raise self._error(reply["error"])
                return reply

    def kill(self) -> None:
        """SIGKILL the process group, unless the process was already reaped (its
        group id could then belong to someone else)."""
        if self._process.poll() is None:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._process.wait(timeout=10)
        with contextlib.suppress(OSError):
            self._process.stdin.close()

    def _error(self, what: str) -> NodeError:
        try:
            with open(self._stderr_path, "rb") as stderr:
                stderr.seek(0, os.SEEK_END)
                stderr.seek(max(0, stderr.tell() - STDERR_TAIL_BYTES))
                tail = stderr.read().decode(errors="replace").strip()
        except OSError:
            tail = ""
        return NodeError(f"PySyncObj node {self.spec.address}: {what}"
                         + (f"\n--- its stderr (tail) ---\n{tail}" if tail else ""))


def _free_ports(count: int) -> list[int]:
    """Ports the kernel hands out for port 0, all held until all are chosen so they
    differ. Another process could take one before the node binds it; the node then
    fails to start with a clear error."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _check_timeouts(tuning: Tuning) -> None:
    """PySyncObj's own SyncObjConf.validate rules, checked here for a clear message."""
    defaults = SyncObjConf()
    low = tuning.raft_min_timeout_s if tuning.raft_min_timeout_s is not None else defaults.raftMinTimeout
    high = tuning.raft_max_timeout_s if tuning.raft_max_timeout_s is not None else defaults.raftMaxTimeout
    if low <= 3 * defaults.appendEntriesPeriod:
        raise ValueError(f"raft_min_timeout_s={low} must exceed 3 × appendEntriesPeriod="
                         f"{defaults.appendEntriesPeriod}")
    if high <= low:
        raise ValueError(f"raft_max_timeout_s={high} must exceed raft_min_timeout_s={low}")
    if high > defaults.connectionTimeout:
        raise ValueError(f"raft_max_timeout_s={high} must not exceed connectionTimeout="
                         f"{defaults.connectionTimeout}")


class _Cluster:
    """Three node processes on free ports, each with a journal in one temp dir.
    Leaving the `with` block SIGKILLs every process started and removes the dir."""

    def __init__(self, tuning: Tuning):
        _require()
        _check_timeouts(tuning)
        self._tuning = tuning
        self._dir = tempfile.mkdtemp(prefix="pysyncobj-ref-")
        self._ports = _free_ports(NODES)
        self._nodes: dict[int, _NodeProcess] = {}
        self.settings: dict = {}

    def __enter__(self) -> _Cluster:
        try:
            # A node dials only the peers whose address sorts below its own, and
            # redials a failed peer only every connectionRetryTime (5 s): starting in
            # that order, each node finds the ones it dials already listening.
            for port in sorted(self._ports, key=lambda p: f"{HOST}:{p}"):
                self.start(port)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def ports(self) -> list[int]:
        return list(self._ports)

    def node(self, port: int) -> _NodeProcess:
        return self._nodes[port]

    def start(self, port: int) -> None:
        """Start (or restart, on its journal) the node on `port`; wait until bound."""
        journal_dir = os.path.join(self._dir, str(port))
        os.makedirs(journal_dir, exist_ok=True)
        spec = _NodeSpec(port, tuple(p for p in self._ports if p != port), journal_dir,
                         self._tuning)
        process = _NodeProcess(spec)
        self._nodes[port] = process
        bound = process.wait_bound(START_TIMEOUT_S)
        self.settings = {key: bound[key] for key in
                         ("pysyncobj_version", "raft_min_timeout_s", "raft_max_timeout_s",
                          "append_entries_use_batch")}

    def kill(self, port: int) -> float:
        """SIGKILL the node on `port`; returns time.time() right after the signal."""
        process = self._nodes.pop(port)
        process.kill()
        return time.time()

    def wait_healthy(self, timeout_s: float) -> int:
        """Wait until every node names the same leader, is caught up (isReady) and is
        connected to all its partners; returns the leader's port."""
        deadline = time.monotonic() + timeout_s
        last: dict[int, dict] = {}
        while time.monotonic() < deadline:
            last = {port: n.request({"cmd": "status"}, STATUS_TIMEOUT_S)
                    for port, n in self._nodes.items()}
            leader = _agreed_leader(last)
            if leader is not None:
                return leader
            time.sleep(POLL_INTERVAL_S)  # polling a condition, bounded by the deadline
        raise NodeError(f"no healthy {NODES}-node PySyncObj cluster within {timeout_s} s; "
                        f"last status: {json.dumps(last)}")

    def close(self) -> None:
        for port in list(self._nodes):
            try:
                self._nodes.pop(port).kill()
            except Exception as error:  # noqa: BLE001 (keep stopping the others)
                print(f"warning: stopping PySyncObj node {port}: {error!r}", file=sys.stderr)
        shutil.rmtree(self._dir, ignore_errors=True)


def _agreed_leader(statuses: dict[int, dict]) -> int | None:
    if len(statuses) < NODES:
        return None
    leaders = [port for port, s in statuses.items() if s["is_leader"]]
    if len(leaders) != 1:
        return None
    leader = statuses[leaders[0]]["self"]
    # Every pair connected, not just the leader to each follower: survivors that are
    # not connected to each other hold no election until one redials (5 s).
    healthy = all(s["leader"] == leader and s["ready"] and len(s["connected"]) == NODES - 1
                  for s in statuses.values())
    return leaders[0] if healthy else None


# ---------------------------------------------------------------------------
# The measurements.
# ---------------------------------------------------------------------------

def _common_fields(settings: dict) -> dict:
    return {
        "system": "pysyncobj", **settings, "nodes": NODES, "issued_at": "leader",
        "journal_fsync": False, "durability": DURABILITY,
    }


def throughput(inflight: int, seconds: float, *, value_bytes: int = 100,
               tuning: Tuning = Tuning()) -> dict:
    """Closed-loop writes with `inflight` outstanding, issued in the leader's process,
    on a fresh 3-node cluster. Returns {"inflight", "ops", "ops_per_s", "p50_ms",
    "p99_ms", "errors", ...}; see the module docstring for what counts."""
    if inflight < 1 or seconds <= 0:
        raise ValueError(f"inflight={inflight} must be >= 1 and seconds={seconds} > 0")
    with _Cluster(tuning) as cluster:
        leader = cluster.wait_healthy(HEALTHY_TIMEOUT_S)
        result = cluster.node(leader).request(
            {"cmd": "load", "inflight": inflight, "seconds": seconds, "value_bytes": value_bytes},
            timeout_s=WARMUP_S_MAX + seconds + DRAIN_S_MAX + 10,
        )
    result.pop("id")
    return {**result, "value_bytes": value_bytes, **_common_fields(cluster.settings)}


def failover(kills: int, *, tuning: Tuning = Tuning()) -> dict:
    """`kills` rounds of: SIGKILL the leader, time until a write succeeds at a survivor,
    restart the killed node on its journal, wait until it is back. Returns {"kills",
    "p50_ms", "max_ms", "samples_ms", "timeouts", "raft_min_timeout_s",
    "raft_max_timeout_s", ...}; a round with no success within PROBE_DEADLINE_S counts
    in "timeouts" and has no sample."""
    if kills < 1:
        raise ValueError(f"kills={kills} must be >= 1")
    samples_ms: list[float] = []
    with _Cluster(tuning) as cluster:
        leader = cluster.wait_healthy(HEALTHY_TIMEOUT_S)
        for _ in range(kills):
            sample_ms = _one_failover(cluster, leader)
            if sample_ms is not None:
                samples_ms.append(sample_ms)
            leader = cluster.wait_healthy(HEALTHY_TIMEOUT_S)
    return {
        "kills": kills,
        "p50_ms": statistics.median(samples_ms) if samples_ms else float("nan"),
        "max_ms": max(samples_ms, default=float("nan")),
        "samples_ms": [round(s, 1) for s in samples_ms],
        "timeouts": kills - len(samples_ms),
        **_common_fields(cluster.settings),
    }


def _one_failover(cluster: _Cluster, leader: int) -> float | None:
    """Kill `leader`, probe at the survivor with the lowest port, restart the killed
    node. Returns the kill-to-first-success time in ms, or None on probe timeout."""
    survivor = min(port for port in cluster.ports if port != leader)
    killed_at = cluster.kill(leader)
    reply = cluster.node(survivor).request(
        {"cmd": "probe", "deadline_s": PROBE_DEADLINE_S, "attempt_timeout_s": PROBE_ATTEMPT_TIMEOUT_S},
        timeout_s=PROBE_DEADLINE_S + 10,
    )
    cluster.start(leader)
    if not reply["ok"]:
        return None
    return (reply["success_time"] - killed_at) * 1000


# ---------------------------------------------------------------------------
# CLI.
# ---------------------------------------------------------------------------

def _print_throughput_table(rows: list[dict]) -> None:
    print(f"{'inflight':>8} {'ops':>8} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for r in rows:
        print(f"{r['inflight']:>8} {r['ops']:>8} {r['ops_per_s']:>9.0f} {r['p50_ms']:>8.2f}"
              f" {r['p99_ms']:>8.2f} {r['errors']:>7}")


def _tuning_from(args: argparse.Namespace) -> Tuning:
    return Tuning(args.raft_min_timeout, args.raft_max_timeout, not args.no_append_entries_batch)


def _tuning_argv(tuning: Tuning) -> list[str]:
    argv = []
    if tuning.raft_min_timeout_s is not None:
        argv += ["--raft-min-timeout", str(tuning.raft_min_timeout_s)]
    if tuning.raft_max_timeout_s is not None:
        argv += ["--raft-max-timeout", str(tuning.raft_max_timeout_s)]
    if not tuning.append_entries_use_batch:
        argv.append("--no-append-entries-batch")
    return argv


def _run_main(args: argparse.Namespace) -> int:
    if not available():
        print(MISSING_MESSAGE, file=sys.stderr)
        return 2
    # SIGTERM (e.g. a timeout around `make bench`) unwinds like Ctrl-C, so every
    # cluster's `with` block still stops its processes and removes its temp dir.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    tuning = _tuning_from(args)
    inflights = [int(n) for n in args.inflight.split(",") if n]
    rows = [throughput(n, args.seconds, tuning=tuning) for n in inflights]
    report: dict = {"throughput": rows}
    if rows:
        print(f"PySyncObj {rows[0]['pysyncobj_version']}, {NODES} nodes on {HOST}, proposals at the"
              f" leader, {rows[0]['value_bytes']}-byte values, appendEntriesUseBatch"
              f" {rows[0]['append_entries_use_batch']}, {DURABILITY}")
        _print_throughput_table(rows)
    if args.kills:
        result = failover(args.kills, tuning=tuning)
        report["failover"] = result
        print(f"failover: {result['kills']} kills, p50 {result['p50_ms']:.0f} ms, max"
              f" {result['max_ms']:.0f} ms, {result['timeouts']} timeouts (raftMinTimeout"
              f" {result['raft_min_timeout_s']} s, raftMaxTimeout {result['raft_max_timeout_s']} s)")
    print(json.dumps(report), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start clusters, measure, print a table and a JSON line")
    run.add_argument("--inflight", default="1,16,64,256,10000", help="comma-separated; '' for none")
    run.add_argument("--seconds", type=float, default=5.0, help="measured window per figure")
    run.add_argument("--kills", type=int, default=10, help="failover rounds; 0 for none")
    node = commands.add_parser("node", help="one node process (started by the driver)")
    node.add_argument("--self", type=int, required=True, help="this node's port")
    node.add_argument("--partners", required=True, help="the other nodes' ports, comma-separated")
    node.add_argument("--journal", required=True, help="directory for journal and full dump")
    for p in (run, node):
        p.add_argument("--raft-min-timeout", type=float, default=None, help="seconds (PySyncObj default 0.4)")
        p.add_argument("--raft-max-timeout", type=float, default=None, help="seconds (PySyncObj default 1.4)")
        p.add_argument("--no-append-entries-batch", action="store_true",
                       help="appendEntriesUseBatch=False: send each entry at once, not with the next heartbeat")
    args = parser.parse_args(argv)
    if args.command == "node":
        return _node_main(args)
    try:
        return _run_main(args)
    except (ValueError, NodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
