"""The workflow engine as a namespace of Machine: op and result encodings, op
validation, and the engine driven through Machine.apply with encoded commands
(sessions, exactly-once, leader time, snapshots, replay)."""

import re

import msgpack
import pytest

from raftflow.statemachine import Machine
from raftflow.statemachine.commands import (
    Command,
    CommandError,
    OpenSession,
    Put,
    PutResult,
    SessionOpened,
    decode_command,
    decode_result,
    encode_command,
    encode_result,
    validate_op,
)
from raftflow.statemachine.workflow import RetryPolicy, activity, encode_definition, workflow
from raftflow.statemachine.workflow.engine import (
    ActivityTask,
    Rearmed,
    Status,
    TaskAccepted,
    Ticked,
    TypeRegistered,
    WorkflowAccepted,
    WorkflowRejected,
    WorkflowRejectReason,
    WorkflowStarted,
)
from raftflow.statemachine.workflow.ops import (
    MAX_PAYLOAD_BYTES,
    LEADER_OPS,
    ActivityTaskStarted,
    CancelWorkflow,
    CompleteActivity,
    FailActivity,
    HeartbeatActivity,
    RearmTimeouts,
    RegisterWorkflowType,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
    Tick,
)

RETRY = RetryPolicy(initial_interval=0.5, maximum_attempts=3)
TWO_STEPS = workflow("pay", version=1, steps=[
    activity("reserve", task_queue="q", input="$input", retry=RETRY),
    activity("charge", task_queue="q", input="$steps.reserve.result", retry=RETRY),
])  # fmt: skip
DEFINITION = encode_definition(TWO_STEPS)
DEEP: list = []
for _ in range(32):
    DEEP = [DEEP]  # 33 lists: one past MAX_PAYLOAD_DEPTH

OPS = [
    RegisterWorkflowType(DEFINITION),
    StartWorkflow("w1", "pay", 1, {"sku": "a", "n": [1, 2.5, None, True, b"x"]}),
    ActivityTaskStarted(1, 1),
    CompleteActivity(1, 1, {"id": "r1"}),
    FailActivity(1, 2, "Timeout", "took too long", True),
    HeartbeatActivity(1, 1, [1, "half"]),
    CancelWorkflow("w1"),
    TerminateWorkflow("w1", "operator"),
    Tick(),
    RearmTimeouts(30_000),
    SignalWorkflow("w1", "approve", {"by": "ann"}),
    StartWorkflow("w1", "pay", 0, None, True),
]
RESULTS = [
    TypeRegistered("pay", 1),
    WorkflowStarted("w1", 3),
    TaskAccepted(4, 2),
    WorkflowAccepted("w1", Status.COMPENSATED),
    Ticked(2, 1),
    ActivityTask(5, 1, "w1", "charge", {"id": ["r1", b"\x00"]}, False, 2, "charge", "q"),
    WorkflowStarted("w1", 3, existing=True),
    Rearmed(4),
    WorkflowRejected(WorkflowRejectReason.STALE_TASK, "task 5 attempt 2 is stale"),
]


@pytest.mark.parametrize("op", OPS, ids=lambda op: type(op).__name__)
def test_each_workflow_op_round_trips_through_encode_command(op):
    session = (0, 0, 0) if type(op) in LEADER_OPS else (1, 2, 1)
    cmd = Command(10, *session, op=op)
    assert decode_command(encode_command(cmd)) == cmd


@pytest.mark.parametrize("result", RESULTS, ids=lambda result: type(result).__name__)
def test_each_workflow_result_round_trips_through_encode_result(result):
    assert decode_result(encode_result(result)) == result


@pytest.mark.parametrize(
    "op, message",
    [
        (RegisterWorkflowType(b"\x93junk"), "definition:"),
        (RegisterWorkflowType("pay"), "definition is 'pay'; expected bytes"),
        (StartWorkflow("", "pay", 1, None), "workflow_id is empty"),
        (StartWorkflow("w" * 1001, "pay", 1, None), "workflow_id is 1001 characters"),
        (StartWorkflow("w1", 7, 1, None), "type_name is 7; expected str"),
        (StartWorkflow("w1", "pay", -1, None), "version is -1; expected an integer from 0 (the latest)"),
        (StartWorkflow("w1", "pay", 1 << 31, None), "version is 2147483648; expected an integer from 0"),
        (StartWorkflow("w1", "pay", 1, None, 1), "return_running is 1; expected bool"),
        (StartWorkflow("w1", "pay", 1, (1, 2)), "input is a tuple"),
        (StartWorkflow("w1", "pay", 1, {1: "a"}), "input has key 1; dict keys must be str"),
        (StartWorkflow("w1", "pay", 1, {"a": [object()]}), "input.a[0] is a object"),
        (StartWorkflow("w1", "pay", 1, 1 << 64), "input is 18446744073709551616; integers must be"),
        (StartWorkflow("w1", "pay", 1, b"x" * MAX_PAYLOAD_BYTES), f"input is {MAX_PAYLOAD_BYTES + 5} bytes of msgpack"),
        (ActivityTaskStarted(0, 1), "task_id is 0; expected an integer from 1"),
        (ActivityTaskStarted(1, True), "attempt is True"),
        (CompleteActivity(1, 1, {"s": {1, 2}}), "result.s is a set"),
        (FailActivity(1, 1, "", "m", True), "error_type is empty"),
        (FailActivity(1, 1, "E", "m", 1), "retryable is 1; expected bool"),
        (HeartbeatActivity(1, 1, "\ud800"), "details is a str that is not valid UTF-8"),
        (CancelWorkflow(None), "workflow_id is None; expected str"),
        (TerminateWorkflow("w1", b"why"), "reason is b'why'; expected str"),
        (RearmTimeouts(-1), "grace_ms is -1; expected an integer from 0 to 3600000"),
        (RearmTimeouts(1.5), "grace_ms is 1.5"),
        (SignalWorkflow("", "go", None), "workflow_id is empty"),
        (SignalWorkflow("w1", "", None), "name is empty"),
        (SignalWorkflow("w1", "n" * 201, None), "name is 201 characters; at most 200"),
        (SignalWorkflow("w1", "go", {"x": (1,)}), "input.x is a tuple"),
    ],
)
def test_a_bad_op_field_is_refused_naming_the_field(op, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        validate_op(op)  # the server edge, before proposing


@pytest.mark.parametrize(
    "op_row, message",
    [
        ([5, "w1", "pay", 1, {1: "a"}, False], "command is not msgpack"),  # strict_map_key, before validation
        ([5, "w1", "pay", 1, DEEP, False], "input[0][0]"),  # 33 lists deep
        ([6, 1, -1], "attempt is -1; expected an integer from 1"),
        ([8, 1, 1, "E", "m", "yes"], "retryable is 'yes'; expected bool"),
        ([12, "extra"], "Tick op has 1 fields; expected 0"),
        ([13, 3_600_001], "grace_ms is 3600001; expected an integer from 0 to 3600000"),
        ([14, "w1", " ", None], "name is ' '; a signal name is not only white space"),
        ([14, "w1", "go", {1: 2}], "command is not msgpack"),
        ([17], "op code is 17; expected one of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]"),
    ],
)
def test_entry_data_with_a_bad_workflow_field_is_refused_naming_it(op_row, message):
    leader_op = op_row[0] in (6, 12, 13)
    data = msgpack.packb([1, 10, *((0, 0, 0) if leader_op else (1, 1, 0)), op_row], use_bin_type=True)
    with pytest.raises(CommandError, match=re.escape(message)):
        decode_command(data)


def test_a_definition_not_in_canonical_form_is_refused():
    definition_format, fields = msgpack.unpackb(DEFINITION)
    reordered = msgpack.packb([definition_format, dict(reversed(list(fields.items())))], use_bin_type=True)
    with pytest.raises(CommandError, match="canonical form"):
        decode_command(encode_command(Command(0, 1, 1, 0, RegisterWorkflowType(reordered))))


# --- through Machine.apply -------------------------------------------------------------


class Client:
    """One session's commands, encoded as the leader would propose them; the leader's
    own ops go outside the session."""

    def __init__(self, machine, now_ms=0):
        self.machine = machine
        self.log = []  # (index, data) as applied, for replay
        self.seq = 0
        self.session_id = self.propose(OpenSession(), now_ms).session_id

    def propose(self, op, now_ms, seq=None):
        if type(op) is OpenSession or type(op) in LEADER_OPS:
            cmd = Command(now_ms, 0, 0, 0, op)
        else:
            if seq is None:
                self.seq += 1
                seq = self.seq
            cmd = Command(now_ms, self.session_id, seq, 0, op)
        return self.apply(encode_command(cmd))

    def apply(self, data):
        index = self.machine.applied_index + 1
        self.log.append((index, data))
        return self.machine.apply(index, data)


def started_client(now_ms=10):
    client = Client(Machine(), now_ms)
    assert client.propose(RegisterWorkflowType(DEFINITION), now_ms) == TypeRegistered("pay", 1)
    assert client.propose(StartWorkflow("w1", "pay", 1, {"sku": "a"}), now_ms) == WorkflowStarted("w1", 1)
    return client


def take(client, now_ms):
    (pending,) = client.machine.workflow.pending_tasks("q", 1)
    return client.propose(ActivityTaskStarted(pending.task_id, pending.attempt), now_ms)


def test_a_two_step_workflow_runs_to_completion_through_machine_apply():
    client = started_client()
    first = take(client, 20)
    assert first == ActivityTask(1, 1, "w1", "reserve", {"sku": "a"}, False, 1, "reserve", "q")
    assert client.propose(CompleteActivity(1, 1, {"id": "r1"}), 30) == TaskAccepted(1, 1)
    second = take(client, 40)
    assert second == ActivityTask(2, 1, "w1", "charge", {"id": "r1"}, False, 1, "charge", "q")
    assert client.propose(CompleteActivity(2, 1, "paid"), 50) == TaskAccepted(2, 1)
    description = client.machine.workflow.describe("w1")
    assert (description.status, description.result, description.close_ms) == (Status.COMPLETED, "paid", 50)
    assert client.machine.workflow.history("w1")[-1].type.value == "WorkflowExecutionCompleted"


def test_kv_and_workflow_ops_share_the_machine():
    client = started_client()
    assert client.propose(Put("k", b"v"), 20) == PutResult(1, None)
    assert client.machine.get("k").value == b"v"
    assert client.machine.workflow.describe("w1").status is Status.RUNNING


def test_a_retried_start_gets_the_cached_result_and_starts_nothing():
    client = started_client()
    start_seq = client.seq
    history = client.machine.workflow.history("w1")
    # The client did not hear back and retries the same (session, seq): applied again
    # it would be ALREADY_RUNNING; the session cache answers with the first result.
    retried = client.propose(StartWorkflow("w1", "pay", 1, {"sku": "a"}), 99, seq=start_seq)
    assert retried == WorkflowStarted("w1", 1)
    assert client.machine.workflow.history("w1") == history
    assert len(client.machine.workflow.pending_tasks("q", 10)) == 1
    fresh = client.propose(StartWorkflow("w1", "pay", 1, {"sku": "a"}), 99)
    assert type(fresh) is WorkflowRejected and fresh.reason is WorkflowRejectReason.ALREADY_RUNNING


def test_tick_at_the_leaders_time_fires_the_retry_timer():
    client = started_client()
    take(client, 20)
    assert client.propose(FailActivity(1, 1, "Flaky", "try again", True), 100) == TaskAccepted(1, 1)
    assert client.machine.workflow.next_deadline_ms() == 600  # initial_interval 0.5 s
    assert client.propose(Tick(), 599) == Ticked(0, 0)
    assert client.machine.workflow.pending_tasks("q", 10) == []
    assert client.propose(Tick(), 600) == Ticked(1, 0)
    (retry,) = client.machine.workflow.pending_tasks("q", 10)
    assert (retry.task_id, retry.attempt) == (1, 2)


def test_a_tick_stamped_behind_the_clock_uses_the_clamped_time():
    client = started_client()
    take(client, 20)
    client.propose(FailActivity(1, 1, "Flaky", "try again", True), 700)  # retry due at 1200
    assert client.propose(Tick(), 1300) == Ticked(1, 0)
    take(client, 1300)
    client.propose(FailActivity(1, 2, "Flaky", "again", True), 1300)  # retry due at 2300 (1 s)
    # A new leader whose clock is behind stamps 5; the machine's now_ms stays at 1300.
    assert client.propose(Tick(), 5) == Ticked(0, 0)
    assert client.machine.now_ms == 1300


def test_snapshot_and_restore_mid_run_give_the_same_state_and_behaviour():
    client = started_client()
    take(client, 20)
    client.propose(FailActivity(1, 1, "Flaky", "try again", True), 100)
    snapshot = client.machine.snapshot()
    restored = Machine()
    restored.restore(snapshot)
    assert restored.state_hash() == client.machine.state_hash()
    twin = Client.__new__(Client)
    twin.machine, twin.log, twin.seq, twin.session_id = restored, [], client.seq, client.session_id
    for now_ms, op in [(600, Tick()), (610, None), (620, CompleteActivity(1, 2, "r")), (630, None)]:
        if op is None:
            assert take(client, now_ms) == take(twin, now_ms)
        else:
            assert client.propose(op, now_ms) == twin.propose(op, now_ms)
        assert client.machine.state_hash() == twin.machine.state_hash()
    # The retried start is still answered from the restored session cache.
    assert twin.propose(StartWorkflow("w1", "pay", 1, {"sku": "a"}), 700, seq=2) == WorkflowStarted("w1", 1)


def test_replaying_the_log_into_a_fresh_machine_gives_identical_snapshots():
    client = started_client()
    take(client, 20)
    client.propose(FailActivity(1, 1, "Flaky", "try again", True), 100)
    client.propose(Tick(), 600)
    take(client, 610)
    client.propose(HeartbeatActivity(1, 2, {"done": 1}), 620)
    client.propose(CompleteActivity(1, 2, {"id": "r"}), 630)
    client.propose(TerminateWorkflow("w1", "operator"), 640)
    client.propose(StartWorkflow("w2", "pay", 1, None), 650)
    client.propose(CancelWorkflow("w2"), 660)
    replica = Machine()
    for index, data in client.log:
        replica.apply(index, data)
    assert replica.snapshot() == client.machine.snapshot()
    assert client.machine.workflow.describe("w1").status is Status.TERMINATED
    assert client.machine.workflow.describe("w2").status is Status.CANCELED


def test_a_session_open_result_still_encodes_as_before():
    assert decode_result(encode_result(SessionOpened(3))) == SessionOpened(3)


def test_applying_the_leaders_own_command_equals_decoding_its_entry():
    """The leader applies the Command it encoded instead of decoding its own entry:
    every replica must still reach the same bytes (decode(encode(c)) == c)."""
    from raftflow.statemachine.commands import Command, OpenSession, Put, decode_command, encode_command
    from raftflow.statemachine.workflow.definitions import activity, workflow

    wf = workflow("t", version=1, steps=[activity("a", task_queue="q", input={"n": "$input.n", "l": [1, 2.5, None]})])
    ops = [
        (0, 0, OpenSession()),
        (1, 1, Put("k", b"v")),
        (1, 2, RegisterWorkflowType(encode_definition(wf))),
        (1, 3, StartWorkflow("w", "t", 0, {"n": 7, "b": b"\x00", "t": True, "f": 1.5, "nested": {"x": [1, {"y": None}]}})),
    ]
    leader, follower = Machine(), Machine()
    for index, (session, seq, op) in enumerate(ops, start=1):
        cmd = Command(1_000 + index, session, seq, seq, op)
        data = encode_command(cmd)
        assert decode_command(data) == cmd
        assert leader.apply(index, data, decoded=cmd) == follower.apply(index, data)
    assert leader.snapshot() == follower.snapshot()
