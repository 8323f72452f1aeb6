"""`make bench`: run every bench, keep their raw output, write the report.

    .venv/bin/python bench/run_all.py            # full: under 30 minutes
    .venv/bin/python bench/run_all.py --quick    # under 4 minutes

Each bench runs as its own process, one after another (they would skew each other
on a small machine), with --json into `bench/results/<stamp>.raw/` when it has the
flag; its stdout is kept there too, and its stderr (progress) is shown as it comes.
A bench that fails or overruns its time limit is stopped and recorded as such; the
others still run and the report says which is missing. Then bench/report.py writes
`bench/results/<stamp>.{json,md}` and the plots next to them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)

import report  # noqa: E402

STDERR_TAIL_LINES = 15
# After SIGTERM the benches unwind and stop what they started (nodes, Temporal, Restate),
# which under load takes tens of seconds; SIGKILL after that can leave those behind
# (they run in sessions of their own), so the wait is generous.
STOP_GRACE_S = 60.0


@dataclass(frozen=True, slots=True)
class Bench:
    name: str
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    has_json: bool
    full_limit_s: float
    quick_limit_s: float
    reference_flag: str | None = None  # skips the other systems (--no-reference)


# Order: the machine-local benches first, the long multi-process ones after.
# Quick arguments aim at 4 minutes in all on a quiet 2-core VM: the cluster bench
# measures 1.5 s per point, the saga bench runs Restate on 3 nodes only (the aim's
# figure) and keeps Temporal, the security bench (about a minute) keeps its 3 rounds.
# The limits only catch a hung bench: another load on the machine stretches every
# bench well past its usual time.
BENCHES = (
    Bench("core", "core_bench.py", (), ("--entries", "20000", "--repeat", "1"), False, 300, 60),
    Bench("wal", "wal_bench.py", ("--quick",), ("--quick", "--repeat", "1", "--restart-entries", "100000"), False,
          300, 60),
    Bench("cluster", "cluster_bench.py", (), ("--quick", "--seconds", "1.5"), True, 900, 150, "--no-reference"),
    Bench("workflow", "workflow_bench.py", (), ("--quick", "--restate-nodes", "3"), True, 900, 180, "--no-reference"),
    Bench("security", "security_bench.py", (), ("--quick",), True, 900, 240),
    Bench("check", "check_bench.py", (), ("--operations", "2000", "--repeats", "1"), False, 300, 60),
    Bench("replay", "replay_bench.py", (), ("--repeats", "1"), False, 300, 60),
    Bench("scale", "scale_bench.py", (), ("--entries", "50000"), True, 1200, 120),
)


def _pump(stream, sink, echo) -> None:
    for line in iter(stream.readline, ""):
        sink.write(line)
        echo.write(line)
        echo.flush()


def run_one(bench: Bench, raw: str, quick: bool, no_reference: bool) -> dict:
    """Run one bench to completion or its limit; what happened, for the manifest."""
    argv = [sys.executable, os.path.join(BENCH, bench.script), *(bench.quick if quick else bench.full)]
    if no_reference and bench.reference_flag:
        argv.append(bench.reference_flag)
    if bench.has_json:
        argv += ["--json", os.path.join(raw, f"{bench.name}.json")]
    limit = bench.quick_limit_s if quick else bench.full_limit_s
    record = {"name": bench.name, "argv": [os.path.relpath(a, ROOT) if a.startswith(ROOT) else a for a in argv[1:]],
              "json": f"{bench.name}.json" if bench.has_json else None, "stdout": f"{bench.name}.txt",
              "limit_s": limit, "timed_out": False}
    print(f"== {bench.name}: {' '.join(record['argv'])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    stdout_path, stderr_path = os.path.join(raw, f"{bench.name}.txt"), os.path.join(raw, f"{bench.name}.err")
    with open(stdout_path, "w") as out, open(stderr_path, "w") as err:
        # Its own session, so a stop reaches the node processes it started, not us.
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.PIPE, text=True, start_new_session=True)
        pump = threading.Thread(target=_pump, args=(proc.stderr, err, sys.stderr), daemon=True)
        pump.start()
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            record["timed_out"] = True
            _stop(proc)
        except BaseException:  # Ctrl-C or SIGTERM: its own session does not get them, so pass them on
            _stop(proc)
            raise
        pump.join(timeout=5)
    record["seconds"] = round(time.monotonic() - started, 1)
    with open(stderr_path, errors="replace") as err:
        record["stderr_tail"] = "".join(err.readlines()[-STDERR_TAIL_LINES:])  # why it failed, if it did
    record["returncode"] = proc.returncode
    print(f"== {bench.name}: exit {proc.returncode} after {record['seconds']:.0f} s"
          + (f" (stopped at its {limit:.0f} s limit)" if record["timed_out"] else ""), file=sys.stderr, flush=True)
    return record


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        print(f"   killed after {STOP_GRACE_S:.0f} s of SIGTERM: processes it started in their own sessions "
              "(nodes, Restate, Temporal) may still run", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every bench's quick mode: under 4 minutes in all")
    parser.add_argument("--no-reference", action="store_true", help="skip the other systems (PySyncObj, Temporal...)")
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHES], help="run just these benches")
    parser.add_argument("--out", default=os.path.join(BENCH, "results"), help="where the results land")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the running bench is stopped too
    stamp = time.strftime("%Y-%m-%d-%H%M")
    raw = os.path.join(args.out, f"{stamp}.raw")
    os.makedirs(raw, exist_ok=True)
    manifest = {
        "command": " ".join(["bench/run_all.py"] + sys.argv[1:]), "mode": "quick" if args.quick else "full",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "machine": report.machine_facts(), "versions": report.versions(), "benches": [],
    }
    wall = time.monotonic()
    for bench in BENCHES:
        if not args.only or bench.name in args.only:
            manifest["benches"].append(run_one(bench, raw, args.quick, args.no_reference))
    manifest["ended"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    manifest["wall_s"] = round(time.monotonic() - wall, 1)
    with open(os.path.join(raw, "run.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    for path in report.write(raw):
        print(os.path.relpath(path, ROOT))
    print(f"benches took {manifest['wall_s']:.0f} s", file=sys.stderr)
    return 0 if all(b["returncode"] == 0 for b in manifest["benches"]) else 1


if __name__ == "__main__":
    sys.exit(main())
