"""bench/report.py's plots: PNGs from the normalized figures (matplotlib, Agg: no display).

Each function draws one plot to `path` and returns the path, or None when nothing in
the figures can be drawn (a bench skipped or not run): the page then lists fewer plots.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from _report import fmt_rate as _rate

if TYPE_CHECKING:
    from report import Failover, SagaSystem, Series


def _figure(columns: int = 1):
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, columns, figsize=(6.4 * columns, 4.0))
    return plt, fig, axes


def _save(plt, fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=80)  # small files: a committed run stays a few hundred KB
    plt.close(fig)
    return path


def _dress(ax, title: str, xlabel: str, ylabel: str, *, grid: bool = True) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if grid:
        ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


def plot_throughput(writes: list[Series], path: str) -> str | None:
    measured = [s for s in writes if s.points]
    if not measured:
        return None
    plt, fig, ax = _figure()
    for s in measured:
        xs = [p.x for p in s.points]
        ax.errorbar(xs, [p.median for p in s.points], marker="o", capsize=3, label=s.system,
                    yerr=[[p.median - p.low for p in s.points], [p.high - p.median for p in s.points]])
    ax.set_xscale("log")
    _dress(ax, "Replicated writes, 3 nodes, 100-byte values", "concurrent clients (in flight, for PySyncObj)",
           "writes/s (median, min-max bars)")
    return _save(plt, fig, path)


def plot_latency(writes: list[Series], path: str) -> str | None:
    """p50 and p99 per load level, and beside them the latency CDF of each system at
    the highest load level where the most systems recorded their distribution."""
    measured = [s for s in writes if any(p.p50_ms for p in s.points)]
    if not measured:
        return None
    xs = sorted({p.x for s in measured for p in s.points})
    with_cdf = {x: [s for s in measured if s.at(x) and s.at(x).quantiles_ms] for x in xs}
    cdf_x = max(xs, key=lambda x: (len(with_cdf[x]), x))
    plt, fig, axes = _figure(2 if with_cdf[cdf_x] else 1)
    ax = axes[0] if with_cdf[cdf_x] else axes
    width = 0.8 / len(measured)
    for i, s in enumerate(measured):
        pos = [j + i * width for j in range(len(xs))]
        p50 = [(s.at(x).p50_ms or 0) if s.at(x) else 0 for x in xs]
        p99 = [(s.at(x).p99_ms or 0) if s.at(x) else 0 for x in xs]
        bars = ax.bar(pos, p99, width, alpha=0.35)
        ax.bar(pos, p50, width, color=bars[0].get_facecolor()[:3], label=f"{s.system} (solid p50, pale p99)")
    ax.set_xticks([j + width * (len(measured) - 1) / 2 for j in range(len(xs))], [f"{x:,}" for x in xs])
    ax.set_yscale("log")
    _dress(ax, "Write latency: p50 and p99", "concurrent clients", "write latency, ms (log)", grid=False)
    if with_cdf[cdf_x]:
        cdf = axes[1]
        for s in with_cdf[cdf_x]:
            q = s.at(cdf_x).quantiles_ms
            cdf.plot(q, [i / (len(q) - 1) for i in range(len(q))], label=s.system)
        cdf.set_xscale("log")
        _dress(cdf, f"Write latency CDF at {cdf_x:,} clients", "write latency, ms (log)", "fraction of writes")
    return _save(plt, fig, path)


def plot_failover(failovers: list[Failover], path: str) -> str | None:
    measured = [f for f in failovers if f.samples_ms]
    if not measured:
        return None
    plt, fig, ax = _figure()
    for f in measured:
        ax.plot(range(1, len(f.samples_ms) + 1), f.samples_ms, marker="o", label=f.system)
    ax.xaxis.set_major_locator(plt.matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    _dress(ax, "Failover: leader killed", "kill, in the order the bench lists them (raftflow's sorted by time)",
           "SIGKILL to next committed write, ms")
    return _save(plt, fig, path)


def plot_sagas(systems: list[SagaSystem], path: str) -> str | None:
    measured = [s for s in systems if not s.skipped]
    if not measured:
        return None
    plt, fig, (rate, cdf) = _figure(2)
    xs = sorted({p.x for s in measured if s.throughput for p in s.throughput.points})
    width = 0.8 / len(measured)
    for i, s in enumerate(measured):
        points = [s.throughput.at(x) if s.throughput else None for x in xs]
        bars = rate.bar([j + i * width for j in range(len(xs))], [p.median if p else 0 for p in points], width,
                        yerr=[[p.median - p.low if p else 0 for p in points],
                              [p.high - p.median if p else 0 for p in points]], capsize=3, label=s.system)
        rate.bar_label(bars, labels=[_rate(p.median) if p else "" for p in points], fontsize=7)
        if s.one_saga_s:
            ms = sorted(x * 1000 for x in s.one_saga_s)
            cdf.plot(ms, [(k + 1) / len(ms) for k in range(len(ms))], label=s.system)
    rate.set_xticks([j + width * (len(measured) - 1) / 2 for j in range(len(xs))], [f"{x:,}" for x in xs])
    _dress(rate, "Saga throughput", "concurrent sagas", "sagas/s (median, min-max bars)", grid=False)
    rate.set_ylim(top=rate.get_ylim()[1] * 1.3)  # headroom: the legend sits above the bars, not on them
    rate.legend(fontsize=7, loc="upper left", ncol=2)
    cdf.set_xscale("log")
    cdf.xaxis.set_major_formatter(plt.matplotlib.ticker.ScalarFormatter())
    cdf.xaxis.set_minor_formatter(plt.matplotlib.ticker.NullFormatter())
    _dress(cdf, "One-saga latency CDF", "one saga alone, start to completion, ms (log)", "fraction of sagas")
    return _save(plt, fig, path)
