"""The file system seam under durable storage, and a simulated twin.

`OsFS` is the real thing. `SimFS` keeps what was written apart from what was made
durable: a file's bytes (and its size, whether set by a write, `allocate()` or
`truncate()`) become durable only at `sync()`, a create, rename or remove only at
`sync_dir()` of its folder. `SimFS.crash()` throws away everything not durable
(keeping, at random, a torn prefix of the unsynced writes), which is exactly what a
power cut may do, so the storage code can be tested at every crash point.

Files are written at explicit offsets, never in O_APPEND mode, so that a file can
be preallocated (zero-filled to its final size, `allocate()`) and then filled in
place: an fdatasync after a write that does not change the file's size has no
size metadata to commit.

Every file `OsFS` creates is FILE_MODE (0600) and every folder DIR_MODE (0700),
whatever the process umask: a data directory holds the whole application state.
`open_private` and `makedirs_private` do the same for the cluster's other files.
"""

from __future__ import annotations

import errno
import os
import random
from typing import Protocol


class File(Protocol):
    def write_at(self, offset: int, data: bytes) -> None: ...  # extends the file if it ends before
    def allocate(self, size: int) -> bool: ...  # zero-fills up to size; False where unsupported
    def sync(self) -> None: ...  # data and size durable (fdatasync)
    def truncate(self, size: int) -> None: ...
    def close(self) -> None: ...


class FS(Protocol):
    def makedirs(self, path: str) -> None: ...  # missing folders are created private (DIR_MODE)
    def listdir(self, path: str) -> list[str]: ...
    def exists(self, path: str) -> bool: ...
    def read(self, path: str) -> bytes: ...
    def read_range(self, path: str, offset: int, size: int) -> bytes: ...
    def open_write(self, path: str) -> File: ...  # creates the file if missing, private (FILE_MODE)
    def rename(self, src: str, dst: str) -> None: ...
    def remove(self, path: str) -> None: ...
    def sync_dir(self, path: str) -> None: ...


# --- the real file system ------------------------------------------------------


FILE_MODE = 0o600  # every file raftflow creates: cluster data or configuration
DIR_MODE = 0o700  # every folder raftflow creates


def open_private(path: str, flags: int) -> int:
    """`os.open(path, flags)`, creating the file if missing. A file it creates is
    FILE_MODE from its first moment, whatever the umask; one that exists keeps its
    mode (an earlier build's file keeps working as it did)."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return os.open(path, flags)
    # Never wider than FILE_MODE, but a umask can take the owner's bits too (0o277
    # would leave a file its owner cannot open for writing again).
    os.fchmod(fd, FILE_MODE)
    return fd


def write_private(path: str, data: bytes) -> None:
    """Replace `path` whole (a temp file, then a rename) with a file that is
    FILE_MODE from its creation on."""
    tmp = path + ".tmp"
    try:
        os.remove(tmp)  # a leftover (an earlier build's, 0644) would keep its mode
    except FileNotFoundError:
        pass
    with os.fdopen(open_private(tmp, os.O_WRONLY | os.O_TRUNC), "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def makedirs_private(path: str) -> None:
    """Create `path` and its missing parents, each DIR_MODE whatever the umask.
    Folders that exist keep their mode."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            if os.path.isdir(folder):
                continue  # made meanwhile by someone else: theirs, mode and all
            raise
        os.chmod(folder, DIR_MODE)  # the umask may have taken the owner's bits


# What posix_fallocate answers where the file system cannot preallocate (glibc
# emulates it on most of them, but not everywhere: NFS, some FUSE file systems).
_ALLOCATE_UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS})


class _OsFile:
    __slots__ = ("fd",)

    def __init__(self, path: str) -> None:
        # Not O_APPEND: Linux ignores pwrite's offset on a file opened for appending.
        self.fd = open_private(path, os.O_WRONLY)

    def write_at(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, offset)
            view, offset = view[written:], offset + written

    def allocate(self, size: int) -> bool:
        """Reserve blocks up to `size` bytes, reading as zeros (posix_fallocate; it
        never shrinks the file). False, changing nothing, where the file system or
        the platform cannot; any other error (ENOSPC) is raised."""
        if size <= 0 or not hasattr(os, "posix_fallocate"):
            return False
        try:
            os.posix_fallocate(self.fd, 0, size)
        except OSError as exc:
            if exc.errno in _ALLOCATE_UNSUPPORTED:
                return False
            raise
        return True

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    def close(self) -> None:
        os.close(self.fd)


class OsFS:
    def makedirs(self, path: str) -> None:
        makedirs_private(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def read_range(self, path: str, offset: int, size: int) -> bytes:
        fd = os.open(path, os.O_RDONLY)
        try:
            return os.pread(fd, size, offset)
        finally:
            os.close(fd)

    def open_write(self, path: str) -> File:
        return _OsFile(path)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def remove(self, path: str) -> None:
        os.remove(path)

    def sync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- the simulated file system -------------------------------------------------


class _SimFile:
    __slots__ = ("fs", "path", "closed")

    def __init__(self, fs: SimFS, path: str) -> None:
        self.fs = fs
        self.path = path
        self.closed = False

    def _node(self) -> _SimNode:
        assert not self.closed, f"{self.path} is closed"
        return self.fs._nodes[self.path]

    def write_at(self, offset: int, data: bytes) -> None:
        self.fs._fail_if_injected("write", self.path)
        node = self._node()
        if len(node.data) < offset:
            node.data += bytes(offset - len(node.data))
        node.data[offset : offset + len(data)] = data

    def allocate(self, size: int) -> bool:
        if not self.fs.allocate_supported:
            return False
        node = self._node()
        if len(node.data) < size:
            node.data += bytes(size - len(node.data))
        return True

    def sync(self) -> None:
        self.fs._fail_if_injected("sync", self.path)
        node = self._node()
        node.synced = bytes(node.data)

    def truncate(self, size: int) -> None:
        node = self._node()
        del node.data[size:]
        node.data += bytes(size - len(node.data))  # ftruncate extends with zeros

    def close(self) -> None:
        self.closed = True


class _SimNode:
    __slots__ = ("data", "synced")

    def __init__(self) -> None:
        self.data = bytearray()  # what readers see now
        self.synced = b""  # what survives a crash


class SimFS:
    def __init__(self, rng: random.Random | None = None, *, allocate_supported: bool = True) -> None:
        self._rng = rng or random.Random(0)
        self.allocate_supported = allocate_supported  # False: allocate() answers False, as on NFS
        self._nodes: dict[str, _SimNode] = {}  # path -> file contents (live names)
        self._dirs: set[str] = set()
        self._durable_names: dict[str, _SimNode] = {}  # path -> file, as of the last sync_dir
        self.fail_next: dict[str, OSError] = {}  # "write"/"sync" -> error to raise once

    def _fail_if_injected(self, op: str, path: str) -> None:
        err = self.fail_next.pop(op, None)
        if err is not None:
            raise err

    def makedirs(self, path: str) -> None:
        self._dirs.add(path)

    def listdir(self, path: str) -> list[str]:
        if path not in self._dirs:
            raise FileNotFoundError(errno.ENOENT, "no such directory", path)
        prefix = path.rstrip("/") + "/"
        return sorted(p[len(prefix) :] for p in self._nodes if p.startswith(prefix) and "/" not in p[len(prefix) :])

    def exists(self, path: str) -> bool:
        return path in self._nodes or path in self._dirs

    def read(self, path: str) -> bytes:
        try:
            return bytes(self._nodes[path].data)
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "no such file", path) from None

    def read_range(self, path: str, offset: int, size: int) -> bytes:
        return self.read(path)[offset : offset + size]

    def open_write(self, path: str) -> File:
        if path not in self._nodes:
            self._nodes[path] = _SimNode()
        return _SimFile(self, path)

    def rename(self, src: str, dst: str) -> None:
        self._nodes[dst] = self._nodes.pop(src)

    def remove(self, path: str) -> None:
        del self._nodes[path]

    def sync_dir(self, path: str) -> None:
        prefix = path.rstrip("/") + "/"
        for p in [p for p in self._durable_names if p.startswith(prefix)]:
            del self._durable_names[p]
        for p, node in self._nodes.items():
            if p.startswith(prefix):
                self._durable_names[p] = node

    # --- faults ------------------------------------------------------------

    def crash(self) -> None:
        """Power cut: names revert to the last sync_dir, contents to the last sync,
        except that unsynced writes may have reached the disk in part: a prefix of
        the changed bytes, from the first one that differs, over what was synced (a
        partial record followed by the synced zeros of a preallocated file, or a
        short append; growth by an allocation is kept in part the same way). A
        truncation made since the sync is lost."""
        survivors: dict[str, _SimNode] = {}
        for path, node in self._durable_names.items():
            data = node.synced
            changed = _first_difference(node.data, data)
            if changed < len(node.data):
                kept = changed + self._rng.randint(0, len(node.data) - changed)
                data = bytes(node.data[:kept]) + data[kept:]
            fresh = _SimNode()
            fresh.data = bytearray(data)
            fresh.synced = data
            survivors[path] = fresh
        self._nodes = dict(survivors)
        self._durable_names = dict(survivors)

    def corrupt(self, path: str, offset: int, xor: int = 0x40) -> None:
        """Flip bits at `offset` of a file, durably (a bad sector)."""
        node = self._nodes[path]
        node.data[offset] ^= xor
        node.synced = bytes(node.data)


def _first_difference(data: bytearray, synced: bytes) -> int:
    """The offset of the first byte where `data` differs from `synced` (or where the
    shorter of the two ends)."""
    size = min(len(data), len(synced))
    if data[:size] == synced[:size]:
        return size
    lo, hi = 0, size  # the first difference lies in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if data[lo:mid] == synced[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo
