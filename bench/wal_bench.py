"""Durable log storage on this machine's disk: `raft.disk.DiskStorage` against the
raw floor of the same disk, measured in the same run, and the restart time.

What is measured
----------------
Everything runs in a fresh temporary folder (`--dir`, default the current
directory, so the disk is the one the project lives on), removed at the end.

1. The raw floor. A bare loop of `os.write(B bytes)` + `os.fdatasync` on one file
   opened `O_WRONLY|O_CREAT|O_APPEND` (a file that grows with every sync, as segments
   did before they were preallocated). B is the
   payload of one persist call at each batch size: 100 bytes (batch 1), 1,600 (16)
   and 25,600 (256 x 100 bytes, one write). Reported: syncs/s, MB/s (payload bytes,
   1 MB = 10^6 bytes), p50/p99 latency of one write+fdatasync, and CPU us per sync
   (time.process_time, user + kernel: the kernel's share of a sync).
   A reference row per size (`--no-prealloc` drops it) does the same as `os.pwrite`
   in place over a file zero-filled and synced beforehand: close to how a segment,
   preallocated with posix_fallocate, syncs now (no file-size change for the
   fdatasync to journal).

2. `DiskStorage.persist(None, entries, hard_state)` with N entries of 100 bytes
   per call (N = 1, 16, 256: `--batch`), each call carrying a HardState (term, vote,
   commit = the last index of the previous call) as a Raft node's Ready would: one
   record batch, one fdatasync. Reported: entries/s, MB/s (payload), persist
   calls/s, p50/p99 latency per call, CPU us per call (user + kernel; minus the raw
   loop's CPU per sync, it is what persist adds in Python), WAL bytes written per
   entry (segment rotations included; the records, not the preallocated zeros); and each figure divided by the raw loop of
   the same payload bytes per sync, paired per repeat.

   Shared virtual disks drift by factors within seconds (the development VM's
   flips between ~0.2 ms and ~4 ms per sync), so the raw loop, the persist loop (and the
   preallocated reference) run interleaved, each lane on its own file: by default
   one operation of each in turn (`--block N`: N of each), the starting lane
   rotating, so every lane sees the same disk. Each lane on its own is still a plain
   sequential write+sync loop on one file. Throughput is operations / the time
   spent inside them. The Entry and HardState objects are built ahead, untimed, 100
   calls at a time (a Raft node hands them over already built). `--warmup`
   operations per lane are untimed.

3. Restart. `--restart-entries` entries of 100 bytes (default 1,000,000) are
   persisted in calls of `--restart-batch` (1000), then a last HardState with
   commit = the last index; the storage is closed. Each repeat then times
   `DiskStorage(...)` (open: it reads, checks and decodes the whole log) and
   `load()` separately, once with the data files dropped from the page cache first
   (posix_fadvise DONTNEED on each file: a restart after a reboot) and once warm
   (a restart after the process died). After each open (untimed) the recovered log is
   checked: count, last index, hard state, CRC32 of all payloads. GC % is the share
   of the open spent in Python's cyclic garbage collector. The on-disk size is
   reported (file sizes and allocated blocks).

The restart section runs last: writing ~110 MB leaves the disk busy flushing for a
while, which would disturb the sync loops. Payloads come from a seeded RNG
(`--seed`). Each measurement is repeated `--repeat` times; min / median / max.

    .venv/bin/python bench/wal_bench.py                 # 1-6 min: 81,000 syncs, as the disk allows
    .venv/bin/python bench/wal_bench.py --quick         # well under a minute
    .venv/bin/python bench/wal_bench.py --dir /mnt/nvme --restart-entries 200000
    .venv/bin/python bench/wal_bench.py --quick --profile 25   # cProfile the two paths
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import math
import os
import platform
import pstats
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field

_HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.dirname(_HERE) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, os.path.dirname(_HERE))

from _report import GcTimer, triple
from _report import fmt_int as f_int
from raftflow.raft.disk import DiskStorage  # noqa: E402
from raftflow.raft.types import Entry, HardState  # noqa: E402
from raftflow.raft.wal import read_segment  # noqa: E402

CLUSTER = "wal-bench"
NODE = 1
TERM = 1
PREPARE_CHUNK = 100  # operations whose arguments are built at a time, untimed


# --- measuring -------------------------------------------------------------------


@dataclass
class Samples:
    """One lane's operations in one repeat."""

    lat: list[float] = field(default_factory=list)  # seconds per operation
    cpu: float = 0.0  # process CPU seconds inside the operations
    payload_bytes: int = 0  # per operation
    entries: int = 0  # per operation (0 for raw lanes)
    disk_bytes: int = 0  # bytes the lane's files grew by over the measured operations

    @property
    def ops(self) -> int:
        return len(self.lat)

    @property
    def busy(self) -> float:
        return math.fsum(self.lat)

    def rate(self) -> float:
        return self.ops / self.busy

    def mb_s(self) -> float:
        return self.ops * self.payload_bytes / self.busy / 1e6

    def entries_s(self) -> float:
        return self.ops * self.entries / self.busy

    def pct(self, q: float) -> float:
        return percentile(self.lat, q)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, q in (0, 1]."""
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def dir_bytes(path: str) -> tuple[int, int, int]:
    """(apparent bytes, allocated bytes, files) under path."""
    size = alloc = files = 0
    for folder, _, names in os.walk(path):
        for name in names:
            st = os.stat(os.path.join(folder, name))
            size += st.st_size
            alloc += st.st_blocks * 512
            files += 1
    return size, alloc, files


class RawLane:
    """os.write + os.fdatasync of `nbytes` on one appended file; or, with
    `prealloc`, os.pwrite in place over a zero-filled, synced file."""

    def __init__(self, path: str, nbytes: int, rng: random.Random, prealloc_ops: int = 0) -> None:
        self.path = path
        self.buf = rng.randbytes(nbytes)
        self.nbytes = nbytes
        self.prealloc = prealloc_ops > 0
        self.pos = 0
        if self.prealloc:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            total, chunk = prealloc_ops * nbytes + 4096, bytes(1 << 20)
            while total > 0:
                total -= os.write(self.fd, chunk[: min(total, len(chunk))])
            os.fsync(self.fd)
            dfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        else:
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def prepare(self, k: int) -> None:
        pass

    def op(self, i: int) -> None:
        if self.prealloc:
            os.pwrite(self.fd, self.buf, self.pos)
            self.pos += self.nbytes
        else:
            os.write(self.fd, self.buf)
        os.fdatasync(self.fd)

    def size(self) -> int:
        return self.pos if self.prealloc else os.fstat(self.fd).st_size

    def close(self) -> None:
        os.close(self.fd)


class PersistLane:
    """DiskStorage.persist(None, `batch` entries, HardState) per operation."""

    def __init__(self, path: str, batch: int, payload_size: int, rng: random.Random) -> None:
        self.path = path
        self.batch = batch
        self.payload_size = payload_size
        self.rng = rng
        self.storage = DiskStorage(path, cluster_id=CLUSTER, node_id=NODE, create=True)
        self.next_index = 1
        self.pending: list[tuple[list[Entry], HardState]] = []

    def prepare(self, k: int) -> None:
        """Build the next k calls' arguments (untimed)."""
        size, rng, pending = self.payload_size, self.rng, []
        for _ in range(k):
            first = self.next_index
            blob = rng.randbytes(size * self.batch)
            entries = [Entry(first + j, TERM, blob[j * size : (j + 1) * size]) for j in range(self.batch)]
            pending.append((entries, HardState(TERM, NODE, first - 1)))
            self.next_index = first + self.batch
        self.pending = pending

    def op(self, i: int) -> None:
        entries, hs = self.pending[i]
        self.storage.persist(None, entries, hs)

    def size(self) -> int:
        """Bytes of records in the log (a segment's preallocated zeros excluded)."""
        wal = os.path.join(self.path, "wal")
        total = 0
        for name in os.listdir(wal):
            with open(os.path.join(wal, name), "rb") as f:
                total += read_segment(name, f.read(), last=True)[1]
        return total

    def close(self) -> None:
        self.storage.close()


def run_lanes(lanes: list, calls: int, block: int, warmup: int,
              profiler: cProfile.Profile | None = None, profile_lane: int = -1) -> list[Samples]:
    """Run every lane's `calls` operations, switching lane every `block` operations
    (the starting lane rotating), and time each operation."""
    out = [Samples() for _ in lanes]
    for lane in lanes:
        lane.prepare(warmup)
        for i in range(warmup):
            lane.op(i)
    start_sizes = [lane.size() for lane in lanes]
    perf, proc = time.perf_counter, time.process_time
    n, done, turn = len(lanes), 0, 0
    chunk = max(block, PREPARE_CHUNK - PREPARE_CHUNK % block)
    while done < calls:
        k = min(chunk, calls - done)
        for lane in lanes:
            lane.prepare(k)  # untimed: build the next k operations' arguments
        for lo in range(0, k, block):
            hi = min(lo + block, k)
            for li in [(turn + j) % n for j in range(n)]:
                op, lat, s = lanes[li].op, out[li].lat, out[li]
                prof = profiler if li == profile_lane else None
                if prof is not None:
                    prof.enable()
                for i in range(lo, hi):
                    c0 = proc()
                    t0 = perf()
                    op(i)
                    t1 = perf()
                    s.cpu += proc() - c0
                    lat.append(t1 - t0)
                if prof is not None:
                    prof.disable()
            turn += 1
        done += k
    for lane, s, size0 in zip(lanes, out, start_sizes):
        s.disk_bytes = lane.size() - size0
    return out


# --- the three sections ------------------------------------------------------------


@dataclass
class PairResult:
    batch: int
    raw: Samples
    persist: Samples
    prealloc: Samples | None


def measure_pairs(root: str, batch: int, args: argparse.Namespace, rep: int,
                  profiler: cProfile.Profile | None = None) -> PairResult:
    work = tempfile.mkdtemp(prefix=f"b{batch}-r{rep}-", dir=root)
    rng = random.Random(args.seed * 1_000_003 + batch * 101 + rep)
    nbytes = batch * args.payload_size
    lanes: list = [RawLane(os.path.join(work, "raw.dat"), nbytes, rng),
                   PersistLane(os.path.join(work, "store"), batch, args.payload_size, rng)]
    if args.prealloc:
        lanes.append(RawLane(os.path.join(work, "prealloc.dat"), nbytes, rng,
                             prealloc_ops=args.warmup + args.calls))
    try:
        res = run_lanes(lanes, args.calls, args.block, args.warmup, profiler, profile_lane=1)
    finally:
        for lane in lanes:
            lane.close()
        shutil.rmtree(work, ignore_errors=True)
    for s in res:
        s.payload_bytes = nbytes
    res[1].entries = batch
    return PairResult(batch, res[0], res[1], res[2] if args.prealloc else None)


@dataclass
class RestartData:
    path: str
    entries: int
    crc: int
    write_seconds: float
    size: int
    alloc: int
    files: int


@dataclass
class OpenResult:
    open_s: float
    load_s: float
    gc_s: float


def write_log(root: str, count: int, batch: int, payload_size: int, seed: int) -> RestartData:
    path = os.path.join(root, "restart")
    rng = random.Random(seed)
    st = DiskStorage(path, cluster_id=CLUSTER, node_id=NODE, create=True)
    crc, index, wall = 0, 0, 0.0
    try:
        while index < count:
            n = min(batch, count - index)
            blob = rng.randbytes(n * payload_size)
            crc = zlib.crc32(blob, crc)
            entries = [Entry(index + 1 + j, TERM, blob[j * payload_size : (j + 1) * payload_size]) for j in range(n)]
            hs = HardState(TERM, NODE, index)
            t0 = time.perf_counter()
            st.persist(None, entries, hs)
            wall += time.perf_counter() - t0
            index += n
        t0 = time.perf_counter()
        st.persist(None, [], HardState(TERM, NODE, index))
        wall += time.perf_counter() - t0
    finally:
        st.close()
    size, alloc, files = dir_bytes(path)
    return RestartData(path, count, crc, wall, size, alloc, files)


def drop_page_cache(path: str) -> None:
    """Evict the (clean, synced) data files from the page cache."""
    for folder, _, names in os.walk(path):
        for name in names:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def open_once(data: RestartData, cold: bool, profiler: cProfile.Profile | None = None) -> OpenResult:
    if cold:
        drop_page_cache(data.path)
    gc.collect()
    with GcTimer() as gct:
        if profiler is not None:
            profiler.enable()
        t0 = time.perf_counter()
        st = DiskStorage(data.path, cluster_id=CLUSTER, node_id=NODE)
        t1 = time.perf_counter()
        state = st.load()
        t2 = time.perf_counter()
        if profiler is not None:
            profiler.disable()
    # untimed: the log is exactly what was written
    try:
        ents = state.entries
        assert len(ents) == data.entries, (len(ents), data.entries)
        assert not ents or (ents[0].index == 1 and ents[-1].index == data.entries)
        assert state.hard_state == HardState(TERM, NODE, data.entries), state.hard_state
        crc = 0
        for e in ents:
            crc = zlib.crc32(e.data, crc)
        assert crc == data.crc, "payloads differ after restart"
    finally:
        st.close()
    del st, state, ents
    gc.collect()
    return OpenResult(t1 - t0, t2 - t1, gct.seconds)


# --- output ----------------------------------------------------------------------


def f_1(x: float) -> str:
    return f"{x:,.1f}"


def f_2(x: float) -> str:
    return f"{x:.2f}"


def f_3(x: float) -> str:
    return f"{x:.3f}"


def us(x: float) -> str:
    return f"{x * 1e6:,.0f}"


def print_table(head: list[tuple[str, int]], rows: list[list[str]]) -> None:
    line = " | ".join(f"{h:>{w}}" for h, w in head)
    print(line)
    print("-" * len(line))
    for row in rows:
        print(" | ".join(f"{c:>{w}}" for c, (_, w) in zip(row, head)))


def filesystem_of(path: str) -> str:
    """'device fstype mountpoint' of the file system holding path (best effort)."""
    real = os.path.realpath(path)
    best = ("?", "?", "")
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                mnt = mnt.replace("\\040", " ")
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best[2]):
                    best = (dev, fstype, mnt)
    except OSError:
        pass
    return f"{best[0]} ({best[1]}) mounted at {best[2] or '?'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(
            "raft.disk.DiskStorage on this machine's disk: persist throughput and latency "
            "at batch sizes 1/16/256 against a bare write+fdatasync loop measured in the "
            "same run (interleaved), and the time to reopen a log of 1,000,000 entries."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dir", default=os.curdir,
                        help="folder to make the temporary data folder in (its disk is the one "
                        "measured)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16, 256], metavar="N",
                        help="entries per persist call: one configuration each (the raw loop "
                        "writes N x payload bytes per sync)")
    parser.add_argument("--payload-size", type=int, default=100, help="bytes per entry")
    parser.add_argument("--calls", type=int, default=3000,
                        help="timed operations per lane per configuration per repeat")
    parser.add_argument("--block", type=int, default=1,
                        help="operations per lane before switching to the next lane (1: strict "
                        "alternation, the fairest pairing on a drifting disk)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed operations per lane first")
    parser.add_argument("--no-prealloc", dest="prealloc", action="store_false", default=argparse.SUPPRESS,
                        help="skip the reference loop that overwrites a preallocated zero-filled file")
    parser.add_argument("--restart-entries", type=int, default=1_000_000,
                        help="entries in the log that is reopened (0 skips the restart section)")
    parser.add_argument("--restart-batch", type=int, default=1000,
                        help="entries per persist call when writing that log")
    parser.add_argument("--restart-target", type=float, default=2.0,
                        help="seconds open+load should stay under (reported as PASS/OVER)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="repeats of every measurement; min/median/max reported")
    parser.add_argument("--seed", type=int, default=1, help="seeds all payloads")
    parser.add_argument("--quick", action="store_true",
                        help="fewer operations (--calls 200 --warmup 10 unless given): "
                        "well under a minute, with the full-size restart")
    parser.add_argument("--profile", type=int, default=0, metavar="TOP",
                        help="after the measurements, cProfile one warm restart and the persist "
                        "calls of one batch-1 run, and print the TOP functions by tottime and "
                        "cumulative time")
    args = parser.parse_args(argv)
    args.prealloc = getattr(args, "prealloc", True)
    if args.quick:
        given = set(a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:]))
        if "--calls" not in given:
            args.calls = 200
        if "--warmup" not in given:
            args.warmup = 10
    if (args.calls < 1 or args.block < 1 or args.warmup < 1 or args.repeat < 1 or min(args.batch) < 1
            or args.payload_size < 1 or args.restart_entries < 0 or args.restart_batch < 1):
        parser.error("--calls, --block, --warmup, --repeat, --batch, --payload-size and "
                     "--restart-batch must be at least 1, --restart-entries at least 0")

    base = os.path.abspath(args.dir)
    if not os.path.isdir(base):
        parser.error(f"--dir {base} is not a folder")
    root = tempfile.mkdtemp(prefix="wal_bench-", dir=base)

    def on_term(signum, frame):  # let the finally clause remove the temp folder
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    random.seed(args.seed)  # nothing uses the global RNG; seeded anyway
    t_start = time.perf_counter()
    try:
        return run(args, root, base)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        print(f"\n(temp folder {root} removed; whole run {time.perf_counter() - t_start:.1f} s)",
              file=sys.stderr)


def run(args: argparse.Namespace, root: str, base: str) -> int:
    print(
        f"raftflow WAL bench: {args.payload_size}-byte entries, batches {args.batch}, "
        f"{args.calls:,} timed ops/lane/repeat, lanes alternating every {args.block} op(s), {args.repeat} repeats, "
        f"restart {args.restart_entries:,} entries, Python {platform.python_version()}\n"
        f"disk: {base} on {filesystem_of(base)}",
        flush=True,
    )

    # 1 + 2: raw floor and persist, interleaved
    pairs: dict[int, list[PairResult]] = {b: [] for b in args.batch}
    for r in range(args.repeat):
        for b in args.batch:
            p = measure_pairs(root, b, args, r)
            pairs[b].append(p)
            print(
                f"  run {r + 1}/{args.repeat} batch={b:<4} raw {p.raw.rate():>7,.0f} syncs/s  "
                f"persist {p.persist.rate():>7,.0f} calls/s ({p.persist.rate() / p.raw.rate():.2f}x)"
                + (f"  prealloc {p.prealloc.rate():>7,.0f}/s" if p.prealloc else ""),
                file=sys.stderr, flush=True,
            )

    # 3: restart
    data: RestartData | None = None
    opens: dict[str, list[OpenResult]] = {"cold": [], "warm": []}
    if args.restart_entries:
        print(f"  writing {args.restart_entries:,} entries for the restart ...", file=sys.stderr, flush=True)
        data = write_log(root, args.restart_entries, args.restart_batch, args.payload_size, args.seed)
        for r in range(args.repeat):
            for mode in ("cold", "warm"):
                o = open_once(data, cold=mode == "cold")
                opens[mode].append(o)
                print(f"  restart {r + 1}/{args.repeat} {mode}: open {o.open_s:.3f}s load {o.load_s:.4f}s "
                      f"gc {o.gc_s:.3f}s", file=sys.stderr, flush=True)

    # --- tables ---
    print(f"\n1. Raw floor: os.write(B bytes) + os.fdatasync, one O_APPEND file "
          f"(per size: {args.calls:,} syncs x {args.repeat} repeats; min / median / max)\n")
    head = [("B bytes/sync", 15), ("syncs/s", 23), ("MB/s", 24), ("p50 us", 21), ("p99 us", 23),
            ("CPU us/sync", 19)]
    rows = []
    for label, pick in [("", lambda p: p.raw)] + ([("prealloc ", lambda p: p.prealloc)] if args.prealloc else []):
        for b in args.batch:
            ss = [pick(p) for p in pairs[b]]
            rows.append([f"{label}{b * args.payload_size:,}",
                         triple([s.rate() for s in ss], f_int), triple([s.mb_s() for s in ss], f_2),
                         triple([s.pct(0.5) for s in ss], us), triple([s.pct(0.99) for s in ss], us),
                         triple([s.cpu / s.ops * 1e6 for s in ss], f_1)])
    print_table(head, rows)
    if args.prealloc:
        print("\n'prealloc' rows: os.pwrite in place over a zero-filled, synced file (no size change "
              "to journal): a reference for preallocated segments, not the floor used below.")

    print(f"\n2. DiskStorage.persist(None, N entries, HardState): one record batch, one fdatasync "
          f"(per batch size: {args.calls:,} calls x {args.repeat} repeats; min / median / max)\n")
    head = [("N", 4), ("entries/s", 27), ("MB/s", 22), ("calls/s", 23), ("p50 us", 21),
            ("p99 us", 23), ("CPU us/call", 19), ("WAL B/entry", 11)]
    rows = []
    for b in args.batch:
        ss = [p.persist for p in pairs[b]]
        rows.append([str(b), triple([s.entries_s() for s in ss], f_int), triple([s.mb_s() for s in ss], f_2),
                     triple([s.rate() for s in ss], f_int), triple([s.pct(0.5) for s in ss], us),
                     triple([s.pct(0.99) for s in ss], us), triple([s.cpu / s.ops * 1e6 for s in ss], f_1),
                     f"{statistics.median(s.disk_bytes / (s.ops * b) for s in ss):.1f}"])
    print_table(head, rows)

    print(f"\n   ... as a ratio to the raw floor of the same payload bytes per sync (N x "
          f"{args.payload_size} B), paired per repeat: min / median / max\n")
    head = [("N", 4), ("raw B/sync", 10), ("entries/s / raw", 19), ("MB/s / raw", 19),
            ("calls/s / raw syncs/s", 21), ("p50 / raw p50", 19), ("p99 / raw p99", 19),
            ("CPU % of call", 19)]
    rows = []
    for b in args.batch:
        ps = pairs[b]
        rows.append([str(b), f"{b * args.payload_size:,}",
                     triple([p.persist.entries_s() / (p.raw.rate() * b) for p in ps], f_2),
                     triple([p.persist.mb_s() / p.raw.mb_s() for p in ps], f_2),
                     triple([p.persist.rate() / p.raw.rate() for p in ps], f_2),
                     triple([p.persist.pct(0.5) / p.raw.pct(0.5) for p in ps], f_2),
                     triple([p.persist.pct(0.99) / p.raw.pct(0.99) for p in ps], f_2),
                     triple([100 * p.persist.cpu / p.persist.busy for p in ps], lambda x: f"{x:.1f}")])
    print_table(head, rows)
    print("\n   The raw loop writes the same payload bytes per sync, so the three throughput "
          "ratios coincide;\n   latency ratios above 1 are slower than the bare loop. "
          "'CPU %' = process CPU time (user + kernel) / wall time inside persist;\n   "
          "compare 'CPU us/call' with the raw loop's 'CPU us/sync' for the Python cost of persist.")

    if data is not None:
        n = data.entries
        print(f"\n3. Restart: {n:,} entries of {args.payload_size} B, written in "
              f"{math.ceil(n / args.restart_batch):,} persist calls of {args.restart_batch:,} "
              f"({data.write_seconds:.2f} s, {n / data.write_seconds:,.0f} entries/s); "
              f"{args.repeat} repeats, min / median / max\n")
        head = [("page cache", 10), ("open: DiskStorage(...) s", 26), ("load() s", 26),
                ("open + load s", 26), ("entries/s", 33), ("GC % of open", 14)]
        rows = []
        for mode in ("cold", "warm"):
            os_ = opens[mode]
            tot = [o.open_s + o.load_s for o in os_]
            rows.append([mode, triple([o.open_s for o in os_], f_3), triple([o.load_s for o in os_],
                         lambda x: f"{x:.4f}"), triple(tot, f_3), triple([n / t for t in tot], f_int),
                         triple([100 * o.gc_s / o.open_s for o in os_], lambda x: f"{x:.0f}")])
        print_table(head, rows)
        med = {m: statistics.median(o.open_s + o.load_s for o in opens[m]) for m in opens}
        verdict = " / ".join(
            f"{m} {med[m]:.2f} s {'PASS' if med[m] < args.restart_target else 'OVER'}" for m in ("cold", "warm"))
        print(f"\n   target open + load < {args.restart_target:g} s (median): {verdict}")
        print(f"   on disk: {data.size:,} bytes in {data.files} files ({data.size / n:.1f} B/entry, "
              f"{data.size / (n * args.payload_size):.2f}x the payload); allocated {data.alloc:,} bytes")
        print("   cold = data files evicted with posix_fadvise(DONTNEED) before the open; warm = "
              "right after the previous open.")

    if args.profile:
        profile(args, root, data)
    return 0


def profile(args: argparse.Namespace, root: str, data: RestartData | None) -> None:
    prof_args = argparse.Namespace(**{**vars(args), "prealloc": False})
    if data is not None:
        profiler = cProfile.Profile()
        o = open_once(data, cold=False, profiler=profiler)
        print(f"\n--- cProfile: warm restart of {data.entries:,} entries (open {o.open_s:.3f} s, "
              f"load {o.load_s:.4f} s under the profiler) ---")
        for key in ("tottime", "cumulative"):
            print(f"\n    sorted by {key}")
            pstats.Stats(profiler, stream=sys.stdout).strip_dirs().sort_stats(key).print_stats(args.profile)
    profiler = cProfile.Profile()
    p = measure_pairs(root, 1, prof_args, rep=10_000, profiler=profiler)
    print(f"\n--- cProfile: {p.persist.ops:,} persist calls at batch 1 ({p.persist.rate():,.0f} calls/s "
          f"under the profiler; raw loop alongside {p.raw.rate():,.0f} syncs/s) ---")
    for key in ("tottime", "cumulative"):
        print(f"\n    sorted by {key}")
        pstats.Stats(profiler, stream=sys.stdout).strip_dirs().sort_stats(key).print_stats(args.profile)


if __name__ == "__main__":
    sys.exit(main())
