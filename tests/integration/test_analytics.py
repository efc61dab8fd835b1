"""`sfu analytics serve` against a real local store: views, errors, the storage metrics."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest

from sfu.analytics.exporter import StorageExporter
from sfu.analytics.plays import DAY_S, MemoryPlayStore, Play
from sfu.analytics.store import FilePlayStore, save_cdn_stats
from sfu.api.analytics_server import PLAYS, create_analytics_app
from sfu.api.tokens import mint_participant_token, mint_service_token
from sfu.config.settings import Settings, load_settings
from sfu.storage import store_from_settings
from sfu.storage.base import ObjectStore, Tier
from sfu.storage.restores import state_path_for
from sfu.testing.process import free_tcp_port

Client = TestClient[web.Request, web.Application]
SECRET = "analytics-test-secret-0123456789abcdef"
GIB = 2**30


def settings_for(data_dir: Path, **extra: object) -> Settings:
    return load_settings(
        data_dir=data_dir,
        jwt_secret=SECRET,
        metrics_interval_s=0.5,
        price_standard_gb_month=0.0255,
        price_infrequent_gb_month=0.01,
        price_archive_gb_month=0.0026,
        storage_budget_month_usd=5.0,
        **extra,
    )


async def publish(store: ObjectStore, session_id: str, tier: Tier, segment_bytes: int) -> None:
    prefix = f"vod/sessions/{session_id}/"
    await store.put(prefix + "master.m3u8", b"#EXTM3U\n", content_type="x", tier=tier)
    await store.put(prefix + "720p/index.m3u8", b"#EXTM3U\n", content_type="x", tier=tier)
    await store.put(prefix + "720p/seg_0.ts", b"\0" * segment_bytes, content_type="x", tier=tier)


@pytest.fixture
async def settings(tmp_path: Path) -> Settings:
    settings = settings_for(tmp_path)
    store = store_from_settings(settings)
    await publish(store, "hot1", Tier.STANDARD, 1000)
    await publish(store, "cool1", Tier.INFREQUENT_ACCESS, 2000)
    await publish(store, "cold1", Tier.ARCHIVE, 4000)
    await store.put("vod/elsewhere.txt", b"not a session", content_type="x")
    await store.close()
    return settings


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_analytics_app(settings))) as test_client:
        yield test_client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


async def metrics_after_refresh(
    client: Client,
) -> dict[str, float]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = samples(await (await client.get("/metrics")).text())
        if found.get("sfu_storage_last_refresh_timestamp_seconds", 0.0) > 0:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError("no refresh within 10 s")


async def test_view_is_counted(client: Client) -> None:
    token = mint_service_token(SECRET)
    await metrics_after_refresh(client)  # the tiers of the sessions are known from here
    for expected in (1, 2):
        response = await client.post("/vod/views", json={"session_id": "hot1"}, headers=auth(token))
        assert response.status == 202
        assert await response.json() == {"session_id": "hot1", "plays": expected}
    backfill = {"session_id": "cold1", "user_id": "ann", "at": "2020-01-01T00:00:00Z"}
    response = await client.post("/vod/views", json=backfill, headers=auth(token))
    assert (response.status, (await response.json())["plays"]) == (202, 1)
    response = await client.post("/vod/views", json={"session_id": "gone"}, headers=auth(token))
    assert response.status == 202
    summary = await client.app[PLAYS].summary("cold1", time.time())
    assert summary.recent[0].user_id == "ann"
    assert summary.recent[0].at == 1577836800.0
    found = samples(await (await client.get("/metrics")).text())
    assert found['sfu_vod_plays_total{tier="Standard"}'] == 2
    assert found['sfu_vod_plays_total{tier="Archive"}'] == 1
    assert found['sfu_vod_plays_total{tier="unknown"}'] == 1


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1]",
        b"{}",
        b'{"session_id": "../x"}',
        b'{"session_id": 7}',
        b'{"session_id": "s", "user_id": 3}',
        b'{"session_id": "s", "at": "yesterday"}',
        b'{"session_id": "s", "at": "2026-11-03T10:00:00"}',
        b'{"session_id": "s", "at": 1780000000}',
        b'{"session_id": "s", "at": "9999-12-31T00:00:00Z"}',
    ],
)
async def test_bad_body_is_invalid_request(client: Client, body: bytes) -> None:
    response = await client.post("/vod/views", data=body, headers=auth(mint_service_token(SECRET)))
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "invalid_request" and error["message"]


async def test_body_too_large_is_invalid_request(client: Client) -> None:
    body = {"session_id": "hot1", "user_id": "x" * 20_000}
    response = await client.post("/vod/views", json=body, headers=auth(mint_service_token(SECRET)))
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_request"


async def test_tokens_as_the_rest_api(client: Client) -> None:
    body = {"session_id": "hot1"}
    response = await client.post("/vod/views", json=body)
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"
    response = await client.post("/vod/views", json=body, headers=auth("nope"))
    assert response.status == 401
    participant = mint_participant_token(SECRET, room_id="r", user_id="u", role="observer")
    response = await client.post("/vod/views", json=body, headers=auth(participant))
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden"
    response = await client.get("/vod/nothing")
    assert (response.status, (await response.json())["error"]["code"]) == (404, "not_found")
    assert (await (await client.get("/health")).json()) == {"status": "ok"}


async def test_metrics_show_storage_per_tier(settings: Settings, client: Client) -> None:
    found = await metrics_after_refresh(client)
    playlists = 2 * len(b"#EXTM3U\n")
    assert found['sfu_storage_bytes{tier="Standard"}'] == 1000 + playlists
    assert found['sfu_storage_bytes{tier="InfrequentAccess"}'] == 2000 + playlists
    assert found['sfu_storage_bytes{tier="Archive"}'] == 4000 + playlists
    assert found['sfu_storage_objects{tier="Standard"}'] == 3  # not vod/elsewhere.txt
    cost = found['sfu_storage_cost_usd_month{tier="InfrequentAccess"}']
    assert cost == pytest.approx((2000 + playlists) / GIB * 0.01)
    total = sum(v for k, v in found.items() if k.startswith("sfu_storage_cost_usd_month"))
    assert found["sfu_storage_forecast_usd_month"] == pytest.approx(total)
    assert found["sfu_storage_budget_usd_month"] == 5.0
    assert found["sfu_storage_restores_pending"] == 0
    assert found["sfu_storage_restores_failed_total"] == 0
    assert "sfu_cdn_hit_ratio" not in found  # no log with a cache status ingested yet
    assert "sfu_rooms" not in " ".join(found)  # the SFU's own metrics are not mixed in
    await save_cdn_stats(settings, 3, 4, time.time())
    await asyncio.sleep(1.2)  # a refresh or two
    found = samples(await (await client.get("/metrics")).text())
    assert found["sfu_cdn_hit_ratio"] == 0.75


async def test_hot_unread_objects(settings: Settings) -> None:
    """Standard objects past the IA age of sessions not played in the hot window."""
    store = store_from_settings(settings)
    plays = MemoryPlayStore()
    exporter = StorageExporter(settings)
    later = time.time() + (settings.lifecycle.ia_after_days + 1) * DAY_S
    await exporter.refresh(store, plays, now=later)
    assert exporter.snapshot.hot_unread == 3  # hot1's three objects
    await plays.record([Play("hot1", later - DAY_S)])
    await exporter.refresh(store, plays, now=later)
    assert exporter.snapshot.hot_unread == 0
    assert exporter.tier_of("cold1") is Tier.ARCHIVE
    await store.close()


async def test_an_upload_during_a_refresh_is_counted_once(tmp_path: Path) -> None:
    """An object written after a refresh began (but listed by it) is the next refresh's: the
    upload histogram sees each object once, however the listing and the writes interleave."""
    settings = load_settings(data_dir=tmp_path / "alone")
    store = store_from_settings(settings)
    exporter = StorageExporter(settings)
    plays = MemoryPlayStore()
    info = await store.put("vod/sessions/mid/720p/seg_0.ts", b"\0" * 10, content_type="x")
    written = info.last_modified.timestamp()

    def uploads() -> float:
        found = samples(generate_latest(exporter.registry).decode())
        return found.get("sfu_storage_upload_bytes_count", 0.0)

    await exporter.refresh(store, plays, now=written - 10)  # the first: the catalogue as found
    await exporter.refresh(store, plays, now=written - 5)  # began before the write
    assert uploads() == 0
    await exporter.refresh(store, plays, now=written + 5)
    await exporter.refresh(store, plays, now=written + 10)
    assert uploads() == 1
    await store.close()


async def test_serve_command(settings: Settings, tmp_path: Path) -> None:
    """`python -m sfu analytics serve` listens on SFU_ANALYTICS_PORT and keeps the plays."""
    port = free_tcp_port()
    env = {
        **os.environ,
        "SFU_DATA_DIR": str(tmp_path),
        "SFU_JWT_SECRET": SECRET,
        "SFU_ANALYTICS_PORT": str(port),
        "SFU_HTTP_HOST": "127.0.0.1",
        "METRICS_INTERVAL": "0.5",
    }
    env.pop("REDIS_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "sfu", "analytics", "serve"], env=env)
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                try:
                    async with http.get(base + "/health") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "the service did not start"
                await asyncio.sleep(0.1)
            view = {"session_id": "hot1"}
            headers = auth(mint_service_token(SECRET))
            async with http.post(base + "/vod/views", json=view, headers=headers) as response:
                assert response.status == 202
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    summary = await FilePlayStore(tmp_path / "analytics").summary("hot1", time.time())
    assert summary.plays == 1


async def test_store_down_is_503(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, redis_url=f"redis://127.0.0.1:{free_tcp_port()}/0")
    async with TestClient(TestServer(create_analytics_app(settings))) as client:
        headers = auth(mint_service_token(SECRET))
        response = await client.post("/vod/views", json={"session_id": "s"}, headers=headers)
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "no_capacity"


async def test_restores_from_the_tracker(settings: Settings, client: Client) -> None:
    """The restore figures come from the tracker's state (sfu/storage/restores.py); a played
    archived session asks the tracker to restore it, a played Standard one does not."""
    state = state_path_for(settings.data_dir)
    state.parent.mkdir(parents=True, exist_ok=True)
    entries = {f"p{i}": {"state": "pending"} for i in range(2)} | {"f0": {"state": "failed"}}
    state.write_text(json.dumps(entries), encoding="utf-8")
    await asyncio.sleep(1.2)  # a refresh reads the state
    found = samples(await (await client.get("/metrics")).text())
    assert (found["sfu_storage_restores_pending"], found["sfu_storage_restores_failed_total"]) == (
        2,
        1,
    )
    headers = auth(mint_service_token(SECRET))
    for session_id in ("cold1", "hot1"):
        response = await client.post("/vod/views", json={"session_id": session_id}, headers=headers)
        assert response.status == 202

    async def asked() -> bool:
        known = json.loads(state.read_text(encoding="utf-8"))
        return "cold1" in known

    for _ in range(50):
        if await asked():
            break
        await asyncio.sleep(0.1)
    known = json.loads(state.read_text(encoding="utf-8"))
    assert "cold1" in known and "hot1" not in known


def test_ingest_logs_command(tmp_path: Path) -> None:
    """`sfu lifecycle ingest-logs` reaches sfu.analytics.ingest and records in the data folder."""
    log = tmp_path / "access.log.gz"
    line = (
        '203.0.113.7 - - [03/Nov/2026:10:00:00 +0000] "GET /vod/sessions/SE_1/master.m3u8 '
        'HTTP/1.1" 200 512 "-" "hls.js" HIT\n'
    )
    log.write_bytes(gzip.compress(line.encode()))
    env = {**os.environ, "SFU_DATA_DIR": str(tmp_path / "data")}
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "sfu", "lifecycle", "ingest-logs", str(log)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "plays recorded: 1" in done.stdout
    assert "CDN hit ratio: 1.000 (1/1)" in done.stdout
    summary = asyncio.run(
        FilePlayStore(tmp_path / "data" / "analytics").summary("SE_1", time.time())
    )
    assert summary.plays == 1


async def test_uploads_since_the_last_refresh_feed_the_size_histogram(
    settings: Settings, client: Client
) -> None:
    """What appears between two refreshes is observed once; the catalogue that was there at
    the first refresh is not (the large-upload alert counts above the 64 MiB bucket)."""
    first = await metrics_after_refresh(client)
    assert first.get("sfu_storage_upload_bytes_count", 0.0) == 0.0
    store = store_from_settings(settings)
    await store.put("vod/sessions/new1/720p/seg_0.ts", b"\0" * 1000, content_type="x")
    await store.put("vod/sessions/new1/720p/big.ts", b"\0" * (65 * 2**20), content_type="x")
    await store.close()
    deadline = time.monotonic() + 10
    found = first
    while time.monotonic() < deadline and found.get("sfu_storage_upload_bytes_count", 0) < 2:
        await asyncio.sleep(0.2)
        found = samples(await (await client.get("/metrics")).text())
    assert found["sfu_storage_upload_bytes_count"] == 2
    (below,) = [
        v
        for k, v in found.items()
        if k.startswith("sfu_storage_upload_bytes_bucket") and "6.7108864e+07" in k
    ]
    assert below == 1
    await asyncio.sleep(1.2)  # a later refresh does not count them again
    again = samples(await (await client.get("/metrics")).text())
    assert again["sfu_storage_upload_bytes_count"] == 2
    assert again["sfu_storage_restores_total"] == 0
