from raft import AppendEntries, Entry, EntryKind, Heartbeat, InstallSnapshot, RequestVote, Snapshot
from raft.codec import decode_message, encode_message


def test_messages_round_trip_through_msgpack():
    msgs = [
        RequestVote(1, 2, 5, 10, 4, pre_vote=True, transfer=False),
        AppendEntries(1, 2, 5, 9, 4, [Entry(10, 5, b"x"), Entry(11, 5, b"", EntryKind.NOOP)], 8),
        Heartbeat(1, 3, 5, 8, 42),
        InstallSnapshot(1, 3, 5, Snapshot(100, 4, b"state")),
    ]
    for m in msgs:
        assert decode_message(encode_message(m)) == m
