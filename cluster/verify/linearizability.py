"""A linearizability checker for key-value histories (Herlihy & Wing 1990).

A history is what clients saw: each operation's invocation and completion time, its
input, its output and its outcome. It is linearizable if every operation can be given a
point between its invocation and completion (for an operation with an unknown outcome:
any point after its invocation, or none) such that applying them in that order to one
register per key gives every recorded output.

The search is Wing & Gong's (1993) with Lowe's memoization ("Testing for
linearizability", 2017), as Porcupine does it: operations are calls and returns in time
order in a doubly linked list; the search linearizes the first call the model accepts,
lifts it out of the list, starts over from the head, and backtracks when it reaches a
return whose operation is not yet linearized. A (linearized set, state) pair it has
seen is never explored again. Each key is an independent register (P-compositionality,
Herlihy & Wing §3.3), so keys are checked one by one, each with its own bounds.

What the model knows is what the history records (see docs/linearizability.md): values
always; etcd revisions only where an operation carries one. A cas on a revision against
a state whose revision nobody recorded is allowed either way: the checker cannot tell.

Everything here is pure: a history comes in as lines of text or Operation objects, and
the only clock is the one that enforces the time bounds (injectable).
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

MAX_STATES_PER_KEY = 200_000  # memo entries one key's search may hold: each ~150 bytes + operations/8
SHRINK_SECONDS = 10.0  # the shrinker's whole budget; it returns the smallest failing history found by then
_CLOCK_EVERY = 2048  # search iterations between looks at the clock


class HistoryError(ValueError):
    """A history line or Operation that breaks the format; the message names the line
    (when there is one) and the field."""


class Kind(enum.Enum):
    PUT = "put"
    GET = "get"
    DELETE = "delete"
    CAS = "cas"


class Outcome(enum.Enum):
    OK = "ok"  # it happened, between invoke and complete, and its outputs are what it saw
    FAIL = "fail"  # it certainly had no effect (NOT_LEADER, a rejected request): ignored
    UNKNOWN = "unknown"  # it may take effect at any time after invoke, or never (a timeout)


class Verdict(enum.Enum):
    LINEARIZABLE = "linearizable"
    NOT_LINEARIZABLE = "not linearizable"
    UNKNOWN = "unknown"  # a bound (time, memo size) stopped the search first


@dataclass(frozen=True, slots=True)
class Operation:
    """One client operation. Inputs by kind: put (value), get (none), delete (none), cas
    (value and exactly one of expected, expected_revision). Outputs, only with outcome
    ok: get's result (None: the key was absent) and optionally revision (the key's
    mod_revision it saw); cas's succeeded; put's and a succeeded cas's optional revision
    (the one it made)."""

    client: int | str
    kind: Kind
    key: str
    invoke: float
    complete: float  # invoke <= complete; math.inf exactly when the outcome is unknown
    outcome: Outcome
    value: str | None = None
    expected: str | None = None
    expected_revision: int | None = None  # 0: the key must not exist (etcd's rule)
    result: str | None = None
    succeeded: bool | None = None
    revision: int | None = None
    line: int = 0  # where it was read from (0: built in code)

    def __post_init__(self) -> None:
        _check_operation(self)

    @property
    def writes(self) -> bool:
        """Whether it may change its key: a get and a failed cas never do."""
        return self.kind in (Kind.PUT, Kind.DELETE) or (self.kind is Kind.CAS and self.succeeded is not False)


def _check_operation(op: Operation) -> None:
    if not isinstance(op.kind, Kind) or not isinstance(op.outcome, Outcome):
        raise HistoryError(f"kind={op.kind!r} and outcome={op.outcome!r} must be a Kind and an Outcome")
    if type(op.key) is not str or not op.key:
        raise HistoryError(f"key is {op.key!r}; expected a non-empty string")
    if op.outcome is Outcome.UNKNOWN:
        if op.complete != math.inf:
            raise HistoryError(f"complete is {op.complete!r}; an operation with an unknown outcome never completes (inf)")
    elif not op.invoke <= op.complete:
        raise HistoryError(f"complete is {op.complete!r}, before invoke {op.invoke!r}")
    elif op.complete == math.inf:
        raise HistoryError(f"complete is inf; an operation with outcome {op.outcome.value} completed")
    wants_value = op.kind in (Kind.PUT, Kind.CAS)
    if (op.value is not None) != wants_value:
        raise HistoryError(f"value is {op.value!r}; a {op.kind.value} {'needs' if wants_value else 'has no'} value")
    if op.kind is Kind.CAS:
        if (op.expected is None) == (op.expected_revision is None):
            raise HistoryError("a cas takes exactly one of expected and expected_revision")
    elif op.expected is not None or op.expected_revision is not None:
        raise HistoryError(f"a {op.kind.value} has no expected or expected_revision")
    done = op.outcome is Outcome.OK
    if op.kind is Kind.CAS and done and op.succeeded is None:
        raise HistoryError("a cas with outcome ok needs succeeded (true or false)")
    if op.succeeded is not None and not (op.kind is Kind.CAS and done):
        raise HistoryError(f"succeeded is recorded on a {op.kind.value} with outcome {op.outcome.value}; only a cas that completed has it")
    if op.result is not None and not (op.kind is Kind.GET and done):
        raise HistoryError(f"result is recorded on a {op.kind.value} with outcome {op.outcome.value}; only a get that completed has it")
    if op.revision is not None:
        if not done or op.kind is Kind.DELETE or op.succeeded is False or (op.kind is Kind.GET and op.result is None):
            raise HistoryError("revision is recorded where nothing has one; only put, a succeeded cas and a get that saw a value (outcome ok) do")


# --- the history format ---------------------------------------------------------------

_FIELDS = {
    "client", "op", "key", "value", "expected", "expected_revision", "invoke", "complete", "outcome",
    "result", "succeeded", "revision",
}
_INFO_FIELDS = {"node", "error", "note"}  # informational: read past, not checked
_OUTCOMES = {"ok": Outcome.OK, "fail": Outcome.FAIL, "unknown": Outcome.UNKNOWN, "info": Outcome.UNKNOWN}


def parse_history(lines: Iterable[str]) -> list[Operation]:
    """JSON lines -> Operations, in file order; blank lines are skipped. The format is
    chosen by the first record: raftflow's (an "op" field) or the simulator's (`raftflow
    sim --history`, a "kind" field). HistoryError names the first bad line and field."""
    records = []
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise HistoryError(f"line {number}: not JSON: {exc}") from None
        if type(record) is not dict:
            raise HistoryError(f"line {number}: {_show(record)} is not a JSON object")
        records.append((number, record))
    if records and "op" not in records[0][1] and "kind" in records[0][1]:
        return _from_simulator(records)
    return [_operation(number, record) for number, record in records]


def _operation(number: int, record: dict) -> Operation:
    where = f"line {number}"
    unknown = set(record) - _FIELDS - _INFO_FIELDS
    if unknown:
        raise HistoryError(f"{where}: unknown field {sorted(unknown)[0]!r}; expected {', '.join(sorted(_FIELDS))}")
    for name in ("client", "op", "key", "invoke", "outcome"):
        if name not in record:
            raise HistoryError(f"{where}: field {name!r} is missing")
    client = record["client"]
    if not (type(client) is int or (type(client) is str and client)):
        raise HistoryError(f"{where}: field 'client' is {_show(client)}; expected an integer or a non-empty string")
    kind = _choice(record, "op", {k.value: k for k in Kind}, where)
    outcome = _choice(record, "outcome", _OUTCOMES, where)
    invoke = _time(record, "invoke", where)
    if outcome is Outcome.UNKNOWN:
        if record.get("complete") is not None:
            _time(record, "complete", where)  # checked, then ignored: it may still take effect
        complete = math.inf
    elif "complete" not in record:
        raise HistoryError(f"{where}: field 'complete' is missing; only an unknown outcome may lack it")
    else:
        complete = _time(record, "complete", where)
    fields = {name: record.get(name) for name in ("key", "value", "expected", "result")}
    for name, value in fields.items():
        if value is not None and type(value) is not str:
            raise HistoryError(f"{where}: field {name!r} is {_show(value)}; expected a string")
    succeeded = record.get("succeeded")
    if succeeded is not None and type(succeeded) is not bool:
        raise HistoryError(f"{where}: field 'succeeded' is {_show(succeeded)}; expected true or false")
    revisions = {}
    for name, least in (("expected_revision", 0), ("revision", 1)):
        value = revisions[name] = record.get(name)
        if value is not None and (type(value) is not int or value < least):
            raise HistoryError(f"{where}: field {name!r} is {_show(value)}; expected an integer >= {least}")
    if kind is Kind.GET and outcome is Outcome.OK and "result" not in record:
        raise HistoryError(f"{where}: field 'result' is missing; a get that completed has one (null: key absent)")
    try:
        return Operation(client, kind, fields["key"], invoke, complete, outcome, fields["value"], fields["expected"],
                         revisions["expected_revision"], fields["result"], succeeded, revisions["revision"], number)
    except HistoryError as exc:
        raise HistoryError(f"{where}: {exc}") from None


def _choice(record: dict, name: str, choices: dict, where: str):
    value = record[name]
    if type(value) is not str or value not in choices:
        raise HistoryError(f"{where}: field {name!r} is {_show(value)}; expected one of {', '.join(choices)}")
    return choices[value]


def _time(record: dict, name: str, where: str) -> float:
    value = record[name]
    if type(value) not in (int, float) or not math.isfinite(value):
        raise HistoryError(f"{where}: field {name!r} is {_show(value)}; expected a finite number")
    return value


def _show(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _from_simulator(records: list[tuple[int, dict]]) -> list[Operation]:
    """The simulator's log as one register, key "log": an acknowledged write at index i
    is a put of "i", and a read that saw applied index j is a get of the last
    acknowledged write at or below j. Writes that failed or whose outcome is unknown are
    left out (the simulator does not record whether an unknown one stayed in the log),
    as are reads that did not complete: leaving them out can hide a violation, never
    invent one."""
    writes, reads = [], []
    for number, record in records:
        where = f"line {number}"
        for name in ("client", "kind", "invoked", "completed", "outcome", "index"):
            if type(record.get(name)) is not (str if name in ("kind", "outcome") else int):
                raise HistoryError(f"{where}: simulator field {name!r} is {_show(record.get(name))}")
        if record["kind"] not in ("write", "read-index", "read-lease"):
            raise HistoryError(f"{where}: simulator field 'kind' is {_show(record['kind'])}; expected write, read-index or read-lease")
        if record["outcome"] == "ok":
            (writes if record["kind"] == "write" else reads).append((number, record))
    indexes = sorted(record["index"] for _, record in writes)
    ops = [Operation(r["client"], Kind.PUT, "log", r["invoked"], r["completed"], Outcome.OK, str(r["index"]), line=n)
           for n, r in writes]
    for number, r in reads:
        seen = bisect.bisect_right(indexes, r["index"])
        result = str(indexes[seen - 1]) if seen else None
        ops.append(Operation(r["client"], Kind.GET, "log", r["invoked"], r["completed"], Outcome.OK, result=result, line=number))
    return sorted(ops, key=lambda op: op.line)


def operation_to_json(op: Operation) -> dict:
    """The inverse of parse_history for one operation (without the line number)."""
    row: dict = {"client": op.client, "op": op.kind.value, "key": op.key}
    for name in ("value", "expected", "expected_revision"):
        if getattr(op, name) is not None:
            row[name] = getattr(op, name)
    row["invoke"] = op.invoke
    if op.complete != math.inf:
        row["complete"] = op.complete
    row["outcome"] = op.outcome.value
    if op.kind is Kind.GET and op.outcome is Outcome.OK:
        row["result"] = op.result
    for name in ("succeeded", "revision"):
        if getattr(op, name) is not None:
            row[name] = getattr(op, name)
    return row


# --- the model: one register per key ----------------------------------------------------

# A state is (value, revision, floor): value None when the key is absent, whose
# revision is 0 (etcd's); revision None when the value's mod_revision was never
# recorded; floor the highest revision the key is known to have had, which every later
# write's revision exceeds (etcd's revision counter only grows, across deletes too).
State = tuple
_ABSENT: State = (None, 0, 0)


def _step(state: State, op: Operation) -> State | None:
    """The state after `op` if the register can apply it here and give its recorded
    outputs, else None. An operation with an unknown outcome that would change nothing
    here answers None too: that is the same as never applying it, which the search
    always allows."""
    value, revision, floor = state
    done = op.outcome is Outcome.OK
    kind = op.kind
    if kind is Kind.GET:
        if op.result != value:
            return None
        if op.revision is None or op.revision == revision:
            return state
        if revision is None and op.revision > floor:
            return (value, op.revision, op.revision)  # it learns the revision of an unrecorded write
        return None
    if kind is Kind.DELETE:
        return (None, 0, floor)
    if kind is Kind.CAS:
        holds = _holds(value, revision, op.expected, op.expected_revision)
        if done and not op.succeeded:
            return None if holds is True else state
        if holds is False:
            return None
    if done and op.revision is not None:
        return (op.value, op.revision, op.revision) if op.revision > floor else None
    return (op.value, None, floor)


def _holds(value: str | None, revision: int | None, expected: str | None, expected_revision: int | None) -> bool | None:
    """Whether a cas's condition holds in the state; None when the state's revision was
    never recorded (a present key's revision is >= 1, so it cannot be 0)."""
    if expected_revision is None:
        return value is not None and value == expected
    if revision is None:
        return False if expected_revision == 0 else None
    return revision == expected_revision


class _OutOfBounds(Exception):
    """The search hit a bound; the message says which."""


class _Unread:
    """The value of an unknown-outcome put that no operation reads or expects: such
    puts all lead to equivalent states, so they share this one value, equal to no
    string."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<a value no one reads>"


_UNREAD_VALUE = _Unread()


class _Search:
    """Wing & Gong's search with Lowe's memo over one key's operations (outcome ok or
    unknown): calls and returns in time order, linked after the head 2n (entry 2i is
    operation i's call, 2i+1 its return). At equal times calls come first, so touching
    operations count as concurrent; an unknown operation returns at +inf.

    Two reductions keep unknown operations, candidates at every step once invoked, from
    multiplying the search. Unknown deletes are interchangeable, and so are unknown puts
    of values no one reads or expects: each group is a queue, and only its earliest
    invoked unused member is tried. And the memo keeps, per (completed operations
    linearized, state), the sets of unknown operations used; a visit that used a
    superset of one of them has fewer choices left and is skipped."""

    def __init__(self, ops: Sequence[Operation], max_states: int) -> None:
        read = {op.result for op in ops} | {op.expected for op in ops}
        done = [op for op in ops if op.outcome is Outcome.OK]
        unknown = sorted((op for op in ops if op.outcome is Outcome.UNKNOWN), key=lambda op: op.invoke)
        unknown = [dataclasses.replace(op, value=_UNREAD_VALUE) if _unread(op, read) else op for op in unknown]
        self.ops = done + unknown
        self.m = m = len(done)  # operations below m completed
        n = len(self.ops)
        self.nxt, self.prv = _linked(2 * n, sorted(range(2 * n), key=lambda e: (
            self.ops[e >> 1].complete if e & 1 else self.ops[e >> 1].invoke, e & 1, e)))
        self.queue_of = [0] * n  # 0: none, 1: the unknown deletes, 2: the unknown puts nobody reads
        queues: tuple[list[int], list[int]] = ([], [])
        for i in range(m, n):
            op = self.ops[i]
            if op.kind is Kind.DELETE or op.value is _UNREAD_VALUE:
                self.queue_of[i] = 1 if op.kind is Kind.DELETE else 2
                queues[self.queue_of[i] - 1].append(i)
        self.queues = queues
        self.taken = [0, 0]  # each queue's members used: always a prefix
        self.max_states = max_states
        self.seen: dict[tuple, list[int]] = {}
        self.states = 0

    def run(self, deadline: float, clock: Callable[[], float]) -> tuple[Verdict, str]:
        try:
            return self._run(deadline, clock), ""
        except _OutOfBounds as exc:
            return Verdict.UNKNOWN, str(exc)

    def _run(self, deadline: float, clock: Callable[[], float]) -> Verdict:
        ops, nxt, m = self.ops, self.nxt, self.m
        head = 2 * len(ops)
        state, linearized = _ABSENT, 0
        self._remember(0, state)
        stack: list[tuple[int, State]] = []
        entry, iterations = nxt[head], 0
        while entry != -1:
            iterations += 1
            if iterations % _CLOCK_EVERY == 0 and clock() > deadline:
                raise _OutOfBounds("the time limit ran out")
            i = entry >> 1
            if not entry & 1:  # a call: try to linearize it here
                after = _step(state, ops[i]) if self._may_try(i) else None
                if (after is not None and (i < m or self._enables(i, state, after))
                        and self._remember(linearized | 1 << i, after)):
                    stack.append((entry, state))
                    state, linearized = after, linearized | 1 << i
                    self._lift(entry)
                    entry = nxt[head]
                else:
                    entry = nxt[entry]
                continue
            if i >= m:  # returns at +inf come last: every operation that completed is linearized
                break
            if not stack:
                return Verdict.NOT_LINEARIZABLE
            entry, state = stack.pop()
            linearized ^= 1 << (entry >> 1)
            self._unlift(entry)
            entry = nxt[entry]
        return Verdict.LINEARIZABLE

    def _may_try(self, i: int) -> bool:
        queue = self.queue_of[i]
        return not queue or self.queues[queue - 1][self.taken[queue - 1]] == i

    def _enables(self, tried: int, before: State, after: State) -> bool:
        """Whether unknown operation `tried`, taking `before` to `after`, lets another
        candidate (a call before the first return) apply that could not before."""
        ops, nxt = self.ops, self.nxt
        e = nxt[2 * len(ops)]
        while e != -1 and not e & 1:
            op = ops[e >> 1]
            if (e >> 1 != tried and (op.outcome is Outcome.OK or op.kind is Kind.CAS)
                    and _step(before, op) is None and _step(after, op) is not None):
                return True
            e = nxt[e]
        return False

    def _remember(self, linearized: int, state: State) -> bool:
        """False if this (linearized, state) was visited with a subset of its unknown
        operations used; else records it."""
        key = (linearized & ((1 << self.m) - 1), state)
        used = linearized >> self.m
        prior = self.seen.get(key)
        if prior is None:
            self.seen[key] = [used]
        elif any(earlier & ~used == 0 for earlier in prior):
            return False
        else:
            prior.append(used)
        self.states += 1
        if self.states > self.max_states:
            raise _OutOfBounds(f"the search held max_states={self.max_states} states")
        return True

    def _lift(self, entry: int) -> None:
        """Takes the call `entry` and its return out of the list."""
        nxt, prv = self.nxt, self.prv
        for e in (entry, entry + 1):
            nxt[prv[e]] = nxt[e]
            if nxt[e] != -1:
                prv[nxt[e]] = prv[e]
        queue = self.queue_of[entry >> 1]
        if queue:
            self.taken[queue - 1] += 1

    def _unlift(self, entry: int) -> None:
        """Undoes _lift(entry); lifts are undone last first (dancing links)."""
        nxt, prv = self.nxt, self.prv
        for e in (entry + 1, entry):
            nxt[prv[e]] = e
            if nxt[e] != -1:
                prv[nxt[e]] = e
        queue = self.queue_of[entry >> 1]
        if queue:
            self.taken[queue - 1] -= 1


def _unread(op: Operation, read: set) -> bool:
    return op.kind is Kind.PUT and op.value not in read


def _linked(head: int, order: Iterable[int]) -> tuple[list[int], list[int]]:
    """nxt and prv arrays of a doubly linked list of `order` after `head` (-1: none)."""
    nxt, prv = [-1] * (head + 1), [-1] * (head + 1)
    last = head
    for e in order:
        nxt[last], prv[e], last = e, last, e
    return nxt, prv


def _verdict(ops: Sequence[Operation], deadline: float, max_states: int, clock: Callable[[], float]) -> tuple[Verdict, str, int]:
    search = _Search(ops, max_states)
    verdict, reason = search.run(deadline, clock)
    return verdict, reason, search.states


def _relevant(ops: Iterable[Operation]) -> list[Operation]:
    """What the search needs of one key: failed operations changed nothing, and a get
    that did not complete saw nothing anyone knows."""
    return [op for op in ops if op.outcome is Outcome.OK or (op.outcome is Outcome.UNKNOWN and op.kind is not Kind.GET)]


# --- check ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyResult:
    key: str
    verdict: Verdict
    operations: int  # of this key, failed ones included
    states: int  # (linearized set, state) pairs the search held
    seconds: float
    reason: str = ""  # for UNKNOWN: the bound that stopped the search


@dataclass(frozen=True, slots=True)
class CheckResult:
    verdict: Verdict  # NOT_LINEARIZABLE if any key is; else UNKNOWN if any key is; else LINEARIZABLE
    keys: tuple[KeyResult, ...]  # by key
    operations: int
    seconds: float  # the search of every key, without the shrinking
    failing_key: str | None  # the first key (in key order) that is not linearizable
    counterexample: tuple[Operation, ...]  # the smallest failing sub-history of failing_key found, by invoke

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.LINEARIZABLE

    @property
    def operations_per_second(self) -> float:
        return self.operations / self.seconds if self.seconds > 0 else math.inf


def check(
    operations: Iterable[Operation],
    *,
    timeout_s: float | None = None,
    max_states: int = MAX_STATES_PER_KEY,
    shrink_s: float = SHRINK_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> CheckResult:
    """Checks each key's operations for linearizability, each within `timeout_s` (None:
    no limit) and `max_states`; a key that hits a bound is UNKNOWN. If a key is not
    linearizable, the first such key's history is shrunk for up to `shrink_s` seconds."""
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s={timeout_s} must be positive")
    if max_states < 1:
        raise ValueError(f"max_states={max_states} must be at least 1")
    by_key: dict[str, list[Operation]] = {}
    for op in operations:
        if not isinstance(op, Operation):
            raise HistoryError(f"{op!r} is not an Operation")
        by_key.setdefault(op.key, []).append(op)
    started = clock()
    results = []
    for key in sorted(by_key):
        begun = clock()
        deadline = begun + timeout_s if timeout_s is not None else math.inf
        verdict, reason, states = _verdict(_relevant(by_key[key]), deadline, max_states, clock)
        results.append(KeyResult(key, verdict, len(by_key[key]), states, clock() - begun, reason))
    seconds = clock() - started
    failing = next((r.key for r in results if r.verdict is Verdict.NOT_LINEARIZABLE), None)
    verdicts = {r.verdict for r in results}
    verdict = next((v for v in (Verdict.NOT_LINEARIZABLE, Verdict.UNKNOWN) if v in verdicts), Verdict.LINEARIZABLE)
    counterexample = () if failing is None else shrink(by_key[failing], seconds=shrink_s, max_states=max_states, clock=clock)
    total = sum(len(ops) for ops in by_key.values())
    return CheckResult(verdict, tuple(results), total, seconds, failing, counterexample)


def is_linearizable(operations: Iterable[Operation]) -> bool:
    """For tests: check() without bounds or shrinking, for one or more keys."""
    return check(operations, shrink_s=0).ok


# --- shrinking ------------------------------------------------------------------------


def shrink(
    operations: Sequence[Operation],
    *,
    seconds: float = SHRINK_SECONDS,
    max_states: int = MAX_STATES_PER_KEY,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Operation, ...]:
    """A smaller history of one key that is still not linearizable, by steps that keep
    "if the smaller one fails, so does the original": cut at the earliest completion at
    which the history already fails (operations still running then become unknown, and
    later ones go); drop reads; drop writes of a value written once and read by no one
    (while no failed cas or cas on revision remains, which could have been explaining
    themselves by it). Removing a write in general could invent a violation (a read of
    a value no one wrote), so nothing else is removed. Stops after `seconds` with the
    smallest found."""
    deadline = clock() + seconds

    def fails(ops: list[Operation]) -> bool:
        if clock() > deadline:
            return False
        return _verdict(ops, deadline, max_states, clock)[0] is Verdict.NOT_LINEARIZABLE

    current = _relevant(operations)
    if not fails(current):
        return tuple(sorted(current, key=_by_invoke))  # out of time (or not failing at all): nothing to show smaller
    current = _earliest_failing_cut(current, fails)
    while clock() < deadline:
        before = len(current)
        current = _drop(current, _reads, fails)
        current = _drop(current, _unobserved_writes, fails)
        if len(current) == before:
            break
    return tuple(sorted(current, key=_by_invoke))


def _by_invoke(op: Operation) -> tuple:
    return (op.invoke, op.complete, op.line)


def _earliest_failing_cut(ops: list[Operation], fails: Callable[[list[Operation]], bool]) -> list[Operation]:
    """Binary search for the earliest completion time t whose cut still fails; a cut
    of a linearizable history is linearizable, so failing is monotone in t."""
    times = sorted({op.complete for op in ops if op.outcome is Outcome.OK})
    low, high = 0, len(times) - 1  # the cut at times[high] fails (it loses only unknowns invoked later)
    best = _cut(ops, times[high])
    while low < high:
        middle = (low + high) // 2
        cut = _cut(ops, times[middle])
        if fails(cut):
            high, best = middle, cut
        else:
            low = middle + 1
    return best


def _cut(ops: list[Operation], t: float) -> list[Operation]:
    """The history as it stood at time t: operations invoked by then, those still
    running made unknown (their outputs forgotten; an unknown get is dropped)."""
    kept = []
    for op in ops:
        if op.invoke > t:
            continue
        if op.complete > t:
            if op.kind is Kind.GET:
                continue
            op = dataclasses.replace(op, outcome=Outcome.UNKNOWN, complete=math.inf, succeeded=None, revision=None)
        kept.append(op)
    return kept


def _reads(ops: list[Operation]) -> list[Operation]:
    """Operations that change nothing: a get, a failed cas."""
    return [op for op in ops if not op.writes and op.outcome is Outcome.OK]


def _unobserved_writes(ops: list[Operation]) -> list[Operation]:
    """Writes whose removal cannot invent a violation: a put or cas of a value no other
    operation writes, reads or expects, and a delete no one can see (a get of absence,
    a cas on revision 0). Nor may any operation that could follow it (one that completes
    after it is invoked) be a failed cas (the write may be what made it fail), or a cas
    on revision that may have matched the write's. Without the write, a later write's
    revision is only checked against an older floor: weaker."""
    written: dict[str, int] = {}
    mentioned: dict[str | None, int] = {}
    for op in ops:
        if op.value is not None:
            written[op.value] = written.get(op.value, 0) + 1
        for value in {op.result, op.expected}:
            mentioned[value] = mentioned.get(value, 0) + 1
    never = -math.inf
    failed_cas = max((op.complete for op in ops if op.kind is Kind.CAS and op.succeeded is False), default=never)
    absence = max((op.complete for op in ops if op.expected_revision == 0 or (
        op.kind is Kind.GET and op.outcome is Outcome.OK and op.result is None)), default=never)
    on_revision: dict[int, float] = {}
    for op in ops:
        if op.expected_revision is not None:
            on_revision[op.expected_revision] = max(on_revision.get(op.expected_revision, never), op.complete)
    any_revision = max(on_revision.values(), default=never)
    removable = []
    for op in ops:
        if failed_cas >= op.invoke:
            continue
        if op.kind is Kind.DELETE:
            if absence < op.invoke:
                removable.append(op)
        elif op.value is not None and written[op.value] == 1 and mentioned.get(op.value, 0) == (op.expected == op.value):
            matched = any_revision if op.revision is None else on_revision.get(op.revision, never)
            if matched < op.invoke:
                removable.append(op)
    return removable


def _drop(
    ops: list[Operation],
    candidates: Callable[[list[Operation]], list[Operation]],
    fails: Callable[[list[Operation]], bool],
) -> list[Operation]:
    """Removes candidates while the rest still fails: halves first, then ever smaller
    chunks, down to one at a time (ddmin's complement step, Zeller 2002)."""
    chunk = max(1, len(candidates(ops)) // 2)
    while True:
        removable = candidates(ops)
        start = 0
        while start < len(removable):
            gone = {id(op) for op in removable[start : start + chunk]}
            trial = [op for op in ops if id(op) not in gone]
            if fails(trial):
                ops = trial
                removable = [op for op in removable if id(op) not in gone]
            else:
                start += chunk
        if chunk == 1:
            return ops
        chunk //= 2


# --- showing a history ------------------------------------------------------------------

_BAR_WIDTH = 32


def format_timeline(ops: Sequence[Operation]) -> list[str]:
    """One line per operation, by invocation: a bar over the distinct event times (not
    to scale: order is what matters), the client, the operation and where it was read."""
    times = sorted({t for op in ops for t in (op.invoke, op.complete) if t != math.inf})
    slot = {t: round(i * (_BAR_WIDTH - 1) / max(1, len(times) - 1)) for i, t in enumerate(times)}
    lines = []
    for op in sorted(ops, key=_by_invoke):
        start = slot[op.invoke]
        if op.complete == math.inf:
            bar = " " * start + "[" + "-" * (_BAR_WIDTH - start - 1) + ">"
        else:
            end = slot[op.complete]
            bar = " " * start + ("|" if end == start else "[" + "=" * (end - start - 1) + "]")
        where = f"  line {op.line}" if op.line else ""
        lines.append(f"{bar:<{_BAR_WIDTH + 1}}  client {op.client!s:<4} {describe(op):<44} {_span(op)}{where}")
    return lines


def describe(op: Operation) -> str:
    key = json.dumps(op.key)
    rev = f" @rev {op.revision}" if op.revision is not None else ""
    if op.kind is Kind.GET:
        seen = "(unknown)" if op.outcome is not Outcome.OK else "absent" if op.result is None else json.dumps(op.result)
        return f"get {key} -> {seen}{rev}"
    if op.kind is Kind.DELETE:
        return f"delete {key}{_said(op)}"
    if op.kind is Kind.PUT:
        return f"put {key} = {json.dumps(op.value)}{rev}{_said(op)}"
    condition = json.dumps(op.expected) if op.expected is not None else f"rev {op.expected_revision}"
    answer = {True: " -> succeeded", False: " -> failed", None: ""}[op.succeeded]
    return f"cas {key} {condition} -> {json.dumps(op.value)}{answer}{rev}{_said(op)}"


def _said(op: Operation) -> str:
    return "" if op.outcome is Outcome.OK else f" ({op.outcome.value})"


def _span(op: Operation) -> str:
    end = "..." if op.complete == math.inf else f"{op.complete:g}"
    return f"[{op.invoke:g}, {end}]"
