"""What the benchmarks share: spread formatting, the scale figures' table and a
garbage-collector timer."""

from __future__ import annotations

import gc
import statistics
import time


def triple(values: list[float], fmt) -> str:
    """min / median / max, each through `fmt`."""
    return f"{fmt(min(values))} / {fmt(statistics.median(values))} / {fmt(max(values))}"


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def percentile(samples: list[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) by the rule every bench reports: the value at
    index int(q * n) of the sorted samples (the largest at q = 1); nan if none."""
    return _at(sorted(samples), q)


def quantiles_ms(samples_s: list[float]) -> list[float]:
    """Latencies (seconds) as 101 quantiles in ms, the 0th to the 100th percentile
    by `percentile`'s rule: enough to draw a CDF, small enough to keep per load level."""
    ordered = sorted(samples_s)
    return [round(_at(ordered, q / 100) * 1000, 4) for q in range(101)] if ordered else []


def _at(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def fmt_rate(x: float) -> str:
    """A rate per second: one decimal below 100, none from there."""
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


class GcTimer:
    """Adds up the time spent in gc collections while enabled (via gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._t0

    def __enter__(self) -> "GcTimer":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self)


def scale_markdown(results: dict) -> str:
    """bench/scale_bench.py's figures ({nodes: run}) as a Markdown section."""
    out = ["## Scale: writes/s and memory as the log grows; restart time; 5 nodes vs 3", ""]
    for nodes, r in results.items():
        out.append(f"{nodes} nodes, {r['entries']:,} entries (fsync on, a snapshot every 100,000 entries):")
        out.append("")
        out.append("| entries | writes/s | RSS MB per node |")
        out.append("| --- | --- | --- |")
        for s in r["segments"]:
            rss = ", ".join(f"{v:.0f}" for v in s["rss_mb"].values())
            out.append(f"| {s['entries']:,} | {s['writes_per_s']:,.0f} | {rss} |")
        rss = ", ".join(f"{v:.0f}" for v in r["rss_after_restart_mb"].values())
        out.append("")
        out.append(f"Restart of every node to the first committed write: {r['restart_s']:.2f} s (RSS after: {rss} MB).")
        out.append("")
    return "\n".join(out)


# --- bench/security_bench.py's figures: TLS + tokens against plaintext --------------------

SECURITY_AIM_PCT = 15.0  # TLS + tokens may make no rate lower than plaintext's by more than this
SECURITY_MODES = ("plaintext", "tls")
# (field, label, higher is better): a rate's cost is how much lower TLS's is; a
# latency's or CPU's, how much higher. Either way positive = TLS worse.
SECURITY_FIELDS = (
    ("rate", "{unit}/s", True),
    ("p50_ms", "p50 ms", False),
    ("p99_ms", "p99 ms", False),
    ("node_cpu_ms", "CPU ms per {op} in the 3 nodes", False),
    ("client_cpu_ms", "CPU ms per {op} in the worker and the client", False),
)


def cost_pct(plaintext: float, tls: float, higher_is_better: bool) -> float:
    """What TLS + tokens costs, in % of plaintext's figure: positive = TLS worse
    (a lower rate, a higher latency), negative = TLS better."""
    worse_by = plaintext - tls if higher_is_better else tls - plaintext
    return 100.0 * worse_by / plaintext if plaintext else float("nan")


def security_summary(runs: dict) -> dict:
    """{kind: {field: {"plaintext", "tls" (medians over rounds), "cost_pct" (of the
    medians), "round_cost_pct" (round by round)}}} from the runs, {kind: {mode: [run]}};
    a field is left out when a run lacks it."""
    summary: dict = {}
    for kind, by_mode in runs.items():
        summary[kind] = {}
        for field, _, higher in SECURITY_FIELDS:
            if not all(by_mode[m] and all(field in r for r in by_mode[m]) for m in SECURITY_MODES):
                continue
            plain, tls = ([r[field] for r in by_mode[m]] for m in SECURITY_MODES)
            summary[kind][field] = {
                "plaintext": statistics.median(plain), "tls": statistics.median(tls),
                "cost_pct": cost_pct(statistics.median(plain), statistics.median(tls), higher),
                "round_cost_pct": [cost_pct(p, t, higher) for p, t in zip(plain, tls)],
            }
    return summary


def security_markdown(results: dict) -> str:
    """bench/security_bench.py's figures as a Markdown section: a row per figure with
    each mode's median (min-max over rounds), the cost, and the cost round by round."""
    summary, runs = results["summary"], results["runs"]
    rows, checks = [], []
    for kind, label in results["kinds"].items():
        unit, op = ("sagas", "saga") if kind.startswith("sagas") else ("writes", "write")
        for field, name, higher in SECURITY_FIELDS:
            s = summary[kind].get(field)
            if s is None:
                continue
            fmt = fmt_rate if field == "rate" else (lambda x: f"{x:.3f}") if "cpu" in field else (lambda x: f"{x:.2f}")
            cells = [
                f"{fmt(s[m])} ({fmt(min(r[field] for r in runs[kind][m]))}-{fmt(max(r[field] for r in runs[kind][m]))})"
                for m in SECURITY_MODES
            ]
            rows.append([label, name.format(unit=unit, op=op), *cells, f"{s['cost_pct']:+.1f}%",
                         ", ".join(f"{c:+.0f}" for c in s["round_cost_pct"])])
            if field == "rate":
                checks.append((f"{label}: {unit}/s", s["cost_pct"]))
    errors = {f"{kind} {m}": sum(r.get("errors", 0) for r in runs[kind][m]) for kind in runs for m in SECURITY_MODES}
    title = (f"### TLS + bearer tokens against plaintext: 3 nodes, fsync on, 127.0.0.1 "
             f"(median of {results['rounds']} alternating rounds; min-max)")
    meaning = ("TLS cost: how much lower TLS's rate is than plaintext's, or how much higher its latency or CPU, "
               "in % of plaintext's median (negative = TLS better).")
    aim = "; ".join(f"{what} {pct:+.1f}% ({'met' if pct <= SECURITY_AIM_PCT else 'NOT MET'})" for what, pct in checks)
    load = results["load_average"]
    errors_text = ", ".join(f"{k} {v}" for k, v in errors.items() if v) or "none"
    lines = [
        title, "",
        "| load | figure | plaintext | TLS + tokens | TLS cost | cost per round, % |",
        "| --- | --- | --- | --- | --- | --- |",
        *("| " + " | ".join(r) + " |" for r in rows),
        "", meaning,
        f"Aim: TLS + tokens at most {SECURITY_AIM_PCT:.0f}% lower on every rate: {aim}.",
        (f"Load average {load[0]:.2f} at the start, {load[1]:.2f} at the end ({results['cpus']} CPUs); "
         f"{results['seconds']:g} s per write point; errors and wrong saga outcomes: {errors_text}."),
    ]
    return "\n".join(lines) + "\n"
