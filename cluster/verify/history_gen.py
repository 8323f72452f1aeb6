"""Random key-value histories that are linearizable by construction, for the
checker's tests and its benchmark (`bench/check_bench.py`): operations take effect on
a real `statemachine.kv.KvStore` at random points inside their windows.
"""

from __future__ import annotations

import math
import random

from raftflow.statemachine.commands import Cas, Delete, Put
from raftflow.statemachine.kv import KvStore
from raftflow.cluster.verify.linearizability import Kind, Operation, Outcome


def random_history(
    rng: random.Random,
    *,
    operations: int,
    keys: int = 3,
    clients: int = 4,
    unknown_percent: int = 5,
    fail_percent: int = 5,
    revisions: bool = True,
) -> list[Operation]:
    """A linearizable history by construction: clients issue random operations one
    after another, each taking effect on a real statemachine.kv.KvStore at a random
    point inside its window, and record what the store answered. An unknown-outcome
    operation takes effect (anywhere after its invocation) or not, at random; a failed
    one never does. With `revisions`, outputs carry etcd revisions and half the cases
    compare revisions."""
    names = [f"k{i}" for i in range(1, keys + 1)]
    now = [0.0] * clients
    planned = []  # (point or None, number, client, kind, key, invoke, complete, outcome)
    for number in range(operations):
        client = rng.randrange(clients)
        invoke = now[client] + rng.uniform(0.0, 1.0)
        complete = invoke + rng.uniform(0.1, 3.0)
        now[client] = complete
        roll = rng.randrange(100)
        outcome = Outcome.UNKNOWN if roll < unknown_percent else Outcome.FAIL if roll < unknown_percent + fail_percent else Outcome.OK
        point = rng.uniform(invoke, complete)
        if outcome is Outcome.FAIL or (outcome is Outcome.UNKNOWN and rng.random() < 0.5):
            point = None
        elif outcome is Outcome.UNKNOWN:
            point = rng.uniform(invoke, complete + 10.0)  # it may land long after the client gave up
        kind = rng.choices((Kind.GET, Kind.PUT, Kind.CAS, Kind.DELETE), (40, 30, 20, 10))[0]
        planned.append((point, number, client, kind, rng.choice(names), invoke, complete, outcome))
    store = KvStore()
    history = []
    applied = sorted((p for p in planned if p[0] is not None), key=lambda p: (p[0], p[1]))
    for point, number, client, kind, key, invoke, complete, outcome in applied + [p for p in planned if p[0] is None]:
        current = store.get(key)
        fields: dict = {}
        if kind in (Kind.PUT, Kind.CAS):
            fields["value"] = f"v{number}"
        if kind is Kind.CAS:
            if revisions and rng.random() < 0.5:
                fields["expected_revision"] = current.mod_revision if current and rng.random() < 0.7 else rng.randrange(3)
            else:
                fields["expected"] = current.value.decode() if current and rng.random() < 0.7 else f"v{rng.randrange(number + 1)}"
        if point is not None:
            if kind is Kind.GET:
                fields["result"] = None if current is None else current.value.decode()
                fields["revision"] = current.mod_revision if current and revisions else None
            elif kind is Kind.DELETE:
                store.apply(Delete(key), 0)
            elif kind is Kind.PUT:
                fields["revision"] = store.apply(Put(key, fields["value"].encode()), 0).revision
            else:
                expected = fields.get("expected")
                answer = store.apply(Cas(key, fields["value"].encode(), expected and expected.encode(), fields.get("expected_revision")), 0)
                fields["succeeded"] = answer.succeeded
                fields["revision"] = answer.revision if answer.succeeded else None
        if outcome is not Outcome.OK:
            fields = {name: fields.get(name) for name in ("value", "expected", "expected_revision")}
            complete = math.inf if outcome is Outcome.UNKNOWN else complete
        if not revisions:
            fields.pop("revision", None)
        history.append(Operation(client, kind, key, invoke, complete, outcome, line=number + 1, **fields))
    return sorted(history, key=lambda op: op.line)
