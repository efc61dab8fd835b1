"""NodeLeases: which SFU nodes are alive, known apart from the recordings volume.

A session's heartbeat file lives on the recordings volume (NFS in production). A node whose
writes to that volume stall for longer than the orphan time looks dead there, and another node
would adopt its live sessions (finalise and queue them) while it still records: once the VOD is
published the session is never rendered again, so what was recorded after the adoption would
never reach the VOD. With `REDIS_URL` set, every node therefore also holds a lease in Redis,
renewed by a task that never touches the volume; a session is adopted only when its heartbeat
is stale AND its node holds no lease (`RecordingWatch`). Without Redis (the embedded single
node) `NoNodeLeases` says nobody holds one, and the heartbeat alone decides, as before.

The leases are one Redis hash (`sfu:nodes`: node id → expiry in ms) whose expiries are read and
written against the Redis server's clock (`TIME`), so nodes' clocks do not matter, as for the
heartbeats, whose mtimes come from the NFS server. Expired entries are pruned when read.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

NODES_KEY = "sfu:nodes"

# KEYS[1] the hash, ARGV[1] node id, ARGV[2] ttl in ms; returns the server's time in ms.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], now + tonumber(ARGV[2]))
return now
"""

# KEYS[1] the hash; returns the node ids whose lease has not expired, prunes the others.
_ALIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local alive = {}
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) > now then
    table.insert(alive, all[i])
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return alive
"""


class NodeLeases(Protocol):
    """What `RecordingWatch` needs: hold this node's lease, and tell whose leases are held."""

    async def renew(self) -> None:
        """Hold (or extend) this node's lease; ConnectionError if the store cannot be reached."""

    async def alive(self) -> frozenset[str]:
        """The node ids holding a lease now; ConnectionError if the store cannot be reached."""

    async def release(self) -> None:
        """Give this node's lease up (a clean stop); never raises."""

    async def close(self) -> None: ...


class NoNodeLeases:
    """One node owning its recordings directory: no leases, the heartbeats decide."""

    async def renew(self) -> None:
        return None

    async def alive(self) -> frozenset[str]:
        return frozenset()

    async def release(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisNodeLeases:
    """Leases in one Redis hash, against the Redis server's clock (see module doc)."""

    def __init__(self, url: str, node_id: str, ttl_s: float, *, key: str = NODES_KEY) -> None:
        import redis.asyncio as aioredis

        if ttl_s <= 0:
            raise ValueError(f"lease ttl must be positive, got {ttl_s}")
        self.node_id = node_id
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.key = key
        timeout = min(5.0, max(0.5, ttl_s / 6))
        self._redis: Any = aioredis.from_url(
            url, decode_responses=True, socket_connect_timeout=timeout, socket_timeout=timeout
        )

    def __repr__(self) -> str:
        return f"RedisNodeLeases({self.key!r}, {self.node_id!r})"

    async def renew(self) -> None:
        try:
            await self._redis.eval(_RENEW, 1, self.key, self.node_id, self.ttl_ms)
        except (RedisError, OSError) as exc:
            raise ConnectionError(f"node lease not renewed: {exc}") from exc

    async def alive(self) -> frozenset[str]:
        try:
            nodes = await self._redis.eval(_ALIVE, 1, self.key)
        except (RedisError, OSError) as exc:
            raise ConnectionError(f"node leases unreadable: {exc}") from exc
        return frozenset(str(n) for n in nodes)

    async def release(self) -> None:
        try:
            await self._redis.hdel(self.key, self.node_id)
        except (RedisError, OSError) as exc:
            logger.warning("node lease of %s not released (it expires by itself): %s", self, exc)

    async def close(self) -> None:
        await self._redis.aclose()


def node_leases(redis_url: str | None, node_id: str, ttl_s: float) -> NodeLeases:
    """Redis leases when REDIS_URL is set (several nodes may share the volume), else none."""
    if redis_url:
        return RedisNodeLeases(redis_url, node_id, ttl_s)
    return NoNodeLeases()
