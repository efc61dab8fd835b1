"""Several real SFU processes sharing one real `redis-server` on loopback, for the cluster
tests: nodes with their own HTTP ports and media port ranges, on a Redis that can be stopped
and started again on its port (`sfu.testing.process.RedisProcess`, shared with bench/)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from sfu.testing.process import RedisProcess, SfuProcess, make_sfu

HEARTBEAT_S = 0.5
NODE_TTL_S = 2.0
"""Short, so that a lost node is noticed within seconds (the defaults are 2 s and 10 s)."""
_ranges = itertools.count()


def make_node(redis: RedisProcess, name: str, **overrides: str) -> SfuProcess:
    """An SFU node of the cluster on `redis`, with a media port range of its own."""
    base = 48000 + 80 * (next(_ranges) % 20)
    env = {
        "REDIS_URL": redis.url,
        "SFU_CLUSTER_HEARTBEAT_S": str(HEARTBEAT_S),
        "SFU_CLUSTER_NODE_TTL_S": str(NODE_TTL_S),
        "SFU_DRAIN_TIMEOUT_S": "5",
        **overrides,
    }
    return make_sfu(base, base + 60, name, **env)


async def call(
    node: SfuProcess, method: str, path: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    """`method path` on `node` with the service token; (status, JSON body or {})."""
    headers = {**node.service_headers(), **kwargs.pop("headers", {})}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, node.url + path, headers=headers, **kwargs) as response,
    ):
        text = await response.text()
        body: dict[str, Any] = {}
        if text and response.content_type == "application/json":
            body = await response.json()
        return response.status, body


async def until(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, step: float = 0.1
) -> None:
    """Wait until `check()` is true; AssertionError naming `what` after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await check():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(step)


async def node_ids(node: SfuProcess) -> dict[str, dict[str, Any]]:
    """The live nodes as `node` lists them (`GET /nodes`), by id."""
    status, body = await call(node, "GET", "/nodes")
    assert status == 200, body
    return {n["node_id"]: n for n in body["nodes"]}
