"""The play stores that outlive the process: `RedisPlayStore` (when `REDIS_URL` is set) and
`FilePlayStore` (else, under `<data_dir>/analytics/`). `open_play_store(settings)` picks one.

Both keep the semantics of `MemoryPlayStore` (sfu/analytics/plays.py): a count, a score decayed
with a half-life of HALF_LIFE_DAYS and kept at the latest play's time, and the latest
RECENT_PLAYS plays, newest first.

File layout: `plays.json` is a snapshot (every session's tally and the generation number `g`),
`plays.<g>.jsonl` the plays recorded since, one JSON object a line. Each operation takes an
exclusive lock on `plays.lock`, reads whatever another process appended since, then appends;
after COMPACT_EVERY appended plays the snapshot is rewritten (temporary file + rename) as
generation g+1 and the old journal removed. A crash between the two leaves an old journal that
the next compaction deletes; it is never replayed, as the snapshot names its own generation.

Redis layout: a hash `sfu:analytics:plays:<id>` (plays, score, stamp) and a sorted set
`...:<id>:recent` (one member per play, scored by its time, trimmed to RECENT_PLAYS), both
updated by one Lua script per play, so concurrent writers cannot lose a play."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from sfu.analytics.plays import (
    DAY_S,
    HALF_LIFE_DAYS,
    RECENT_PLAYS,
    Play,
    PlayStore,
    PlaySummary,
    _Tally,
    decay,
)

if TYPE_CHECKING:
    from sfu.config.settings import Settings

COMPACT_EVERY = 10_000
STORE_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, RedisError)
"""What a play store raises when its files or its Redis fail (unreachable, unreadable)."""
REDIS_BATCH = 500
KEY_PREFIX = "sfu:analytics:plays:"
CDN_KEY = "sfu:analytics:cdn"


def analytics_dir(data_dir: Path) -> Path:
    return data_dir / "analytics"


def open_play_store(settings: Settings) -> PlayStore:
    """Redis when REDIS_URL is set, else the file store under the data directory."""
    if settings.redis_url:
        return RedisPlayStore(settings.redis_url)
    return FilePlayStore(analytics_dir(settings.data_dir))


def _tally_to_json(tally: _Tally) -> dict[str, Any]:
    return {
        "plays": tally.plays,
        "score": tally.score,
        "stamp": tally.stamp,
        "recent": [[p.at, p.user_id] for p in tally.recent],
    }


def _tally_from_json(session_id: str, data: dict[str, Any]) -> _Tally:
    recent = [Play(session_id, float(at), user) for at, user in data.get("recent", [])]
    return _Tally(int(data["plays"]), float(data["score"]), float(data["stamp"]), recent)


def _summary(session_id: str, tally: _Tally | None, now: float) -> PlaySummary:
    if tally is None:
        return PlaySummary(session_id, 0, 0.0, ())
    return PlaySummary(
        session_id, tally.plays, decay(tally.score, tally.stamp, now), tuple(tally.recent)
    )


class FilePlayStore:
    """Plays in a snapshot and a journal under `root` (see the module's docstring)."""

    def __init__(self, root: Path, *, compact_every: int = COMPACT_EVERY) -> None:
        self.root = root
        self._compact_every = compact_every
        self._tallies: dict[str, _Tally] = {}
        self._generation = -1  # nothing read yet
        self._snapshot_seen: tuple[int, int, int] | None = None
        """The snapshot's inode, mtime and size when last read: parsed again only if changed."""
        self._offset = 0
        self._appended = 0
        self._lock = asyncio.Lock()

    @property
    def _snapshot(self) -> Path:
        return self.root / "plays.json"

    def _journal(self, generation: int) -> Path:
        return self.root / f"plays.{generation}.jsonl"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "plays.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._catch_up()
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _catch_up(self) -> None:
        """Bring the in-memory tallies up to what is on disk (another process may write)."""
        try:
            stat = os.stat(self._snapshot)
            seen: tuple[int, int, int] | None = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            seen = None
        if seen is None and self._generation == -1:
            self._tallies, self._generation, self._offset, self._appended = {}, 0, 0, 0
        elif seen is not None and seen != self._snapshot_seen:  # a compaction since
            snapshot = json.loads(self._snapshot.read_text())
            if int(snapshot["g"]) != self._generation:
                self._tallies = {
                    sid: _tally_from_json(sid, data) for sid, data in snapshot["sessions"].items()
                }
                self._generation, self._offset, self._appended = int(snapshot["g"]), 0, 0
        self._snapshot_seen = seen
        try:
            with open(self._journal(self._generation), "rb") as journal:
                journal.seek(self._offset)
                for raw in journal:
                    if not raw.endswith(b"\n"):
                        break  # a line being written (or cut by a crash): not yet a play
                    self._offset += len(raw)
                    self._appended += 1
                    self._add(json.loads(raw))
        except FileNotFoundError:
            pass

    def _add(self, line: dict[str, Any]) -> None:
        play = Play(str(line["s"]), float(line["at"]), line.get("u"))
        self._tallies.setdefault(play.session_id, _Tally()).add(play)

    def _record_locked(self, plays: list[Play]) -> int:
        with self._locked():
            lines = b"".join(
                json.dumps({"s": p.session_id, "at": p.at, "u": p.user_id}).encode() + b"\n"
                for p in plays
            )
            with open(self._journal(self._generation), "ab") as journal:
                journal.truncate(self._offset)  # drop a line cut by a writer that crashed
                journal.write(lines)
                journal.flush()
                os.fsync(journal.fileno())
            self._catch_up()  # reads back what was just written (and anything before it)
            if self._appended >= self._compact_every:
                self._compact()
        return len(plays)

    def _compact(self) -> None:
        old = self._generation
        snapshot = {
            "g": old + 1,
            "sessions": {sid: _tally_to_json(t) for sid, t in self._tallies.items()},
        }
        temporary = self._snapshot.with_suffix(".json.tmp")
        with open(temporary, "w") as out:
            json.dump(snapshot, out, separators=(",", ":"))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self._snapshot)
        self._generation, self._offset, self._appended = old + 1, 0, 0
        for leftover in self.root.glob("plays.*.jsonl"):
            if leftover != self._journal(old + 1):
                leftover.unlink(missing_ok=True)

    def _summary_locked(self, session_id: str, now: float) -> PlaySummary:
        with self._locked():
            return _summary(session_id, self._tallies.get(session_id), now)

    async def record(self, plays: Iterable[Play]) -> int:
        batch = list(plays)
        if not batch:
            return 0
        async with self._lock:
            return await asyncio.to_thread(self._record_locked, batch)

    async def summary(self, session_id: str, now: float) -> PlaySummary:
        async with self._lock:
            return await asyncio.to_thread(self._summary_locked, session_id, now)

    async def compact(self) -> None:
        def run() -> None:
            with self._locked():
                self._compact()

        async with self._lock:
            await asyncio.to_thread(run)

    async def close(self) -> None:
        return None


# KEYS: the tally hash, the recent sorted set. ARGV: at (as Python wrote it), user ("" none,
# else "u" + id), half-life in seconds, RECENT_PLAYS. Returns the session's count.
_RECORD = """
local at = tonumber(ARGV[1])
local plays = tonumber(redis.call('HGET', KEYS[1], 'plays') or '0') + 1
local score, stamp
if plays == 1 then
  score, stamp = 1.0, at
else
  score = tonumber(redis.call('HGET', KEYS[1], 'score'))
  stamp = tonumber(redis.call('HGET', KEYS[1], 'stamp'))
  local later = math.max(stamp, at)
  local half = tonumber(ARGV[3])
  score = score * math.pow(2.0, -(later - stamp) / half) + math.pow(2.0, -(later - at) / half)
  stamp = later
end
redis.call('HSET', KEYS[1], 'plays', plays, 'score', string.format('%.17g', score),
  'stamp', string.format('%.17g', stamp))
redis.call('ZADD', KEYS[2], at, plays .. '\\t' .. ARGV[1] .. '\\t' .. ARGV[2])
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[4]) + 1))
return plays
"""


class RedisPlayStore:
    """Plays in Redis (see the module's docstring)."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self._client = aioredis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        self._script = self._client.register_script(_RECORD)

    @staticmethod
    def _keys(session_id: str) -> list[str]:
        return [KEY_PREFIX + session_id, KEY_PREFIX + session_id + ":recent"]

    async def record(self, plays: Iterable[Play]) -> int:
        """One script call a play, sent REDIS_BATCH at a time in a pipeline."""
        batch = list(plays)
        half_life = repr(HALF_LIFE_DAYS * DAY_S)
        for start in range(0, len(batch), REDIS_BATCH):
            async with self._client.pipeline(transaction=False) as pipe:
                for play in batch[start : start + REDIS_BATCH]:
                    user = "" if play.user_id is None else "u" + play.user_id
                    args: list[str | int] = [repr(float(play.at)), user, half_life, RECENT_PLAYS]
                    await self._script(keys=self._keys(play.session_id), args=args, client=pipe)
                await pipe.execute()
        return len(batch)

    async def summary(self, session_id: str, now: float) -> PlaySummary:
        tally_key, recent_key = self._keys(session_id)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hgetall(tally_key)
            pipe.zrevrange(recent_key, 0, RECENT_PLAYS - 1)
            fields, members = await pipe.execute()
        if not fields:
            return PlaySummary(session_id, 0, 0.0, ())
        recent = []
        for member in members:
            _, at, user = member.decode().split("\t", 2)
            recent.append(Play(session_id, float(at), user[1:] if user else None))
        recent.sort(key=lambda p: -p.at)  # ties: the Redis order is by member, not by arrival
        score = decay(float(fields[b"score"]), float(fields[b"stamp"]), now)
        return PlaySummary(session_id, int(fields[b"plays"]), score, tuple(recent))

    async def close(self) -> None:
        await self._client.aclose()


@contextlib.asynccontextmanager
async def redis_client(url: str) -> AsyncIterator[Any]:
    """A short-lived Redis client for one command-line step, closed after it."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(url, socket_connect_timeout=5)
    try:
        yield client
    finally:
        await client.aclose()


async def save_cdn_stats(settings: Settings, hits: int, total: int, at: float) -> None:
    """Keep the cache hit ratio of the last ingested logs that carried a cache status."""
    record = json.dumps({"hits": hits, "total": total, "at": at})
    if settings.redis_url:
        async with redis_client(settings.redis_url) as client:
            await client.set(CDN_KEY, record)
        return
    path = analytics_dir(settings.data_dir) / "cdn.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(record)
    os.replace(temporary, path)


async def load_cdn_ratio(settings: Settings) -> float | None:
    """The ratio saved by save_cdn_stats; None when no log carried a cache status yet."""
    raw: str | bytes | None
    if settings.redis_url:
        async with redis_client(settings.redis_url) as client:
            raw = await client.get(CDN_KEY)
    else:
        try:
            raw = (analytics_dir(settings.data_dir) / "cdn.json").read_text()
        except FileNotFoundError:
            raw = None
    if raw is None:
        return None
    data = json.loads(raw)
    total = int(data.get("total", 0))
    return int(data.get("hits", 0)) / total if total else None
