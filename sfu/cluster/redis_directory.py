"""The room directory in Redis, shared by every node with the same `REDIS_URL`.

Keys (prefix `sfu:cluster:`):

- `node:{id}`: the node's entry (NodeInfo as JSON), written at every heartbeat with a TTL of
  `SFU_CLUSTER_NODE_TTL_S`: a node that stops beating expires by Redis' own clock.
- `members`: the set of node ids that have registered; an id whose entry has expired is a
  lost node.
- `room:{room_id}`: `{"node_id", "room"}`, the owner and the room object it last published;
  created atomically (a second claim of the same id fails), re-published at every heartbeat,
  so a Redis that restarted empty is whole again after one beat.
- `node-rooms:{id}`: the ids of the rooms a node holds, for cleaning up after it.
- `placed:{id}`: rooms placed on a node since its last heartbeat (placement.py).
- `reaper:{id}`: which surviving node cleans up after a lost node (one does, once).

Redis going away never breaks a room: heartbeats back off and retry, one log line says it went
and one that it came back, and requests that need the directory get DirectoryUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, NoReturn

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from sfu.cluster.directory import LoadReader, NodeIdentity, RoomLost, node_info
from sfu.cluster.node_info import NodeInfo
from sfu.cluster.placement import choose_node
from sfu.core.errors import DirectoryUnavailable, NoCapacity
from sfu.core.waits import wait_set

logger = logging.getLogger(__name__)

PREFIX = "sfu:cluster:"
MEMBERS = PREFIX + "members"
REAPER_LOCK_MS = 30_000

# KEYS[1] room key, KEYS[2] this node's room set; ARGV[1] node id, ARGV[2] value, ARGV[3] room
# id. Sets the room if nobody holds it; 1 when set, 0 when another node holds it.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
"""

# As _CLAIM, but the room may already be this node's (a re-publish): 1 when set, 0 when
# another node holds it.
_PUBLISH = """
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current)['node_id'] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
"""

# KEYS[1] room key, KEYS[2] the node's room set; ARGV[1] node id, ARGV[2] room id. Removes the
# room only if that node holds it; returns the value removed, or false.
_RELEASE = """
redis.call('SREM', KEYS[2], ARGV[2])
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current)['node_id'] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return current
end
return false
"""


def _texts(values: Any) -> list[str]:
    """What redis-py returns for a set or list (str with decode_responses), typed."""
    return [v if isinstance(v, str) else v.decode() for v in values]


def _node_key(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}"


def _room_key(room_id: str) -> str:
    return f"{PREFIX}room:{room_id}"


def _rooms_of(node_id: str) -> str:
    return f"{PREFIX}node-rooms:{node_id}"


def _placed_key(node_id: str) -> str:
    return f"{PREFIX}placed:{node_id}"


class RedisDirectory:
    clustered = True

    def __init__(
        self,
        url: str,
        identity: NodeIdentity,
        load: LoadReader,
        *,
        heartbeat_s: float,
        node_ttl_s: float,
        on_room_lost: RoomLost,
        timeout_s: float = 1.0,
    ) -> None:
        self.identity = identity
        self._load = load
        self._heartbeat_s = heartbeat_s
        self._ttl_ms = int(node_ttl_s * 1000)
        self._on_room_lost = on_room_lost
        self._redis: aioredis.Redis = aioredis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, decode_responses=True
        )
        self._claim = self._redis.register_script(_CLAIM)
        self._publish = self._redis.register_script(_PUBLISH)
        self._release = self._redis.register_script(_RELEASE)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False
        self.available = True
        self._cpu = (time.monotonic(), time.process_time())
        self.cpu_load = 0.0
        self._log = logging.LoggerAdapter(logger, {"node_id": identity.node_id})

    # -- lifetime --------------------------------------------------------------------------

    async def start(self) -> None:
        """Register (a Redis that does not answer yet is retried by the heartbeat task)."""
        with contextlib.suppress(DirectoryUnavailable):
            await self.beat()
        self._task = asyncio.create_task(self._run(), name="cluster-heartbeat")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        me = self.identity.node_id
        try:
            for room_id in _texts(await self._redis.smembers(_rooms_of(me))):
                await self._release(keys=[_room_key(room_id), _rooms_of(me)], args=[me, room_id])
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.delete(_node_key(me), _rooms_of(me), _placed_key(me))
                pipe.srem(MEMBERS, me)
                await pipe.execute()
            self._log.info("left the cluster")
        except (RedisError, OSError) as exc:
            self._log.warning("could not leave the cluster cleanly: %s", exc)
        await self._redis.aclose()

    async def heartbeat_now(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        failures = 0
        while not self._closed:
            delay = self._heartbeat_s * min(2 ** max(failures - 1, 0), 4)
            await wait_set(self._wake, delay)
            self._wake.clear()
            try:
                await self.beat()
                await self.reap()
                failures = 0
            except DirectoryUnavailable:
                failures += 1

    # -- the heartbeat -----------------------------------------------------------------------

    def _measure_cpu(self) -> float:
        wall, cpu = time.monotonic(), time.process_time()
        then_wall, then_cpu = self._cpu
        if wall - then_wall >= 0.2:
            self.cpu_load = max(0.0, (cpu - then_cpu) / (wall - then_wall))
            self._cpu = (wall, cpu)
        return self.cpu_load

    def info(self) -> NodeInfo:
        return node_info(self.identity, self._load(), cpu_load=self.cpu_load)

    async def beat(self) -> None:
        """Publish this node's entry and (re-)publish its rooms."""
        load = self._load()
        me = self.identity.node_id
        entry = node_info(self.identity, load, cpu_load=self._measure_cpu())
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(_node_key(me), json.dumps(entry.to_json()), px=self._ttl_ms)
                pipe.sadd(MEMBERS, me)
                pipe.delete(_placed_key(me))
                pipe.smembers(_rooms_of(me))
                results = await pipe.execute()
            listed = set(_texts(results[-1]))
            for room_id, room in load.rooms.items():
                value = json.dumps({"node_id": me, "room": room})
                ok = await self._publish(
                    keys=[_room_key(room_id), _rooms_of(me)], args=[me, value, room_id]
                )
                if not ok:
                    self._log.warning("room %s is claimed by another node too", room_id)
            for room_id in listed - set(load.rooms):
                await self._release(keys=[_room_key(room_id), _rooms_of(me)], args=[me, room_id])
        except (RedisError, OSError) as exc:
            self._unavailable(exc)
        self._available()

    async def reap(self) -> None:
        """Clean up after every registered node whose entry has expired: remove its rooms from
        the directory and report each once (`room_finished`, reason `node_lost`)."""
        me = self.identity.node_id
        try:
            members = _texts(await self._redis.smembers(MEMBERS))
            others = [m for m in members if m != me]
            if not others:
                return
            async with self._redis.pipeline(transaction=False) as pipe:
                for node_id in others:
                    pipe.exists(_node_key(node_id))
                alive = await pipe.execute()
            for node_id, is_alive in zip(others, alive, strict=True):
                if is_alive:
                    continue
                locked = await self._redis.set(
                    f"{PREFIX}reaper:{node_id}", me, nx=True, px=REAPER_LOCK_MS
                )
                if locked:
                    await self._reap_node(node_id)
        except (RedisError, OSError) as exc:
            self._unavailable(exc)

    async def _reap_node(self, node_id: str) -> None:
        lost: list[dict[str, Any]] = []
        for room_id in _texts(await self._redis.smembers(_rooms_of(node_id))):
            value = await self._release(
                keys=[_room_key(room_id), _rooms_of(node_id)], args=[node_id, room_id]
            )
            if value:
                lost.append(json.loads(value)["room"])
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(_rooms_of(node_id), _placed_key(node_id))
            pipe.srem(MEMBERS, node_id)
            await pipe.execute()
        self._log.warning("node %s is lost: %d of its rooms finished", node_id, len(lost))
        for room in lost:
            try:
                self._on_room_lost(room)
            except Exception:  # one listener's failure must not keep the others' rooms
                logger.exception("reporting lost room %s failed", room.get("room_id"))

    # -- the directory -----------------------------------------------------------------------

    async def nodes(self) -> list[NodeInfo]:
        try:
            members = sorted(_texts(await self._redis.smembers(MEMBERS)))
            values = await self._redis.mget([_node_key(m) for m in members]) if members else []
        except (RedisError, OSError) as exc:
            self._unavailable(exc)
        self._available()
        return [NodeInfo.from_json(json.loads(v)) for v in values if v is not None]

    async def owner_of(self, room_id: str) -> NodeInfo | None:
        try:
            value = await self._redis.get(_room_key(room_id))
            if value is None:
                return None
            node_id = json.loads(value)["node_id"]
            entry = await self._redis.get(_node_key(node_id))
        except (RedisError, OSError) as exc:
            self._unavailable(exc)
        self._available()
        return None if entry is None else NodeInfo.from_json(json.loads(entry))

    async def claim(self, room_id: str, room: dict[str, Any]) -> bool:
        me = self.identity.node_id
        value = json.dumps({"node_id": me, "room": room})
        try:
            ok = await self._claim(
                keys=[_room_key(room_id), _rooms_of(me)], args=[me, value, room_id]
            )
        except (RedisError, OSError) as exc:
            self._unavailable(exc)
        self._available()
        return bool(ok)

    async def release(self, room_id: str) -> None:
        me = self.identity.node_id
        try:
            await self._release(keys=[_room_key(room_id), _rooms_of(me)], args=[me, room_id])
        except (RedisError, OSError) as exc:
            # the next heartbeat that reaches Redis releases it (it is not in this node's rooms)
            self._log.info("could not release room %s now: %s", room_id, exc)

    async def place(self) -> NodeInfo:
        nodes = await self.nodes()
        try:
            counts = await self._redis.mget([_placed_key(n.node_id) for n in nodes])
        except (RedisError, OSError) as exc:
            self._unavailable(exc)
        placed = {n.node_id: int(c or 0) for n, c in zip(nodes, counts, strict=True)}
        chosen = choose_node(nodes, placed)
        if chosen is None:
            raise NoCapacity(f"none of the {len(nodes)} nodes can take a room")
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(_placed_key(chosen.node_id))
                pipe.pexpire(_placed_key(chosen.node_id), int(self._heartbeat_s * 2000))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._unavailable(exc)
        return chosen

    # -- availability ------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> NoReturn:
        """Log the change (once), then raise DirectoryUnavailable."""
        if self.available:
            self.available = False
            self._log.warning("room directory unavailable (Redis): %s", exc)
        raise DirectoryUnavailable(f"the room directory (Redis) does not answer: {exc}") from exc

    def _available(self) -> None:
        if not self.available:
            self.available = True
            self._log.info("room directory available again (Redis)")
