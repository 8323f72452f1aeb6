"""Workflow types: a versioned list of steps, as typed frozen dataclasses.

Three ways in, one set of rules: the dataclasses validate themselves at construction,
and both `parse_definition` (the JSON/YAML file form) and the keyword-only Python API
(`workflow`, `activity`, `compensate`, `timer`, `signal`, `parallel`) only build them,
so equivalent input gives equal objects and the same errors. Every DefinitionError
message starts with the path of the field, e.g. `steps[1].retry.initial_interval=-1.0
must be > 0`: each part reports paths relative to itself, its parent adds where it sits.

Durations are seconds in the file, seconds or a datetime.timedelta in the Python API,
whole milliseconds inside.
`to_dict` gives the canonical file form (`parse_definition(to_dict(t)) == t`), and
`encode_definition` its msgpack bytes for the log and snapshots.

Input templates are JSON values in which a string of exactly one of these forms is a
reference, and every other value is literal:

    $input                       the workflow's input
    $input.a.b                   a field of it (a digit segment indexes a list)
    $steps.<step>.result         an earlier step's result
    $steps.<step>.result.a.b     a field of it

A string that starts `$input.`, `$steps.`, or is `$steps`, but is not well formed, is
an error rather than a literal, so a typo fails at definition time.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeAlias

import msgpack

from raftflow.statemachine._checks import unpack
from raftflow.statemachine.workflow.retry import (
    Duration,
    DefinitionError,
    RetryPolicy,
    check_ms,
    check_name,
    retry_to_dict,
    seconds_to_ms,
    show,
    within,
)

DEFINITION_FORMAT = 2  # bump when the canonical form changes; decode refuses other versions. 2: compensation timeouts
# The start_to_close an attempt gets when its definition sets neither start_to_close nor
# schedule_to_close: a task handed to a worker whose reply was lost (the leader died, the
# RPC was cancelled) is STARTED with nobody running it, and only a timeout gets it back.
DEFAULT_START_TO_CLOSE_MS = 10 * 60_000
MAX_STEPS = 1000  # steps in a workflow type, the members of parallel groups included
MAX_PARALLEL_STEPS = 100  # members of one parallel group
MAX_TEMPLATE_DEPTH = 32  # nesting of lists and objects in an input template
# A document nested near Python's recursion limit makes json.loads, yaml and repr raise
# RecursionError: that is the document's fault, said as this, after what was too deep.
TOO_DEEP = f"nests too deep to read; input templates nest at most {MAX_TEMPLATE_DEPTH} levels"
MAX_VERSION = (1 << 31) - 1
_MIN_INT, _MAX_INT = -(1 << 63), (1 << 64) - 1  # what msgpack carries
_STEP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")  # no dots: names appear in references


class InputError(ValueError):
    """A template could not be resolved against the values at hand (a referenced step
    has no result, or a field is missing); the message starts with the template path."""


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed reference string: `step` is None for `$input`."""

    step: str | None
    path: tuple[str, ...]  # field names (or list indices as digits) below the value


# --- templates ------------------------------------------------------------------------


def parse_reference(text: str) -> Reference | None:
    """The reference a template string spells, None if it is a literal; DefinitionError
    if it looks like a reference but is malformed."""
    if text == "$input":
        return Reference(None, ())
    if not (text.startswith("$input.") or text.startswith("$steps.") or text == "$steps"):
        return None
    head, *segments = text.split(".")
    if head == "$input":
        step, path = None, segments
    elif len(segments) >= 2 and segments[1] == "result" and _STEP_NAME.fullmatch(segments[0]):
        step, path = segments[0], segments[2:]
    else:
        raise DefinitionError(f"={show(text)} is not a reference; expected $steps.<step>.result[.field...]")
    if any(not segment for segment in path):
        raise DefinitionError(f"={show(text)} has an empty field name")
    return Reference(step, tuple(path))


def _check_template(value: object, depth: int = 0) -> object:
    """A canonical copy of a template (tuples become lists); raises naming the path
    relative to the template, e.g. `[2].sku`."""
    if depth > MAX_TEMPLATE_DEPTH:
        raise DefinitionError(f" nests deeper than {MAX_TEMPLATE_DEPTH} levels")
    if value is None or type(value) in (bool, str):
        if type(value) is str:
            parse_reference(value)
        return value
    if type(value) is int:
        if not _MIN_INT <= value <= _MAX_INT:
            raise DefinitionError(f"={show(value)} is outside the 64-bit range")
        return value
    if type(value) is float:
        if not math.isfinite(value):
            raise DefinitionError(f"={show(value)} must be finite")
        return value
    if type(value) in (list, tuple):
        items = []
        for i, item in enumerate(value):
            with within(f"[{i}]"):
                items.append(_check_template(item, depth + 1))
        return items
    if type(value) is dict:
        mapping = {}
        for key, item in value.items():
            if type(key) is not str:
                raise DefinitionError(f" has key {show(key)}; object keys must be strings")
            with within(f"[{key!r}]" if not _STEP_NAME.fullmatch(key) else key):
                mapping[key] = _check_template(item, depth + 1)
        return mapping
    raise DefinitionError(f"={show(value)} is a {type(value).__name__}; expected a JSON value")


def check_template(value: object, what: str) -> object:
    with within(what):
        return _check_template(value)


def template_references(template: object) -> list[tuple[str, Reference]]:
    """Every reference in a checked template with its path inside it, in document order."""
    found: list[tuple[str, Reference]] = []

    def walk(value: object, path: str) -> None:
        if type(value) is str:
            reference = parse_reference(value)
            if reference is not None:
                found.append((path, reference))
        elif type(value) is list:
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")
        elif type(value) is dict:
            for key, item in value.items():
                walk(item, f"{path}.{key}" if _STEP_NAME.fullmatch(key) else f"{path}[{key!r}]")

    walk(template, "")
    return found


def resolve_input(template: object, workflow_input: object, step_results: dict[str, object]) -> object:
    """The value a checked template stands for: references replaced by (copies of) the
    workflow input or earlier steps' results, literals kept. Pure: the same arguments
    give an equal value, and nothing returned shares structure with the arguments.

    `step_results` maps a step's name to its result; the engine puts there what each
    finished step gave (see the package docstring). Raises InputError naming the
    template path and the reference when a step has no result or a field is missing."""
    return _resolve(template, workflow_input, step_results, "input")


def _resolve(value: object, workflow_input: object, step_results: dict[str, object], where: str) -> object:
    if type(value) is list:
        return [_resolve(item, workflow_input, step_results, f"{where}[{i}]") for i, item in enumerate(value)]
    if type(value) is dict:
        return {key: _resolve(item, workflow_input, step_results, f"{where}.{key}") for key, item in value.items()}
    if type(value) is not str:
        return value
    reference = parse_reference(value)
    if reference is None:
        return value
    if reference.step is None:
        found, base = workflow_input, "$input"
    elif reference.step in step_results:
        found, base = step_results[reference.step], f"$steps.{reference.step}.result"
    else:
        raise InputError(f"{where}: {value} refers to step {reference.step!r}, which has no result yet")
    for segment in reference.path:
        found = _field(found, segment, f"{where}: {value}", base)
        base = f"{base}.{segment}"
    return _copy(found)


def _field(value: object, segment: str, context: str, base: str) -> object:
    if isinstance(value, dict):
        if segment not in value:
            keys = sorted(map(str, value))[:10]
            raise InputError(f"{context}: {base} has no field {segment!r} (it has {keys})")
        return value[segment]
    if isinstance(value, list):
        if not segment.isdigit() or int(segment) >= len(value):
            raise InputError(f"{context}: {base} is a list of {len(value)}; {segment!r} is not an index in it")
        return value[int(segment)]
    raise InputError(f"{context}: {base} is {type(value).__name__} {show(value)}, which has no field {segment!r}")


def _copy(value: object) -> object:
    if isinstance(value, list):
        return [_copy(item) for item in value]
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    return value


# --- steps ----------------------------------------------------------------------------


def _check_step_name(value: object) -> str:
    name = check_name(value, "name")
    if not _STEP_NAME.fullmatch(name):
        raise DefinitionError(f"name={show(name)} must be letters, digits, '_' and '-', not starting with a digit or '-'")
    return name


def _check_optional_ms(value: object, what: str) -> None:
    if value is not None:
        check_ms(value, what)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """An activity's (or a compensation's) timeouts as written, each None (not set) or
    whole milliseconds > 0; heartbeat_ms <= start_to_close_ms <= schedule_to_close_ms
    where both are set. With neither start_to_close nor schedule_to_close set, the
    engine still limits each attempt: see `effective_timeouts`."""

    start_to_close_ms: int | None = None  # one attempt, from a worker taking it
    schedule_to_close_ms: int | None = None  # all attempts, from the first scheduling
    heartbeat_ms: int | None = None  # between heartbeats of a running attempt

    def __post_init__(self) -> None:
        for name in self.__slots__:
            _check_optional_ms(getattr(self, name), f"timeouts.{name}")
        pairs = (("heartbeat", "start_to_close"), ("start_to_close", "schedule_to_close"))
        for shorter, longer in pairs:
            short_ms, long_ms = getattr(self, f"{shorter}_ms"), getattr(self, f"{longer}_ms")
            if short_ms is not None and long_ms is not None and short_ms > long_ms:
                raise DefinitionError(
                    f"timeouts.{shorter}={short_ms / 1000} must be <= timeouts.{longer}={long_ms / 1000}"
                )

    @classmethod
    def from_seconds(
        cls,
        *,
        start_to_close: float | None = None,
        schedule_to_close: float | None = None,
        heartbeat: float | None = None,
    ) -> Timeouts:
        given = {"start_to_close": start_to_close, "schedule_to_close": schedule_to_close, "heartbeat": heartbeat}
        ms = {f"{key}_ms": None if value is None else seconds_to_ms(value, f"timeouts.{key}") for key, value in given.items()}
        return cls(**ms)

    def to_seconds(self) -> dict:
        names = ("start_to_close", "schedule_to_close", "heartbeat")
        return {name: _seconds_or_none(getattr(self, f"{name}_ms")) for name in names}


@functools.lru_cache(maxsize=1024)
def effective_timeouts(timeouts: Timeouts) -> Timeouts:
    """The timeouts the engine applies to an attempt: as written, except that when
    neither start_to_close nor schedule_to_close is set, start_to_close is
    DEFAULT_START_TO_CLOSE_MS (or the heartbeat timeout, if that is longer), so no
    attempt waits forever for a worker that never got it. Definitions keep what was
    written; this is computed (pure, so every replica computes the same)."""
    if timeouts.start_to_close_ms is not None or timeouts.schedule_to_close_ms is not None:
        return timeouts
    return replace(timeouts, start_to_close_ms=max(DEFAULT_START_TO_CLOSE_MS, timeouts.heartbeat_ms or 0))


def _seconds_or_none(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


def _check_type(value: object, expected: type, what: str, article: str) -> None:
    if type(value) is not expected:
        raise DefinitionError(f"{what}={show(value)} must be {article} {expected.__name__}")


@dataclass(frozen=True, slots=True)
class Compensation:
    """The activity that undoes a step, run (in reverse step order) when a later step
    fails. Its input may reference the step itself, which has completed by then."""

    activity: str
    task_queue: str | None = None  # None until its ActivityStep fills in its own queue
    input: object = None  # a template
    retry: RetryPolicy = RetryPolicy()
    timeouts: Timeouts = Timeouts()  # as a step's; schedule_to_close counts from the compensation's scheduling

    def __post_init__(self) -> None:
        with within("compensation"):
            check_name(self.activity, "activity")
            if self.task_queue is not None:
                check_name(self.task_queue, "task_queue")
            object.__setattr__(self, "input", check_template(self.input, "input"))
            _check_type(self.retry, RetryPolicy, "retry", "a")
            _check_type(self.timeouts, Timeouts, "timeouts", "a")


@dataclass(frozen=True, slots=True)
class ActivityStep:
    name: str
    activity: str  # the activity's registered name
    task_queue: str
    input: object = None  # a template; see the module docstring
    retry: RetryPolicy = RetryPolicy()
    timeouts: Timeouts = Timeouts()
    compensation: Compensation | None = None  # its task_queue is always set here

    def __post_init__(self) -> None:
        _check_step_name(self.name)
        check_name(self.activity, "activity")
        check_name(self.task_queue, "task_queue")
        object.__setattr__(self, "input", check_template(self.input, "input"))
        _check_type(self.retry, RetryPolicy, "retry", "a")
        _check_type(self.timeouts, Timeouts, "timeouts", "a")
        if self.compensation is not None:
            _check_type(self.compensation, Compensation, "compensation", "a")
            if self.compensation.task_queue is None:
                object.__setattr__(self, "compensation", replace(self.compensation, task_queue=self.task_queue))


@dataclass(frozen=True, slots=True)
class TimerStep:
    """A durable sleep; its result is None."""

    name: str
    duration_ms: int

    def __post_init__(self) -> None:
        _check_step_name(self.name)
        check_ms(self.duration_ms, "duration_ms")


@dataclass(frozen=True, slots=True)
class SignalStep:
    """Waits for the named signal; its result is the signal's payload."""

    name: str
    signal: str
    timeout_ms: int | None = None  # None: wait without limit

    def __post_init__(self) -> None:
        _check_step_name(self.name)
        check_name(self.signal, "signal")
        _check_optional_ms(self.timeout_ms, "timeout_ms")


@dataclass(frozen=True, slots=True)
class ParallelStep:
    """Activity steps started together; the group completes when all have. Its result
    is a dict of member name -> result. Groups do not nest in this version."""

    name: str
    steps: tuple[ActivityStep, ...]

    def __post_init__(self) -> None:
        _check_step_name(self.name)
        if type(self.steps) not in (list, tuple):
            raise DefinitionError(f"steps={show(self.steps)} must be a list of activity steps")
        if not 0 < len(self.steps) <= MAX_PARALLEL_STEPS:
            raise DefinitionError(f"steps has {len(self.steps)} entries; a parallel group holds 1 to {MAX_PARALLEL_STEPS}")
        for i, step in enumerate(self.steps):
            if type(step) is not ActivityStep:
                kind = type(step).__name__
                raise DefinitionError(f"steps[{i}] is a {kind}; a parallel group holds activity steps only (no nesting)")
        object.__setattr__(self, "steps", tuple(self.steps))


Step: TypeAlias = ActivityStep | TimerStep | SignalStep | ParallelStep
_STEP_TYPES = (ActivityStep, TimerStep, SignalStep, ParallelStep)


@dataclass(frozen=True, slots=True)
class WorkflowType:
    """A versioned workflow: steps run in order. Step names are unique across the
    workflow, group members included, and an input references only earlier steps."""

    name: str
    version: int  # >= 1
    steps: tuple[Step, ...]  # at least one

    def __post_init__(self) -> None:
        check_name(self.name, "name")
        version = self.version
        if type(version) is not int or not 1 <= version <= MAX_VERSION:
            raise DefinitionError(f"version={show(version)} must be an integer from 1 to {MAX_VERSION}")
        if type(self.steps) not in (list, tuple):
            raise DefinitionError(f"steps={show(self.steps)} must be a list of steps")
        if not self.steps:
            raise DefinitionError("steps is empty; a workflow has at least one step")
        for i, step in enumerate(self.steps):
            if not isinstance(step, _STEP_TYPES):
                raise DefinitionError(f"steps[{i}]={show(step)} must be an activity, timer, signal or parallel step")
        object.__setattr__(self, "steps", tuple(self.steps))
        _check_names_and_references(self.steps)

    def step(self, name: str) -> Step:
        """The step (or group member) called `name`; KeyError if there is none."""
        for _, step in _walk(self.steps):
            if step.name == name:
                return step
        raise KeyError(name)


def _walk(steps: tuple[Step, ...]) -> list[tuple[str, Step]]:
    """(path, step) for every step in order, each group followed by its members."""
    walked: list[tuple[str, Step]] = []
    for i, step in enumerate(steps):
        walked.append((f"steps[{i}]", step))
        if type(step) is ParallelStep:
            walked.extend((f"steps[{i}].steps[{j}]", member) for j, member in enumerate(step.steps))
    return walked


def _check_names_and_references(steps: tuple[Step, ...]) -> None:
    walked = _walk(steps)
    if len(walked) > MAX_STEPS:
        raise DefinitionError(f"steps holds {len(walked)} steps, group members included; at most {MAX_STEPS}")
    earlier: dict[str, str] = {}  # name -> path, of the steps finished before the current one
    for i, step in enumerate(steps):
        members = step.steps if type(step) is ParallelStep else (step,)
        prefix = f"steps[{i}].steps" if type(step) is ParallelStep else None
        # Members of one group run together: none may reference another.
        for j, member in enumerate(members):
            path = f"{prefix}[{j}]" if prefix else f"steps[{i}]"
            if type(member) is ActivityStep:
                _check_references(member, path, earlier)
        for j, member in enumerate(members):
            path = f"{prefix}[{j}]" if prefix else f"steps[{i}]"
            _check_unique(member.name, path, earlier)
            earlier[member.name] = path
        if prefix:
            _check_unique(step.name, f"steps[{i}]", earlier)
            earlier[step.name] = f"steps[{i}]"


def _check_unique(name: str, path: str, earlier: dict[str, str]) -> None:
    if name in earlier:
        raise DefinitionError(f"{path}.name={name!r} repeats {earlier[name]}.name; step names are unique")


def _check_references(step: ActivityStep, path: str, earlier: dict[str, str]) -> None:
    templates = [(f"{path}.input", step.input, ())]
    if step.compensation is not None:
        # A compensation runs after its step completed, so it may use the step's result.
        templates.append((f"{path}.compensation.input", step.compensation.input, (step.name,)))
    for where, template, also_allowed in templates:
        for inner, reference in template_references(template):
            if reference.step is not None and reference.step not in earlier and reference.step not in also_allowed:
                text = f"$steps.{reference.step}.result"
                raise DefinitionError(f"{where}{inner} references {text}, but {reference.step!r} is not an earlier step")


# --- the Python API -------------------------------------------------------------------


def workflow(name: str, *, version: int, steps: list[Step]) -> WorkflowType:
    return WorkflowType(name, version, steps)


def activity(
    name: str,
    *,
    task_queue: str,
    activity: str | None = None,
    input: object = None,
    retry: RetryPolicy | None = None,
    start_to_close: Duration | None = None,
    schedule_to_close: Duration | None = None,
    heartbeat: Duration | None = None,
    compensation: Compensation | None = None,
) -> ActivityStep:
    """An activity step; `activity` defaults to the step's name, timeouts are a
    timedelta or seconds."""
    timeouts = Timeouts.from_seconds(start_to_close=start_to_close, schedule_to_close=schedule_to_close, heartbeat=heartbeat)
    return ActivityStep(
        name,
        name if activity is None else activity,
        task_queue,
        input,
        RetryPolicy() if retry is None else retry,
        timeouts,
        compensation,
    )


def compensate(
    activity: str,
    *,
    task_queue: str | None = None,
    input: object = None,
    retry: RetryPolicy | None = None,
    start_to_close: Duration | None = None,
    schedule_to_close: Duration | None = None,
    heartbeat: Duration | None = None,
) -> Compensation:
    """The undo for an activity step; `task_queue` defaults to the step's, timeouts are
    seconds (as for `activity`)."""
    with within("compensation"):
        timeouts = Timeouts.from_seconds(start_to_close=start_to_close, schedule_to_close=schedule_to_close, heartbeat=heartbeat)
    return Compensation(activity, task_queue, input, RetryPolicy() if retry is None else retry, timeouts)


def timer(name: str, *, duration: Duration) -> TimerStep:
    """A durable timer: the workflow waits `duration` (a timedelta, or seconds)."""
    return TimerStep(name, seconds_to_ms(duration, "duration"))


def signal(name: str, *, signal: str | None = None, timeout: Duration | None = None) -> SignalStep:
    """Waits for `signal` (default: the step's name), at most `timeout` (a timedelta,
    or seconds) if given."""
    timeout_ms = None if timeout is None else seconds_to_ms(timeout, "timeout")
    return SignalStep(name, name if signal is None else signal, timeout_ms)


def parallel(name: str, steps: list[ActivityStep]) -> ParallelStep:
    return ParallelStep(name, steps)


# --- the file form --------------------------------------------------------------------

_STEP_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {  # type -> (required, optional)
    "activity": (
        frozenset({"type", "name", "task_queue"}),
        frozenset({"activity", "input", "retry", "timeouts", "compensation"}),
    ),
    "timer": (frozenset({"type", "name", "duration"}), frozenset()),
    "signal": (frozenset({"type", "name"}), frozenset({"signal", "timeout"})),
    "parallel": (frozenset({"type", "name", "steps"}), frozenset()),
}
_RETRY_FIELDS = frozenset(
    {"initial_interval", "backoff_coefficient", "maximum_interval", "maximum_attempts", "non_retryable_error_types"}
)
_TIMEOUT_FIELDS = frozenset({"start_to_close", "schedule_to_close", "heartbeat"})


def _fields(data: object, what: str, required: frozenset[str], optional: frozenset[str] = frozenset()) -> dict:
    """The mapping's fields, an optional one given as null left out; `what` is the
    mapping's path relative to the caller ("" for the caller itself)."""
    if type(data) is not dict:
        raise DefinitionError(f"{what}={show(data)} must be an object (a mapping of field names to values)")
    dot = f"{what}." if what else ""
    known = required | optional
    for key in data:
        if key not in known:
            raise DefinitionError(f"{dot}{key}: unknown field; known fields are {', '.join(sorted(known))}")
    for key in sorted(required):
        if key not in data:
            raise DefinitionError(f"{dot}{key} is required")
    return {key: value for key, value in data.items() if key in required or value is not None}


def _list(value: object, what: str) -> list:
    if type(value) is not list:
        raise DefinitionError(f"{what}={show(value)} must be a list")
    return value


def parse_definition(data: dict) -> WorkflowType:
    """A workflow type from its file form (a JSON/YAML-shaped dict); DefinitionError
    naming the field path on any unknown, missing, mistyped or out-of-range field, or
    saying the document nests too deep to walk."""
    try:
        return _parse_definition(data)
    except RecursionError:  # a walk (or a repr for a message) of a document nested near the limit
        raise DefinitionError(TOO_DEEP) from None


def _parse_definition(data: dict) -> WorkflowType:
    if type(data) is not dict:
        raise DefinitionError(f"definition={show(data)} must be an object (a mapping of field names to values)")
    fields = _fields(data, "", frozenset({"name", "version", "steps"}))
    steps = []
    for i, step in enumerate(_list(fields["steps"], "steps")):
        with within(f"steps[{i}]"):
            steps.append(_parse_step(step))
    return workflow(fields["name"], version=fields["version"], steps=steps)


def _parse_step(data: object, *, kinds: tuple[str, ...] = tuple(_STEP_FIELDS)) -> Step:
    if type(data) is not dict:
        raise DefinitionError(f"={show(data)} must be an object (a mapping of field names to values)")
    if "type" not in data:
        raise DefinitionError(f"type is required; one of {', '.join(kinds)}")
    if data["type"] not in kinds:
        rule = f"one of {', '.join(kinds)}" if len(kinds) > 1 else "'activity' in a parallel group (groups do not nest)"
        raise DefinitionError(f"type={show(data['type'])} must be {rule}")
    fields = _fields(data, "", *_STEP_FIELDS[data["type"]])
    kind = fields.pop("type")
    name = fields.pop("name")
    if kind == "timer":
        return timer(name, duration=fields["duration"])
    if kind == "signal":
        return signal(name, **fields)
    if kind == "parallel":
        members = []
        for j, member in enumerate(_list(fields["steps"], "steps")):
            with within(f"steps[{j}]"):
                members.append(_parse_step(member, kinds=("activity",)))
        return parallel(name, members)
    _parse_retry_and_timeouts(fields)
    if "compensation" in fields:
        fields["compensation"] = _parse_compensation(fields["compensation"])
    return activity(name, **fields)


def _parse_retry_and_timeouts(fields: dict) -> None:
    """In place: `retry` becomes a RetryPolicy, `timeouts` the keyword arguments of
    `activity` / `compensate` (start_to_close=..., in seconds)."""
    if "retry" in fields:
        fields["retry"] = RetryPolicy(**_fields(fields["retry"], "retry", frozenset(), _RETRY_FIELDS))
    if "timeouts" in fields:
        fields.update(_fields(fields.pop("timeouts"), "timeouts", frozenset(), _TIMEOUT_FIELDS))


def _parse_compensation(data: object) -> Compensation:
    with within("compensation"):
        fields = _fields(data, "", frozenset({"activity"}), frozenset({"task_queue", "input", "retry", "timeouts"}))
        _parse_retry_and_timeouts(fields)
    return compensate(fields.pop("activity"), **fields)


def to_dict(workflow_type: WorkflowType) -> dict:
    """The canonical file form: every field explicit (null where unset), durations in
    seconds, keys in a fixed order; `parse_definition(to_dict(t)) == t`."""
    return {
        "name": workflow_type.name,
        "version": workflow_type.version,
        "steps": [_step_to_dict(step) for step in workflow_type.steps],
    }


def _step_to_dict(step: Step) -> dict:
    match step:
        case TimerStep(name, duration_ms):
            return {"type": "timer", "name": name, "duration": duration_ms / 1000}
        case SignalStep(name, signal_name, timeout_ms):
            return {"type": "signal", "name": name, "signal": signal_name, "timeout": _seconds_or_none(timeout_ms)}
        case ParallelStep(name, members):
            return {"type": "parallel", "name": name, "steps": [_step_to_dict(member) for member in members]}
        case ActivityStep():
            compensation = step.compensation
            return {
                "type": "activity",
                "name": step.name,
                "activity": step.activity,
                "task_queue": step.task_queue,
                "input": _copy(step.input),
                "retry": retry_to_dict(step.retry),
                "timeouts": step.timeouts.to_seconds(),
                "compensation": None if compensation is None else {
                    "activity": compensation.activity,
                    "task_queue": compensation.task_queue,
                    "input": _copy(compensation.input),
                    "retry": retry_to_dict(compensation.retry),
                    "timeouts": compensation.timeouts.to_seconds(),
                },
            }
    raise AssertionError(f"not a step: {step!r}")


def encode_definition(workflow_type: WorkflowType) -> bytes:
    """Canonical msgpack bytes, for the log and snapshots: equal types, equal bytes."""
    return msgpack.packb([DEFINITION_FORMAT, to_dict(workflow_type)], use_bin_type=True)


def decode_definition(data: bytes) -> WorkflowType:
    """Bytes from encode_definition -> the type, validated again; DefinitionError if not."""
    row = unpack(data, DefinitionError, "definition")
    if type(row) is not list or len(row) != 2:
        raise DefinitionError(f"definition={show(row)} must be an array [format, definition]")
    if row[0] != DEFINITION_FORMAT or type(row[0]) is not int:
        raise DefinitionError(f"definition format={show(row[0])}; this build reads format {DEFINITION_FORMAT}")
    return parse_definition(row[1])


def load_definition(path: str | Path) -> WorkflowType:
    """A workflow type from a .json file, or .yaml/.yml if PyYAML is installed. Errors
    are DefinitionErrors that start with the file's path, then the field's."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise DefinitionError(f"{path}: expected a .json, .yaml or .yml file")
    text = path.read_text(encoding="utf-8")
    try:
        if suffix == ".json":
            data = json.loads(text)
        else:
            data = _load_yaml(text)
        return parse_definition(data)
    except DefinitionError as exc:
        raise DefinitionError(f"{path}: {exc}") from None
    except ValueError as exc:  # json.JSONDecodeError and yaml.YAMLError's parse errors
        raise DefinitionError(f"{path}: not valid {suffix[1:].upper()}: {exc}") from None
    except RecursionError:  # json.loads or yaml.safe_load of a document nested too deep
        raise DefinitionError(f"{path}: {TOO_DEEP}") from None


def _load_yaml(text: str) -> object:
    try:
        import yaml
    except ImportError:
        raise DefinitionError("install PyYAML to read YAML definitions") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DefinitionError(f"not valid YAML: {exc}") from None
