"""`sfu lifecycle run | explain | restore` on the local store and on moto's S3 server."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from sfu.analytics.plays import MemoryPlayStore, Play
from sfu.config.settings import Settings, load_settings
from sfu.lifecycle import orphans, run_command
from sfu.lifecycle.commands import add_parsers
from sfu.lifecycle.engine import LifecycleRun
from sfu.lifecycle.summary import LastRun
from sfu.storage import ObjectNotFound, ObjectStore, Tier, store_from_settings
from sfu.storage.base import RestoreState
from sfu.testing.moto import moto_server
from tests.support.lifecycle import publish_fake, session_keys

BUCKET = "cotept-lifecycle"
PUBLISHED = datetime(2026, 1, 1, 12, tzinfo=UTC)


class Killed(Exception):
    """A kill, simulated in the middle of a run."""


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    if request.param == "local":
        return load_settings(data_dir=tmp_path)
    endpoint = request.getfixturevalue("moto_endpoint")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    prefix = request.node.name.replace("[", "-").rstrip("]")
    return load_settings(
        data_dir=tmp_path, storage_url=f"s3://{BUCKET}/{prefix}", s3_endpoint=endpoint
    )


def cli(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="sfu")
    add_parsers(parser.add_subparsers(dest="command"))
    return run_command.main(parser.parse_args(["lifecycle", *argv]), settings)


def at(days: int) -> str:
    return (PUBLISHED + timedelta(days=days)).isoformat()


async def _with_store(settings: Settings, work: object) -> object:
    store = store_from_settings(settings)
    try:
        return await work(store)  # type: ignore[operator]
    finally:
        await store.close()


def with_store(settings: Settings, work: object) -> object:
    return asyncio.run(_with_store(settings, work))


def publish(settings: Settings, *session_ids: str) -> None:
    async def work(store: ObjectStore) -> None:
        for sid in session_ids:
            await publish_fake(store, sid, PUBLISHED.isoformat(), mentee=f"mentee-{sid}")

    with_store(settings, work)


def tiers(settings: Settings, session_id: str) -> dict[str, Tier]:
    async def work(store: ObjectStore) -> dict[str, Tier]:
        return {i.key: i.tier async for i in store.list(f"vod/sessions/{session_id}/")}

    found = with_store(settings, work)
    assert isinstance(found, dict)
    return found


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sfu.lifecycle.audit"]


def test_session_moves_at_31_366_and_is_gone_at_2556(
    settings: Settings, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="sfu.lifecycle.audit")
    publish(settings, "s1")
    keys = session_keys("s1")
    assert cli(settings, "run", "--now", at(30), "--no-progress") == 0
    assert set(tiers(settings, "s1").values()) == {Tier.STANDARD} and not audit_lines(caplog)
    assert cli(settings, "run", "--dry-run", "--now", at(31), "--json") == 0
    dry = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert dry["changed"] == len(keys) and set(tiers(settings, "s1").values()) == {Tier.STANDARD}
    assert cli(settings, "run", "--now", at(31), "--json", "--no-progress") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["changed"] == len(keys) and summary["sessions_by_target"] == {
        "InfrequentAccess": 1
    }
    assert set(tiers(settings, "s1").values()) == {Tier.INFREQUENT_ACCESS}
    lines = audit_lines(caplog)
    assert len(lines) == len(keys) and "key=vod/sessions/s1/master.m3u8" in lines[-1]
    assert "from=Standard to=InfrequentAccess" in lines[0]
    assert cli(settings, "run", "--now", at(32), "--no-progress") == 0
    assert len(audit_lines(caplog)) == len(keys)  # nothing to do twice
    last = LastRun.load(settings.data_dir / "lifecycle" / "last_run.json")
    assert last is not None and (last.sessions, last.objects) == (1, len(keys))  # the bar's total
    assert cli(settings, "run", "--now", at(366), "--no-progress") == 0
    assert set(tiers(settings, "s1").values()) == {Tier.ARCHIVE}
    assert cli(settings, "run", "--now", at(2556), "--no-progress") == 0
    assert tiers(settings, "s1") == {}
    deletes = [line for line in audit_lines(caplog) if line.startswith("delete ")]
    assert len(deletes) == len(keys) and "master.m3u8" in deletes[0]
    assert "metadata.json" in deletes[-1]


def test_popular_session_stays_hot_and_explain_says_why(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(settings, "hot", "cold", "kept")
    plays = MemoryPlayStore()
    now = PUBLISHED + timedelta(days=400)
    day = 86_400.0
    asyncio.run(plays.record(Play("hot", now.timestamp() - i * day) for i in range(1, 4)))
    asyncio.run(plays.record([Play("kept", now.timestamp() - 2 * day, "mentee-kept")]))
    monkeypatch.setattr(run_command, "open_plays", lambda _settings: plays)
    assert cli(settings, "run", "--now", now.isoformat(), "--no-progress") == 0
    assert set(tiers(settings, "hot").values()) == {Tier.STANDARD}
    assert set(tiers(settings, "kept").values()) == {Tier.INFREQUENT_ACCESS}
    assert set(tiers(settings, "cold").values()) == {Tier.ARCHIVE}
    capsys.readouterr()
    assert cli(settings, "explain", "kept", "--now", now.isoformat(), "--json") == 0
    explained = json.loads(capsys.readouterr().out)
    assert explained["decision"]["mentee_score"] == 1.0
    assert explained["decision"]["target"] == "InfrequentAccess"
    assert explained["published_from"] in ("metadata.ended_at", "state (metadata.ended_at)")
    assert cli(settings, "explain", "hot", "--now", now.isoformat()) == 0
    assert "3 in the hot window (hot: True)" in capsys.readouterr().out
    assert cli(settings, "explain", "nope") == 1
    # "cold" becomes popular: its restore is asked, and once readable it returns to Standard.
    later = now + timedelta(days=1)
    asyncio.run(plays.record(Play("cold", later.timestamp() - i * day) for i in range(3)))
    assert cli(settings, "run", "--now", later.isoformat(), "--json", "--no-progress") == 0
    assert json.loads(capsys.readouterr().out)["restores_asked"] == 1
    assert cli(settings, "run", "--now", later.isoformat(), "--no-progress") == 0
    assert set(tiers(settings, "cold").values()) == {Tier.STANDARD}


def test_killed_run_resumes_without_double_work(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sfu.lifecycle.audit")
    publish(settings, "k1", "k2", "k3")
    changed = [0]

    def kill_after_10(_key: str) -> None:
        if changed[0] == 10:
            raise Killed  # the process dies here: nothing after this key is done
        changed[0] += 1

    async def run(store: ObjectStore, hook: object) -> None:
        engine = LifecycleRun(
            store,
            MemoryPlayStore(),
            settings.lifecycle,
            settings.data_dir / "lifecycle",
            before_change=hook,  # type: ignore[arg-type]
        )
        await engine.run(PUBLISHED + timedelta(days=31))

    with pytest.raises(Killed):
        with_store(settings, lambda store: run(store, kill_after_10))
    first = audit_lines(caplog)
    assert 0 < len(first) <= 10
    with_store(settings, lambda store: run(store, None))
    lines = audit_lines(caplog)
    keys = [k for sid in ("k1", "k2", "k3") for k in session_keys(sid)]
    assert sorted(line.split(" key=")[1].split(" ")[0] for line in lines) == sorted(keys)
    for sid in ("k1", "k2", "k3"):
        assert set(tiers(settings, sid).values()) == {Tier.INFREQUENT_ACCESS}


def test_restore_of_an_archived_session(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(settings, "r1")
    assert cli(settings, "run", "--now", at(400), "--no-progress") == 0
    assert set(tiers(settings, "r1").values()) == {Tier.ARCHIVE}

    async def states(store: ObjectStore) -> set[RestoreState]:
        return {await store.restore_state(k) for k in session_keys("r1")}

    assert with_store(settings, states) == {RestoreState.ARCHIVED}
    capsys.readouterr()
    assert cli(settings, "restore", "r1", "--wait") == 0
    assert "restore done" in capsys.readouterr().out
    assert with_store(settings, states) == {RestoreState.RESTORED}

    async def read(store: ObjectStore) -> bytes:
        return await store.get("vod/sessions/r1/master.m3u8")

    assert with_store(settings, read) == b"#EXTM3U\n720p/index.m3u8\n360p/index.m3u8\n"
    restores = json.loads((settings.data_dir / "lifecycle" / "restores.json").read_text())
    assert restores["r1"]["state"] == "done"
    assert cli(settings, "restore", "missing") == 1

    async def gone(store: ObjectStore) -> None:
        with pytest.raises(ObjectNotFound):
            await store.head("vod/sessions/missing/master.m3u8")

    with_store(settings, gone)


def test_orphans_reported_then_deleted_live_work_untouched(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger="sfu.lifecycle.audit")
    publish(settings, "ok", "broken")

    async def work(store: ObjectStore) -> None:
        await publish_fake(store, "nomaster", PUBLISHED.isoformat(), master=False)
        await publish_fake(store, "nometa", PUBLISHED.isoformat(), metadata=False)
        await publish_fake(store, "busy", PUBLISHED.isoformat(), master=False)
        await store.delete("vod/sessions/broken/720p/0.ts")

    with_store(settings, work)
    capsys.readouterr()
    assert cli_orphans(settings, "--json") == 0
    assert json.loads(capsys.readouterr().out)["orphans"] == []  # all younger than an hour
    monkeypatch.setattr(orphans, "PUBLISHING_GRACE_S", 0.0)
    monkeypatch.setattr(orphans, "STALE_UPLOAD_S", -3600.0)  # every staged upload is stale
    old = time.time() - 30 * 86_400
    recordings = settings.recording.root
    for name in ("old", "live", "queued", "busy"):
        (recordings / name).mkdir(parents=True)
        (recordings / name / "manifest.json").write_text("{}")
        os.utime(recordings / name / "manifest.json", (old, old))
    (recordings / "live" / "heartbeat").write_text("")
    for name in ("queued", "busy"):
        (recordings / name / "queued.json").write_text("{}")
    if settings.storage.url is None:
        staged = settings.data_dir / "objects" / ".tmp" / "x.part"
        staged.write_bytes(b"x")
        os.utime(staged, (time.time() - 1800, time.time() - 1800))
    else:
        bucket, prefix = settings.storage.url[len("s3://") :].split("/", 1)
        client = boto3.client("s3", endpoint_url=settings.storage.s3_endpoint)
        client.create_multipart_upload(Bucket=bucket, Key=f"{prefix}/vod/big.ts")

    assert cli_orphans(settings, "--json") == 0
    found = {
        (o["kind"], Path(o["target"]).name) for o in json.loads(capsys.readouterr().out)["orphans"]
    }
    expected = {
        ("no_manifest", "nomaster"),
        ("no_metadata", "nometa"),
        ("missing_segments", "broken"),
        ("recording", "old"),
        ("stale_upload", "x.part" if settings.storage.url is None else "big.ts"),
    }
    assert found == expected and not audit_lines(caplog)
    assert cli_orphans(settings, "--apply") == 0
    assert len(audit_lines(caplog)) == len(expected)
    assert cli_orphans(settings, "--json") == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["orphans"] == []
    for sid in ("nomaster", "nometa", "broken"):
        assert tiers(settings, sid) == {}
    assert len(tiers(settings, "ok")) == 7 and len(tiers(settings, "busy")) == 6
    assert sorted(p.name for p in recordings.iterdir()) == ["busy", "live", "queued"]


def cli_orphans(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="sfu")
    add_parsers(parser.add_subparsers(dest="command"))
    return orphans.main(parser.parse_args(["lifecycle", "orphans", *argv]), settings)


def test_big_objects_change_tier_too(settings: Settings) -> None:
    """At or over the S3 multipart threshold a tier change is a multipart copy (the way
    objects over 5 GiB move); content type and cache control survive it."""
    if settings.storage.url is not None:
        settings = load_settings(
            data_dir=settings.data_dir,
            storage_url=settings.storage.url,
            s3_endpoint=settings.storage.s3_endpoint,
            s3_multipart_threshold_mb=5,
            s3_multipart_chunk_mb=5,
        )
    big = b"\x47" * (6 * 1024 * 1024)

    async def work(store: ObjectStore) -> None:
        await publish_fake(store, "big", PUBLISHED.isoformat())
        key = "vod/sessions/big/720p/2.ts"
        await store.put(key, big, content_type="video/mp2t", cache_control="public, immutable")

    with_store(settings, work)
    assert cli(settings, "run", "--now", at(40), "--no-progress") == 0
    assert set(tiers(settings, "big").values()) == {Tier.INFREQUENT_ACCESS}

    async def head(store: ObjectStore) -> tuple[int, str | None, str | None]:
        info = await store.head("vod/sessions/big/720p/2.ts")
        return info.size, info.content_type, info.cache_control

    assert with_store(settings, head) == (len(big), "video/mp2t", "public, immutable")
