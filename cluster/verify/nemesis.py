"""A nemesis run on a real cluster: concurrent clients doing put/get/cas on a few keys
while random partitions, kills, pauses and restarts hit the nodes, then a heal.

The run records every operation as the linearizability checker reads it
(docs/linearizability.md): invoke and complete times, input, output, and an outcome
of `ok`, `fail` (certainly had no effect) or `unknown` (may or may not have taken
effect). Everything random comes from one seed, printed with any failure, so a run
can be repeated (`raftflow`'s test and `make soak` print the seed).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from dataclasses import dataclass, field

from raftflow.cluster.local import launcher
from raftflow.cluster.client import AsyncClient, Busy, Client, InvalidArgument, RaftflowError, Unavailable, run_sync
from raftflow.cluster.local.partitions import cut_plan, faults_of

KEYS = ("x", "y", "z")
VALUES_PER_CLIENT = 1_000_000


@dataclass(slots=True)
class NemesisResult:
    seed: int
    history: list[dict]
    faults: list[str]  # what the nemesis did, with times
    hashes: dict[int, str] = field(default_factory=dict)
    final: dict[str, str | None] = field(default_factory=dict)


class Nemesis:
    """Injects one random fault at a time into `cluster`, undoing the last first. Runs
    on the clients' event loop; process control (kill, start) runs in a thread."""

    def __init__(self, cluster: launcher.ClusterFile, client: AsyncClient, rng: random.Random, started: float) -> None:
        self.cluster = cluster
        self.client = client
        self.rng = rng
        self.log: list[str] = []
        self.started = started
        self._undo = None

    def say(self, text: str) -> None:
        self.log.append(f"{time.monotonic() - self.started:7.2f}s {text}")

    async def step(self) -> None:
        await self.heal()
        members = [m.id for m in self.cluster.members]
        kind = self.rng.choice(("split", "isolate", "kill", "pause", "none"))
        if kind == "split":
            minority = set(self.rng.sample(members, (len(members) - 1) // 2))
            await self._cut([minority, set(members) - minority])
            self.say(f"split {sorted(minority)}|{sorted(set(members) - minority)}")
        elif kind == "isolate":
            node = self.rng.choice(members)
            await self._cut([{node}, set(members) - {node}])
            self.say(f"isolate {node}")
        elif kind == "kill":
            member = self.cluster.member(self.rng.choice(members))
            await asyncio.to_thread(launcher.stop_node, self.cluster, member, kill=True)
            self._undo = lambda: asyncio.to_thread(launcher.start_node, self.cluster, member)
            self.say(f"kill {member.id}")
        elif kind == "pause":
            member = self.cluster.member(self.rng.choice(members))
            if launcher.process_alive(member.pid):
                os.kill(member.pid, signal.SIGSTOP)
                self._undo = lambda: _resume(member.pid)
                self.say(f"pause {member.id}")

    async def _cut(self, sides: list[set[int]]) -> None:
        await self._set(cut_plan([m.id for m in self.cluster.members], sides))
        self._undo = lambda: self._set({m.id: {} for m in self.cluster.members})

    async def _set(self, plan) -> None:
        for m in self.cluster.members:
            try:
                await self.client.set_faults(m.address, faults_of(plan[m.id]), replace=True)
            except RaftflowError:
                pass  # a node down or paused: the other end of each cut holds

    async def heal(self) -> None:
        if self._undo is not None:
            undo, self._undo = self._undo, None
            await undo()
            self.say("heal")

    async def run(self, stop: asyncio.Event, every_s: float) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), every_s * (0.5 + self.rng.random()))
            except asyncio.TimeoutError:
                await self.step()
        await self.heal()


async def _resume(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)


async def _client_loop(client_id: int, cluster: launcher.ClusterFile, rng: random.Random, stop: asyncio.Event,
                       history: list[dict], started: float, clients_hint: int = 4) -> None:
    counter = 0
    async with AsyncClient(cluster.endpoints, credentials=cluster.credentials(), timeout=2.0, no_leader_timeout=1.0, rng=random.Random(rng.random())) as c:
        while not stop.is_set():
            key = rng.choice(KEYS)
            kind = rng.choice(("put", "put", "get", "get", "cas"))
            counter += 1
            value = f"{client_id}-{counter}"
            op: dict = {"client": client_id, "op": kind, "key": key, "invoke": time.monotonic() - started}
            try:
                if kind == "put":
                    op["value"] = value
                    await c.put(key, value.encode())
                elif kind == "get":
                    read = await c.get(key, consistency="linearizable")
                    op["result"] = read.value.decode() if read.value is not None else None
                else:
                    expected = rng.choice([None, f"{rng.randrange(clients_hint)}-{rng.randrange(1, 40)}"])
                    op["value"] = value
                    if expected is None:  # the key must not exist
                        op["expected_revision"] = 0
                        result = await c.cas(key, value.encode(), expected_revision=0)
                    else:
                        op["expected"] = expected
                        result = await c.cas(key, value.encode(), expected_value=expected.encode())
                    op["succeeded"] = result.succeeded
                op["outcome"] = "ok"
            except (Unavailable, Busy, InvalidArgument):
                op["outcome"] = "fail"  # never reached a log: certainly no effect
            except RaftflowError:
                op["outcome"] = "fail" if kind == "get" else "unknown"  # a read has no effect to be unsure of
            op["complete"] = time.monotonic() - started
            history.append(op)


def run(cluster: launcher.ClusterFile, *, seed: int, duration_s: float, clients: int = 4,
        fault_every_s: float = 1.0) -> NemesisResult:
    """Clients and nemesis for `duration_s`, then heal, restart and resume
    everything, wait until every node agrees, and read each key once more."""
    rng = random.Random(seed)
    history: list[dict] = []
    started = time.monotonic()
    faults = run_sync(_clients(cluster, rng, clients, duration_s, fault_every_s, history, started))
    for m in cluster.members:
        if not launcher.process_alive(m.pid):
            launcher.start_node(cluster, m)
    result = NemesisResult(seed, history, faults)
    with cluster.client(timeout=5.0, no_leader_timeout=5.0) as admin:
        _heal_everything(cluster, admin)
        result.hashes = launcher.converged_hashes(cluster, admin, timeout=30.0)[1]
        for key in KEYS:
            invoke = time.monotonic() - started
            read = admin.get(key, consistency="linearizable")
            value = read.value.decode() if read.value is not None else None
            result.final[key] = value
            history.append({"client": -1, "op": "get", "key": key, "result": value, "invoke": invoke,
                            "complete": time.monotonic() - started, "outcome": "ok"})
    return result


async def _clients(cluster, rng, clients, duration_s, fault_every_s, history, started) -> list[str]:
    stop = asyncio.Event()
    endpoints = cluster.endpoints
    tasks = [asyncio.create_task(_client_loop(i, cluster, random.Random(rng.random()), stop, history, started))
             for i in range(clients)]
    async with AsyncClient(endpoints, credentials=cluster.credentials(), timeout=2.0) as admin:
        nemesis = Nemesis(cluster, admin, random.Random(rng.random()), started)
        faults = asyncio.create_task(nemesis.run(stop, fault_every_s))
        await asyncio.sleep(duration_s)  # the run's length: clients and nemesis work meanwhile
        stop.set()
        await asyncio.gather(*tasks, faults)
    return nemesis.log


def _heal_everything(cluster: launcher.ClusterFile, client: Client, timeout: float = 30.0) -> None:
    """Every node resumed and without faults, checked by asking it (a heal during the
    run may have missed a node that was slow to answer)."""
    deadline = time.monotonic() + timeout
    for m in cluster.members:
        if launcher.process_alive(m.pid):
            os.kill(m.pid, signal.SIGCONT)
        while True:
            try:
                if not client.status(m.address, timeout=1.0).faults:
                    break
                client.set_faults(m.address, [], replace=True)
            except RaftflowError:
                pass
            if time.monotonic() > deadline:
                raise launcher.LauncherError(f"node {m.id} still has network faults {timeout:.0f}s after the run")
            time.sleep(0.05)  # polling another process
