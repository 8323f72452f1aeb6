"""The narrated demos behind `raftflow demo`: saga, kv and cap."""
