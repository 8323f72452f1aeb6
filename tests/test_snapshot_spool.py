"""An incoming snapshot spooled to disk: chunks in any order, duplicates harmless,
one transfer per spool, the size limit checked before a byte is written, and no
file left behind."""

import asyncio
import os
import stat

import pytest

from raftflow.cluster.node.snapshot_spool import SnapshotSpool, SpoolRefused, remove_leftovers
from raftflow.raft.types import InstallSnapshot, Snapshot


def chunk(offset: int, data: bytes, done: bool = False, index: int = 50) -> InstallSnapshot:
    return InstallSnapshot(2, 1, 7, Snapshot(index, 6, data), offset, done)


def test_chunks_in_any_order_make_the_whole_snapshot_once(tmp_path):
    async def scenario():
        spool = SnapshotSpool(str(tmp_path), 2, 1, limit=1 << 20)
        assert await spool.add(chunk(4, b"efgh", done=True)) is None
        assert stat.S_IMODE(os.stat(spool.path).st_mode) == 0o600
        assert await spool.add(chunk(4, b"efgh", done=True)) is None  # a duplicate
        whole = await spool.add(chunk(0, b"abcd"))
        spool.discard()
        return whole, spool.path

    whole, path = asyncio.run(scenario())
    assert whole == InstallSnapshot(2, 1, 7, Snapshot(50, 6, b"abcdefgh"), 0, True)
    assert not os.path.exists(path)


def test_a_chunk_of_another_snapshot_or_past_the_limit_is_refused(tmp_path):
    async def scenario():
        spool = SnapshotSpool(str(tmp_path), 2, 1, limit=8)
        await spool.add(chunk(0, b"abcd"))
        with pytest.raises(SpoolRefused, match="a chunk of snapshot 51"):
            await spool.add(chunk(4, b"efgh", index=51))
        with pytest.raises(SpoolRefused, match="reaches past max_snapshot_bytes=8"):
            await spool.add(chunk(4, b"efghi"))
        spool.discard()

    asyncio.run(scenario())
    assert os.listdir(tmp_path) == []


def test_leftovers_of_a_crash_are_removed(tmp_path):
    (tmp_path / "from-2-1.snap-in").write_bytes(b"partial")
    (tmp_path / "raftflow.meta").write_bytes(b"keep")
    assert remove_leftovers(str(tmp_path)) == 1
    assert os.listdir(tmp_path) == ["raftflow.meta"]
