"""wait_set: a background loop waiting on an event with a timeout can always be cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import pytest

from sfu.core.waits import wait_set


async def test_set_timeout_and_already_set() -> None:
    event = asyncio.Event()
    assert await wait_set(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_set(event, 5) is True
    assert await wait_set(event, 0) is True  # already set: no wait at all


async def heartbeat_like(event: asyncio.Event, wait: object) -> None:
    """The shape of RedisDirectory._run: wait (event or timeout), clear, work, again."""
    while True:
        await wait(event, 10)  # type: ignore[operator]
        event.clear()


async def _cancel_as_set(wait: object) -> asyncio.Task[None]:
    event = asyncio.Event()
    task = asyncio.create_task(heartbeat_like(event, wait))
    await asyncio.sleep(0.01)
    event.set()  # the heartbeat is woken (drain) ...
    task.cancel()  # ... in the same loop iteration as shutdown cancels it
    await asyncio.wait({task}, timeout=1)
    return task


async def test_a_cancel_that_comes_as_the_event_is_set_is_not_lost() -> None:
    task = await _cancel_as_set(wait_set)
    assert task.done() and task.cancelled()


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for is fixed in 3.12")
async def test_wait_for_loses_it_on_this_python() -> None:
    """Why wait_set exists: asyncio.wait_for on 3.11 swallows that cancellation."""

    async def with_wait_for(event: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    task = await _cancel_as_set(with_wait_for)
    try:
        assert not task.done()  # still looping, its cancellation gone
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=1)
