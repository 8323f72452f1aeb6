"""Waiting for a condition inside one event loop, with a deadline: never a fixed
number of loop turns, never a sleep standing in for the condition."""

from __future__ import annotations

import asyncio
import time


async def settle(condition, what: str, timeout: float = 2.0) -> None:
    """Let the loop run (callbacks, tasks) until `condition()` holds; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.001)  # a turn of the loop: the callbacks that make the condition run
