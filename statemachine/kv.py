"""The key-value namespace: a flat map of str keys with etcd's revisions.

`revision` is a global counter that every mutation changing something bumps (a put
always does; a delete of a missing key and a failed Cas do not). A key remembers the
revision that created it, the one that last changed it, and how many times it changed
since creation. Sessions, time and the log index are the machine's business, not this
namespace's.
"""

from __future__ import annotations

from typing import ClassVar

from raftflow.statemachine.commands import (
    Cas,
    CasResult,
    Delete,
    DeleteResult,
    KeyValue,
    Op,
    Put,
    PutResult,
    Result,
    SnapshotError,
    check_int,
    check_row,
    check_type,
    key_value_from_row,
    key_value_row,
)


class KvStore:
    OPS: ClassVar[tuple[type, ...]] = (Put, Delete, Cas)  # the ops the machine dispatches here

    def __init__(self) -> None:
        self.revision = 0  # the revision of the last change; every mod_revision <= revision
        self._keys: dict[str, KeyValue] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key: str) -> KeyValue | None:
        return self._keys.get(key)

    def apply(self, op: Op, now_ms: int) -> Result:
        """Applies a key-value op; `now_ms` is unused (keys do not expire)."""
        if type(op) is Put:  # the usual op, ahead of the class patterns (each an isinstance and getattrs)
            prev = self._keys.get(op.key)
            self._write(op.key, op.value, prev)
            return PutResult(self.revision, prev)
        match op:
            case Delete(key):
                deleted = self._keys.pop(key, None)
                if deleted is not None:
                    self.revision += 1
                return DeleteResult(self.revision, deleted)
            case Cas(key, value, expected_value, expected_revision):
                current = self._keys.get(key)
                if not _matches(current, expected_value, expected_revision):
                    return CasResult(False, self.revision, current)
                return CasResult(True, self.revision + 1, self._write(key, value, current))
        raise AssertionError(f"KvStore was handed {op!r}, which is not in OPS")

    def _write(self, key: str, value: bytes, prev: KeyValue | None) -> KeyValue:
        self.revision += 1
        if prev is None:
            kv = KeyValue(key, value, self.revision, self.revision, 1)
        else:
            kv = KeyValue(key, value, prev.create_revision, self.revision, prev.version + 1)
        self._keys[key] = kv
        return kv

    def capture(self) -> tuple[int, dict[str, KeyValue]]:
        return self.revision, dict(self._keys)  # KeyValue is frozen: a shallow copy is a snapshot

    @staticmethod
    def state_rows(captured: tuple[int, dict[str, KeyValue]]) -> list:
        """[revision, [key rows sorted by key]]: the same map gives the same bytes
        whatever order its keys were written in."""
        revision, keys = captured
        return [revision, [key_value_row(keys[key]) for key in sorted(keys)]]

    def snapshot_state(self) -> list:
        return self.state_rows(self.capture())

    def restore_state(self, state: object) -> None:
        """Replaces the store with `state` from snapshot_state; SnapshotError (and no
        change) if a field or invariant is wrong."""
        revision, rows = check_row(state, 2, "kv", SnapshotError)
        check_int(revision, "kv revision", SnapshotError)
        check_type(rows, list, "kv keys", SnapshotError)
        keys: dict[str, KeyValue] = {}
        previous = ""  # keys are non-empty, so every key sorts after it
        for row in rows:
            kv = key_value_from_row(row, "kv key", SnapshotError)
            if kv.key <= previous:
                raise SnapshotError(f"kv key {kv.key!r} is out of order after {previous!r}")
            if kv.mod_revision > revision:
                raise SnapshotError(f"kv key {kv.key!r} mod_revision={kv.mod_revision} is above revision={revision}")
            keys[kv.key] = kv
            previous = kv.key
        self.revision, self._keys = revision, keys


def _matches(current: KeyValue | None, expected_value: bytes | None, expected_revision: int | None) -> bool:
    """Whether a Cas's condition holds: validate_op made sure exactly one is given."""
    if expected_revision is not None:
        current_revision = 0 if current is None else current.mod_revision  # 0: the key does not exist
        return current_revision == expected_revision
    return current is not None and current.value == expected_value
