"""etcd reference figures for bench/cluster_bench.py: the same workloads as raftflow's,
on a 3-member etcd cluster on this machine, in the same run, loaded from Python.

What is measured
----------------
Three etcd members on 127.0.0.1 (free ports, data dirs in a temp folder), each its
own process, etcd's defaults otherwise: its WAL is fsynced before a write is acked
(etcd has no switch to turn that off), heartbeat 100 ms, election timeout 1,000 ms.

The client is Python, as raftflow's bench client is: etcd's JSON gRPC gateway
(`POST /v3/kv/put`, `/v3/kv/range`, keys and values base64) with aiohttp (httpx
cost about 20x more client CPU per request here), one `ClientSession` whose
connection pool holds one connection per concurrent client, every request sent to
the leader's client URL (found with `/v3/maintenance/status`), so no member
forwards. uvloop runs the client when it is installed, as for raftflow's load.

- `Cluster.writes(clients, seconds)`: closed loop, as bench/_loadgen.py: `clients`
  coroutines each put a 100-byte value, wait for the reply, put again; the first
  min(1 s, seconds/4) is warm-up; a put counts when it started in the window.
- `Cluster.reads(clients, seconds, serializable)`: the same loop with range requests
  on 100 keys written beforehand; linearizable (etcd's default, a ReadIndex round)
  or serializable (the member's local state, no round).
- `Cluster.failover(kills)`: SIGKILL the leader, then put back to back (each try
  given up after 0.1 s, to the surviving members in turn) until one succeeds; the
  sample is the wall time from the kill. The member is restarted on its data dir and
  the next round waits until all three answer and agree on a leader.

`Cluster` stops every process it started on exit, errors included.

    .venv/bin/python bench/_etcd_ref.py --seconds 3 --kills 3     # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from _report import percentile, quantiles_ms  # a sibling module: bench/ is on the path

VALUE_BYTES = 100
READ_KEYS = 100
START_TIMEOUT_S = 30.0
PROBE_DEADLINE_S = 30.0
PROBE_TRY_S = 0.1  # a put on a healthy cluster takes ~2 ms here


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _free_ports(n: int) -> list[int]:
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run(coro):
    """A fresh event loop per call (aiohttp sessions do not outlive it); uvloop
    when installed, the loop raftflow's load generator uses too."""
    try:
        import uvloop  # noqa: PLC0415

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def version() -> str:
    out = subprocess.run(["etcd", "--version"], capture_output=True, text=True, timeout=10)
    return out.stdout.splitlines()[0].removeprefix("etcd Version: ").strip() if out.returncode == 0 else "?"


@dataclass
class _Member:
    name: str
    client_url: str
    peer_url: str
    data_dir: str
    log_path: str
    process: subprocess.Popen | None = None


class Cluster:
    """A 3-member etcd cluster; `with Cluster() as c:` starts it and waits for a leader."""

    def __init__(self, members: int = 3, directory: str | None = None) -> None:
        self._temp = None if directory else tempfile.TemporaryDirectory(prefix="etcd-bench-")
        root = directory or self._temp.name
        os.makedirs(root, exist_ok=True)
        ports = _free_ports(2 * members)
        self.members = [
            _Member(
                name=f"m{i + 1}", client_url=f"http://127.0.0.1:{ports[2 * i]}",
                peer_url=f"http://127.0.0.1:{ports[2 * i + 1]}",
                data_dir=os.path.join(root, f"m{i + 1}.etcd"), log_path=os.path.join(root, f"m{i + 1}.log"),
            )
            for i in range(members)
        ]
        self._initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def __enter__(self) -> Cluster:
        try:
            for m in self.members:
                self._start(m)
            self.wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for m in self.members:
            self._stop(m)
        if self._temp is not None:
            self._temp.cleanup()

    def _start(self, m: _Member) -> None:
        argv = [
            "etcd", "--name", m.name, "--data-dir", m.data_dir,
            "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", self._initial, "--initial-cluster-state", "new",
            "--initial-cluster-token", "raftflow-bench",
        ]
        with open(m.log_path, "ab") as log:
            m.process = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def _stop(self, m: _Member) -> None:
        if m.process is not None and m.process.poll() is None:
            m.process.kill()
        if m.process is not None:
            m.process.wait(timeout=10)
        m.process = None

    def _log_tail(self) -> str:
        tails = []
        for m in self.members:
            with contextlib.suppress(OSError), open(m.log_path, errors="replace") as f:
                tails.append(f"{m.name}: {f.read()[-300:].strip()}")
        return " | ".join(tails)

    # --- status ---------------------------------------------------------------------

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> str:
        """Waits until every member answers and all name the same leader; returns its client URL."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.members:
                if m.process is not None and m.process.poll() is not None:
                    raise RuntimeError(f"etcd member {m.name} exited {m.process.returncode}: {self._log_tail()}")
            leader = _run(self._agreed_leader())
            if leader is not None:
                return leader
            time.sleep(0.05)
        raise RuntimeError(f"etcd: no agreed leader after {timeout} s: {self._log_tail()}")

    async def _agreed_leader(self) -> str | None:
        import aiohttp  # noqa: PLC0415

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session:
            statuses = await asyncio.gather(*(_status(session, m.client_url) for m in self.members))
        if any(s is None for s in statuses) or len({s["leader"] for s in statuses}) != 1:
            return None
        leader = statuses[0]["leader"]
        if leader in (None, "0"):
            return None
        for m, s in zip(self.members, statuses):
            if s["header"]["member_id"] == leader:
                return m.client_url
        return None

    def leader(self) -> str:
        return self.wait_ready()

    # --- workloads ------------------------------------------------------------------

    def writes(self, clients: int, seconds: float) -> dict:
        url = self.leader() + "/v3/kv/put"
        value = _b64(b"v" * VALUE_BYTES)
        bodies = [[json.dumps({"key": _b64(f"c{n}-{i}".encode()), "value": value}) for i in range(100)]
                  for n in range(clients)]
        return {"clients": clients, **_run(_closed_loop(url, bodies, clients, seconds))}

    def reads(self, clients: int, seconds: float, *, serializable: bool) -> dict:
        leader = self.leader()
        _run(_fill(leader, READ_KEYS))
        bodies = [[json.dumps({"key": _b64(f"r{i}".encode()), "serializable": serializable}) for i in range(READ_KEYS)]
                  for _ in range(clients)]
        result = _run(_closed_loop(leader + "/v3/kv/range", bodies, clients, seconds))
        return {"clients": clients, "consistency": "serializable" if serializable else "linearizable", **result}

    def failover(self, kills: int) -> list[float]:
        """Seconds from each SIGKILL of the leader to the next committed put."""
        samples = []
        for _ in range(kills):
            leader_url = self.leader()
            member = next(m for m in self.members if m.client_url == leader_url)
            survivors = [m.client_url for m in self.members if m is not member]
            member.process.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            samples.append(_run(_first_put_after(survivors, killed_at)))
            self._stop(member)  # reap it
            self._start(member)  # on its data dir: it rejoins as the member it was
            self.wait_ready()
        return samples


async def _status(session, url: str) -> dict | None:
    try:
        async with session.post(url + "/v3/maintenance/status", data="{}") as reply:
            if reply.status != 200:
                return None
            return await reply.json(content_type=None)
    except (OSError, asyncio.TimeoutError, ValueError):
        return None
    except Exception as exc:  # aiohttp's ClientError family
        if type(exc).__module__.startswith("aiohttp"):
            return None
        raise


async def _fill(leader: str, keys: int) -> None:
    import aiohttp  # noqa: PLC0415

    value = _b64(b"v" * VALUE_BYTES)
    async with aiohttp.ClientSession() as session:
        for i in range(keys):
            body = json.dumps({"key": _b64(f"r{i}".encode()), "value": value})
            async with session.post(leader + "/v3/kv/put", data=body) as reply:
                assert reply.status == 200, (reply.status, await reply.text())
                await reply.read()


async def _closed_loop(url: str, bodies: list[list[str]], clients: int, seconds: float) -> dict:
    """`clients` coroutines POST their bodies in turn, each waiting for its reply;
    counted as bench/_loadgen.py counts (warm-up, then requests started in the window)."""
    import aiohttp  # noqa: PLC0415

    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.post(url, data=bodies[0][0], headers=headers) as reply:  # the first connection
            await reply.read()
        warmup_end = time.perf_counter() + min(1.0, seconds / 4)
        end = warmup_end + seconds

        async def one(mine: list[str]) -> None:
            nonlocal errors
            i = 0
            while True:
                started = time.perf_counter()
                if started >= end:
                    return
                try:
                    async with session.post(url, data=mine[i % len(mine)], headers=headers) as reply:
                        await reply.read()
                        ok = reply.status == 200
                except Exception:  # noqa: BLE001 (counted and reported)
                    ok = False
                if not ok:
                    errors += 1
                    continue
                if started >= warmup_end:
                    latencies.append(time.perf_counter() - started)
                i += 1

        await asyncio.gather(*(one(bodies[n]) for n in range(clients)))
    return {"ops": len(latencies), "ops_per_s": len(latencies) / seconds, "p50_ms": percentile(latencies, 0.50) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "errors": errors, "quantiles_ms": quantiles_ms(latencies)}


async def _first_put_after(urls: list[str], since: float) -> float:
    import aiohttp  # noqa: PLC0415

    body = json.dumps({"key": _b64(b"failover-probe"), "value": _b64(b"x")})
    # A put that reaches a member with no leader is dropped by etcd and answers only
    # when its own timeout ends (seconds): each try gives up after PROBE_TRY_S, so
    # the sample is within PROBE_TRY_S of the first put the new leader commits.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROBE_TRY_S)) as session:
        attempt = 0
        while True:
            url = urls[attempt % len(urls)]
            attempt += 1
            try:
                async with session.post(url + "/v3/kv/put", data=body) as reply:
                    await reply.read()
                    if reply.status == 200:
                        return time.monotonic() - since
            except Exception as exc:  # noqa: BLE001 (a refused or timed-out try: try again)
                if not (isinstance(exc, (OSError, asyncio.TimeoutError)) or type(exc).__module__.startswith("aiohttp")):
                    raise
            if time.monotonic() - since > PROBE_DEADLINE_S:
                raise RuntimeError(f"etcd: no put committed within {PROBE_DEADLINE_S} s of the leader's kill")
            await asyncio.sleep(0.005)


def available() -> str | None:
    """None when etcd and aiohttp are here, else the one-line reason they are not."""
    if shutil.which("etcd") is None:
        return "etcd is not installed (`python bench/cluster_bench.py --install-refs` installs it from Debian's packages)"
    try:
        import aiohttp  # noqa: F401, PLC0415
    except ImportError:
        return "aiohttp is not installed: `.venv/bin/pip install -e '.[bench]'`"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,16,64,256")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--kills", type=int, default=3)
    args = parser.parse_args()
    reason = available()
    if reason:
        print(f"etcd: skipped: {reason}")
        return 0
    print(f"etcd {version()}")
    with Cluster() as cluster:
        for n in (int(x) for x in args.clients.split(",")):
            print(json.dumps(cluster.writes(n, args.seconds)), flush=True)
        for serializable in (False, True):
            print(json.dumps(cluster.reads(64, args.seconds, serializable=serializable)), flush=True)
        print(json.dumps({"failover_s": cluster.failover(args.kills)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
