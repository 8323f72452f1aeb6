"""InstallSnapshot in chunks (Raft §7: offset, data, done)."""

import random

from raftflow.raft import AppendResponse, Config, InstallSnapshot, Node, Snapshot, VoteResponse
from raftflow.raft.codec import decode_message, encode_message


def _follower() -> Node:
    return Node(Config(2, (1, 2, 3), max_snapshot_chunk_bytes=4), random.Random(0))


def _chunks(index: int, term: int, data: bytes, size: int) -> list[InstallSnapshot]:
    return [
        InstallSnapshot(1, 2, 1, Snapshot(index, term, data[o : o + size]), o, o + size >= len(data))
        for o in range(0, len(data), size)
    ]


def test_follower_installs_a_snapshot_once_every_chunk_arrived_in_any_order():
    # Raft §7: chunks may be reordered and duplicated by the network.
    node = _follower()
    data = b"the whole state machine, serialized"
    chunks = _chunks(10, 1, data, 4)
    order = chunks[::-1] + chunks[:3]  # reversed, then duplicates
    for m in order[:-4]:
        node.step(m)
        rd = node.ready()
        assert rd.snapshot is None and not rd.messages, "answered before the last chunk arrived"
        node.advance(rd)
    node.step(order[len(chunks) - 1])  # the first chunk, last to arrive
    rd = node.ready()
    assert rd.snapshot == Snapshot(10, 1, data)
    assert rd.messages == [AppendResponse(2, 1, 1, True, 10)]
    node.advance(rd)
    for m in order[len(chunks):]:  # late duplicates: old news, answered with commit
        node.step(m)
    rd = node.ready()
    assert rd.snapshot is None
    assert all(isinstance(m, AppendResponse) and m.success and m.index == 10 for m in rd.messages)


def test_leader_sends_a_large_snapshot_in_bounded_chunks():
    # A leader whose log was compacted sends a lagging follower the snapshot in
    # chunks of at most max_snapshot_chunk_bytes.
    leader = Node(Config(1, (1, 2, 3), max_snapshot_chunk_bytes=4), random.Random(0))
    leader.campaign(transfer=True)  # a candidate; votes from 3 make it leader
    rd = leader.ready()
    leader.advance(rd)
    leader.step(VoteResponse(3, 1, leader.term, True))
    leader.advance(leader.ready())
    leader.propose(b"x")
    leader.advance(leader.ready())
    leader.step(AppendResponse(3, 1, leader.term, True, 2))
    leader.advance(leader.ready())
    leader.compact(2, b"0123456789")
    leader.step(AppendResponse(2, 1, leader.term, False, 0, 0, 0))  # node 2 has nothing
    rd = leader.ready()
    chunks = [m for m in rd.early_messages if isinstance(m, InstallSnapshot) and m.dst == 2]
    assert [(m.offset, m.snapshot.data, m.done) for m in chunks] == [
        (0, b"0123", False), (4, b"4567", False), (8, b"89", True)
    ]
    assert all(decode_message(encode_message(m)) == m for m in chunks)


def test_chunks_from_a_different_snapshot_start_over():
    node = _follower()
    first = _chunks(10, 1, b"aaaaaaaa", 4)
    second = _chunks(12, 1, b"bbbbbbbb", 4)
    node.step(first[0])
    node.step(second[1])
    node.step(first[1])  # the first snapshot's chunk 0 was discarded with the switch
    assert node.ready().snapshot is None


def test_chunks_of_an_older_snapshot_do_not_reset_a_newer_transfer():
    # Reordering interleaves a retried older snapshot with a newer one (the leader
    # compacted in between): the newer transfer completes.
    node = _follower()
    old = _chunks(10, 1, b"oooooooo", 4)
    new = _chunks(20, 1, b"nnnnnnnnnnnn", 4)
    for a, b in zip(new, old + [old[0]]):
        node.step(a)
        node.step(b)
    rd = node.ready()
    assert rd.snapshot == Snapshot(20, 1, b"nnnnnnnnnnnn")


def test_a_late_duplicate_of_an_installed_snapshot_keeps_the_transfer_in_progress():
    node = _follower()
    first = _chunks(10, 1, b"aaaaaaaa", 4)
    for m in first:
        node.step(m)
    node.advance(node.ready())
    second = _chunks(20, 1, b"bbbbbbbb", 4)
    node.step(second[0])
    node.step(first[0])  # duplicated by the network: old news
    node.step(second[1])
    assert node.ready().snapshot == Snapshot(20, 1, b"bbbbbbbb")
