"""The simulator: determinism, a sweep of mixed-fault seeds, Hypothesis-made fault
schedules, and proof that the checkers can fail."""

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftflow.cluster.cli.main import main
from raftflow.raft.sim import Action, Fault, SimOptions, run

SEEDS = int(os.environ.get("RAFTFLOW_SIM_SEEDS", "200"))
CHUNK = 50
SWEEP_STEPS = 500


def test_same_seed_gives_the_same_trace():
    a = run(SimOptions(nodes=5, seed=42, steps=400))
    b = run(SimOptions(nodes=5, seed=42, steps=400))
    assert a.ok and b.ok, (a.violation, b.violation)
    assert a.trace_hash == b.trace_hash
    assert a.timeline == b.timeline


def test_different_seeds_give_different_runs():
    hashes = {run(SimOptions(nodes=3, seed=s, steps=200)).trace_hash for s in range(5)}
    assert len(hashes) == 5


@pytest.mark.parametrize("chunk", range((SEEDS + CHUNK - 1) // CHUNK))
def test_mixed_fault_seeds_keep_every_safety_property(chunk):
    # Cluster sizes rotate by chunk so 3, 5 and 7 nodes are all swept.
    nodes = (3, 5, 3, 5, 7)[chunk % 5]
    failures = []
    for seed in range(chunk * CHUNK, min((chunk + 1) * CHUNK, SEEDS)):
        options = SimOptions(nodes=nodes, seed=seed, steps=SWEEP_STEPS)
        result = run(options)
        if not result.ok:
            failures.append(f"{result.violation}\n  replay: {options.replay_command()}")
        else:
            assert result.stats["committed"] > 0, f"seed {seed} committed nothing"
    assert not failures, "\n".join(failures)


def test_checker_catches_a_vote_granted_to_a_stale_log():
    # Skipping the up-to-date check (Raft §5.4.1) must be caught within 100 seeds:
    # the checkers are able to fail.
    seed = _first_seed_caught("skip-up-to-date-check", range(100))
    assert seed is not None, "no seed in 0..99 exposed a vote granted to a stale log"
    violation = run(SimOptions(nodes=5, seed=seed, steps=600,
                               mutations=frozenset({"skip-up-to-date-check"}))).violation
    assert "Leader Completeness" in violation or "Durability" in violation, violation


def _first_seed_caught(mutation: str, seeds: range) -> int | None:
    for seed in seeds:
        if not run(SimOptions(nodes=5, seed=seed, steps=600, mutations=frozenset({mutation}))).ok:
            return seed
    return None


def test_a_violation_prints_the_seed_and_the_replay_command(capsys):
    seed = _first_seed_caught("skip-up-to-date-check", range(100))
    assert seed is not None
    code = main(["sim", "--nodes", "5", "--seed", str(seed), "--steps", "600", "--quiet",
                 "--mutate", "skip-up-to-date-check"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"VIOLATION seed={seed}" in out
    assert f"replay: raftflow sim --nodes 5 --seed {seed} --steps 600" in out
    assert "--mutate skip-up-to-date-check" in out
    # The printed command replays the same run: same verdict, same trace.
    assert main(["sim", "--nodes", "5", "--seed", str(seed), "--steps", "600", "--quiet",
                 "--mutate", "skip-up-to-date-check"]) == 1
    assert capsys.readouterr().out == out


def test_healthy_cluster_without_faults_elects_one_leader_and_commits():
    result = run(SimOptions(nodes=3, seed=1, steps=300, faults=frozenset()))
    assert result.ok, result.violation
    assert result.stats["leaders"] == 1
    assert result.stats["writes_ok"] > 50
    assert result.stats["reads_ok"] > 10


def test_lagging_follower_catches_up_through_a_snapshot():
    # Node 3 is cut off while the others commit and compact past it; after the
    # heal it can only catch up by InstallSnapshot.
    schedule = (Fault(20, Action.ISOLATE, (3,)), Fault(250, Action.HEAL))
    result = run(SimOptions(nodes=3, seed=4, steps=300, compact_every=40, schedule=schedule))
    assert result.ok, result.violation
    assert result.stats["snapshots_installed"] >= 1


def test_single_node_cluster_commits_alone():
    result = run(SimOptions(nodes=1, seed=0, steps=100, faults=frozenset()))
    assert result.ok, result.violation
    assert result.stats["writes_ok"] > 10


_node = st.integers(min_value=1, max_value=5)
_fault = st.one_of(
    st.builds(lambda n: (Action.ISOLATE, (n,)), _node),
    st.builds(lambda m: (Action.SPLIT, tuple(sorted(m))), st.sets(_node, min_size=1, max_size=2)),
    st.builds(lambda a, b: (Action.ONE_WAY, (a, b)), _node, _node).filter(lambda f: f[1][0] != f[1][1]),
    st.just((Action.HEAL, ())),
    st.builds(lambda n: (Action.CRASH, (n,)), _node),
    st.builds(lambda n: (Action.RESTART, (n,)), _node),
    st.builds(lambda d: (Action.CRASH_LEADER, (d,)), st.integers(5, 80)),
    st.builds(lambda p: (Action.LOSS, (p,)), st.sampled_from((5, 20, 50))),
    st.builds(lambda p: (Action.DUPLICATE, (p,)), st.sampled_from((10, 50))),
    st.builds(lambda d: (Action.REORDER, (d,)), st.sampled_from((30, 100))),
    st.just((Action.CALM, ())),
)
_schedule = st.lists(st.tuples(st.integers(0, 299), _fault), max_size=12).map(
    lambda fs: tuple(sorted((Fault(t, a, args) for t, (a, args) in fs), key=lambda f: f.tick))
)


@given(schedule=_schedule, seed=st.integers(0, 2**16))
def test_hypothesis_fault_schedules_never_break_safety(schedule, seed):
    # Hypothesis shrinks a failing schedule to its smallest form; the printed
    # example plus the seed replay it exactly.
    result = run(SimOptions(nodes=5, seed=seed, steps=300, schedule=schedule))
    assert result.ok, f"{result.violation}\nschedule: {[str(f) for f in schedule]}"


HOSTILE_SEEDS = max(10, SEEDS // 20)  # 100 in `make test` (2000 seeds), more in `make soak`


@pytest.mark.parametrize("nodes", [3, 5])
def test_a_hostile_peer_changes_nothing_and_stops_no_one(nodes):
    # Issue 14: forged messages (a non-member's, impossible terms, indexes, commits,
    # acks, TimeoutNow, snapshots, bytes that are no message) during every fault
    # kind: each refused by its rule, every safety property still holds.
    failures, refused = [], 0
    for seed in range(HOSTILE_SEEDS):
        options = SimOptions(nodes=nodes, seed=10_000 + seed, steps=SWEEP_STEPS, hostile=True)
        result = run(options)
        if not result.ok:
            failures.append(f"{result.violation}\n  replay: {options.replay_command()}")
        else:
            refused += result.stats["hostile_refused"]
    assert not failures, "\n".join(failures)
    assert refused > HOSTILE_SEEDS * 10, refused


def test_the_hostile_check_fails_when_the_core_takes_a_forgery_in(monkeypatch):
    # The checker must be able to fail: with the core's refusals switched off, the
    # hostile peer's forgeries get in, and the simulation says so.
    import raftflow.raft.node as node_module

    monkeypatch.setattr(node_module, "check_message", lambda node, m: None)
    result = run(SimOptions(nodes=3, seed=10_000, steps=SWEEP_STEPS, hostile=True))
    assert not result.ok and "Refusal" in result.violation, result.violation
    assert "--hostile" in result.options.replay_command()
