"""Nemesis runs on real node processes: concurrent clients doing put/get/cas on three
keys while a seeded nemesis splits, isolates, kills and pauses nodes, then heals.

The recorded history must be linearizable (cluster/verify/linearizability.py), every
node's state hash equal after the heal, and the final reads part of the history (so
an acknowledged write that vanished fails the check). CI runs about 20 s per cluster
size; `RAFTFLOW_NEMESIS_S=600 make soak` (or -m soak) runs longer, and a failure
prints the seed and the faults to replay it.
"""

from __future__ import annotations

import json
import os

import pytest

from raftflow.cluster.local import launcher
from raftflow.cluster.verify import nemesis
from raftflow.cluster.verify.linearizability import Verdict, check, format_timeline, parse_history

SECONDS = float(os.environ.get("RAFTFLOW_NEMESIS_S", "20"))
SEED = os.environ.get("RAFTFLOW_NEMESIS_SEED")  # replays one run: the seed a failure printed


def run_and_check(tmp_path, nodes: int, seed: int, seconds: float) -> None:
    cluster = launcher.create(str(tmp_path / f"n{nodes}"), nodes, 0)
    try:
        for m in cluster.members:
            launcher.start_node(cluster, m)
        result = nemesis.run(cluster, seed=seed, duration_s=seconds)
    finally:
        for m in cluster.members:
            launcher.stop_node(cluster, m, kill=True)
    soak = " -m soak" if seconds > SECONDS else ""
    replay = (f"RAFTFLOW_NEMESIS_SEED={seed} RAFTFLOW_NEMESIS_S={seconds:g} pytest tests/test_nemesis.py{soak} "
              f"-k '[{nodes}]'")
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(op) + "\n" for op in result.history))
    context = f"seed {seed}, {nodes} nodes; replay: {replay}; history: {tmp_path / 'history.jsonl'}\n" + "\n".join(result.faults)
    assert len(set(result.hashes.values())) == 1, f"state hashes differ after heal: {result.hashes}; {context}"
    done = [op for op in result.history if op["outcome"] == "ok" and op["client"] >= 0]
    assert len(done) > 50 * seconds / 20, f"only {len(done)} operations succeeded; {context}"  # the cluster did work
    checked = check(parse_history(json.dumps(op) for op in result.history), timeout_s=60)
    if checked.verdict is Verdict.NOT_LINEARIZABLE:
        timeline = "\n".join(format_timeline(checked.counterexample))
        pytest.fail(f"not linearizable on key {checked.failing_key}:\n{timeline}\n{context}")
    assert checked.verdict is Verdict.LINEARIZABLE, f"the checker could not decide: {checked}; {context}"


@pytest.mark.parametrize("nodes", [3, 5])
def test_nemesis_history_is_linearizable_and_nodes_agree(tmp_path, nodes):
    run_and_check(tmp_path, nodes, int(SEED) if SEED else 20261126 + nodes, SECONDS)


@pytest.mark.soak
@pytest.mark.parametrize("nodes", [3, 5])
def test_nemesis_soak(tmp_path, nodes):
    run_and_check(tmp_path, nodes, int(SEED) if SEED else 20261226 + nodes, max(SECONDS, 300.0))
