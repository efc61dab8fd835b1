"""S3Store against a real S3-compatible server (moto's standalone server) on 127.0.0.1,
and the same behaviour through LocalStore: one test body, both stores."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import boto3
import pytest

from sfu.storage import (
    LocalStore,
    ObjectArchived,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    Tier,
    cache_control_for,
    open_store,
)

BUCKET = "cotept-vod"
START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto's standalone S3 server as a subprocess on loopback, answering before we go on."""
    port = _free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                err = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"moto server exited with {process.returncode}: {err}")
            try:
                with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto server not answering on {endpoint}") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def bucket(moto_endpoint: str, aws_env: None) -> str:
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)  # idempotent in us-east-1
    return BUCKET


@pytest.fixture(params=["local", "s3"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, moto_endpoint: str, aws_env: None
) -> AsyncIterator[ObjectStore]:
    if request.param == "local":
        opened = open_store(tmp_path.as_uri())
    else:
        request.getfixturevalue("bucket")
        prefix = f"t/{request.node.name.replace('[', '-').rstrip(']')}"
        opened = open_store(f"s3://{BUCKET}/{prefix}", endpoint=moto_endpoint)
    yield opened
    async for info in opened.list():
        await opened.delete(info.key)
    await opened.close()


async def test_put_get_head_list_delete(store: ObjectStore) -> None:
    key = "vod/sessions/s1/master.m3u8"
    info = await store.put(
        key,
        b"#EXTM3U\n",
        content_type="application/vnd.apple.mpegurl",
        cache_control=cache_control_for(key),
    )
    assert info.size == 8 and info.key == key and info.etag
    assert await store.get(key) == b"#EXTM3U\n"
    head = await store.head(key)
    assert head.content_type == "application/vnd.apple.mpegurl"
    assert head.cache_control == "public, max-age=3600"
    assert head.tier is Tier.STANDARD and head.etag == info.etag
    await store.put("vod/sessions/s1/720p/0.ts", b"ts", content_type="video/mp2t")
    await store.put("vod/sessions/s2/master.m3u8", b"m", content_type="x/y")
    listed = [i async for i in store.list("vod/sessions/s1/")]
    assert [i.key for i in listed] == ["vod/sessions/s1/720p/0.ts", key]
    assert [i.size for i in listed] == [2, 8]
    assert all(i.tier is Tier.STANDARD for i in listed)
    assert len([i async for i in store.list()]) == 3
    await store.delete(key)
    await store.delete(key)
    assert not await store.exists(key)
    assert await store.exists("vod/sessions/s2/master.m3u8")


async def test_put_from_file_large(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(8 * 1024 * 1024)
    source = tmp_path / "big.ts"
    source.write_bytes(data)
    info = await store.put("big/segment.ts", source, content_type="video/mp2t")
    assert info.size == len(data)
    assert await store.get("big/segment.ts") == data


async def test_tiers(store: ObjectStore) -> None:
    key = "vod/sessions/s1/720p/1.ts"
    await store.put(
        key,
        b"seg",
        content_type="video/mp2t",
        cache_control=cache_control_for(key),
        tier=Tier.INFREQUENT_ACCESS,
    )
    assert await store.get_tier(key) is Tier.INFREQUENT_ACCESS
    await store.set_tier(key, Tier.STANDARD)
    assert await store.get_tier(key) is Tier.STANDARD
    await store.set_tier(key, Tier.STANDARD)  # no change: not an error
    await store.set_tier(key, Tier.ARCHIVE)
    head = await store.head(key)
    assert head.tier is Tier.ARCHIVE
    assert head.content_type == "video/mp2t"
    assert head.cache_control == "public, max-age=604800, immutable"
    assert [i.tier async for i in store.list("vod/")] == [Tier.ARCHIVE]


async def test_missing_key(store: ObjectStore) -> None:
    for call in (store.get, store.head, store.get_tier):
        with pytest.raises(ObjectNotFound):
            await call("no/such/key")
    assert not await store.exists("no/such/key")


async def test_archived_object_unreadable_on_s3(
    bucket: str, moto_endpoint: str, aws_env: None
) -> None:
    store = open_store(f"s3://{bucket}/archived", endpoint=moto_endpoint)
    await store.put("a.ts", b"x", content_type="video/mp2t", tier=Tier.ARCHIVE)
    with pytest.raises(ObjectArchived):
        await store.get("a.ts")
    await store.delete("a.ts")
    await store.close()


async def test_missing_bucket_is_storage_error(moto_endpoint: str, aws_env: None) -> None:
    store = open_store("s3://no-such-bucket/p", endpoint=moto_endpoint)
    for call in (store.get, store.head, store.exists):
        with pytest.raises(StorageError) as caught:
            await call("k")
        assert not isinstance(caught.value, ObjectNotFound)
    with pytest.raises(StorageError, match="does not exist"):
        await store.put("k", b"1", content_type="a/b")
    with pytest.raises(StorageError):
        _ = [i async for i in store.list()]
    await store.close()


async def test_unreachable_endpoint_is_storage_error(aws_env: None) -> None:
    from sfu.storage.s3 import S3Store

    store = S3Store(
        BUCKET,
        endpoint_url=f"http://127.0.0.1:{_free_port()}",
        connect_timeout_s=1,
        max_attempts=1,
    )
    with pytest.raises(StorageError):
        await store.get("k")
    await store.close()


def test_local_default_type(tmp_path: Path) -> None:
    assert isinstance(open_store(tmp_path.as_uri()), LocalStore)
