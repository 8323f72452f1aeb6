"""Activities for the real-cluster workflow tests. `hold` waits for a file the test
creates (a condition, not a sleep), so a test can kill a worker mid-activity."""

from __future__ import annotations

import os
import time

from raftflow import activity


@activity.defn
def hold(args: dict) -> dict:
    """Marks `started` (a path), then waits until `release` exists (up to 60 s)."""
    info = activity.info()
    with open(f"{args['started']}.{info.attempt}", "w") as f:
        f.write(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not os.path.exists(args["release"]):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{args['release']} never appeared")
        time.sleep(0.01)  # waiting for the test to create the file: no event crosses processes
    return {"attempt": info.attempt, "pid": os.getpid()}


@activity.defn
def echo(value: object) -> object:
    return value


@activity.defn
def undo(value: object) -> dict:
    return {"undone": value}
