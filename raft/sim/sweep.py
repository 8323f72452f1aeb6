"""Many seeds at once, on every core: `raftflow sim --seeds N` and `make soak`."""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Iterator

from raftflow.raft.sim.simulation import SimOptions, SimResult, run


@dataclasses.dataclass(frozen=True, slots=True)
class SeedOutcome:
    seed: int
    ok: bool
    violation: str | None
    replay: str
    stats: dict[str, int]


def _run_one(options: SimOptions) -> SeedOutcome:
    result: SimResult = run(options)
    return SeedOutcome(options.seed, result.ok, result.violation, options.replay_command(), result.stats)


def sweep(template: SimOptions, seeds: range, jobs: int = 1) -> Iterator[SeedOutcome]:
    """Run `template` once per seed; yields outcomes as they finish (any order)."""
    runs = (dataclasses.replace(template, seed=s) for s in seeds)
    if jobs <= 1:
        yield from map(_run_one, runs)
        return
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        yield from pool.imap_unordered(_run_one, runs, chunksize=8)
