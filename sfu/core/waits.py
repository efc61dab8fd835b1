"""`wait_set`: wait for an asyncio.Event with a timeout, without losing a cancellation.

On Python 3.11, `asyncio.wait_for(event.wait(), timeout)` runs the wait as a task of its own;
when the event is set in the same loop iteration as the waiting task is cancelled, wait_for
returns normally and the CancelledError is lost (CPython gh-86296, fixed in 3.12). A
background loop written that way can ignore `task.cancel()` for good: a node's heartbeat did,
and its shutdown hung (tests/integration/test_cluster.py, draining). `asyncio.timeout` waits
in the same task, so a cancellation always arrives.
"""

from __future__ import annotations

import asyncio


async def wait_set(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set (True) or `timeout` seconds have passed (False)."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
