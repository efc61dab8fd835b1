"""LocalStore and the storage front door: round trips, atomic writes, listing, tiers, keys."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from sfu.config.settings import load_settings
from sfu.storage import (
    InvalidKey,
    LocalStore,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    Tier,
    cache_control_for,
    open_store,
    store_from_settings,
)
from sfu.storage.local import META_DIR, TMP_DIR


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "objects")


async def _keys(store: ObjectStore, prefix: str = "") -> list[str]:
    return [info.key async for info in store.list(prefix)]


async def test_round_trip_bytes_and_file(store: LocalStore, tmp_path: Path) -> None:
    info = await store.put("vod/sessions/s1/master.m3u8", b"#EXTM3U\n", content_type="a/b")
    assert info.size == 8 and info.content_type == "a/b" and info.tier is Tier.STANDARD
    assert info.etag == hashlib.md5(b"#EXTM3U\n").hexdigest()
    assert await store.get("vod/sessions/s1/master.m3u8") == b"#EXTM3U\n"
    source = tmp_path / "seg.ts"
    source.write_bytes(b"\x47" * 188 * 100)
    await store.put("vod/sessions/s1/720p/0.ts", source, content_type="video/mp2t")
    assert await store.get("vod/sessions/s1/720p/0.ts") == source.read_bytes()
    await store.put("vod/sessions/s1/master.m3u8", b"new", content_type="x/y")
    head = await store.head("vod/sessions/s1/master.m3u8")
    assert (head.size, head.content_type, head.cache_control) == (3, "x/y", None)


async def test_content_type_cache_control_and_tier_kept(store: LocalStore) -> None:
    key = "vod/sessions/s1/720p/3.ts"
    await store.put(
        key,
        b"ts",
        content_type="video/mp2t",
        cache_control=cache_control_for(key),
        tier=Tier.INFREQUENT_ACCESS,
    )
    head = await store.head(key)
    assert head.cache_control == "public, max-age=604800, immutable"
    assert head.tier is Tier.INFREQUENT_ACCESS
    assert await store.get_tier(key) is Tier.INFREQUENT_ACCESS
    for tier in (Tier.ARCHIVE, Tier.STANDARD, Tier.ARCHIVE, Tier.INFREQUENT_ACCESS):
        await store.set_tier(key, tier)
        assert await store.get_tier(key) is tier
    head = await store.head(key)
    assert (head.content_type, head.cache_control) == ("video/mp2t", cache_control_for(key))
    assert await store.get(key) == b"ts"


async def test_crash_leaves_old_object_and_no_partial_file(store: LocalStore) -> None:
    await store.put("a/b.ts", b"old", content_type="video/mp2t")
    # A writer that died after writing its temp file, before the rename:
    (store.root / TMP_DIR / "deadbeef.part").write_bytes(b"new but partial")
    assert await store.get("a/b.ts") == b"old"
    assert await _keys(store) == ["a/b.ts"]
    assert not any(
        p.name.endswith(".part") for p in store.root.rglob("*") if TMP_DIR not in p.parts
    )
    # A failed write (source vanished) leaves the old object and no temp file behind.
    with pytest.raises(StorageError):
        await store.put("a/b.ts", store.root / "missing", content_type="x/y")
    assert await store.get("a/b.ts") == b"old"
    assert [p.name for p in (store.root / TMP_DIR).iterdir()] == ["deadbeef.part"]


async def test_stale_temp_files_removed_on_open(store: LocalStore) -> None:
    stale = store.root / TMP_DIR / "old.part"
    stale.write_bytes(b"x")
    os.utime(stale, (0, 0))
    fresh = store.root / TMP_DIR / "fresh.part"
    fresh.write_bytes(b"x")
    LocalStore(store.root)
    assert not stale.exists() and fresh.exists()


async def test_listing_by_prefix_excludes_sidecars(store: LocalStore) -> None:
    for key in ("vod/sessions/s1/master.m3u8", "vod/sessions/s1/720p/0.ts", "vod/sessions/s2/x"):
        await store.put(key, b"1", content_type="a/b")
    await store.put("other", b"1", content_type="a/b")
    assert (store.root / META_DIR / "other.json").is_file()
    assert await _keys(store) == [
        "other",
        "vod/sessions/s1/720p/0.ts",
        "vod/sessions/s1/master.m3u8",
        "vod/sessions/s2/x",
    ]
    assert await _keys(store, "vod/sessions/s1/") == [
        "vod/sessions/s1/720p/0.ts",
        "vod/sessions/s1/master.m3u8",
    ]
    assert await _keys(store, "vod/sessions/s") == await _keys(store, "vod/")
    assert await _keys(store, "nothing/") == []
    listed = [info async for info in store.list("vod/sessions/s2/")]
    assert listed[0].content_type == "a/b" and listed[0].size == 1


async def test_listing_streams_pages_in_key_order(store: LocalStore) -> None:
    # More than one page (1,000): the listing goes on across pages, in order, nothing twice.
    keys = [f"vod/sessions/s{n % 7}/{n:04d}.ts" for n in range(1005)]
    for key in keys:
        await store.put(key, b"", content_type="video/mp2t")
    assert await _keys(store, "vod/") == sorted(keys)


async def test_delete_and_not_found(store: LocalStore) -> None:
    await store.put("x/y/z", b"1", content_type="a/b")
    assert await store.exists("x/y/z")
    await store.delete("x/y/z")
    await store.delete("x/y/z")  # deleting a missing object is fine
    assert not await store.exists("x/y/z")
    assert not (store.root / "x").exists()
    for call in (store.get, store.head, store.get_tier):
        with pytest.raises(ObjectNotFound) as caught:
            await call("x/y/z")
        assert caught.value.key == "x/y/z"
    with pytest.raises(ObjectNotFound):
        await store.set_tier("x/y/z", Tier.ARCHIVE)
    await store.put("dir/file", b"1", content_type="a/b")
    with pytest.raises(ObjectNotFound):
        await store.get("dir")


@pytest.mark.parametrize(
    "key",
    ["", "/abs", "a/../b", "..", "a/./b", "a//b", "a/", "a\\b", "x" * 1025, "é" * 513, ".meta/x"],
)
async def test_bad_keys_refused(store: LocalStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        await store.put(key, b"1", content_type="a/b")
    with pytest.raises(InvalidKey):
        await store.get(key)


async def test_longest_key_accepted(store: LocalStore) -> None:
    key = "/".join(["k" * 200] * 5) + "/" + "k" * 19  # 1024 bytes
    assert len(key.encode()) == 1024
    try:
        await store.put(key, b"1", content_type="a/b")
    except StorageError as exc:  # some filesystems cap path length; the key itself is valid
        assert "File name too long" in str(exc) or "too long" in str(exc)


def test_cache_control_for() -> None:
    assert cache_control_for("vod/sessions/s/master.m3u8") == "public, max-age=3600"
    assert cache_control_for("vod/sessions/s/720p/INDEX.M3U8") == "public, max-age=3600"
    assert cache_control_for("vod/sessions/s/720p/00001.ts") == "public, max-age=604800, immutable"
    assert cache_control_for("vod/sessions/s/metadata.json") is None


def test_tier_storage_class_mapping() -> None:
    assert [t.s3_storage_class for t in Tier] == ["STANDARD", "STANDARD_IA", "GLACIER"]
    assert Tier.from_s3_storage_class(None) is Tier.STANDARD
    assert Tier.from_s3_storage_class("STANDARD_IA") is Tier.INFREQUENT_ACCESS
    assert Tier.from_s3_storage_class("GLACIER") is Tier.ARCHIVE
    with pytest.raises(StorageError):
        Tier.from_s3_storage_class("ONEZONE_IA")


def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = open_store((tmp_path / "s").as_uri())
    assert isinstance(local, LocalStore) and local.root == (tmp_path / "s").resolve()
    monkeypatch.chdir(tmp_path)
    relative = open_store("file://./rel/dir")
    assert isinstance(relative, LocalStore) and relative.root == tmp_path / "rel" / "dir"
    from sfu.storage.s3 import S3Store

    s3 = open_store("s3://bucket/vod/x/", endpoint="http://127.0.0.1:9", region="us-east-1")
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix) == ("bucket", "vod/x")
    assert isinstance(s3, ObjectStore)
    for bad in ("http://x/y", "gs://b", "s3://", "s3:///prefix", "file://host/x", "/plain", ""):
        with pytest.raises(StorageError):
            open_store(bad)
    with pytest.raises(StorageError, match="prefix"):
        open_store("s3://bucket/a/../b", region="us-east-1")


def test_store_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SFU_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    default = store_from_settings(load_settings())
    assert isinstance(default, LocalStore)
    assert default.root == tmp_path / "data" / "objects"
    chosen = store_from_settings(load_settings(storage_url=(tmp_path / "o").as_uri()))
    assert isinstance(chosen, LocalStore) and chosen.root == tmp_path / "o"
    with pytest.raises(ValueError):
        load_settings(storage_url="ftp://x")
    with pytest.raises(ValueError):
        load_settings(s3_endpoint="127.0.0.1:9000")


def test_multipart_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SFU_S3_MULTIPART_THRESHOLD_MB / SFU_S3_MULTIPART_CHUNK_MB reach the S3 store; a part
    below S3's 5 MiB minimum (or a threshold past the 5 GiB single PUT) stops start-up."""
    from sfu.config.settings import SettingsError, load_settings
    from sfu.storage.base import MIB
    from sfu.storage.s3 import S3Store

    for name in list(os.environ):
        if name.startswith("SFU_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    defaults = load_settings()
    assert (defaults.storage.s3_multipart_threshold_mb, defaults.storage.s3_multipart_chunk_mb) == (
        64,
        16,
    )
    monkeypatch.setenv("SFU_STORAGE_URL", "s3://bucket/vod")
    monkeypatch.setenv("SFU_S3_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("SFU_S3_MULTIPART_THRESHOLD_MB", "100")
    monkeypatch.setenv("SFU_S3_MULTIPART_CHUNK_MB", "5")
    store = store_from_settings(load_settings())
    assert isinstance(store, S3Store)
    assert (store.multipart_threshold, store.multipart_chunksize) == (100 * MIB, 5 * MIB)
    for name, value in [
        ("SFU_S3_MULTIPART_CHUNK_MB", "4"),
        ("SFU_S3_MULTIPART_CHUNK_MB", "5121"),
        ("SFU_S3_MULTIPART_THRESHOLD_MB", "5121"),
        ("SFU_S3_MULTIPART_THRESHOLD_MB", "0"),
    ]:
        with monkeypatch.context() as bad:
            bad.setenv(name, value)
            with pytest.raises(SettingsError, match=name):
                load_settings()
    with pytest.raises(StorageError, match="5 MiB"):
        S3Store("bucket", endpoint_url="http://127.0.0.1:9", multipart_chunksize=5 * MIB - 1)
