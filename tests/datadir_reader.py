"""Reads a node's data directory the way the node does at start-up (RaftNode.start:
DiskStorage, Machine.restore of the snapshot, the committed entries applied in order),
for tests/test_data_compat.py and the script that writes its data
(tests/data/make_datadir_v1.py), so that both read it one way. It does not import
raftflow.cluster: the storage and the state machine alone decide what data means.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from raftflow.raft.codec import entries_from_rows
from raftflow.raft.disk import DiskStorage
from raftflow.raft.types import Entry, EntryKind
from raftflow.raft.wal import RecordType, read_segment
from raftflow.statemachine import Machine, decode_command


@dataclass
class NodeData:
    """What one node's data directory reads back as."""

    last_index: int
    commit: int
    term: int
    snapshot_index: int
    machine: Machine  # the snapshot restored and every committed entry applied
    hashes: dict[int, str]  # applied index -> state_hash(), at the snapshot and after each entry
    ops_after_snapshot: dict[str, int]  # op class name ("noop": a leader's no-op) -> entries


def read_node(path: Path, cluster_id: str, node_id: int) -> NodeData:
    """Open a node's data directory as the node does at start-up. `path` is changed
    as a node's would be (recovery cuts nothing here, but syncs and preallocates)."""
    # segment_bytes_max: the node's 64 MiB would preallocate that much for the active
    # segment on opening; reading does not depend on it.
    storage = DiskStorage(str(path), cluster_id=cluster_id, node_id=node_id, segment_bytes_max=4096)
    try:
        durable = storage.load()
    finally:
        storage.close()
    machine = Machine()
    snapshot_index = 0
    if durable.snapshot is not None:
        machine.restore(durable.snapshot.data)
        snapshot_index = durable.snapshot.index
    commit = durable.hard_state.commit
    hashes, ops = apply_committed(machine, durable.entries, commit)
    last_index = durable.entries[-1].index if durable.entries else snapshot_index
    return NodeData(last_index, commit, durable.hard_state.term, snapshot_index, machine, hashes, ops)


def apply_committed(machine: Machine, entries: list[Entry], commit: int) -> tuple[dict[int, str], dict[str, int]]:
    """Apply the entries up to `commit`, as the node's driver does; the state hash at
    each applied index, and how many entries of each op there were."""
    hashes = {machine.applied_index: machine.state_hash()}
    ops: Counter[str] = Counter()
    for entry in entries:
        if entry.index > commit:
            break
        if entry.kind is EntryKind.NOOP:
            machine.apply_noop(entry.index)
            ops["noop"] += 1
        else:
            machine.apply(entry.index, entry.data)
            ops[type(decode_command(entry.data).op).__name__] += 1
        hashes[entry.index] = machine.state_hash()
    return hashes, dict(sorted(ops.items()))


def wal_entries(path: Path) -> list[Entry]:
    """Every entry the node's WAL segments still hold, read record by record: from
    index 1 when no segment has been dropped yet (DiskStorage hands out only those
    after the snapshot)."""
    by_index: dict[int, Entry] = {}
    names = sorted(os.listdir(path / "wal"))
    for pos, name in enumerate(names):
        records, _ = read_segment(name, (path / "wal" / name).read_bytes(), last=pos == len(names) - 1)
        for record in records:
            parts = record.payload if record.type is RecordType.READY else [(record.type, record.payload)]
            for kind, payload in parts:
                assert kind != RecordType.SNAPSHOT, f"{name}: a snapshot from the leader replaced the log"
                if kind == RecordType.ENTRIES:
                    batch = entries_from_rows(payload)
                    for index in [i for i in by_index if i >= batch[0].index]:
                        del by_index[index]  # a new leader's entries replace the rest of the log (Raft §5.3)
                    by_index.update((entry.index, entry) for entry in batch)
    return [by_index[index] for index in sorted(by_index)]
