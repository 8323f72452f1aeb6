"""The linearizability checker: histories it must reject, histories it must accept,
the shrinker, the format, the command, and properties over histories generated from a
real KvStore execution."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftflow.cluster.cli.check_command import EXIT_UNDECIDED, add_check_command
from raftflow.cluster.cli.common import run
from raftflow.raft.sim.simulation import SimOptions
from raftflow.raft.sim.simulation import run as simulate
from raftflow.cluster.verify.history_gen import random_history
from raftflow.cluster.verify.linearizability import (
    HistoryError,
    Kind,
    Operation,
    Outcome,
    Verdict,
    check,
    format_timeline,
    is_linearizable,
    operation_to_json,
    parse_history,
    shrink,
)

INF = math.inf


def put(client, value, invoke, complete=INF, *, outcome=None, key="x", revision=None):
    return Operation(client, Kind.PUT, key, invoke, complete, outcome or _outcome(complete), value=value, revision=revision)


def get(client, result, invoke, complete, *, key="x", revision=None):
    return Operation(client, Kind.GET, key, invoke, complete, Outcome.OK, result=result, revision=revision)


def delete(client, invoke, complete=INF, *, key="x"):
    return Operation(client, Kind.DELETE, key, invoke, complete, _outcome(complete))


def cas(client, expected, value, invoke, complete=INF, *, succeeded=None, key="x", expected_revision=None, revision=None):
    return Operation(client, Kind.CAS, key, invoke, complete, _outcome(complete), value=value, expected=expected,
                     expected_revision=expected_revision, succeeded=succeeded, revision=revision)


def _outcome(complete: float) -> Outcome:
    return Outcome.UNKNOWN if complete == INF else Outcome.OK


def rejected(history: list[Operation]) -> tuple[Operation, ...]:
    """Checks that `history` is not linearizable and that its counterexample is not
    either; returns the counterexample."""
    result = check(history)
    assert result.verdict is Verdict.NOT_LINEARIZABLE, "\n".join(format_timeline(history))
    assert result.failing_key == history[0].key
    assert not is_linearizable(result.counterexample), "\n".join(format_timeline(result.counterexample))
    return result.counterexample


# --- histories it must reject ------------------------------------------------------------


def test_stale_read_after_a_completed_write_is_rejected():
    rejected([put(1, "a", 0, 1), put(1, "b", 2, 3), get(2, "a", 4, 5)])


def test_two_readers_seeing_two_writes_in_opposite_orders_is_rejected():
    # a and b are written concurrently; client 3 sees a then b, client 4 (later) b then a.
    rejected([
        put(1, "a", 0, 20), put(2, "b", 0, 20),
        get(3, "a", 1, 2), get(3, "b", 3, 4),
        get(4, "b", 5, 6), get(4, "a", 7, 8),
    ])


def test_cas_succeeding_against_an_overwritten_value_is_rejected():
    rejected([put(1, "a", 0, 1), put(2, "b", 2, 3), cas(3, "a", "c", 4, 5, succeeded=True)])


def test_cas_failing_while_its_expected_value_is_there_is_rejected():
    rejected([put(1, "a", 0, 1), cas(2, "a", "c", 2, 3, succeeded=False)])


def test_read_of_a_value_never_written_is_rejected():
    counterexample = rejected([put(1, "a", 0, 1), get(2, "zz", 2, 3)])
    assert [op.result for op in counterexample] == ["zz"]


def test_lost_acknowledged_write_is_rejected():
    rejected([put(1, "a", 0, 1), get(2, None, 5, 6)])


def test_read_of_a_deleted_value_is_rejected():
    rejected([put(1, "a", 0, 1), delete(1, 2, 3), get(2, "a", 4, 5)])


def test_read_seeing_an_older_revision_than_a_completed_write_made_is_rejected():
    rejected([put(1, "a", 0, 1, revision=5), put(1, "a", 2, 3, revision=6), get(2, "a", 4, 5, revision=5)])


def test_revisions_going_backwards_across_a_delete_are_rejected():
    rejected([put(1, "a", 0, 1, revision=5), delete(1, 2, 3), put(1, "b", 4, 5, revision=4)])


def test_cas_on_revision_succeeding_against_a_newer_revision_is_rejected():
    rejected([put(1, "a", 0, 1, revision=3), put(1, "b", 2, 3, revision=4),
              cas(2, None, "c", 4, 5, expected_revision=3, succeeded=True, revision=5)])


def test_unknown_write_cannot_take_effect_before_it_was_invoked():
    rejected([get(1, "a", 0, 1), put(2, "a", 2)])


def test_violation_on_one_key_is_found_among_linearizable_keys():
    history = [put(1, "a", 0, 1, key="ok"), get(2, "a", 2, 3, key="ok"),
               put(1, "a", 0, 1, key="bad"), get(2, None, 2, 3, key="bad")]
    result = check(history)
    assert result.failing_key == "bad"
    assert {key.key: key.verdict for key in result.keys} == {"bad": Verdict.NOT_LINEARIZABLE, "ok": Verdict.LINEARIZABLE}


# --- histories it must accept ------------------------------------------------------------


@pytest.mark.parametrize("first, second", [("a", "b"), ("b", "a")])
def test_overlapping_writes_may_be_seen_in_either_order(first, second):
    assert is_linearizable([put(1, "a", 0, 10), put(2, "b", 1, 9), get(3, first, 2, 3), get(3, second, 4, 11)])


def test_reads_concurrent_with_a_write_may_see_the_old_or_new_value_but_not_new_then_old():
    assert is_linearizable([put(1, "a", 0, 1), put(1, "b", 2, 10), get(2, "b", 3, 4), get(3, "a", 3, 5)])
    assert is_linearizable([put(1, "a", 0, 1), put(1, "b", 2, 10), get(2, "a", 3, 4), get(3, "b", 5, 6)])
    assert not is_linearizable([put(1, "a", 0, 1), put(1, "b", 2, 10), get(2, "b", 3, 4), get(3, "a", 5, 6)])


def test_touching_operations_count_as_concurrent():
    assert is_linearizable([put(1, "a", 0, 1), get(2, None, 1, 2)])


def test_unknown_write_that_took_effect():
    assert is_linearizable([put(1, "a", 0), get(2, "a", 5, 6)])


def test_unknown_write_that_never_took_effect():
    assert is_linearizable([put(1, "a", 0), get(2, None, 5, 6), get(2, None, 7, 8)])


def test_unknown_write_that_took_effect_late_after_a_later_write():
    assert is_linearizable([put(1, "a", 0), put(2, "b", 1, 2), get(3, "b", 3, 4), get(3, "a", 5, 6)])


def test_unknown_cas_and_delete_may_or_may_not_apply():
    base = [put(1, "a", 0, 1), cas(2, "a", "b", 2), delete(3, 2)]
    assert is_linearizable(base + [get(4, "a", 3, 4), get(4, "b", 5, 6), get(4, None, 7, 8)])
    assert not is_linearizable(base + [get(4, None, 3, 4), get(4, "b", 5, 6)])  # the cas needed a


def test_failed_operations_had_no_effect():
    failed = Operation(1, Kind.PUT, "x", 0, 1, Outcome.FAIL, value="a")
    assert is_linearizable([failed, get(2, None, 2, 3)])
    assert not is_linearizable([failed, get(2, "a", 2, 3)])


def test_cas_on_revision_against_a_revision_nobody_recorded_is_allowed_either_way():
    for succeeded in (True, False):
        assert is_linearizable([put(1, "a", 0, 1), cas(2, None, "b", 2, 3, expected_revision=7, succeeded=succeeded)])
    assert not is_linearizable([put(1, "a", 0, 1), cas(2, None, "b", 2, 3, expected_revision=0, succeeded=True)])


def test_unread_unknown_puts_and_many_unknown_deletes_do_not_multiply_the_search():
    history = [put(c, f"lost{c}", c) for c in range(40)] + [delete(100 + c, c) for c in range(40)]
    history += [put(200, "a", 50, 51), get(201, "a", 52, 53)]
    result = check(history)
    assert result.ok and result.keys[0].states < 200, result.keys


# --- the shrinker ---------------------------------------------------------------------------


def test_shrinker_keeps_a_stale_read_and_the_writes_it_needs():
    rng = random.Random(7)
    history = [op for op in random_history(rng, operations=400, keys=1, clients=4, unknown_percent=0, fail_percent=0,
                                           revisions=False)]
    last = max(op.complete for op in history)
    written = next(op for op in history if op.kind is Kind.PUT)
    history.append(get(99, written.value, last + 1, last + 2, key="k1"))  # long overwritten by then
    counterexample = rejected(history)
    assert len(counterexample) <= 4, "\n".join(format_timeline(counterexample))
    assert counterexample[-1].client == 99
    originals = {(op.client, op.invoke) for op in history}
    assert all((op.client, op.invoke) in originals for op in counterexample)


def test_shrinker_cuts_before_operations_that_begin_after_the_violation():
    history = [put(1, "a", 0, 1), put(1, "b", 2, 3), get(2, "a", 4, 5)]
    history += [put(3, f"later{i}", 10 + i, 10.5 + i) for i in range(20)]
    assert [op.value or op.result for op in shrink(history)] == ["a", "b", "a"]


def test_shrinker_does_not_invent_a_violation_by_removing_a_read_value():
    # Removing put "a" would leave a read of a value no one wrote; the real problem is b.
    history = [put(1, "a", 0, 1), get(2, "a", 2, 3), put(1, "b", 4, 5), get(2, "a", 6, 7)]
    assert any(op.value == "a" for op in shrink(history))


def test_shrinker_gives_up_at_its_deadline_with_the_history_it_has():
    ticks = iter(range(0, 10**9, 1000))
    history = [put(1, "a", 0, 1), get(2, None, 2, 3)]
    assert len(shrink(history, seconds=1, clock=lambda: next(ticks))) == 2


# --- bounds ----------------------------------------------------------------------------------


def test_a_key_that_exceeds_max_states_is_unknown_not_wrong():
    history = random_history(random.Random(3), operations=300, keys=1, clients=6)
    result = check(history, max_states=10)
    assert result.verdict is Verdict.UNKNOWN and "max_states=10" in result.keys[0].reason


def test_a_key_that_exceeds_the_time_limit_is_unknown():
    ticks = iter(range(0, 10**9))
    history = random_history(random.Random(3), operations=3000, keys=1, clients=6)
    result = check(history, timeout_s=0.5, clock=lambda: next(ticks) * 1.0)
    assert result.verdict is Verdict.UNKNOWN and "time limit" in result.keys[0].reason


# --- the format --------------------------------------------------------------------------------


def test_the_documented_line_parses():
    line = '{"client": 3, "op": "put", "key": "k1", "value": "v2", "invoke": 12.345, "complete": 12.351, "outcome": "ok"}'
    (op,) = parse_history([line])
    assert op == Operation(3, Kind.PUT, "k1", 12.345, 12.351, Outcome.OK, value="v2", line=1)


def test_operations_round_trip_through_json():
    history = random_history(random.Random(11), operations=200, keys=2, clients=3)
    lines = [json.dumps(operation_to_json(op)) for op in history]
    assert parse_history(lines) == [dataclasses.replace(op, line=number) for number, op in enumerate(history, 1)]


def test_info_is_an_unknown_outcome_and_its_complete_time_is_ignored():
    (op,) = parse_history(['{"client": 1, "op": "delete", "key": "k", "invoke": 1, "complete": 2, "outcome": "info"}'])
    assert op.outcome is Outcome.UNKNOWN and op.complete == INF


@pytest.mark.parametrize("line, message", [
    ('{"client": 1, "op": "put"', "line 2: not JSON"),
    ('[1, 2]', "line 2: [1, 2] is not a JSON object"),
    ('{"client": 1, "op": "put", "key": "k", "value": "v", "invoke": 1, "complete": 2}', "line 2: field 'outcome' is missing"),
    ('{"client": 1, "op": "pot", "key": "k", "invoke": 1, "complete": 2, "outcome": "ok"}', "line 2: field 'op' is \"pot\""),
    ('{"client": 1, "op": "get", "key": "k", "invoke": 1, "complete": 2, "outcome": "ok"}', "line 2: field 'result' is missing"),
    ('{"client": 1, "op": "put", "key": "k", "value": 7, "invoke": 1, "complete": 2, "outcome": "ok"}', "line 2: field 'value' is 7"),
    ('{"client": 1, "op": "put", "key": "k", "value": "v", "invoke": "1", "complete": 2, "outcome": "ok"}', "line 2: field 'invoke'"),
    ('{"client": 1, "op": "put", "key": "k", "value": "v", "invoke": 3, "complete": 2, "outcome": "ok"}', "line 2: complete is 2, before invoke 3"),
    ('{"client": 1, "op": "put", "key": "k", "value": "v", "invoke": 1, "outcome": "ok"}', "line 2: field 'complete' is missing"),
    ('{"client": 1, "op": "put", "key": "k", "valeu": "v", "invoke": 1, "complete": 2, "outcome": "ok"}', "line 2: unknown field 'valeu'"),
    ('{"client": 1, "op": "cas", "key": "k", "value": "v", "invoke": 1, "complete": 2, "outcome": "ok", "succeeded": true}', "line 2: a cas takes exactly one of expected"),
    ('{"client": 1, "op": "cas", "key": "k", "value": "v", "expected": "a", "invoke": 1, "complete": 2, "outcome": "ok"}', "line 2: a cas with outcome ok needs succeeded"),
    ('{"client": 1, "op": "cas", "key": "k", "value": "v", "expected": "a", "invoke": 1, "outcome": "unknown", "succeeded": false}', "line 2: succeeded is recorded"),
    ('{"client": 1, "op": "get", "key": "k", "result": null, "revision": 3, "invoke": 1, "complete": 2, "outcome": "ok"}', "line 2: revision is recorded"),
    ('{"client": true, "op": "delete", "key": "k", "invoke": 1, "complete": 2, "outcome": "ok"}', "line 2: field 'client'"),
])
def test_format_errors_name_the_line_and_the_field(line, message):
    good = '{"client": 1, "op": "delete", "key": "k", "invoke": 0, "complete": 1, "outcome": "ok"}'
    with pytest.raises(HistoryError) as caught:
        parse_history([good, line])
    assert message in str(caught.value)


def test_simulator_histories_are_read_as_a_log_register():
    result = simulate(SimOptions(nodes=3, seed=4, steps=200))
    assert result.ok, result.violation
    history = parse_history(json.dumps(op.to_json()) for op in result.history)
    assert history and is_linearizable(history)
    stale = [
        {"client": 0, "kind": "write", "value": "c0-1", "node": 1, "invoked": 0, "completed": 5, "outcome": "ok", "index": 2},
        {"client": 1, "kind": "read-lease", "value": "c1-2", "node": 2, "invoked": 6, "completed": 7, "outcome": "ok", "index": 1},
    ]
    assert not is_linearizable(parse_history(json.dumps(record) for record in stale))


# --- properties over histories from a real execution -----------------------------------------

_histories = st.builds(
    lambda seed, operations, keys, clients, unknown, revisions: random_history(
        random.Random(seed), operations=operations, keys=keys, clients=clients, unknown_percent=unknown,
        revisions=revisions),
    st.integers(0, 2**32), st.integers(1, 60), st.integers(1, 3), st.integers(1, 5), st.sampled_from([0, 5, 20]),
    st.booleans(),
)


@settings(max_examples=60)
@given(_histories)
def test_histories_of_a_real_execution_are_linearizable(history):
    assert check(history, timeout_s=10).verdict is Verdict.LINEARIZABLE


@settings(max_examples=40)
@given(_histories, st.integers(0, 2**32), st.booleans())
def test_a_read_changed_to_another_value_is_caught_when_it_certainly_is_wrong(history, choice, fresh):
    reads = [i for i, op in enumerate(history) if op.kind is Kind.GET and op.outcome is Outcome.OK]
    if not reads:
        return
    i = reads[choice % len(reads)]
    values = sorted({op.value for op in history if op.value is not None and op.key == history[i].key} - {history[i].result})
    if fresh or not values:
        new_result = "never-written"  # certainly wrong: no operation writes it
    else:
        new_result = values[choice % len(values)]  # maybe wrong: another write may explain it
    history[i] = dataclasses.replace(history[i], result=new_result, revision=None)
    result = check(history, timeout_s=10)
    if new_result == "never-written":
        assert result.verdict is Verdict.NOT_LINEARIZABLE
        assert "never-written" in [op.result for op in result.counterexample]
    if result.verdict is Verdict.NOT_LINEARIZABLE:
        assert not is_linearizable(result.counterexample)


# --- the command ------------------------------------------------------------------------------


def raftflow_check(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="raftflow")
    add_check_command(parser.add_subparsers(dest="command"))
    return run(parser.parse_args(["check", *argv]))


def write_history(path, history) -> str:
    path.write_text("".join(json.dumps(operation_to_json(op)) + "\n" for op in history))
    return str(path)


def test_command_on_a_linearizable_history(tmp_path, capsys):
    history = random_history(random.Random(1), operations=50, keys=2, clients=3)
    assert raftflow_check(write_history(tmp_path / "h.jsonl", history)) == 0
    out = capsys.readouterr().out
    assert out.startswith("linearizable: 50 operations on 2 keys checked in ") and out.endswith(" s\n")


def test_command_on_a_violation_prints_the_key_and_the_timeline(tmp_path, capsys):
    path = write_history(tmp_path / "h.jsonl", [put(1, "a", 0, 1, key="k1"), put(1, "b", 2, 3, key="k1"),
                                                get(2, "a", 4, 5, key="k1")])
    assert raftflow_check(path) == 1
    out = capsys.readouterr().out
    assert 'not linearizable: key "k1" (3 operations); the smallest failing sub-history found has 3:' in out
    assert 'client 2    get "k1" -> "a"' in out and "line 3" in out
    assert raftflow_check(path, "-o", "json") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "not linearizable" and report["failing_key"] == "k1"
    assert [op["line"] for op in report["counterexample"]] == [1, 2, 3]


def test_command_on_bad_input_is_one_line_on_stderr_and_exit_2(tmp_path, capsys):
    path = tmp_path / "h.jsonl"
    path.write_text('{"client": 1, "op": "get", "key": "k", "invoke": 0, "complete": 1, "outcome": "ok"}\n')
    assert raftflow_check(str(path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 1: field 'result' is missing" in err
    assert raftflow_check(str(tmp_path / "missing.jsonl")) == 2


def test_command_reports_an_undecided_key(tmp_path, capsys):
    history = random_history(random.Random(3), operations=300, keys=1, clients=6)
    assert raftflow_check(write_history(tmp_path / "h.jsonl", history), "--max-states", "10") == EXIT_UNDECIDED
    assert 'unknown: key "k1" (300 operations): the search held max_states=10 states' in capsys.readouterr().out
