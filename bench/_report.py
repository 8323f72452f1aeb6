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
