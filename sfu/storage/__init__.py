"""Object storage: one small interface (ObjectStore), two implementations.

- `file:///abs/dir` (or `file://./rel/dir`, relative to the working directory): LocalStore,
  the embedded default, under `<data_dir>/objects`.
- `s3://bucket[/prefix]`: S3Store on any S3-compatible service (OCI Object Storage through
  its Amazon S3 Compatibility API), with `endpoint` (SFU_S3_ENDPOINT) unless it is AWS.
- `oci://namespace/bucket[/prefix]`: OCIStore on OCI's native API (the `oci` extra), which can
  also change an object's tier and restore it from Archive.

Callers that publish VOD objects pass `cache_control=cache_control_for(key)`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from sfu.storage.base import (
    MAX_KEY_BYTES,
    MIB,
    InvalidKey,
    ObjectArchived,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    Tier,
    cache_control_for,
    validate_key,
)
from sfu.storage.local import LocalStore

if TYPE_CHECKING:
    from sfu.config.settings import Settings

__all__ = [
    "MAX_KEY_BYTES",
    "InvalidKey",
    "LocalStore",
    "ObjectArchived",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "StorageError",
    "Tier",
    "cache_control_for",
    "open_store",
    "store_from_settings",
    "validate_key",
]

logger = logging.getLogger(__name__)


def open_store(
    url: str,
    *,
    endpoint: str | None = None,
    region: str | None = None,
    multipart_threshold_mb: int | None = None,
    multipart_chunk_mb: int | None = None,
    oci_auth: str = "auto",
) -> ObjectStore:
    """The store a URL names; StorageError for a URL that names none. The multipart sizes
    (MiB) apply to s3:// stores; None keeps S3Store's defaults."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.query or parts.fragment:
            raise StorageError(f"storage URL {url!r}: file:// takes no query or fragment")
        if parts.netloc not in ("", "localhost", "."):
            raise StorageError(
                f"storage URL {url!r}: use file:///absolute/dir or file://./relative/dir"
            )
        path = unquote(parts.path)
        if parts.netloc == ".":
            path = "." + path
        if not path:
            raise StorageError(f"storage URL {url!r} names no folder")
        if endpoint:
            logger.warning("SFU_S3_ENDPOINT is ignored for a file:// storage URL")
        return LocalStore(Path(path))
    if scheme == "s3":
        if not parts.netloc:
            raise StorageError(f"storage URL {url!r} names no bucket (s3://bucket[/prefix])")
        if parts.query or parts.fragment:
            raise StorageError(f"storage URL {url!r}: s3:// takes no query or fragment")
        from sfu.storage.s3 import S3Store  # boto3 is imported only when S3 is used

        sizes: dict[str, int] = {}
        if multipart_threshold_mb is not None:
            sizes["multipart_threshold"] = multipart_threshold_mb * MIB
        if multipart_chunk_mb is not None:
            sizes["multipart_chunksize"] = multipart_chunk_mb * MIB
        try:
            return S3Store(
                parts.netloc,
                unquote(parts.path),
                endpoint_url=endpoint or None,
                region=region,
                **sizes,
            )
        except InvalidKey as exc:
            raise StorageError(f"storage URL {url!r}: bad prefix: {exc}") from None
    if scheme == "oci":
        return _open_oci(url, oci_auth)
    raise StorageError(
        f"storage URL {url!r}: unsupported; use file:///dir, s3://bucket[/prefix] or "
        "oci://namespace/bucket[/prefix]"
    )


def _open_oci(url: str, auth: str) -> ObjectStore:
    parts = urlsplit(url)
    bucket, _, prefix = unquote(parts.path).lstrip("/").partition("/")
    if not parts.netloc or not bucket:
        raise StorageError(f"storage URL {url!r}: use oci://namespace/bucket[/prefix]")
    if parts.query or parts.fragment:
        raise StorageError(f"storage URL {url!r}: oci:// takes no query or fragment")
    try:
        from sfu.storage.oci import OCIStore, default_client  # oci is imported only for OCI
    except ImportError:
        raise StorageError(
            f"storage URL {url!r} needs the oci SDK: pip install 'cotept-sfu[oci]'"
        ) from None
    try:
        return OCIStore(parts.netloc, bucket, prefix, client=default_client(auth))
    except InvalidKey as exc:
        raise StorageError(f"storage URL {url!r}: bad prefix: {exc}") from None


def default_storage_url(data_dir: Path) -> str:
    """`file://` URL of the default local store: `<data_dir>/objects`, made absolute."""
    return (data_dir / "objects").resolve().as_uri()


def store_from_settings(settings: Settings) -> ObjectStore:
    url = settings.storage.url or default_storage_url(settings.data_dir)
    return open_store(
        url,
        endpoint=settings.storage.s3_endpoint,
        multipart_threshold_mb=settings.storage.s3_multipart_threshold_mb,
        multipart_chunk_mb=settings.storage.s3_multipart_chunk_mb,
        oci_auth=settings.storage.oci_auth,
    )
