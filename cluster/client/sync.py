"""The one event loop every blocking client of a process runs on."""

from __future__ import annotations

import asyncio

_shared_loop: asyncio.AbstractEventLoop | None = None


def run_sync(coro):
    """Run `coro` to completion on this process's one private event loop.

    gRPC's asyncio support binds to an event loop and misbehaves once that loop is
    closed ("Event loop is closed" from its poller), so every blocking `Client` in
    a process shares one loop that is never closed. Not for use from inside a
    running event loop, nor from two threads at once."""
    global _shared_loop
    if _shared_loop is None:
        _shared_loop = asyncio.new_event_loop()
    return _shared_loop.run_until_complete(coro)
