"""`raftflow demo cap`: the consistency/availability trade-off, shown on 5 real nodes.

Write a value; split the cluster 2|3 with the leader on the small side; show the
majority electing a leader and accepting writes while the minority refuses writes and
linearizable reads (a clear error, quickly) but serves stale reads with the old
value, marked stale; heal; show the minority catching up and the stale value
becoming current. Prints a timeline (time, action, node, result) and a verdict;
`--plot FILE.png` draws the timeline (needs matplotlib: `pip install raftflow[plot]`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass

from raftflow.cluster.local import launcher
from raftflow.cluster.client import Client, RaftflowError, Unavailable
from raftflow.cluster.demos.narration import leader_of
from raftflow.cluster.local.partitions import cut_plan, faults_of
from raftflow.raft.types import Role

REFUSE_WITHIN_S = 5.0


@dataclass(frozen=True, slots=True)
class Row:
    t: float  # seconds since the demo began
    action: str
    node: str
    result: str
    outcome: str  # ok | refused | stale | fault | info: the plot's colour


class Timeline:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.rows: list[Row] = []
        print(f"{'TIME':>8}  {'ACTION':<28} {'NODE':<8} RESULT", flush=True)

    def add(self, action: str, node: str, result: str, outcome: str = "info") -> None:
        row = Row(time.monotonic() - self.started, action, node, result, outcome)
        self.rows.append(row)
        print(f"{row.t:7.3f}s  {action:<28} {node:<8} {result}", flush=True)


def _set_split(client: Client, cluster: launcher.ClusterFile, sides: list[set[int]] | None) -> None:
    members = [m.id for m in cluster.members]
    plan = cut_plan(members, sides) if sides else {node: {} for node in members}
    for m in cluster.members:
        client.set_faults(m.address, faults_of(plan[m.id]), replace=True)


def _until_ok(call, timeout: float):
    """Retry `call` until it succeeds; (result, seconds it took)."""
    started = time.monotonic()
    while True:
        try:
            return call(), time.monotonic() - started
        except RaftflowError:
            if time.monotonic() - started > timeout:
                raise
            time.sleep(0.02)  # the cluster is electing: ask again shortly


def run_cap_demo(directory: str | None = None, plot: str | None = None) -> int:
    keep = directory is not None
    directory = os.path.abspath(directory or tempfile.mkdtemp(prefix="raftflow-cap-"))
    cluster = launcher.create(directory, 5, 0)
    t = Timeline()
    problems: list[str] = []
    figures: dict[str, float] = {}
    try:
        for m in cluster.members:
            launcher.start_node(cluster, m)
        with cluster.client(timeout=10.0, no_leader_timeout=5.0) as client:
            leader = leader_of(cluster, client)
            t.add("start 5 nodes", "all", f"node {leader} leads", "ok")
            client.put("color", b"blue")
            t.add("put color=blue", f"{leader}", "ok (on a majority)", "ok")
            problems += _split_story(t, cluster, client, leader, figures)
    except (RaftflowError, launcher.LauncherError) as exc:
        problems.append(str(exc))
    finally:
        for m in cluster.members:
            launcher.stop_node(cluster, m)
        t.add("stop the cluster", "all", "done")
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)
    if figures:
        print("figures: " + ", ".join(f"{name} {value * 1000:.0f} ms" for name, value in figures.items()))
    if plot:
        _plot(t.rows, plot)
    if problems:
        print("verdict: FAILED: " + "; ".join(problems))
        return 1
    print("verdict: OK: during the split the majority stayed available and consistent, the minority chose "
          "consistency (refused writes and linearizable reads, served stale reads marked stale); after heal "
          "every node agrees")
    return 0


def _split_story(t: Timeline, cluster: launcher.ClusterFile, client: Client, leader: int,
                 figures: dict[str, float]) -> list[str]:
    problems = []
    others = [m.id for m in cluster.members if m.id != leader]
    minority, majority = [leader, others[0]], others[1:]
    address = {m.id: m.address for m in cluster.members}
    _set_split(client, cluster, [set(minority), set(majority)])
    split_at = time.monotonic()
    t.add(f"split {','.join(map(str, minority))}|{','.join(map(str, majority))}", "net",
          f"leader {leader} on the minority side", "fault")

    with Client([address[i] for i in majority], credentials=cluster.credentials(), timeout=10.0, no_leader_timeout=5.0) as side:
        result, _ = _until_ok(lambda: side.put("color", b"green"), 10.0)
        figures["majority commits again after"] = time.monotonic() - split_at
        new_leader = side.status(address[majority[0]]).leader_id
        t.add("put color=green (majority)", f"{new_leader}", f"ok, node {new_leader} elected "
              f"({figures['majority commits again after'] * 1000:.0f} ms after the split)", "ok")

    with Client([address[i] for i in minority], credentials=cluster.credentials(), timeout=REFUSE_WITHIN_S, no_leader_timeout=1.0) as side:
        def stepped_down():
            if side.status(address[leader]).role is Role.LEADER:
                raise RaftflowError("still leader")
            return True
        _until_ok(stepped_down, 10.0)
        t.add("status", f"{leader}", f"stepped down {(time.monotonic() - split_at) * 1000:.0f} ms after the split "
              "(CheckQuorum: it hears no majority)", "info")
        started = time.monotonic()
        try:
            side.put("color", b"red")
            problems.append("the minority accepted a write")
            t.add("put color=red (minority)", f"{leader}", "ACCEPTED (wrong)", "ok")
        except Unavailable as exc:  # refused before any log took it, in bounded time
            figures["minority refuses a write within"] = time.monotonic() - started
            t.add("put color=red (minority)", f"{leader}", f"refused in {figures['minority refuses a write within'] * 1000:.0f} ms: {exc}", "refused")
        except RaftflowError as exc:  # e.g. a timeout: the minority hung instead of refusing
            problems.append(f"the minority's write ended with {type(exc).__name__} ({exc}), not a quick refusal")
            t.add("put color=red (minority)", f"{leader}", f"{type(exc).__name__}: {exc}", "refused")
        try:
            side.get("color", consistency="linearizable")
            problems.append("the minority served a linearizable read")
        except RaftflowError as exc:
            t.add("get color (linearizable)", f"{minority[1]}", f"refused: {exc}", "refused")
        stale = side.get("color", consistency="stale", endpoint=address[minority[1]])
        value = stale.value.decode() if stale.value else None
        t.add("get color (stale)", f"{minority[1]}", f"{value} (stale: index {stale.applied_index}, no leader "
              f"heard for {stale.since_leader_s:.1f}s)" if stale.since_leader_s >= 0 else f"{value} (stale)", "stale")
        if value != "blue" or not stale.stale:
            problems.append(f"the minority's stale read gave {value!r}, expected the old 'blue' marked stale")

    _set_split(client, cluster, None)
    healed_at = time.monotonic()
    t.add("heal", "net", "all messages flow again", "fault")
    with Client([address[minority[1]]], credentials=cluster.credentials(), timeout=5.0) as side:
        def caught_up():
            read = side.get("color", consistency="stale", endpoint=address[minority[1]])
            if read.value != b"green":
                raise RaftflowError(f"still {read.value!r}")
            return read
        read, _ = _until_ok(caught_up, 20.0)
        figures["minority converges after heal in"] = time.monotonic() - healed_at
        t.add("get color (stale)", f"{minority[1]}", f"green: caught up {figures['minority converges after heal in'] * 1000:.0f} ms after heal", "ok")
    try:
        applied, hashes = launcher.converged_hashes(cluster, client)
    except launcher.LauncherError as exc:
        t.add("state hashes", "all", str(exc), "refused")
        problems.append(str(exc))
        return problems
    if len(set(hashes.values())) == 1:
        t.add("state hashes", "all", f"equal on every node at index {applied}", "ok")
    else:
        t.add("state hashes", "all", "differ: " + ", ".join(f"node {i} {h[:12]}" for i, h in hashes.items()), "refused")
        problems.append("state hashes differ after heal")
    return problems


def _plot(rows: list[Row], path: str) -> None:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print(f"--plot {path}: matplotlib is not installed (pip install 'raftflow[plot]'); timeline printed only")
        return
    colours = {"ok": "tab:green", "refused": "tab:red", "stale": "tab:orange", "fault": "tab:purple", "info": "tab:gray"}
    lanes = sorted({r.node for r in rows}, key=lambda n: (not n.isdigit(), n))
    fig, ax = plt.subplots(figsize=(11, 0.6 * len(lanes) + 2))
    split = next((r.t for r in rows if r.action.startswith("split")), None)
    heal = next((r.t for r in rows if r.action == "heal"), None)
    if split is not None and heal is not None:
        ax.axvspan(split, heal, color="tab:purple", alpha=0.08, label="partitioned")
    for n, r in enumerate(rows):
        y = lanes.index(r.node)
        ax.scatter(r.t, y, color=colours[r.outcome], s=60, zorder=3)
        ax.annotate(r.action, (r.t, y), textcoords="offset points", xytext=(4, 6 if n % 2 else -12), fontsize=7)
    ax.set_yticks(range(len(lanes)), [f"node {n}" if n.isdigit() else n for n in lanes])
    ax.set_xlabel("seconds")
    ax.set_title("raftflow demo cap: a 2|3 split (green ok, red refused, orange stale, purple network)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")
