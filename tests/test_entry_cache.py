"""The bounded entry cache: the core keeps at most max_cached_entries entries in
memory and reads older ones back from storage for lagging followers."""

import random

import pytest

from raftflow.raft import AppendEntries, AppendResponse, Config, Entry, HardState, MemoryStorage, Node, Snapshot, VoteResponse
from raftflow.raft.disk import DiskStorage
from raftflow.raft.fs import OsFS, SimFS
from raftflow.raft.log import RaftLog
from raftflow.raft.wal import WalCorruption, read_segment


def _cached(log: RaftLog) -> int:
    return sum(1 for e in log.entries if isinstance(e, Entry))


def test_evicted_entries_keep_their_terms_and_are_read_back():
    store = MemoryStorage()
    entries = [Entry(i, 1 + i // 4, f"e{i}".encode()) for i in range(1, 13)]
    store.persist(None, entries, HardState(3, 1, 12))
    log = RaftLog(None, store.load().entries, store.entries)
    log.commit = log.applied = log.applying = 12
    log.evict(9)
    assert _cached(log) == 3 and log.cached_from == 10
    assert [log.term(i) for i in range(1, 13)] == [e.term for e in entries]
    assert log.slice(3, 12, 100, 1 << 20) == entries[2:11]  # across the boundary
    assert log.slice(2, 5, 100, 1 << 20) == entries[1:4]  # all from storage
    assert log.find_conflict_by_term(12, 2) == (7, 2)  # bisect over terms and entries


def test_eviction_never_reaches_unapplied_or_unstable_entries():
    store = MemoryStorage()
    store.persist(None, [Entry(i, 1) for i in range(1, 6)], HardState(1, 1, 3))
    log = RaftLog(None, store.load().entries, store.entries)
    log.commit = log.applied = log.applying = 3
    with pytest.raises(AssertionError):
        log.evict(4)


def _leader_with_log(n: int, cache: int, store: MemoryStorage) -> Node:
    node = Node(Config(1, (1, 2, 3), max_cached_entries=cache), random.Random(0), reader=store.entries)

    def cycle():
        rd = node.ready()
        store.persist(rd.snapshot, rd.entries, rd.hard_state)
        node.advance(rd)
        return rd

    node.campaign(transfer=True)
    cycle()
    node.step(VoteResponse(3, 1, node.term, True))
    cycle()
    for k in range(n):
        node.propose(f"v{k}".encode())
        cycle()
        node.step(AppendResponse(3, 1, node.term, True, node.log.last_index()))
        cycle()
    return node


def test_leader_keeps_at_most_max_cached_entries_and_serves_a_lagging_follower_from_storage():
    store = MemoryStorage()
    leader = _leader_with_log(40, 5, store)
    assert leader.log.commit == 41
    assert _cached(leader.log) <= 5
    # Node 2 has nothing: it rejects, and the leader must send entries it evicted.
    leader.step(AppendResponse(2, 1, leader.term, False, 0, 0, 0))
    sent = [m for m in leader.ready().early_messages if isinstance(m, AppendEntries) and m.dst == 2]
    assert sent and sent[0].prev_index == 0
    assert sent[0].entries[:41] == store.load().entries[: len(sent[0].entries)]


def _random_history(store_a, store_b, rng: random.Random, steps: int) -> None:
    """The same persist/overwrite/compact calls on both stores."""
    state = store_b.load()
    snap = state.snapshot.index if state.snapshot else 0
    last = snap + len(state.entries)
    term = state.entries[-1].term if state.entries else 1
    for _ in range(steps):
        roll = rng.random()
        if roll < 0.7 or last == snap:
            first = last + 1 if rng.random() < 0.8 or last == snap else rng.randint(snap + 1, last)
            term += rng.random() < 0.2
            batch = [Entry(i, term, rng.randbytes(rng.randint(0, 20))) for i in range(first, first + rng.randint(1, 30))]
            for s in (store_a, store_b):
                s.persist(None, batch, HardState(term, 1, min(snap, batch[-1].index)))
            last = batch[-1].index
        else:
            index = rng.randint(snap + 1, last)
            t = store_b.entries(index, index + 1)[0].term
            snapshot = Snapshot(index, t, b"state")
            for s in (store_a, store_b):
                s.compact(snapshot)
            snap = index


@pytest.mark.parametrize("seed", range(8))
def test_disk_storage_reads_back_what_memory_storage_holds(seed, tmp_path):
    rng = random.Random(seed)
    fs = SimFS(random.Random(seed)) if seed % 2 else OsFS()
    path = "/d" if seed % 2 else str(tmp_path / "d")
    disk = DiskStorage(path, cluster_id="c", node_id=1, create=True, fs=fs, segment_bytes_max=4096)
    model = MemoryStorage()
    for round_ in range(3):
        _random_history(disk, model, rng, 60)
        state = model.load()
        base = state.snapshot.index if state.snapshot else 0
        last = base + len(state.entries)
        for _ in range(30 if last > base else 0):
            lo = rng.randint(base + 1, last)
            hi = rng.randint(lo, last + 1)
            assert disk.entries(lo, hi) == model.entries(lo, hi), (seed, round_, lo, hi)
        disk.close()
        disk = DiskStorage(path, cluster_id="c", node_id=1, fs=fs, segment_bytes_max=4096)


def test_reading_back_a_damaged_record_raises_naming_the_file():
    fs = SimFS(random.Random(1))
    disk = DiskStorage("/d", cluster_id="c", node_id=1, create=True, fs=fs, segment_bytes_max=4096)
    disk.persist(None, [Entry(i, 1, b"payload") for i in range(1, 11)], HardState(1, 1, 10))
    segment = "/d/wal/" + fs.listdir("/d/wal")[0]
    _, end = read_segment(segment, fs.read(segment), last=True)  # preallocated zeros follow
    fs.corrupt(segment, end - 12)
    with pytest.raises(WalCorruption, match="0000000000000000.wal"):
        disk.entries(1, 5)


def test_load_hands_recovered_entries_over_then_reads_the_current_state_back(tmp_path):
    path = str(tmp_path / "d")
    disk = DiskStorage(path, cluster_id="c", node_id=1, create=True)
    model = MemoryStorage()
    for s in (disk, model):
        s.persist(None, [Entry(i, 1, b"v%d" % i) for i in range(1, 9)], HardState(1, 1, 4))
    disk.close()
    disk = DiskStorage(path, cluster_id="c", node_id=1)
    first = disk.load()
    assert first.entries == model.load().entries
    for s in (disk, model):
        s.persist(None, [Entry(7, 2, b"new")], HardState(2, 0, 5))
        s.compact(Snapshot(3, 1, b"state"))
    again = disk.load()
    expected = model.load()
    assert (again.hard_state, again.snapshot, again.entries) == (
        expected.hard_state, expected.snapshot, expected.entries
    )
