"""The WebSocket relay: a participant whose socket reached this node while its room lives on
another. Messages go both ways unchanged; when the owner closes, the participant's socket is
closed with the owner's close code and reason, so a relayed session looks to the browser as a
direct one (docs/api.md §3)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from sfu import metrics

logger = logging.getLogger(__name__)


async def relay(client: web.WebSocketResponse, owner: aiohttp.ClientWebSocketResponse) -> None:
    """Pipe `client` ↔ `owner` until either side closes; then close the other."""
    metrics.RELAYED_SOCKETS.inc()
    try:
        up = asyncio.create_task(_client_to_owner(client, owner), name="relay-up")
        down = asyncio.create_task(_owner_to_client(owner, client), name="relay-down")
        done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in done:
            if task.exception() is not None:
                logger.info("relay ended: %r", task.exception())
    finally:
        metrics.RELAYED_SOCKETS.dec()
        if not owner.closed:
            await owner.close()
        if not client.closed:
            code = owner.close_code or int(WSCloseCode.INTERNAL_ERROR)
            await client.close(code=code, message=b"")


async def _client_to_owner(
    client: web.WebSocketResponse, owner: aiohttp.ClientWebSocketResponse
) -> None:
    async for msg in client:
        if msg.type == WSMsgType.TEXT:
            await owner.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await owner.send_bytes(msg.data)
        else:
            break
    # the participant went away: the owner sees its socket close, as on a direct connection
    await owner.close(code=client.close_code or int(WSCloseCode.GOING_AWAY))


async def _owner_to_client(
    owner: aiohttp.ClientWebSocketResponse, client: web.WebSocketResponse
) -> None:
    reason = b""
    while True:
        msg = await owner.receive()
        if msg.type == WSMsgType.TEXT:
            await client.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await client.send_bytes(msg.data)
        else:  # CLOSE (the owner's code and reason), CLOSED, ERROR
            if msg.type == WSMsgType.CLOSE:
                reason = str(msg.extra or "").encode()[:120]
            break
    code = owner.close_code or int(WSCloseCode.INTERNAL_ERROR)
    await client.close(code=code, message=reason)
