"""S3Store against a real S3-compatible server (moto's standalone server) on 127.0.0.1,
and the same behaviour through LocalStore: one test body, both stores."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

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
from sfu.testing.moto import moto_server
from sfu.testing.process import free_tcp_port

if TYPE_CHECKING:
    from sfu.storage.s3 import S3Store

BUCKET = "cotept-vod"
START_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto's standalone S3 server as a subprocess on loopback, answering before we go on."""
    with moto_server() as endpoint:
        yield endpoint


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


async def test_listing_is_in_s3_key_order(store: ObjectStore) -> None:
    # '-' and '.' sort before '/', '0' after it: a folder's keys are not listed as a block
    # before its neighbours, and both stores must agree with S3's byte order.
    keys = ["v/a/b", "v/a-c", "v/a.d", "v/a/c/d", "v/ab", "v/a0", "v/\u00e9", "v/a/b0", "v/A"]
    for key in keys:
        await store.put(key, b"1", content_type="a/b")
    expected = sorted(keys, key=lambda k: k.encode())
    assert [info.key async for info in store.list("v/")] == expected
    assert [info.key async for info in store.list("v/a")] == [
        k for k in expected if k.startswith("v/a")
    ]


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
        endpoint_url=f"http://127.0.0.1:{free_tcp_port()}",
        connect_timeout_s=1,
        max_attempts=1,
    )
    with pytest.raises(StorageError):
        await store.get("k")
    await store.close()


def test_local_default_type(tmp_path: Path) -> None:
    assert isinstance(open_store(tmp_path.as_uri()), LocalStore)


# --- multipart upload ----------------------------------------------------------------------------

MIB = 1024 * 1024


def _s3_store(bucket: str, endpoint: str, prefix: str, **kwargs: int) -> S3Store:
    """An S3Store built directly, to set sizes and attempts the URL form does not take."""
    from sfu.storage.s3 import S3Store

    return S3Store(bucket, prefix, endpoint_url=endpoint, region="us-east-1", **kwargs)


@pytest.mark.parametrize("source", ["bytes", "file"])
async def test_multipart_upload_above_threshold(
    bucket: str, moto_endpoint: str, tmp_path: Path, source: str
) -> None:
    """A 5 MiB threshold and 5 MiB parts: an 11 MiB object goes up as 3 parts, reads back
    byte-identical, with the content type, cache control and tier of a single PUT."""
    store = _s3_store(
        bucket,
        moto_endpoint,
        f"mp-{source}",
        multipart_threshold=5 * MIB,
        multipart_chunksize=5 * MIB,
    )
    data = os.urandom(11 * MIB + 12345)
    key = "vod/sessions/s1/720p/big.ts"
    body: bytes | Path = data
    if source == "file":
        body = tmp_path / "big.ts"
        body.write_bytes(data)
    info = await store.put(
        key,
        body,
        content_type="video/mp2t",
        cache_control=cache_control_for(key),
        tier=Tier.INFREQUENT_ACCESS,
    )
    # S3's multipart ETag is md5(concatenated part md5s) + "-<part count>".
    part_md5s = [hashlib.md5(data[i : i + 5 * MIB]).digest() for i in range(0, len(data), 5 * MIB)]
    assert len(part_md5s) == 3
    assert info.etag == f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-3"
    assert info.size == len(data)
    assert await store.get(key) == data
    head = await store.head(key)
    assert head.content_type == "video/mp2t"
    assert head.cache_control == "public, max-age=604800, immutable"
    assert head.tier is Tier.INFREQUENT_ACCESS
    # Below the threshold the same store still makes one PUT (a plain MD5 ETag).
    small = os.urandom(5 * MIB - 1)
    small_info = await store.put("small.ts", small, content_type="video/mp2t")
    assert small_info.etag == hashlib.md5(small).hexdigest()
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    for name in (key, "small.ts"):
        await store.delete(name)
    await store.close()


async def test_failed_multipart_upload_is_aborted(bucket: str, moto_endpoint: str) -> None:
    """The connection to the server fails for every attempt at part 2 (botocore's before-send
    hook raises the error a dead link raises, so the client's retry loop runs and gives up):
    put raises StorageError, the upload is aborted on the server (none left in progress), the
    object that was there before is untouched and nothing else appears."""
    from botocore.awsrequest import AWSPreparedRequest
    from botocore.exceptions import EndpointConnectionError

    store = _s3_store(
        bucket,
        moto_endpoint,
        "mp-fail",
        multipart_threshold=5 * MIB,
        multipart_chunksize=5 * MIB,
        max_attempts=2,
    )
    old = b"the published segment"
    await store.put("a/seg.ts", old, content_type="video/mp2t")
    sent: list[int] = []

    def cut_part_two(request: AWSPreparedRequest, **_: Any) -> None:
        query = parse_qs(urlsplit(request.url).query)
        part = int(query["partNumber"][0])
        sent.append(part)
        if part == 2:
            raise EndpointConnectionError(endpoint_url=moto_endpoint)

    store._client.meta.events.register("before-send.s3.UploadPart", cut_part_two)
    with pytest.raises(StorageError) as caught:
        await store.put("a/seg.ts", os.urandom(11 * MIB), content_type="video/mp2t")
    assert not isinstance(caught.value, ObjectNotFound)
    assert sent.count(2) >= 2, f"part 2 was not retried: {sent}"
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert await store.get("a/seg.ts") == old
    assert [i.key async for i in store.list()] == ["a/seg.ts"]
    # The same store works again once the link does.
    store._client.meta.events.unregister("before-send.s3.UploadPart", cut_part_two)
    data = os.urandom(11 * MIB)
    info = await store.put("a/seg.ts", data, content_type="video/mp2t")
    assert info.etag.endswith("-3") and await store.get("a/seg.ts") == data
    await store.delete("a/seg.ts")
    await store.close()


def test_open_store_passes_multipart_sizes(aws_env: None) -> None:
    from sfu.storage.s3 import S3Store

    store = open_store(
        "s3://b/p", endpoint="http://127.0.0.1:9", multipart_threshold_mb=7, multipart_chunk_mb=6
    )
    assert isinstance(store, S3Store)
    assert (store.multipart_threshold, store.multipart_chunksize) == (7 * MIB, 6 * MIB)
    with pytest.raises(StorageError, match="5 MiB"):
        open_store("s3://b/p", endpoint="http://127.0.0.1:9", multipart_chunk_mb=4)


async def test_set_tier_above_threshold_copies_in_parts(bucket: str, moto_endpoint: str) -> None:
    """From the multipart threshold on, set_tier is a multipart copy (CopyObject stops at
    5 GiB): the object reads back byte-identical in its new tier, with its content type, cache
    control and user metadata; below the threshold it stays one CopyObject."""
    store = _s3_store(
        bucket,
        moto_endpoint,
        "tier-parts",
        multipart_threshold=5 * MIB,
        multipart_chunksize=5 * MIB,
    )
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    data = os.urandom(11 * MIB + 777)
    key = "vod/sessions/s1/source.mkv"
    client.put_object(  # one PUT (a plain MD5 ETag), with metadata a copy must keep
        Bucket=bucket,
        Key=f"tier-parts/{key}",
        Body=data,
        ContentType="video/x-matroska",
        CacheControl="private, max-age=60",
        Metadata={"session": "s1"},
    )
    assert (await store.head(key)).etag == hashlib.md5(data).hexdigest()
    await store.set_tier(key, Tier.INFREQUENT_ACCESS)
    head = await store.head(key)
    assert head.tier is Tier.INFREQUENT_ACCESS
    assert head.etag.endswith("-3")  # three parts copied server side
    assert head.size == len(data)
    assert head.content_type == "video/x-matroska"
    assert head.cache_control == "private, max-age=60"
    raw = client.head_object(Bucket=bucket, Key=f"tier-parts/{key}")
    assert raw["Metadata"] == {"session": "s1"}
    assert await store.get(key) == data
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    small = os.urandom(MIB)
    await store.put("small.ts", small, content_type="video/mp2t")
    await store.set_tier("small.ts", Tier.ARCHIVE)
    small_head = await store.head("small.ts")
    assert small_head.tier is Tier.ARCHIVE and small_head.etag == hashlib.md5(small).hexdigest()
    for name in (key, "small.ts"):
        await store.delete(name)
    await store.close()
