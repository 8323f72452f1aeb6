"""The networked cluster: client writes, reads, commit latency and failover, next
to etcd and PySyncObj measured in the same run on the same machine.

    .venv/bin/python bench/cluster_bench.py            # full: 3 repeats, 10 kills
    .venv/bin/python bench/cluster_bench.py --quick    # about two minutes
    .venv/bin/python bench/cluster_bench.py --install-refs   # first install etcd (apt, as root)

Workload: a 3-node cluster on 127.0.0.1, 100-byte values, closed-loop clients
(each waits for its reply before sending again), writes/s and p50/p99 latency at
1, 16, 64 and 256 concurrent clients, from a client process over gRPC. PySyncObj
has no client protocol: its commands are calls inside a node's process, so the
like-for-like figure is "proposals at the leader", where raftflow's node 1 runs
inside the benchmark process and the load calls its submit() directly. raftflow runs with fsync on (the default)
and with fsync off; PySyncObj's journal is an mmap it never fsyncs, so its
figures compare with raftflow's fsync-off row, and raftflow's fsync-on row is
what a user gets. Failover: SIGKILL the leader, time until the next write
commits, restart it, repeat.

etcd (bench/_etcd_ref.py): 3 members on 127.0.0.1, its WAL fsynced (always), loaded
from Python as raftflow is, through etcd's JSON gateway with aiohttp, to the leader:
the same writes at the same client counts, reads at 64 clients (linearizable and
serializable, next to raftflow's linearizable, lease and stale), and failover. When
etcd is not installed the run says so in one line and goes on without it;
`--install-refs` installs it first (Debian's etcd-server etcd-client, as root).

Reads: 64 closed-loop clients (16 per connection for raftflow, as for writes; one
HTTP connection each for etcd) read 100 keys written beforehand, from this process.

Also in the same run, this machine's floor: fdatasync latency on the disk the
data dirs are on, a loopback gRPC stream round trip, and the load average (others'
work on the machine shows as noise).

`--json FILE` keys (a write row: clients, repeats, ops_per_s_min/median/max,
p50_ms, p99_ms, errors; a failover: kills, p50_ms, max_ms, samples_ms; a system that
was skipped has a one-line string in place of its figures):

    seconds, repeats, date, floor {fsync, grpc_rtt, loadavg}
    raftflow_fsync_on, raftflow_fsync_off   [write row per client count]
    raftflow_reads     {linearizable, lease, stale: read row}
    raftflow_leader    [proposals at the leader]
    raftflow_failover  failover
    etcd_version       "3.4.23" (or the skip reason)
    etcd_writes        [write row per client count] | str
    etcd_reads         {linearizable, serializable: read row} | str
    etcd_failover      failover | str
    pysyncobj_writes, pysyncobj_failover

A read row is a write row with a `consistency` field.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from raftflow.cluster.local import launcher  # noqa: E402
from raftflow.cluster.client import AsyncClient, Credentials, RaftflowError, run_sync  # noqa: E402

CLIENTS = (1, 16, 64, 256)
READ_CLIENTS = 64
READ_KEYS = 100
RAFTFLOW_READS = ("linearizable", "lease", "stale")
NODE_STOP_TIMEOUT_S = 2.0
ETCD_KEYS = ("etcd_version", "etcd_writes", "etcd_reads", "etcd_failover")
LEADER_INFLIGHT = (1, 256, 10_000)


# --- the machine's floor ------------------------------------------------------------


def fsync_floor(directory: str, n: int = 500) -> dict:
    path = os.path.join(directory, "fsync-floor")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    samples = []
    try:
        for _ in range(n):
            started = time.perf_counter()
            os.write(fd, b"x" * 200)
            os.fdatasync(fd)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        os.unlink(path)
    samples.sort()
    return {"p50_us": samples[n // 2] * 1e6, "p99_us": samples[int(n * 0.99)] * 1e6}


async def _grpc_rtt(n: int = 2000) -> dict:
    import grpc  # noqa: PLC0415

    from raftflow.proto import client_pb2, client_pb2_grpc  # noqa: PLC0415

    class Echo(client_pb2_grpc.ClientServicer):
        async def ExecuteStream(self, request_iterator, context):
            async for _ in request_iterator:
                await context.write(client_pb2.ReplyBatch())

    server = grpc.aio.server()
    client_pb2_grpc.add_ClientServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = client_pb2_grpc.ClientStub(channel).ExecuteStream()
            samples = []
            for _ in range(n):
                started = time.perf_counter()
                await call.write(client_pb2.CommandBatch())
                await call.read()
                samples.append(time.perf_counter() - started)
            call.cancel()
    finally:
        await server.stop(0)
    samples.sort()
    return {"p50_us": samples[n // 2] * 1e6, "p99_us": samples[int(n * 0.99)] * 1e6}


# --- raftflow -----------------------------------------------------------------------


class RaftflowCluster:
    def __init__(self, directory: str, nodes: int = 3, **settings) -> None:
        self.cluster = launcher.create(directory, nodes, 0, **settings)

    def __enter__(self) -> RaftflowCluster:
        try:
            for m in self.cluster.members:
                launcher.start_node(self.cluster, m)
            with self.cluster.client(timeout=2.0) as client:
                launcher.wait_for_leader(self.cluster, lambda e: client.cluster_status(timeout=0.5), timeout=30)
        except BaseException:  # no leader (or Ctrl-C): __exit__ is not called, so stop what started
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for m in self.cluster.members:
            if launcher.process_alive(m.pid):
                launcher.stop_node(self.cluster, m, kill=True)

    def writes(self, clients: int, seconds: float) -> dict:
        """Closed-loop puts from a separate process (as a real client would be)."""
        out = subprocess.run(
            [sys.executable, os.path.join(ROOT, "bench", "_loadgen.py"), "--endpoints", ",".join(self.cluster.endpoints),
             "--dir", self.cluster.dir, "--clients", str(clients), "--seconds", str(seconds)],
            capture_output=True, text=True, timeout=seconds * 4 + 60,
        )
        if out.returncode != 0:
            raise RuntimeError(f"load generator failed: {out.stderr.strip().splitlines()[-1:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def reads(self, consistency: str, clients: int, seconds: float) -> dict:
        """Closed-loop gets from this process, every 16 clients on one connection."""
        return run_sync(_raftflow_reads(self.cluster, consistency, clients, seconds))

    def leader(self) -> int:
        with self.cluster.client(timeout=2.0) as client:
            return launcher.wait_for_leader(self.cluster, lambda e: client.cluster_status(timeout=0.5), timeout=30)

    def failover(self, kills: int) -> dict:
        samples = []
        for _ in range(kills):
            leader = self.leader()
            member = self.cluster.member(leader)
            survivors = [m.address for m in self.cluster.members if m.id != leader]
            os.kill(member.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            samples.append(run_sync(_first_commit_after(survivors, self.cluster.credentials(), killed_at)))
            launcher.stop_node(self.cluster, member, kill=True)  # reap it
            launcher.start_node(self.cluster, member)
        return _failover_summary(samples)


async def _first_commit_after(endpoints: list[str], credentials: Credentials, since: float) -> float:
    """Seconds from `since` until a write commits: tries back to back (5-10 ms
    apart at most), so the figure is the cluster's, not the client's backoff."""
    async with AsyncClient(endpoints, credentials=credentials, timeout=1.0, no_leader_timeout=0.5,
                           max_backoff=0.005) as client:
        while True:
            try:
                await client.put("failover-probe", b"x")
                return time.monotonic() - since
            except RaftflowError:
                if time.monotonic() - since > 30:
                    raise


async def _raftflow_reads(cluster: launcher.ClusterFile, consistency: str, clients: int, seconds: float) -> dict:
    per_connection = 16  # as bench/_loadgen.py
    endpoints = cluster.endpoints
    connections = [AsyncClient(endpoints, credentials=cluster.credentials(), timeout=30.0, no_leader_timeout=10.0)
                   for _ in range(max(1, (clients + per_connection - 1) // per_connection))]
    try:
        for i in range(READ_KEYS):
            await connections[0].put(f"r{i}", b"v" * 100)
        await asyncio.gather(*(c.get("r0", consistency=consistency) for c in connections))
        latencies: list[float] = []
        errors = 0
        warmup_end = time.perf_counter() + min(1.0, seconds / 4)
        end = warmup_end + seconds

        async def one(n: int) -> None:
            nonlocal errors
            client = connections[n % len(connections)]
            i = n
            while (started := time.perf_counter()) < end:
                try:
                    await client.get(f"r{i % READ_KEYS}", consistency=consistency)
                except RaftflowError:
                    errors += 1
                    continue
                if started >= warmup_end:
                    latencies.append(time.perf_counter() - started)
                i += 1

        await asyncio.gather(*(one(n) for n in range(clients)))
    finally:
        for c in connections:
            await c.close()
    latencies.sort()
    return {
        "clients": clients, "consistency": consistency, "ops": len(latencies), "ops_per_s": len(latencies) / seconds,
        "errors": errors, "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def _failover_summary(samples: list[float]) -> dict:
    ms = sorted(s * 1000 for s in samples)
    return {"kills": len(ms), "p50_ms": statistics.median(ms), "max_ms": max(ms), "samples_ms": [round(x, 1) for x in ms]}


# --- proposals at the leader (PySyncObj's way of measuring) --------------------------


async def _leader_proposals(cluster: launcher.ClusterFile, inflight: int, seconds: float) -> dict:
    """Commands submitted inside the leader's own process, `inflight` outstanding,
    as PySyncObj's figures are taken (its commands are calls on a node object).
    Node 1 runs in this process; nodes 2 and 3 are processes of their own."""
    from raftflow.cluster.node.config import load_config  # noqa: PLC0415
    from raftflow.cluster.node.errors import NodeError  # noqa: PLC0415
    from raftflow.cluster.node.server import NodeServer  # noqa: PLC0415
    from raftflow.statemachine.commands import OpenSession, Put  # noqa: PLC0415

    process = NodeServer(load_config(cluster.members[0].config))
    for m in cluster.members[1:]:
        launcher.start_node(cluster, m)
    local = await process.start()
    try:
        async with AsyncClient(cluster.endpoints, credentials=cluster.credentials(), timeout=10.0,
                               no_leader_timeout=10.0) as admin:
            while local.node.role.value != "leader":
                try:
                    await admin.transfer_leader(1)
                except RaftflowError:
                    await asyncio.sleep(0.05)  # an election is still going on
        _, opened = await local.submit(OpenSession())
        session = opened.session_id
        value = b"v" * 100
        latencies: list[float] = []
        errors = 0
        seq = 0
        outstanding = 0
        room = asyncio.Event()
        loop = asyncio.get_running_loop()

        def done(future: asyncio.Future, started: float) -> None:
            nonlocal outstanding, errors
            outstanding -= 1
            if future.exception() is not None:
                errors += 1
            elif loop.time() < end:  # the drain after the end is not counted
                latencies.append(time.perf_counter() - started)
            room.set()

        # A producer keeps `inflight` proposals outstanding, refilling at most 512 per
        # turn of the loop so that the node's own work (ticks, heartbeats) interleaves.
        started_at = loop.time()
        end = started_at + seconds
        lost_leadership = None
        while loop.time() < end:
            if local.node.role.value != "leader":
                lost_leadership = loop.time() - started_at
                break
            for _ in range(min(inflight - outstanding, 512)):
                seq += 1
                started = time.perf_counter()
                try:
                    future = local.submit(Put(f"k{seq % 10_000}", value), session_id=session, seq=seq, ack_floor=seq)
                except NodeError:
                    errors += 1
                    break
                outstanding += 1
                future.add_done_callback(lambda f, t=started: done(f, t))
            if outstanding >= inflight:
                room.clear()
                await room.wait()
            else:
                await asyncio.sleep(0)
        elapsed = loop.time() - started_at
        while outstanding:  # let the last proposals finish (not counted in the rate)
            room.clear()
            await room.wait()
    finally:
        # Bounded: RaftNode.stop() has been seen to wait forever here (cluster/ at
        # 7b8c49e); the figures are taken by then, and the caller kills nodes 2 and 3.
        try:
            await asyncio.wait_for(process.stop(), NODE_STOP_TIMEOUT_S)
        except asyncio.TimeoutError:
            print(f"  (node 1 did not stop within {NODE_STOP_TIMEOUT_S} s; going on)", file=sys.stderr, flush=True)
    latencies.sort()
    return {
        "inflight": inflight, "ops": len(latencies), "ops_per_s": len(latencies) / elapsed, "errors": errors,
        "lost_leadership_after_s": lost_leadership,
        "p50_ms": latencies[len(latencies) // 2] * 1000, "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def leader_proposals(workdir: str, inflight: int, seconds: float, fsync: bool) -> dict:
    directory = os.path.join(workdir, f"leader-{inflight}-{'on' if fsync else 'off'}")
    cluster = launcher.create(
        directory, 3, 0, fsync=fsync, max_pending_proposals=max(10_000, 2 * inflight)
    )
    try:
        return run_sync(_leader_proposals(cluster, inflight, seconds))
    finally:
        for m in cluster.members[1:]:
            launcher.stop_node(cluster, m, kill=True)


# --- the run ------------------------------------------------------------------------


def _summarize(runs: list[dict]) -> dict:
    rates = sorted(r["ops_per_s"] for r in runs)
    middle = sorted(runs, key=lambda r: r["ops_per_s"])[len(runs) // 2]  # its latency distribution is the CDF's
    return {
        "clients": runs[0]["clients"], "repeats": len(runs), "ops_per_s_min": rates[0],
        "ops_per_s_median": statistics.median(rates), "ops_per_s_max": rates[-1],
        "p50_ms": statistics.median(r["p50_ms"] for r in runs), "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "errors": sum(r["errors"] for r in runs), "quantiles_ms": middle.get("quantiles_ms", []),
    }


def _raftflow_writes(
    workdir: str, name: str, clients: tuple[int, ...], seconds: float, repeats: int, reads: dict | None = None,
    **settings,
) -> list[dict]:
    """Write rows per client count; with `reads` (a dict to fill), also the read
    levels on the same cluster, after the writes."""
    rows = []
    with RaftflowCluster(os.path.join(workdir, name), **settings) as cluster:
        for n in clients:
            rows.append(_summarize([cluster.writes(n, seconds) for _ in range(repeats)]))
            print(f"  {name}: {n} clients {rows[-1]['ops_per_s_median']:,.0f}/s", file=sys.stderr, flush=True)
        if reads is not None:
            for level in RAFTFLOW_READS:
                runs = [cluster.reads(level, READ_CLIENTS, seconds) for _ in range(repeats)]
                reads[level] = {**_summarize(runs), "consistency": level}
                print(f"  {name}: {level} reads {reads[level]['ops_per_s_median']:,.0f}/s", file=sys.stderr, flush=True)
    return rows


def _etcd(workdir: str, clients: tuple[int, ...], seconds: float, repeats: int, kills: int) -> dict:
    """etcd's figures under the keys report() and --json use; each is the one-line
    skip reason when etcd is not installed or did not run."""
    import _etcd_ref as ref  # noqa: PLC0415

    reason = ref.available()
    out: dict = {}
    if reason is None:
        try:
            out["etcd_version"] = ref.version()
            with ref.Cluster(directory=os.path.join(workdir, "etcd")) as cluster:
                out["etcd_writes"] = []
                for n in clients:
                    out["etcd_writes"].append(_summarize([cluster.writes(n, seconds) for _ in range(repeats)]))
                    print(f"  etcd: {n} clients {out['etcd_writes'][-1]['ops_per_s_median']:,.0f}/s",
                          file=sys.stderr, flush=True)
                out["etcd_reads"] = {}
                for serializable in (False, True):
                    runs = [cluster.reads(READ_CLIENTS, seconds, serializable=serializable) for _ in range(repeats)]
                    row = {**_summarize(runs), "consistency": runs[0]["consistency"]}
                    out["etcd_reads"][row["consistency"]] = row
                    print(f"  etcd: {row['consistency']} reads {row['ops_per_s_median']:,.0f}/s", file=sys.stderr, flush=True)
                print(f"  etcd failover, {kills} leader kills...", file=sys.stderr, flush=True)
                out["etcd_failover"] = _failover_summary(cluster.failover(kills))
            return out
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            reason = f"etcd failed: {str(exc)[:500]}"
            print(f"etcd: {reason}", file=sys.stderr, flush=True)
            return {key: reason for key in ETCD_KEYS} | out  # what was measured before the failure stays
    print(f"etcd: skipped: {reason}", file=sys.stderr, flush=True)
    return {key: reason for key in ETCD_KEYS}


def _pysyncobj_writes(clients: tuple[int, ...], seconds: float, repeats: int, quick: bool = False) -> list[dict] | str:
    import _pysyncobj_ref as ref  # noqa: PLC0415

    if not ref.available():
        return ref.MISSING_MESSAGE
    rows = []
    modes = {"batched (default)": ref.Tuning(), "unbatched": ref.Tuning(append_entries_use_batch=False)}
    for n in clients:
        # PySyncObj's default batches appends on a 100 ms timer, which caps it at
        # about in-flight/0.1 s; unbatched is faster at low concurrency and slower at
        # 10,000. Each row keeps the better of the two, and says which. Quick mode
        # measures only the mode that won at this load in every full run so far.
        tried = modes if not quick else {m: t for m, t in modes.items() if (m == "unbatched") == (n < 1000)}
        best = None
        for mode, tuning in tried.items():
            runs = [ref.throughput(n, seconds, tuning=tuning) for _ in range(repeats)]
            row = {**_summarize([{**r, "clients": n} for r in runs]), "mode": mode}
            if best is None or row["ops_per_s_median"] > best["ops_per_s_median"]:
                best = row
        rows.append(best)
        print(f"  pysyncobj: {n} in flight {best['ops_per_s_median']:,.0f}/s ({best['mode']})", file=sys.stderr, flush=True)
    return rows


def _pysyncobj_failover(kills: int) -> dict | str:
    import _pysyncobj_ref as ref  # noqa: PLC0415

    if not ref.available():
        return "PySyncObj is not installed"
    return ref.failover(kills)


def _table(title: str, columns: list[str], rows: list[list[str]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _reads_table(results: dict) -> str:
    ours = results.get("raftflow_reads", {})
    theirs = results.get("etcd_reads", "not run")
    theirs_by_level = theirs if isinstance(theirs, dict) else {}
    # each raftflow level next to the etcd level that promises as much
    pairs = {"linearizable": "linearizable", "lease": "linearizable", "stale": "serializable"}
    rows = []
    for level, r in ours.items():
        et = theirs_by_level.get(pairs[level])
        rows.append([
            f"raftflow {level}", f"{r['ops_per_s_median']:,.0f} ({r['ops_per_s_min']:,.0f}-{r['ops_per_s_max']:,.0f})",
            f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}",
            f"{r['ops_per_s_median'] / et['ops_per_s_median']:.2f}x etcd {pairs[level]}" if et else "-",
        ])
    for level, r in theirs_by_level.items():
        rows.append([
            f"etcd {level}", f"{r['ops_per_s_median']:,.0f} ({r['ops_per_s_min']:,.0f}-{r['ops_per_s_max']:,.0f})",
            f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}", "",
        ])
    clients = next(iter(ours.values()))["clients"] if ours else READ_CLIENTS
    return _table(
        f"Reads, {clients} closed-loop clients, 100 keys of 100 bytes (median of {results['repeats']}; min-max)",
        ["system and level", "reads/s", "p50 / p99 ms", "ratio"], rows,
    )  # a skipped etcd is said once, under the writes table


def report(results: dict) -> str:
    out = []
    floor = results["floor"]
    out.append(
        f"Machine floor: fdatasync p50 {floor['fsync']['p50_us']:.0f} µs (p99 {floor['fsync']['p99_us']:.0f}), "
        f"loopback gRPC stream round trip p50 {floor['grpc_rtt']['p50_us']:.0f} µs; "
        f"load average {floor.get('loadavg', [0])[0]:.1f} on {os.cpu_count()} CPUs at the start.\n"
    )
    ref = results["pysyncobj_writes"]
    ref_by_clients = {r["clients"]: r for r in ref} if isinstance(ref, list) else {}
    etcd = results.get("etcd_writes", "not run")
    etcd_by_clients = {r["clients"]: r for r in etcd} if isinstance(etcd, list) else {}
    rows = []
    off_rows = results["raftflow_fsync_off"]
    off_by_clients = {r["clients"]: r for r in off_rows} if isinstance(off_rows, list) else {}
    for on in results["raftflow_fsync_on"]:
        n = on["clients"]
        off = off_by_clients.get(n)
        py = ref_by_clients.get(n)
        et = etcd_by_clients.get(n)
        rows.append([
            str(n),
            f"{on['ops_per_s_median']:,.0f} ({on['ops_per_s_min']:,.0f}-{on['ops_per_s_max']:,.0f})",
            f"{on['p50_ms']:.2f} / {on['p99_ms']:.2f}",
            f"{et['ops_per_s_median']:,.0f} ({et['ops_per_s_min']:,.0f}-{et['ops_per_s_max']:,.0f})" if et else "-",
            f"{et['p50_ms']:.2f} / {et['p99_ms']:.2f}" if et else "-",
            f"{on['ops_per_s_median'] / et['ops_per_s_median']:.2f}x" if et else "-",
            f"{off['ops_per_s_median']:,.0f}" if off else "-",
            f"{off['p50_ms']:.2f} / {off['p99_ms']:.2f}" if off else "-",
            f"{py['ops_per_s_median']:,.0f} ({py['mode']})" if py else "-",
            f"{py['p50_ms']:.2f} / {py['p99_ms']:.2f}" if py else "-",
            f"{on['ops_per_s_median'] / py['ops_per_s_median']:.2f}x" if py else "-",
        ])
    out.append(_table(
        f"Writes, 3 nodes, 100-byte values, closed loop (median of {results['repeats']}; min-max)",
        ["clients", "raftflow fsync on: writes/s", "p50 / p99 ms",
         (f"etcd {results['etcd_version']}" if isinstance(etcd, list) else "etcd")
         + " (fsync, Python client, JSON gateway): writes/s",
         "p50 / p99 ms", "raftflow fsync on / etcd",
         "raftflow fsync off: writes/s", "p50 / p99 ms",
         "PySyncObj (no fsync, issued in its leader's process): writes/s", "p50 / p99 ms",
         "raftflow fsync on / PySyncObj"],
        rows,
    ))
    if isinstance(etcd, str):
        out.append(f"etcd: skipped: {etcd}\n")
    out.append(_reads_table(results))
    extra = [r for r in ref if r["clients"] not in {x["clients"] for x in results["raftflow_fsync_on"]}] if isinstance(ref, list) else []
    for r in extra:
        out.append(f"PySyncObj at {r['clients']:,} in flight: {r['ops_per_s_median']:,.0f} writes/s "
                   f"(p50 {r['p50_ms']:.1f} ms, {r['mode']}).\n")
    if isinstance(ref, str):
        out.append(f"PySyncObj: skipped: {ref}\n")
    fo_rows = []
    for name, fo in (("raftflow", results["raftflow_failover"]), ("etcd", results.get("etcd_failover", "not run")),
                     ("PySyncObj", results["pysyncobj_failover"])):
        if isinstance(fo, str):
            fo_rows.append([name, "-", "-", fo])
        else:
            fo_rows.append([name, f"{fo['p50_ms']:.0f}", f"{fo['max_ms']:.0f}", ", ".join(f"{x:.0f}" for x in fo["samples_ms"])])
    out.append(_table("Failover: SIGKILL the leader -> next committed write", ["system", "p50 ms", "max ms", "samples ms"], fo_rows))
    rows = []
    py_by_inflight = {r["clients"]: r for r in ref} if isinstance(ref, list) else {}
    for r in results["raftflow_leader"]:
        py = py_by_inflight.get(r["inflight"])
        ratio = f"{r['ops_per_s'] / py['ops_per_s_median']:.2f}x" if py else "-"
        lost = r.get("lost_leadership_after_s")
        rows.append([
            str(r["inflight"]), "on" if r["fsync"] else "off",
            f"{r['ops_per_s']:,.0f}" + (f" (leadership lost after {lost:.1f} s)" if lost is not None else ""),
            f"{r['p50_ms']:.1f}", f"{py['ops_per_s_median']:,.0f}" if py else "-", ratio,
        ])
    out.append(_table(
        "Proposals at the leader (submitted inside the leader's process, as PySyncObj's commands are)",
        ["in flight", "raftflow fsync", "raftflow proposals/s", "p50 ms", "PySyncObj (no fsync) /s", "raftflow / PySyncObj"],
        rows,
    ))
    on1 = results["raftflow_fsync_on"][0]
    out.append(
        f"Commit latency at 1 client: p50 {on1['p50_ms']:.2f} ms = {on1['p50_ms'] * 1000 / floor['grpc_rtt']['p50_us']:.1f}x "
        f"the gRPC round trip, {on1['p50_ms'] * 1000 / floor['fsync']['p50_us']:.1f}x an fdatasync.\n"
    )
    return "\n".join(out)


def main() -> int:
    # SIGTERM (a timeout, Ctrl-C from make) unwinds like an exception, so every
    # `finally` that stops node processes runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="1 repeat, 3 s per point, 3 kills, no fsync-off runs, one PySyncObj mode per point")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per measurement")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--kills", type=int, default=None)
    parser.add_argument("--no-reference", action="store_true", help="skip PySyncObj and etcd")
    parser.add_argument("--no-etcd", action="store_true", help="skip etcd")
    parser.add_argument("--install-refs", action="store_true",
                        help="first install etcd from Debian's packages when it is missing (needs root and apt)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures here")
    args = parser.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 5.0)
    repeats = args.repeats or (1 if args.quick else 3)
    kills = args.kills or (3 if args.quick else 10)
    with_etcd = not (args.no_etcd or args.no_reference)
    if args.install_refs and with_etcd:
        import _install_etcd  # noqa: PLC0415

        reason = _install_etcd.ensure()
        print(f"etcd: cannot install: {reason}" if reason else f"etcd: {_install_etcd.binary()}", file=sys.stderr)
    results: dict = {"seconds": seconds, "repeats": repeats, "date": time.strftime("%Y-%m-%d %H:%M")}
    with tempfile.TemporaryDirectory(prefix="raftflow-bench-", dir=os.environ.get("BENCH_DIR")) as workdir:
        print("measuring the machine's floor...", file=sys.stderr, flush=True)
        results["floor"] = {"fsync": fsync_floor(workdir), "grpc_rtt": run_sync(_grpc_rtt()), "loadavg": os.getloadavg()}
        print("raftflow, fsync on...", file=sys.stderr, flush=True)
        results["raftflow_reads"] = {}
        results["raftflow_fsync_on"] = _raftflow_writes(
            workdir, "fsync-on", CLIENTS, seconds, repeats, reads=results["raftflow_reads"]
        )
        if with_etcd:  # next to raftflow's fsync-on run, so both see the same machine
            print("etcd...", file=sys.stderr, flush=True)
            results.update(_etcd(workdir, CLIENTS, seconds, repeats, kills))
        else:
            results.update({key: "--no-etcd" for key in ETCD_KEYS})
        if args.quick:  # fsync off is what the disk costs, not an aim: the full run measures it
            results["raftflow_fsync_off"] = "skipped in --quick"
        else:
            print("raftflow, fsync off...", file=sys.stderr, flush=True)
            results["raftflow_fsync_off"] = _raftflow_writes(workdir, "fsync-off", CLIENTS, seconds, 1, fsync=False)
        print("raftflow, proposals at the leader...", file=sys.stderr, flush=True)
        results["raftflow_leader"] = [
            {**leader_proposals(workdir, inflight, seconds, fsync), "fsync": fsync}
            for inflight in LEADER_INFLIGHT
            for fsync in ((True,) if args.quick else (True, False))
        ]
        print(f"raftflow failover, {kills} leader kills...", file=sys.stderr, flush=True)
        with RaftflowCluster(os.path.join(workdir, "failover")) as cluster:
            results["raftflow_failover"] = cluster.failover(kills)
    if args.no_reference:
        results["pysyncobj_writes"] = results["pysyncobj_failover"] = "--no-reference"
    else:
        print("PySyncObj...", file=sys.stderr, flush=True)
        results["pysyncobj_writes"] = _pysyncobj_writes(CLIENTS + (10_000,), seconds, repeats, quick=args.quick)
        results["pysyncobj_failover"] = _pysyncobj_failover(kills)
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
