"""Every build reads the data directories that older builds left on disk.

tests/data/datadir-v1/ is what a real 3-node cluster of data format 1 wrote: each
node's raftflow.meta, WAL segment and snapshot (tests/data/make_datadir_v1.py made
it; tests/data/datadir-v1.json records what it reads back as). Each node's copy is
opened the way a node opens it at start-up (RaftNode.start: DiskStorage, then
Machine.restore of the snapshot, then the committed entries applied in order) and must
give the recorded indexes, state hashes, keys and workflow statuses.

When a format has to change, this data must still read the same (the build migrates
it) or be refused with a message naming both versions, never misread: the last tests
check the refusals. Never regenerate datadir-v1 to make this pass; a new format gets
a datadir-v2 of its own beside it.

This file does not import raftflow.cluster: the storage and the state machine alone
decide what the data means.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import msgpack
import pytest
from datadir_reader import NodeData, apply_committed, read_node, wal_entries

from raftflow.raft.disk import DataDirError
from raftflow.raft.wal import FORMAT_VERSION, RecordType, encode_record, read_segment
from raftflow.statemachine import Machine, SnapshotError
from raftflow.statemachine.machine import SNAPSHOT_FORMAT
from raftflow.statemachine.workflow.records import Status

DATA = Path(__file__).parent / "data"
DATADIR = DATA / "datadir-v1"
EXPECTED = json.loads((DATA / "datadir-v1.json").read_text())
CLUSTER_ID = EXPECTED["cluster_id"]
NODE_IDS = sorted(int(node_id) for node_id in EXPECTED["nodes"])


def read(datadir: Path, node_id: int) -> NodeData:
    return read_node(datadir / f"data-{node_id}", CLUSTER_ID, node_id)


@pytest.fixture
def datadir(tmp_path: Path) -> Path:
    """A copy: opening a data directory changes it, and the committed one must not."""
    return Path(shutil.copytree(DATADIR, tmp_path / "datadir-v1"))


# --- it reads back as recorded ------------------------------------------------------------


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_each_node_reads_back_its_log_position_and_state(datadir, node_id):
    expected = EXPECTED["nodes"][str(node_id)]
    node = read(datadir, node_id)
    assert (node.last_index, node.commit, node.term, node.snapshot_index) == (
        expected["last_index"], expected["commit"], expected["term"], expected["snapshot_index"]
    )
    assert node.ops_after_snapshot == expected["ops_after_snapshot"]
    assert node.machine.applied_index == node.commit
    assert node.machine.state_hash() == expected["state_hash"]
    # What the running node reported over its StateHash RPC before it was stopped.
    live = expected["live"]
    assert node.hashes[live["applied_index"]] == live["state_hash"]


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_each_node_reads_back_the_keys_and_workflows(datadir, node_id):
    machine = read(datadir, node_id).machine
    for key, value in EXPECTED["keys"].items():
        kv = machine.get(key)
        assert (kv.value.decode() if kv is not None else None) == value, key
    for workflow_id, status in EXPECTED["workflows"].items():
        _, actual = machine.workflow.run_status(workflow_id)
        assert actual is Status(status), workflow_id


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_replaying_the_whole_wal_reaches_the_state_of_snapshot_and_tail(datadir, node_id):
    # The WAL still holds the entries the snapshot covers: replayed from index 1 they
    # must give the same state, and every op in them must still decode.
    expected = EXPECTED["nodes"][str(node_id)]
    entries = wal_entries(datadir / f"data-{node_id}")
    assert [entry.index for entry in entries] == list(range(1, expected["last_index"] + 1))
    machine = Machine()
    hashes, ops = apply_committed(machine, entries, expected["commit"])
    assert machine.state_hash() == expected["state_hash"]
    assert expected["live"]["state_hash"] == hashes[expected["live"]["applied_index"]]
    assert ops == expected["ops_in_wal"]


def test_the_committed_data_is_small():
    # The WAL segments were cut at the end of their data (a node preallocates 64 MiB).
    files = [f for f in DATADIR.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) < 1 << 20
    assert {f.relative_to(DATADIR).parts[-2] for f in files if f.name != "raftflow.meta"} == {"wal", "snap"}


# --- a newer format is refused, naming both versions ----------------------------------------


def rewrite_record(path: Path, rtype: RecordType, change) -> None:
    """Replace the first record of the file at `path` (of type `rtype`) with one whose
    payload is change(payload), keeping the rest of the file."""
    data = path.read_bytes()
    records, _ = read_segment(str(path), data, last=False)
    assert records[0].type is rtype
    end = records[1].offset if len(records) > 1 else len(data)
    path.write_bytes(encode_record(rtype, change(list(records[0].payload))) + data[end:])


def test_a_data_directory_of_a_newer_format_is_refused(datadir):
    path = datadir / "data-1"
    newer = FORMAT_VERSION + 1
    rewrite_record(path / "raftflow.meta", RecordType.META, lambda meta: [newer, *meta[1:]])
    with pytest.raises(DataDirError, match=f"has data format {newer}; this build reads format {FORMAT_VERSION}"):
        read_node(path, CLUSTER_ID, 1)


def test_a_wal_segment_of_a_newer_format_is_refused(datadir):
    path = datadir / "data-1"
    newer = FORMAT_VERSION + 1
    (segment,) = (path / "wal").iterdir()
    rewrite_record(segment, RecordType.META, lambda meta: [newer, *meta[1:]])
    message = f"{segment} has data format {newer}; this build reads format {FORMAT_VERSION}"
    with pytest.raises(DataDirError, match=message):
        read_node(path, CLUSTER_ID, 1)


def test_a_snapshot_of_a_newer_format_is_refused(datadir):
    path = datadir / "data-1"
    newest = max((path / "snap").iterdir())
    newer = SNAPSHOT_FORMAT + 1

    def bump(payload: list) -> list:
        index, term, data = payload
        state = msgpack.unpackb(data)
        state[0] = newer
        return [index, term, msgpack.packb(state, use_bin_type=True)]

    rewrite_record(newest, RecordType.SNAPSHOT, bump)
    with pytest.raises(SnapshotError, match=f"snapshot format is {newer}; this build reads format {SNAPSHOT_FORMAT}"):
        read_node(path, CLUSTER_ID, 1)
