"""The memory, file and Redis play stores agree; backfills decay; a restart keeps the counts."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sfu.analytics import store as store_module
from sfu.analytics.plays import DAY_S, RECENT_PLAYS, MemoryPlayStore, Play, PlayStore, PlaySummary
from sfu.analytics.store import (
    FilePlayStore,
    RedisPlayStore,
    load_cdn_ratio,
    open_play_store,
    save_cdn_stats,
)
from sfu.config.settings import load_settings
from sfu.testing.process import redis_server

NOW = 1_780_000_000.0


class Factory:
    """Makes stores of one kind that share their data (a second one is a restart)."""

    def __init__(self, kind: str, root: Path, redis_url: str) -> None:
        self.kind, self.root, self.redis_url = kind, root, redis_url
        self.prefix = f"{root.name}-"  # keeps tests apart in the one Redis
        self.memory = MemoryPlayStore()
        self.opened: list[PlayStore] = []

    def __call__(self) -> PlayStore:
        store: PlayStore
        if self.kind == "memory":
            store = self.memory
        elif self.kind == "file":
            store = FilePlayStore(self.root / "analytics", compact_every=7)
        else:
            store = RedisPlayStore(self.redis_url)
        self.opened.append(store)
        return store


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as port:
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture(params=["memory", "file", "redis"])
async def factory(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Factory]:
    monkeypatch.setattr(store_module, "REDIS_BATCH", 7)  # several pipelines per record
    made = Factory(request.param, tmp_path, redis_url)
    yield made
    for store in made.opened:
        await store.close()


def sid(factory: Factory, name: str) -> str:
    return factory.prefix + name


def plays_for(session_id: str, seed: int, count: int) -> list[Play]:
    rng = random.Random(seed)
    users = [None, "ann", "bob"]
    return [
        Play(session_id, NOW - rng.uniform(0, 90) * DAY_S, rng.choice(users)) for _ in range(count)
    ]


async def expected(plays: list[Play], session_id: str, now: float) -> PlaySummary:
    memory = MemoryPlayStore()
    await memory.record(plays)
    return await memory.summary(session_id, now)


def assert_same(got: PlaySummary, want: PlaySummary) -> None:
    assert got.session_id == want.session_id
    assert got.plays == want.plays
    assert got.score == pytest.approx(want.score, rel=1e-9)
    assert got.recent == want.recent


async def test_stores_agree_with_memory(factory: Factory) -> None:
    store = factory()
    a, b = sid(factory, "a"), sid(factory, "b")
    plays_a, plays_b = plays_for(a, 1, RECENT_PLAYS + 20), plays_for(b, 2, 3)
    assert await store.record(plays_a[:30]) == 30
    assert await store.record(plays_b) == 3
    assert await store.record(plays_a[30:]) == len(plays_a) - 30
    for session, plays in ((a, plays_a), (b, plays_b)):
        for now in (NOW, NOW + 30 * DAY_S):
            assert_same(await store.summary(session, now), await expected(plays, session, now))
    unknown = await store.summary(sid(factory, "nobody"), NOW)
    assert (unknown.plays, unknown.score, unknown.recent) == (0, 0.0, ())


async def test_backfilled_plays_decay(factory: Factory) -> None:
    store = factory()
    session = sid(factory, "old")
    # a play now, then a play backfilled 14 days (one half-life) earlier: 1 + 0.5
    await store.record([Play(session, NOW, "ann")])
    await store.record([Play(session, NOW - 14 * DAY_S, "bob")])
    summary = await store.summary(session, NOW)
    assert summary.plays == 2
    assert summary.score == pytest.approx(1.5)
    assert [p.user_id for p in summary.recent] == ["ann", "bob"]
    assert summary.plays_since(NOW - DAY_S) == 1
    # only backfills: two plays 28 days ago are worth 0.5 today
    lone = sid(factory, "lone")
    await store.record([Play(lone, NOW - 28 * DAY_S), Play(lone, NOW - 28 * DAY_S)])
    assert (await store.summary(lone, NOW)).score == pytest.approx(0.5)


async def test_restart_keeps_counts(factory: Factory) -> None:
    session = sid(factory, "kept")
    plays = plays_for(session, 3, 20)
    first = factory()
    await first.record(plays)
    await first.close()
    second = factory()
    assert_same(await second.summary(session, NOW), await expected(plays, session, NOW))
    await second.record([Play(session, NOW)])
    assert (await second.summary(session, NOW)).plays == 21


async def test_two_file_stores_see_each_other(tmp_path: Path) -> None:
    """The ingest command and the service may write the same files, one after the other."""
    one, two = FilePlayStore(tmp_path, compact_every=5), FilePlayStore(tmp_path, compact_every=5)
    await one.record(plays_for("s", 4, 4))
    await two.record(plays_for("s", 5, 4))  # compacts: one must notice the new generation
    await one.record(plays_for("s", 6, 1))
    everything = plays_for("s", 4, 4) + plays_for("s", 5, 4) + plays_for("s", 6, 1)
    want = await expected(everything, "s", NOW)
    assert_same(await two.summary("s", NOW), want)
    assert_same(await one.summary("s", NOW), want)
    assert sorted(p.name for p in tmp_path.glob("plays.*.jsonl")) == ["plays.1.jsonl"]


async def test_cut_journal_line_is_not_a_play(tmp_path: Path) -> None:
    store = FilePlayStore(tmp_path)
    await store.record([Play("s", NOW)])
    with open(tmp_path / "plays.0.jsonl", "ab") as journal:
        journal.write(b'{"s": "s", "at"')  # a crash mid-line
    assert (await FilePlayStore(tmp_path).summary("s", NOW)).plays == 1


def test_open_play_store_picks_by_redis_url(tmp_path: Path, redis_url: str) -> None:
    assert isinstance(open_play_store(load_settings(data_dir=tmp_path)), FilePlayStore)
    store = open_play_store(load_settings(data_dir=tmp_path, redis_url=redis_url))
    assert isinstance(store, RedisPlayStore)


async def test_cdn_ratio_in_redis_and_in_a_file(tmp_path: Path, redis_url: str) -> None:
    for settings in (
        load_settings(data_dir=tmp_path / "file"),
        load_settings(data_dir=tmp_path / "redis", redis_url=redis_url),
    ):
        assert await load_cdn_ratio(settings) is None
        await save_cdn_stats(settings, 9, 12, NOW)
        assert await load_cdn_ratio(settings) == 0.75
    assert not (tmp_path / "redis").exists()
