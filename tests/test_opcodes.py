"""The log's codes and bytes are pinned: entries already in a durable log, and results
already in a snapshot's session cache, must read back the same with every later build.

The golden values below are written out by hand on purpose. A test that failed here
means a change to what is on disk: old data directories would be misread. Add a new
code or a new format version instead (and a migration, or a refusal naming both
versions); never edit a golden value to make the test pass.
"""

import pytest

from raftflow.statemachine.auth import IssueToken, RevokeToken, TokenIssued, TokenRevoked
from raftflow.statemachine.commands import (
    OP_CLASSES,
    RESULT_CLASSES,
    Cas,
    CasResult,
    Command,
    Delete,
    DeleteResult,
    KeyValue,
    OpCode,
    OpenSession,
    Put,
    PutResult,
    Rejected,
    RejectReason,
    ResultCode,
    SessionOpened,
    decode_command,
    decode_result,
    encode_command,
    encode_result,
)
from raftflow.statemachine.workflow import activity, encode_definition, ops, records, workflow

# --- the tables: name -> number -> class ----------------------------------------------

OP_TABLE = [
    ("OPEN_SESSION", 0, "OpenSession"),
    ("PUT", 1, "Put"),
    ("DELETE", 2, "Delete"),
    ("CAS", 3, "Cas"),
    ("REGISTER_WORKFLOW_TYPE", 4, "RegisterWorkflowType"),
    ("START_WORKFLOW", 5, "StartWorkflow"),
    ("ACTIVITY_TASK_STARTED", 6, "ActivityTaskStarted"),
    ("COMPLETE_ACTIVITY", 7, "CompleteActivity"),
    ("FAIL_ACTIVITY", 8, "FailActivity"),
    ("HEARTBEAT_ACTIVITY", 9, "HeartbeatActivity"),
    ("CANCEL_WORKFLOW", 10, "CancelWorkflow"),
    ("TERMINATE_WORKFLOW", 11, "TerminateWorkflow"),
    ("TICK", 12, "Tick"),
    ("REARM_TIMEOUTS", 13, "RearmTimeouts"),
    ("SIGNAL_WORKFLOW", 14, "SignalWorkflow"),
    ("ISSUE_TOKEN", 15, "IssueToken"),
    ("REVOKE_TOKEN", 16, "RevokeToken"),
]

RESULT_TABLE = [
    ("SESSION_OPENED", 0, "SessionOpened"),
    ("PUT", 1, "PutResult"),
    ("DELETE", 2, "DeleteResult"),
    ("CAS", 3, "CasResult"),
    ("REJECTED", 4, "Rejected"),
    ("TYPE_REGISTERED", 5, "TypeRegistered"),
    ("WORKFLOW_STARTED", 6, "WorkflowStarted"),
    ("TASK_ACCEPTED", 7, "TaskAccepted"),
    ("WORKFLOW_ACCEPTED", 8, "WorkflowAccepted"),
    ("TICKED", 9, "Ticked"),
    ("ACTIVITY_TASK", 10, "ActivityTask"),
    ("WORKFLOW_REJECTED", 11, "WorkflowRejected"),
    ("REARMED", 12, "Rearmed"),
    ("TOKEN_ISSUED", 13, "TokenIssued"),
    ("TOKEN_REVOKED", 14, "TokenRevoked"),
]

# Rejected's reason is in the result's bytes too, so in every snapshot's session cache.
REJECT_REASON_TABLE = [
    ("SESSION_UNKNOWN", 0),
    ("STALE_SEQUENCE", 1),
    ("TOO_MANY_PENDING", 2),
    ("MALFORMED", 3),
    ("ALREADY_EXISTS", 4),
    ("QUOTA_EXCEEDED", 5),
]


def test_every_op_code_keeps_its_number_and_class():
    assert [(code.name, code.value, OP_CLASSES[code].__name__) for code in OpCode] == OP_TABLE
    assert len(OP_CLASSES) == len(OP_TABLE)


def test_every_result_code_keeps_its_number_and_class():
    assert [(code.name, code.value, RESULT_CLASSES[code].__name__) for code in ResultCode] == RESULT_TABLE
    assert len(RESULT_CLASSES) == len(RESULT_TABLE)


def test_every_reject_reason_keeps_its_number():
    assert [(reason.name, reason.value) for reason in RejectReason] == REJECT_REASON_TABLE


# --- the bytes of one of each op and result -------------------------------------------

# encode_definition of workflow("t", version=1, steps=[activity("a", task_queue="q")]):
# a RegisterWorkflowType carries these bytes, so they are in the log too.
DEFINITION_HEX = (
    "920283a46e616d65a174a776657273696f6e01a573746570739188a474797065a86163746976697479a46e616d65"
    "a161a86163746976697479a161aa7461736b5f7175657565a171a5696e707574c0a5726574727985b0696e697469"
    "616c5f696e74657276616ccb3ff0000000000000b36261636b6f66665f636f656666696369656e74cb4000000000"
    "000000b06d6178696d756d5f696e74657276616ccb4059000000000000b06d6178696d756d5f617474656d707473"
    "00b96e6f6e5f726574727961626c655f6572726f725f747970657390a874696d656f75747383ae73746172745f74"
    "6f5f636c6f7365c0b17363686564756c655f746f5f636c6f7365c0a9686561727462656174c0ac636f6d70656e73"
    "6174696f6ec0"
)
DEFINITION = bytes.fromhex(DEFINITION_HEX)
AT_MS = 1_700_000_000_000  # every command below was proposed at this leader time
SECRET_SHA256 = bytes(range(32))  # an IssueToken carries the digest, 32 bytes, never the secret
SECRET_SHA256_HEX = "c420" + SECRET_SHA256.hex()
TASK_SECRET = bytes(range(16))  # a task token's secret

# (session_id, seq, ack_floor, op) -> the entry data, as hex. The envelope is
# [format 1, timestamp_ms, session_id, seq, ack_floor, [op_code, *fields]].
COMMANDS = [
    (0, 0, 0, OpenSession(), "9601cf0000018bcfe568000000009100"),
    # The owner was added later: without one the entry is what it always was.
    (0, 0, 0, OpenSession("tok-1"), "9601cf0000018bcfe568000000009200a5746f6b2d31"),
    (1, 2, 1, Put("k", b"v"), "9601cf0000018bcfe568000102019301a16bc40176"),
    (1, 3, 2, Delete("k"), "9601cf0000018bcfe568000103029202a16b"),
    (1, 4, 3, Cas("k", b"w", expected_value=b"v"), "9601cf0000018bcfe568000104039503a16bc40177c40176c0"),
    (1, 5, 4, Cas("k", b"w", expected_revision=2), "9601cf0000018bcfe568000105049503a16bc40177c002"),
    (1, 6, 6, ops.RegisterWorkflowType(DEFINITION), "9601cf0000018bcfe568000106069204c5011a" + DEFINITION_HEX),
    (1, 7, 7, ops.StartWorkflow("w1", "t", 1, {"n": 1}, False), "9601cf0000018bcfe568000107079605a27731a1740181a16e01c2"),
    (0, 0, 0, ops.ActivityTaskStarted(1, 1), "9601cf0000018bcfe5680000000093060101"),
    (1, 8, 8, ops.CompleteActivity(1, 1, [1, "x"]), "9601cf0000018bcfe56800010808940701019201a178"),
    (1, 9, 9, ops.FailActivity(2, 1, "Boom", "it broke", True),
     "9601cf0000018bcfe5680001090996080201a4426f6f6da869742062726f6b65c3"),
    (1, 10, 10, ops.HeartbeatActivity(2, 2, None), "9601cf0000018bcfe56800010a0a94090202c0"),
    # The task token's secret was added later: reports without one are what they were.
    (0, 0, 0, ops.ActivityTaskStarted(1, 1, TASK_SECRET),
     "9601cf0000018bcfe5680000000094060101c410000102030405060708090a0b0c0d0e0f"),
    (1, 8, 8, ops.CompleteActivity(1, 1, {"ok": True}, TASK_SECRET),
     "9601cf0000018bcfe568000108089507010181a26f6bc3c410000102030405060708090a0b0c0d0e0f"),
    (1, 9, 9, ops.FailActivity(1, 1, "E", "m", True, TASK_SECRET),
     "9601cf0000018bcfe5680001090997080101a145a16dc3c410000102030405060708090a0b0c0d0e0f"),
    (1, 10, 10, ops.HeartbeatActivity(1, 1, None, TASK_SECRET),
     "9601cf0000018bcfe56800010a0a95090101c0c410000102030405060708090a0b0c0d0e0f"),
    (1, 11, 11, ops.CancelWorkflow("w1"), "9601cf0000018bcfe56800010b0b920aa27731"),
    (1, 12, 12, ops.TerminateWorkflow("w2", "stop"), "9601cf0000018bcfe56800010c0c930ba27732a473746f70"),
    (0, 0, 0, ops.Tick(), "9601cf0000018bcfe56800000000910c"),
    (0, 0, 0, ops.RearmTimeouts(500), "9601cf0000018bcfe56800000000920dcd01f4"),
    (1, 13, 13, ops.SignalWorkflow("w1", "go", True), "9601cf0000018bcfe56800010d0d940ea27731a2676fc3"),
    # The role as its value, the queues as an array (a tuple decodes as a list).
    (1, 14, 14, IssueToken("w1", "worker", ["q"], SECRET_SHA256, "bw", 0),
     "9601cf0000018bcfe56800010e0e970fa27731a6776f726b657291a171" + SECRET_SHA256_HEX + "a2627700"),
    (1, 15, 15, IssueToken("a1", "admin", [], SECRET_SHA256, "", 9),
     "9601cf0000018bcfe56800010f0f970fa26131a561646d696e90" + SECRET_SHA256_HEX + "a009"),
    (1, 16, 16, RevokeToken("w1"), "9601cf0000018bcfe568000110109210a27731"),
]

KV = KeyValue("k", b"v", 2, 3, 2)
# result -> its encoding ([format 1, result_code, *fields]), as hex.
RESULTS = [
    (SessionOpened(1), "93010001"),
    (PutResult(3, KV), "9401010395a16bc40176020302"),
    (PutResult(2, None), "94010102c0"),
    (DeleteResult(4, KV), "9401020495a16bc40176020302"),
    (CasResult(True, 5, KV), "950103c30595a16bc40176020302"),
    (CasResult(False, 5, None), "950103c205c0"),
    (Rejected(RejectReason.STALE_SEQUENCE, "seq 3 is below"), "94010401ae73657120332069732062656c6f77"),
    (records.TypeRegistered("t", 1), "940105a17401"),
    (records.WorkflowStarted("w1", 7, False), "950106a2773107c2"),
    (records.TaskAccepted(1, 2), "9401070102"),
    (records.WorkflowAccepted("w1", records.Status.COMPENSATING), "940108a27731ac636f6d70656e736174696e67"),
    (records.Ticked(2, 1), "9401090201"),
    (records.ActivityTask(1, 1, "w1", "a", {"n": 1}, False, 7, "a", "q"), "9b010a0101a27731a16181a16e01c207a161a171"),
    (records.WorkflowRejected(records.WorkflowRejectReason.NOT_FOUND, "no w9"), "94010ba96e6f745f666f756e64a56e6f207739"),
    (records.Rearmed(3), "93010c03"),
    (TokenIssued("w1", 7), "94010da2773107"),
    (TokenRevoked("w1", True), "94010ea27731c3"),
    (TokenRevoked("zz", False), "94010ea27a7ac2"),
    (Rejected(RejectReason.ALREADY_EXISTS, "x"), "94010404a178"),
    (Rejected(RejectReason.QUOTA_EXCEEDED, "y"), "94010405a179"),
]


def test_the_golden_definition_is_what_encode_definition_gives():
    assert encode_definition(workflow("t", version=1, steps=[activity("a", task_queue="q")])) == DEFINITION


@pytest.mark.parametrize(
    ("session_id", "seq", "ack_floor", "op", "golden"), COMMANDS, ids=[type(op).__name__ for _, _, _, op, _ in COMMANDS]
)
def test_every_op_encodes_to_its_golden_bytes_and_back(session_id, seq, ack_floor, op, golden):
    cmd = Command(AT_MS, session_id, seq, ack_floor, op)
    assert encode_command(cmd).hex() == golden
    assert decode_command(bytes.fromhex(golden)) == cmd


@pytest.mark.parametrize(("result", "golden"), RESULTS, ids=[type(r).__name__ for r, _ in RESULTS])
def test_every_result_encodes_to_its_golden_bytes_and_back(result, golden):
    assert encode_result(result).hex() == golden
    assert decode_result(bytes.fromhex(golden)) == result


def test_the_golden_lists_hold_every_op_and_result_class():
    # One golden encoding per class at least: a new op or result needs its bytes here.
    assert len({type(op) for _, _, _, op, _ in COMMANDS}) == len(OpCode)
    assert len({type(result) for result, _ in RESULTS}) == len(ResultCode)
