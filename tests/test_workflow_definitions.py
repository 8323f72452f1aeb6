"""Workflow definitions: the file form and the Python API build equal objects, the
canonical form and its msgpack bytes round-trip, every bad input is a DefinitionError
whose message starts with the field's path, and input templates resolve deterministically."""

import copy
import json
import sys

import pytest

from raftflow.statemachine.workflow import (
    DEFAULT_START_TO_CLOSE_MS,
    DEFINITION_FORMAT,
    ActivityStep,
    Compensation,
    DefinitionError,
    InputError,
    ParallelStep,
    RetryPolicy,
    SignalStep,
    TimerStep,
    Timeouts,
    activity,
    compensate,
    decode_definition,
    effective_timeouts,
    encode_definition,
    load_definition,
    parallel,
    parse_definition,
    resolve_input,
    signal,
    timer,
    to_dict,
    workflow,
)

ORDER = {
    "name": "order",
    "version": 1,
    "steps": [
        {
            "type": "activity",
            "name": "reserve",
            "task_queue": "orders",
            "input": "$input",
            "retry": {"initial_interval": 0.2, "maximum_interval": 1, "maximum_attempts": 5},
            "timeouts": {"start_to_close": 30},
            "compensation": {"activity": "release", "input": "$steps.reserve.result", "timeouts": {"start_to_close": 2, "heartbeat": 0.5}},
        },
        {"type": "timer", "name": "cool_down", "duration": 0.5},
        {"type": "signal", "name": "approval", "timeout": 60},
        {
            "type": "parallel",
            "name": "notify",
            "steps": [
                {"type": "activity", "name": "email", "task_queue": "mail", "input": {"to": "$input.email", "order": "$steps.reserve.result.id"}},
                {"type": "activity", "name": "sms", "activity": "send_sms", "task_queue": "sms", "input": ["$input.phone", "ready"]},
            ],
        },
        {"type": "activity", "name": "ship", "task_queue": "orders", "input": "$steps.notify.result.email"},
    ],
}


def order_in_python():
    return workflow(
        "order",
        version=1,
        steps=[
            activity(
                "reserve",
                task_queue="orders",
                input="$input",
                retry=RetryPolicy(initial_interval=0.2, maximum_interval=1.0, maximum_attempts=5),
                start_to_close=30,
                compensation=compensate("release", input="$steps.reserve.result", start_to_close=2, heartbeat=0.5),
            ),
            timer("cool_down", duration=0.5),
            signal("approval", timeout=60),
            parallel(
                "notify",
                [
                    activity("email", task_queue="mail", input={"to": "$input.email", "order": "$steps.reserve.result.id"}),
                    activity("sms", activity="send_sms", task_queue="sms", input=["$input.phone", "ready"]),
                ],
            ),
            activity("ship", task_queue="orders", input="$steps.notify.result.email"),
        ],
    )


def test_python_api_equals_the_file_form():
    assert parse_definition(ORDER) == order_in_python()


def test_parsed_definition_holds_milliseconds_and_defaults():
    order = parse_definition(ORDER)
    reserve, cool_down, approval, notify, ship = order.steps
    assert reserve.timeouts == Timeouts(start_to_close_ms=30_000)
    undo_timeouts = Timeouts(start_to_close_ms=2000, heartbeat_ms=500)
    assert reserve.compensation == Compensation("release", "orders", "$steps.reserve.result", RetryPolicy(), undo_timeouts)
    assert cool_down == TimerStep("cool_down", 500)
    assert approval == SignalStep("approval", "approval", 60_000)
    assert type(notify) is ParallelStep and notify.steps[1].activity == "send_sms"
    assert ship.activity == "ship" and ship.retry == RetryPolicy()
    assert order.step("sms") is notify.steps[1]


def test_canonical_form_round_trips_through_dict_json_and_msgpack():
    order = parse_definition(ORDER)
    canonical = to_dict(order)
    assert parse_definition(canonical) == order
    assert to_dict(parse_definition(canonical)) == canonical
    assert parse_definition(json.loads(json.dumps(canonical))) == order
    data = encode_definition(order)
    assert decode_definition(data) == order
    assert encode_definition(order_in_python()) == data  # canonical bytes


def test_parse_does_not_keep_the_callers_mutable_input():
    data = copy.deepcopy(ORDER)
    order = parse_definition(data)
    data["steps"][3]["steps"][0]["input"]["to"] = "changed"
    assert order == parse_definition(ORDER)


def test_decode_validates_again():
    import msgpack

    canonical = to_dict(parse_definition(ORDER))
    canonical["steps"][1]["duration"] = -1
    with pytest.raises(DefinitionError, match=r"^steps\[1\]\.duration=-1 must be > 0"):
        decode_definition(msgpack.packb([DEFINITION_FORMAT, canonical]))
    for other in (DEFINITION_FORMAT - 1, DEFINITION_FORMAT + 1):  # format 1 had no compensation timeouts
        with pytest.raises(DefinitionError, match=f"^definition format={other}; this build reads format {DEFINITION_FORMAT}$"):
            decode_definition(msgpack.packb([other, canonical]))
    with pytest.raises(DefinitionError, match="not msgpack"):
        decode_definition(b"\xc1")


def with_step(index, **changes):
    data = copy.deepcopy(ORDER)
    data["steps"][index].update(changes)
    return data


def without(index, field):
    data = copy.deepcopy(ORDER)
    del data["steps"][index][field]
    return data


BAD = [
    ({**ORDER, "owner": "me"}, "owner: unknown field; known fields are name, steps, version"),
    ({**ORDER, "name": ""}, "name='' must be non-empty"),
    ({**ORDER, "version": 0}, "version=0 must be an integer from 1"),
    ({**ORDER, "version": "1"}, "version='1' must be an integer"),
    ({**ORDER, "steps": []}, "steps is empty"),
    ({**ORDER, "steps": {}}, "steps={} must be a list"),
    (with_step(0, retries=3), "steps[0].retries: unknown field; known fields are activity, compensation"),
    (without(0, "task_queue"), "steps[0].task_queue is required"),
    (with_step(0, task_queue=7), "steps[0].task_queue=7 must be a string"),
    (with_step(0, type="job"), "steps[0].type='job' must be one of activity, timer, signal, parallel"),
    (with_step(0, name="re.serve"), "steps[0].name='re.serve' must be letters, digits"),
    (with_step(1, duration=0), "steps[1].duration=0 must be > 0"),
    (with_step(1, duration=-2.5), "steps[1].duration=-2.5 must be > 0"),
    (with_step(2, timeout="1m"), "steps[2].timeout='1m' must be a number"),
    (with_step(0, retry={"backoff_coefficient": 0.5}), "steps[0].retry.backoff_coefficient=0.5 must be >= 1"),
    (with_step(0, retry={"initial": 1}), "steps[0].retry.initial: unknown field; known fields are backoff_coefficient"),
    (with_step(0, timeouts={"heartbeat": 60, "start_to_close": 30}), "steps[0].timeouts.heartbeat=60.0 must be <= timeouts.start_to_close=30.0"),
    (with_step(0, timeouts={"start": 1}), "steps[0].timeouts.start: unknown field"),
    (with_step(0, compensation={"input": 1}), "steps[0].compensation.activity is required"),
    (with_step(0, compensation={"activity": "undo", "retry": {"maximum_attempts": -1}}), "steps[0].compensation.retry.maximum_attempts=-1"),
    (with_step(4, compensation={"activity": "undo", "timeouts": {"start_to_close": -1.0}}), "steps[4].compensation.timeouts.start_to_close=-1.0 must be > 0"),
    (with_step(0, compensation={"activity": "undo", "timeouts": {"schedule_to_close": 0}}), "steps[0].compensation.timeouts.schedule_to_close=0 must be > 0"),
    (with_step(0, compensation={"activity": "undo", "timeouts": {"heartbeat": "5s"}}), "steps[0].compensation.timeouts.heartbeat='5s' must be a number"),
    (with_step(0, compensation={"activity": "undo", "timeouts": {"start_to_close": 0.0005}}), "steps[0].compensation.timeouts.start_to_close=0.0005 must be a whole number of milliseconds"),
    (with_step(0, compensation={"activity": "undo", "timeouts": {"start_to_close": 5, "schedule_to_close": 1}}),
     "steps[0].compensation.timeouts.start_to_close=5.0 must be <= timeouts.schedule_to_close=1.0"),
    (with_step(0, compensation={"activity": "undo", "timeouts": {"start": 1}}), "steps[0].compensation.timeouts.start: unknown field; known fields are heartbeat"),
    (with_step(0, compensation={"activity": "undo", "timeouts": 5}), "steps[0].compensation.timeouts=5 must be an object"),
    (with_step(0, compensation={"activity": "undo", "timeout": 5}), "steps[0].compensation.timeout: unknown field; known fields are activity, input, retry, task_queue, timeouts"),
    (with_step(0, input="$steps.ship.result"), "steps[0].input references $steps.ship.result, but 'ship' is not an earlier step"),
    (with_step(4, input={"x": ["$steps.nope.result.id"]}), "steps[4].input.x[0] references $steps.nope.result, but 'nope' is not an earlier step"),
    (with_step(0, input="$steps.reserve"), "steps[0].input='$steps.reserve' is not a reference"),
    (with_step(0, input="$input..id"), "steps[0].input='$input..id' has an empty field name"),
    (with_step(0, input={"when": float("nan")}), "steps[0].input.when=nan must be finite"),
    (with_step(0, compensation={"activity": "undo", "input": "$steps.ship.result"}), "steps[0].compensation.input references $steps.ship.result"),
    (with_step(4, name="cool_down"), "steps[4].name='cool_down' repeats steps[1].name"),
    (with_step(4, name="email"), "steps[4].name='email' repeats steps[3].steps[0].name"),
    (with_step(3, steps=[]), "steps[3].steps has 0 entries"),
    (with_step(3, steps=[{"type": "timer", "name": "t", "duration": 1}]), "steps[3].steps[0].type='timer' must be 'activity' in a parallel group"),
    (with_step(3, steps=[{"type": "activity", "name": "a", "task_queue": "q", "input": "$steps.b.result"}, {"type": "activity", "name": "b", "task_queue": "q"}]),
     "steps[3].steps[0].input references $steps.b.result, but 'b' is not an earlier step"),
    ({**ORDER, "steps": [5]}, "steps[0]=5 must be an object"),
]


@pytest.mark.parametrize(("data", "message"), BAD, ids=[message.split("=")[0].split(" ")[0] for _, message in BAD])
def test_bad_definitions_name_the_field_path(data, message):
    with pytest.raises(DefinitionError) as caught:
        parse_definition(data)
    assert str(caught.value).startswith(message), str(caught.value)


def test_python_api_runs_the_same_checks():
    with pytest.raises(DefinitionError, match=r"^duration=0 must be > 0"):
        timer("t", duration=0)
    with pytest.raises(DefinitionError, match=r"^timeouts\.heartbeat=-1 must be > 0"):
        activity("a", task_queue="q", heartbeat=-1)
    with pytest.raises(DefinitionError, match=r"^compensation\.activity='' must be non-empty"):
        compensate("")
    with pytest.raises(DefinitionError, match=r"^compensation\.timeouts\.start_to_close=-1 must be > 0"):
        compensate("undo", start_to_close=-1)
    with pytest.raises(DefinitionError, match=r"^compensation\.timeouts\.heartbeat=3\.0 must be <= timeouts\.start_to_close=2\.0"):
        compensate("undo", start_to_close=2, heartbeat=3)
    with pytest.raises(TypeError):
        compensate("undo", "q", None, None, 5)  # options are keyword-only, as for activity()
    with pytest.raises(DefinitionError, match=r"^steps\[1\]\.input references \$steps\.c\.result"):
        workflow("w", version=1, steps=[timer("a", duration=1), activity("b", task_queue="q", input="$steps.c.result")])
    with pytest.raises(DefinitionError, match=r"^steps\[0\] is a TimerStep; a parallel group holds activity steps only"):
        parallel("p", [timer("t", duration=1)])


def test_compensation_takes_its_steps_task_queue_unless_it_names_one():
    step = activity("a", task_queue="q", compensation=compensate("undo"))
    assert step.compensation.task_queue == "q"
    step = activity("a", task_queue="q", compensation=compensate("undo", task_queue="undo-q"))
    assert step.compensation.task_queue == "undo-q"


def test_activity_step_is_frozen():
    step = activity("a", task_queue="q")
    with pytest.raises(AttributeError):
        step.name = "b"
    assert type(step) is ActivityStep


def test_load_definition_reads_json(tmp_path):
    path = tmp_path / "order.json"
    path.write_text(json.dumps(ORDER))
    assert load_definition(path) == order_in_python()


def test_load_definition_prefixes_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**ORDER, "version": 0}))
    with pytest.raises(DefinitionError, match=r"bad\.json: version=0"):
        load_definition(path)
    path.write_text("{")
    with pytest.raises(DefinitionError, match=r"bad\.json: not valid JSON"):
        load_definition(path)


def test_load_definition_reads_yaml_or_says_what_to_install(tmp_path):
    path = tmp_path / "order.yaml"
    path.write_text(json.dumps(ORDER))  # JSON is YAML
    try:
        import yaml  # noqa: F401
    except ImportError:
        with pytest.raises(DefinitionError, match="install PyYAML to read YAML definitions"):
            load_definition(path)
    else:
        assert load_definition(path) == order_in_python()


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_load_definition_says_a_document_nested_too_deep_is_too_deep(tmp_path, suffix):
    # json.loads and yaml.safe_load raise RecursionError here: the file's fault, not a crash.
    if suffix == ".yaml":
        pytest.importorskip("yaml")
    path = tmp_path / f"deep{suffix}"
    path.write_text('{"name": "deep", "version": 1, "steps": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(DefinitionError, match=rf"deep\{suffix}: nests too deep to read"):
        load_definition(path)


def test_a_document_nested_near_the_recursion_limit_is_a_definition_error():
    # Deep enough that repr (for the message) recurses out, as msgpack or JSON can give.
    name = "deep"
    for _ in range(sys.getrecursionlimit()):
        name = [name]
    with pytest.raises(DefinitionError, match="nests too deep to read"):
        parse_definition({"name": name, "version": 1, "steps": []})


# --- resolve_input --------------------------------------------------------------------

RESULTS = {"reserve": {"id": "r-1", "items": [{"sku": "a"}, {"sku": "b"}]}, "cool_down": None}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$input", {"email": "x@y", "n": 2}),
        ("$input.n", 2),
        ("$steps.reserve.result.id", "r-1"),
        ("$steps.reserve.result.items.1.sku", "b"),
        ("$steps.cool_down.result", None),
        ({"to": "$input.email", "ids": ["$steps.reserve.result.id", 3, True, None]}, {"to": "x@y", "ids": ["r-1", 3, True, None]}),
        ("$5.00 is a price", "$5.00 is a price"),
        ("$inputs", "$inputs"),
        (1.5, 1.5),
    ],
)
def test_resolve_input(template, expected):
    assert resolve_input(template, {"email": "x@y", "n": 2}, RESULTS) == expected


def test_resolved_values_are_copies():
    value = resolve_input("$steps.reserve.result", None, RESULTS)
    value["items"].append("x")
    assert len(RESULTS["reserve"]["items"]) == 2


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("$steps.ship.result", "input: $steps.ship.result refers to step 'ship', which has no result yet"),
        ({"a": ["$steps.reserve.result.total"]}, "input.a[0]: $steps.reserve.result.total: $steps.reserve.result has no field 'total'"),
        ("$steps.reserve.result.items.5", "input: $steps.reserve.result.items.5: $steps.reserve.result.items is a list of 2"),
        ("$input.n.x", "input: $input.n.x: $input.n is int 2, which has no field 'x'"),
    ],
)
def test_resolve_input_names_the_missing_path(template, message):
    with pytest.raises(InputError) as caught:
        resolve_input(template, {"n": 2}, RESULTS)
    assert str(caught.value).startswith(message), str(caught.value)


# --- compensation timeouts and the default start_to_close -------------------------------


def test_compensation_timeouts_are_in_the_canonical_form_and_default_to_none():
    step = to_dict(parse_definition(ORDER))["steps"][0]
    assert step["compensation"]["timeouts"] == {"start_to_close": 2.0, "schedule_to_close": None, "heartbeat": 0.5}
    bare = activity("a", task_queue="q", compensation=compensate("undo"))
    assert bare.compensation.timeouts == Timeouts()
    data = {"name": "w", "version": 1, "steps": [{"type": "activity", "name": "a", "task_queue": "q",
                                                  "compensation": {"activity": "undo", "timeouts": None}}]}  # fmt: skip
    assert parse_definition(data).steps[0] == bare  # null is "not set", as for every optional field


def test_effective_timeouts_add_the_default_only_where_the_definition_sets_no_limit():
    assert effective_timeouts(Timeouts()) == Timeouts(start_to_close_ms=DEFAULT_START_TO_CLOSE_MS)
    assert effective_timeouts(Timeouts(heartbeat_ms=1000)) == Timeouts(DEFAULT_START_TO_CLOSE_MS, None, 1000)
    hour = Timeouts(heartbeat_ms=3_600_000)  # a heartbeat longer than the default: the attempt may last that long
    assert effective_timeouts(hour) == Timeouts(3_600_000, None, 3_600_000)
    for written in (Timeouts(start_to_close_ms=5), Timeouts(schedule_to_close_ms=5), Timeouts(5, 5, 5)):
        # Unchanged: equal, not necessarily the same object (effective_timeouts is cached,
        # and an earlier test may have cached an equal Timeouts: `is` failed by test order).
        assert effective_timeouts(written) == written
