"""Upload a rendered HLS directory to object storage under `vod/sessions/{session_id}/`.

Order: segments, then rendition playlists and metadata.json, `master.m3u8` very last, so a
player that finds the master finds everything it names. Publishing is idempotent: an object
already holding the same bytes is left alone (its mtime/ETag do not change), and a segment is
never replaced once published: a different segment under the same key is an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from sfu.storage import ObjectNotFound, ObjectStore, StorageError, cache_control_for

logger = logging.getLogger(__name__)

CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".json": "application/json",
}
_MD5 = re.compile(r"^[0-9a-f]{32}$")


class SegmentConflict(StorageError):
    """A published segment differs from the one just rendered; it is never overwritten."""


@dataclass(frozen=True, slots=True)
class PublishResult:
    uploaded: tuple[str, ...]
    unchanged: tuple[str, ...]


def vod_prefix(session_id: str) -> str:
    return f"vod/sessions/{session_id}/"


def _order(rel: str) -> tuple[int, str]:
    if rel == "master.m3u8":
        return (3, rel)
    if rel.endswith(".m3u8") or rel.endswith(".json"):
        return (2, rel)
    return (1, rel)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as src:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def _same(store: ObjectStore, key: str, path: Path) -> bool | None:
    """True: the object holds these bytes; False: it differs; None: no such object."""
    try:
        info = await store.head(key)
    except ObjectNotFound:
        return None
    if info.size != path.stat().st_size:
        return False
    etag = info.etag.strip('"').lower()
    if _MD5.match(etag):
        return etag == await asyncio.to_thread(_md5, path)
    return True  # multipart ETag: same size is the best evidence available


async def publish_dir(store: ObjectStore, session_id: str, local_dir: Path) -> PublishResult:
    prefix = vod_prefix(session_id)
    files = sorted(
        (p.relative_to(local_dir).as_posix() for p in local_dir.rglob("*") if p.is_file()),
        key=_order,
    )
    if "master.m3u8" not in files:
        raise StorageError(f"{local_dir}: no master.m3u8 to publish")
    uploaded: list[str] = []
    unchanged: list[str] = []
    for rel in files:
        key = prefix + rel
        path = local_dir / rel
        same = await _same(store, key, path)
        if same:
            unchanged.append(key)
            continue
        if same is False and rel.endswith(".ts"):
            raise SegmentConflict(f"{key} is published with different content; not replaced")
        suffix = Path(rel).suffix
        await store.put(
            key,
            path,
            content_type=CONTENT_TYPES.get(suffix, "application/octet-stream"),
            cache_control=cache_control_for(key),
        )
        uploaded.append(key)
    logger.info(
        "vod: session %s published under %s (%d uploaded, %d unchanged)",
        session_id,
        prefix,
        len(uploaded),
        len(unchanged),
    )
    return PublishResult(tuple(uploaded), tuple(unchanged))
