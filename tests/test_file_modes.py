"""Files raftflow creates are private to the user running it (issue 14).

Whatever the umask: every file is 0600, every folder 0700, with no moment where a
file exists with a wider mode (it is created with its mode). A data directory or
cluster folder an earlier build made with wider modes keeps working and keeps its
modes; a node opening such a data directory says so in one warning line, with the fix.
"""

from __future__ import annotations

import logging
import os
import stat

import pytest

from raftflow.cluster.local import launcher
from raftflow.cluster.node.config import NodeConfig
from raftflow.cluster.node.server import open_storage
from raftflow.raft.disk import DiskStorage
from raftflow.raft.types import Entry, HardState, Snapshot
from procnet import wait_until

WAIT_S = 20.0  # deadline of the wait for a node process


@pytest.fixture(params=[0o022], ids=lambda mask: f"umask{mask:03o}")
def umask(request):
    """The process umask set for the test (0o022, the usual one: it leaves 0644
    files and 0755 folders by default), and restored after it."""
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def wrong_modes(root: str) -> dict[str, str]:
    """Every path under `root` (itself included) whose mode is not 0700 for a folder
    or 0600 for a file: its path relative to `root`, and its mode."""
    wrong = {}
    for folder, _, files in os.walk(root):
        for path in (folder, *(os.path.join(folder, name) for name in files)):
            mode = os.lstat(path).st_mode
            expected = 0o700 if stat.S_ISDIR(mode) else 0o600
            if stat.S_IMODE(mode) != expected:
                wrong[os.path.relpath(path, root)] = f"{stat.S_IMODE(mode):03o}"
    return wrong


def files_under(root: str) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files}


def fill(path: str) -> None:
    """A data directory with a local snapshot, a leader's, and segments rotated
    after both."""
    disk = DiskStorage(path, cluster_id="c", node_id=1, create=True, segment_bytes_max=4096)
    for index in range(1, 41):
        disk.persist(None, [Entry(index, 1, b"x" * 200)], HardState(1, 1, index))
    disk.compact(Snapshot(30, 1, b"state at 30"))
    disk.persist(Snapshot(60, 2, b"the leader's state at 60"), [], HardState(2, 2, 60))
    for index in range(61, 101):
        disk.persist(None, [Entry(index, 2, b"y" * 200)], HardState(2, 2, index))
    disk.close()
    DiskStorage(path, cluster_id="c", node_id=1).close()  # recovery too creates nothing wider


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o277], indirect=True, ids=lambda m: f"umask{m:03o}")
def test_a_data_dir_is_private_whatever_the_umask(tmp_path, umask):
    root = str(tmp_path / "nodes")  # a missing parent: created private too
    fill(os.path.join(root, "n1"))
    names = files_under(root)
    assert "n1/raftflow.meta" in names and any(n.endswith(".snap") for n in names), names
    assert sum(n.endswith(".wal") for n in names) > 1, names
    assert wrong_modes(root) == {}


def test_a_new_cluster_folder_is_private(tmp_path, umask):
    root = str(tmp_path / "clusters")
    launcher.create(os.path.join(root, "c1"), 3, 0)
    assert files_under(root) == {
        "c1/cluster.json", "c1/node-1.toml", "c1/node-2.toml", "c1/node-3.toml", "c1/tokens/admin.token",
        "c1/tls/ca.crt", "c1/tls/ca.key", *(f"c1/tls/node-{i}.{kind}" for i in (1, 2, 3) for kind in ("crt", "key")),
    }
    assert wrong_modes(root) == {}


def test_a_started_node_writes_its_log_and_data_dir_private(tmp_path, umask):
    cluster = launcher.create(str(tmp_path / "c"), 1, 0)
    (member,) = cluster.members
    try:
        launcher.start_node(cluster, member)
        with cluster.client(timeout=1.0) as client:
            wait_until(lambda: client.status(member.address).leader_id == 1, WAIT_S, "node 1 to lead")
        assert {"node-1.log", "data-1/raftflow.meta"} <= files_under(cluster.dir)
        assert wrong_modes(cluster.dir) == {}
    finally:
        launcher.stop_node(cluster, member, kill=True)


def _widen(root: str) -> None:
    """What an earlier build left: folders 0755, files 0644."""
    for folder, _, files in os.walk(root):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)


def test_a_node_warns_once_about_an_earlier_builds_wide_data_dir_and_runs(tmp_path, umask, caplog):
    data_dir = str(tmp_path / "data")
    config = NodeConfig(id=1, peers={1: "127.0.0.1:7001"}, data_dir=data_dir, cluster_id="c", insecure=True)
    fill(data_dir)
    with caplog.at_level(logging.WARNING):
        open_storage(config).close()
    assert caplog.records == []  # private: nothing to say

    _widen(data_dir)
    with caplog.at_level(logging.WARNING):
        storage = open_storage(config)
    try:
        assert storage.load().snapshot.index == 60
        storage.persist(None, [Entry(101, 2, b"after the upgrade")], HardState(2, 2, 101))
    finally:
        storage.close()
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert data_dir in record.getMessage() and f"chmod -R go-rwx {data_dir}" in record.getMessage()
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o755  # nothing tightened unasked


def test_an_earlier_builds_wide_cluster_folder_keeps_working(tmp_path, umask):
    created = launcher.create(str(tmp_path / "c"), 3, 0)
    _widen(created.dir)
    cluster = launcher.ClusterFile.load(created.dir)
    cluster.members[0].pid = 0
    cluster.save()
    assert launcher.ClusterFile.load(created.dir).cluster_id == created.cluster_id
    assert stat.S_IMODE(os.stat(created.dir).st_mode) == 0o755
