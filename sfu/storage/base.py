"""The object-store interface: keys, tiers, object metadata, errors and the Protocol.

Callers are asyncio code, so every method is a coroutine; implementations that block (the
filesystem, boto3) run the blocking part in a worker thread.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

MIB = 1024 * 1024


MAX_KEY_BYTES = 1024


class StorageError(Exception):
    """The store could not do what was asked (unreachable, refused, misconfigured)."""


class InvalidKey(StorageError, ValueError):
    """A key that no store accepts; the message says why."""


class ObjectNotFound(StorageError, KeyError):
    """No object under this key."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"no object {self.key!r}"


class ObjectArchived(StorageError):
    """The object is in the Archive tier and must be restored before it can be read."""

    def __init__(self, key: str) -> None:
        super().__init__(f"object {key!r} is archived; restore it before reading")
        self.key = key


class RestoreState(enum.StrEnum):
    """Where an object stands with respect to Archive (`ObjectStore.restore_state`)."""

    NOT_ARCHIVED = "not_archived"
    """Standard or InfrequentAccess: readable."""
    ARCHIVED = "archived"
    """In Archive, no restore asked: `get` raises ObjectArchived."""
    PENDING = "pending"
    """A restore was asked and is under way (hours on OCI)."""
    RESTORED = "restored"
    """In Archive, with a readable restored copy until the restore expires."""


class Tier(enum.StrEnum):
    """Storage tier, named as OCI Object Storage names them.

    On the S3 API the tier is the storage class. OCI's Amazon S3 Compatibility API maps
    Standard to STANDARD, InfrequentAccess to STANDARD_IA and Archive to GLACIER; AWS S3 and
    moto use the same names, so one mapping serves all three.
    """

    STANDARD = "Standard"
    INFREQUENT_ACCESS = "InfrequentAccess"
    ARCHIVE = "Archive"

    @property
    def s3_storage_class(self) -> str:
        return _TO_S3[self]

    @classmethod
    def from_s3_storage_class(cls, value: str | None) -> Tier:
        """The tier of an S3 storage class; absent (S3 omits STANDARD) is Standard."""
        if not value:
            return cls.STANDARD
        try:
            return _FROM_S3[value.upper()]
        except KeyError:
            raise StorageError(f"unknown S3 storage class {value!r}") from None


_TO_S3 = {
    Tier.STANDARD: "STANDARD",
    Tier.INFREQUENT_ACCESS: "STANDARD_IA",
    Tier.ARCHIVE: "GLACIER",
}
_FROM_S3 = {v: k for k, v in _TO_S3.items()} | {"DEEP_ARCHIVE": Tier.ARCHIVE}


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a store knows about one object without reading it."""

    key: str
    size: int
    etag: str
    last_modified: datetime
    content_type: str | None
    """None only in S3 listings, which do not carry it (head the object to learn it)."""
    cache_control: str | None
    tier: Tier


def validate_key(key: str) -> str:
    """Return `key` if every store can hold it; else raise InvalidKey saying why."""
    if not isinstance(key, str) or not key:
        raise InvalidKey("object key must be a non-empty string")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKey(f"object key is longer than {MAX_KEY_BYTES} bytes: {key[:60]!r}...")
    if key.startswith("/"):
        raise InvalidKey(f"object key must not start with '/': {key!r}")
    if "\\" in key or "\x00" in key:
        raise InvalidKey(f"object key must not contain a backslash or NUL: {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidKey(f"object key has an empty, '.' or '..' segment: {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key-like string that may end with '/'."""
    if prefix:
        validate_key(prefix.rstrip("/") or "/")
    return prefix


@runtime_checkable
class ObjectStore(Protocol):
    """One small interface over the local filesystem and S3-compatible storage."""

    async def put(
        self,
        key: str,
        data: bytes | Path,
        *,
        content_type: str,
        cache_control: str | None = None,
        tier: Tier | None = None,
    ) -> ObjectInfo:
        """Store `data` (bytes, or the contents of a file) under `key`, replacing any object
        there. `tier` None is Standard."""
        ...

    async def get(self, key: str) -> bytes: ...

    async def exists(self, key: str) -> bool: ...

    async def head(self, key: str) -> ObjectInfo: ...

    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Objects whose key starts with `prefix`, in key order."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; removing a missing one is not an error."""
        ...

    async def get_tier(self, key: str) -> Tier: ...

    async def set_tier(self, key: str, tier: Tier) -> None: ...

    async def restore(self, key: str, *, hours: int = 24) -> None:
        """Ask for a readable copy of an archived object for `hours`; asking again while one is
        pending or restored is not an error. ObjectNotFound for a missing key."""
        ...

    async def restore_state(self, key: str) -> RestoreState: ...

    async def close(self) -> None: ...


_CACHE_M3U8 = "public, max-age=3600"
_CACHE_TS = "public, max-age=604800, immutable"


def cache_control_for(key: str) -> str | None:
    """Cache-Control for a published VOD object (docs/api.md §6: playlists 1 hour, segments
    1 week and immutable); None for anything else."""
    name = key.rsplit("/", 1)[-1].lower()
    if name.endswith(".m3u8"):
        return _CACHE_M3U8
    if name.endswith(".ts"):
        return _CACHE_TS
    return None
