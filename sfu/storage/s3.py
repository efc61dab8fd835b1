"""S3Store: S3-compatible object storage (OCI Object Storage, AWS S3, MinIO, moto) via boto3.

boto3 is synchronous, so each call runs in a worker thread (`asyncio.to_thread`). The client
retries (botocore "standard" mode: throttling, 5xx and connection errors, with backoff) and
has connect and read timeouts, so no call waits forever.

With a custom endpoint (OCI: `https://<namespace>.compat.objectstorage.<region>.oraclecloud.com`)
the client uses path-style addressing and sends checksums only where the API requires them:
the newer default CRC checksums of boto3 >= 1.36 are not accepted by every S3-compatible
service. Credentials and region come from boto3's usual chain (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION / AWS_DEFAULT_REGION, profiles); OCI calls the key pair a
"Customer Secret Key".

Objects of `multipart_threshold` bytes or more are uploaded in parts of `multipart_chunksize`
bytes (s3transfer's managed upload: a few parts in flight at once, each part retried on its
own). A single PUT is limited to 5 GiB on S3 and OCI, and one lost connection near the end of a
big PUT costs the whole object; parts cost one part. CreateMultipartUpload carries the same
ContentType, CacheControl and StorageClass as the single PUT, so the object looks the same
either way (only its ETag, `<md5 of part md5s>-<parts>`, tells them apart). A failed multipart
upload is aborted, so no object appears and no parts are left billed; if the abort itself cannot
reach the service, a bucket lifecycle rule that aborts incomplete uploads cleans up.

Tiers are storage classes (see Tier). set_tier copies the object onto itself with the new
StorageClass. Below `multipart_threshold` that is one CopyObject with MetadataDirective=COPY,
which keeps content type, cache control and user metadata. From the threshold on (CopyObject
stops at 5 GiB, and one request for a big object can outlast the read timeout) it is a
multipart copy (UploadPartCopy, server side, in parts of `multipart_chunksize`); a multipart
upload does not take the source's metadata, so content type, cache control and user metadata
are read first and given again. An archived object cannot be read or copied until restored:
both raise ObjectArchived.

`restore` is RestoreObject for whole days (hours rounded up, at least one); asking again while
one is under way is not an error. `restore_state` reads head_object: a storage class other
than GLACIER/DEEP_ARCHIVE is not archived; no `Restore` header is archived;
`ongoing-request="true"` is pending; `ongoing-request="false", expiry-date=...` is restored.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import io
import logging
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.manager import TransferConfig, TransferManager

from sfu.storage.base import (
    MIB,
    ObjectArchived,
    ObjectInfo,
    ObjectNotFound,
    RestoreState,
    StorageError,
    Tier,
    validate_key,
    validate_prefix,
)

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client
    from types_boto3_s3.literals import StorageClassType

logger = logging.getLogger(__name__)

T = TypeVar("T")

MIN_PART_BYTES = 5 * MIB
"""S3 (and OCI, MinIO, moto) refuse a part below 5 MiB unless it is the last one."""
MAX_PART_BYTES = 5 * 1024 * MIB
DEFAULT_MULTIPART_THRESHOLD = 64 * MIB
DEFAULT_MULTIPART_CHUNKSIZE = 16 * MIB
MULTIPART_CONCURRENCY = 4
"""Parts in flight at once; each holds one part in memory."""

_KEPT_ON_COPY = (
    "ContentType",
    "CacheControl",
    "ContentEncoding",
    "ContentDisposition",
    "ContentLanguage",
    "Metadata",
)
"""What a multipart copy must be given again to keep it (a CopyObject keeps it by itself)."""

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_ARCHIVED = {"InvalidObjectState", "ObjectNotInActiveTierError"}


class S3Store:
    """An ObjectStore on one bucket of S3-compatible storage, under an optional prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        max_attempts: int = 5,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        multipart_chunksize: int = DEFAULT_MULTIPART_CHUNKSIZE,
    ) -> None:
        if not bucket:
            raise StorageError("S3 bucket name is empty")
        if not MIN_PART_BYTES <= multipart_chunksize <= MAX_PART_BYTES:
            raise StorageError(
                f"S3 multipart part size {multipart_chunksize} bytes is outside "
                f"{MIN_PART_BYTES}..{MAX_PART_BYTES} (5 MiB to 5 GiB)"
            )
        if not 1 <= multipart_threshold <= MAX_PART_BYTES:
            raise StorageError(
                f"S3 multipart threshold {multipart_threshold} bytes is outside 1..{MAX_PART_BYTES}"
                " (a single PUT is limited to 5 GiB)"
            )
        self.multipart_threshold = multipart_threshold
        self.multipart_chunksize = multipart_chunksize
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            validate_prefix(self.prefix)
        config = Config(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"mode": "standard", "max_attempts": max_attempts},
            s3={"addressing_style": "path"} if endpoint_url else None,
            request_checksum_calculation="when_required" if endpoint_url else None,
            response_checksum_validation="when_required" if endpoint_url else None,
        )
        try:
            self._client: S3Client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url, region_name=region, config=config
            )
        except (BotoCoreError, ValueError) as exc:
            raise StorageError(f"cannot create the S3 client: {exc}") from exc

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _full(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    async def _call(self, key: str, what: str, call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(call)
        except ClientError as exc:
            raise self._error(key, what, exc) from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 {what} {key!r} failed: {exc}") from exc

    def _error(self, key: str, what: str, exc: ClientError) -> StorageError:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _NOT_FOUND:
            return ObjectNotFound(key)
        if code in _ARCHIVED:
            return ObjectArchived(key)
        if code == "NoSuchBucket":
            return StorageError(f"S3 bucket {self.bucket!r} does not exist ({what} {key!r})")
        return StorageError(f"S3 {what} {key!r} in bucket {self.bucket!r} failed: {exc}")

    def _head_blocking(self, key: str) -> ObjectInfo:
        try:
            response = self._client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND:
                # HEAD has no body, so a missing bucket is a bare 404 too: tell them apart.
                try:
                    self._client.head_bucket(Bucket=self.bucket)
                except ClientError as bucket_exc:
                    if str(bucket_exc.response.get("Error", {}).get("Code", "")) in _NOT_FOUND:
                        raise StorageError(f"S3 bucket {self.bucket!r} does not exist") from exc
                    raise
            raise
        return ObjectInfo(
            key=key,
            size=response["ContentLength"],
            etag=response.get("ETag", "").strip('"'),
            last_modified=_utc(response["LastModified"]),
            content_type=response.get("ContentType") or "binary/octet-stream",
            cache_control=response.get("CacheControl"),
            tier=Tier.from_s3_storage_class(response.get("StorageClass")),
        )

    async def put(
        self,
        key: str,
        data: bytes | Path,
        *,
        content_type: str,
        cache_control: str | None = None,
        tier: Tier | None = None,
    ) -> ObjectInfo:
        full = self._full(key)
        storage_class: StorageClassType = Tier(tier or Tier.STANDARD).s3_storage_class  # type: ignore[assignment]
        extra: dict[str, Any] = {"ContentType": content_type, "StorageClass": storage_class}
        if cache_control:
            extra["CacheControl"] = cache_control

        def blocking() -> None:
            if isinstance(data, bytes):
                if len(data) >= self.multipart_threshold:
                    self._upload_parts(full, io.BytesIO(data), extra)
                else:
                    self._client.put_object(Bucket=self.bucket, Key=full, Body=data, **extra)
                return
            try:
                with open(data, "rb") as body:
                    if os.fstat(body.fileno()).st_size >= self.multipart_threshold:
                        self._upload_parts(full, body, extra)
                    else:
                        self._client.put_object(Bucket=self.bucket, Key=full, Body=body, **extra)
            except OSError as exc:
                raise StorageError(f"cannot put {key!r}: cannot read {data}: {exc}") from exc

        await self._call(key, "put", blocking)
        return await self.head(key)

    def _transfers(self) -> TransferManager:
        """s3transfer's manager for multipart uploads and copies, with this store's part size
        and threshold and MULTIPART_CONCURRENCY parts in flight (a context manager)."""
        config = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_request_concurrency=MULTIPART_CONCURRENCY,
            max_in_memory_upload_chunks=MULTIPART_CONCURRENCY,
        )
        return TransferManager(self._client, config)

    def _upload_parts(self, full: str, body: BinaryIO, extra: dict[str, Any]) -> None:
        """Multipart upload (blocking): the same ExtraArgs as put_object, in parts; aborted
        on failure. ClientError / BotoCoreError propagate as from put_object."""
        with self._transfers() as manager:
            future = manager.upload(body, self.bucket, full, extra_args=dict(extra))
            future.result()
        logger.info("object %s/%s uploaded in parts", self.bucket, full)

    async def get(self, key: str) -> bytes:
        full = self._full(key)

        def blocking() -> bytes:
            response = self._client.get_object(Bucket=self.bucket, Key=full)
            with response["Body"] as body:
                return body.read()

        return await self._call(key, "get", blocking)

    async def exists(self, key: str) -> bool:
        try:
            await self.head(key)
        except ObjectNotFound:
            return False
        return True

    async def head(self, key: str) -> ObjectInfo:
        self._full(key)
        return await self._call(key, "head", lambda: self._head_blocking(key))

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        validate_prefix(prefix)
        full_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full_prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = await self._call(
                prefix, "list", functools.partial(self._client.list_objects_v2, **kwargs)
            )
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    key=self._relative(item["Key"]),
                    size=item["Size"],
                    etag=item.get("ETag", "").strip('"'),
                    last_modified=_utc(item["LastModified"]),
                    content_type=None,
                    cache_control=None,
                    tier=Tier.from_s3_storage_class(item.get("StorageClass")),
                )
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    async def delete(self, key: str) -> None:
        full = self._full(key)
        await self._call(
            key, "delete", lambda: self._client.delete_object(Bucket=self.bucket, Key=full)
        )

    async def get_tier(self, key: str) -> Tier:
        return (await self.head(key)).tier

    async def set_tier(self, key: str, tier: Tier) -> None:
        tier = Tier(tier)
        full = self._full(key)
        info = await self.head(key)
        if info.tier == tier:
            return  # S3 refuses a copy onto itself that changes nothing
        storage_class: StorageClassType = tier.s3_storage_class  # type: ignore[assignment]
        if info.size >= self.multipart_threshold:
            await self._call(key, "set_tier", lambda: self._copy_parts(full, storage_class))
        else:
            await self._call(
                key,
                "set_tier",
                lambda: self._client.copy_object(
                    Bucket=self.bucket,
                    Key=full,
                    CopySource={"Bucket": self.bucket, "Key": full},
                    StorageClass=storage_class,
                    MetadataDirective="COPY",
                ),
            )
        logger.info("object %s/%s moved to tier %s", self.bucket, full, tier.value)

    def _copy_parts(self, full: str, storage_class: StorageClassType) -> None:
        """Multipart copy of `full` onto itself with a new storage class (blocking), keeping
        the metadata a multipart upload would otherwise drop; aborted on failure."""
        source = self._client.head_object(Bucket=self.bucket, Key=full)
        extra: dict[str, Any] = {"StorageClass": storage_class}
        for name in _KEPT_ON_COPY:
            if source.get(name):
                extra[name] = source[name]  # type: ignore[literal-required]
        with self._transfers() as manager:
            future = manager.copy(
                {"Bucket": self.bucket, "Key": full}, self.bucket, full, extra_args=extra
            )
            future.result()

    async def restore(self, key: str, *, hours: int = 24) -> None:
        if await self.restore_state(key) is not RestoreState.ARCHIVED:
            return
        full = self._full(key)
        days = max(1, -(-hours // 24))

        def blocking() -> None:
            try:
                self._client.restore_object(
                    Bucket=self.bucket, Key=full, RestoreRequest={"Days": days}
                )
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code != "RestoreAlreadyInProgress":
                    raise

        await self._call(key, "restore", blocking)
        logger.info("object %s/%s: restore asked for %d day(s)", self.bucket, full, days)

    async def restore_state(self, key: str) -> RestoreState:
        full = self._full(key)
        response = await self._call(
            key, "head", lambda: self._client.head_object(Bucket=self.bucket, Key=full)
        )
        if Tier.from_s3_storage_class(response.get("StorageClass")) is not Tier.ARCHIVE:
            return RestoreState.NOT_ARCHIVED
        return restore_state_of(response.get("Restore"))

    def stale_uploads(self, before: datetime) -> builtins.list[tuple[str, str, datetime]]:
        """(key, upload id, initiated) of the incomplete multipart uploads begun before
        `before` under this store's prefix (blocking)."""
        found: builtins.list[tuple[str, str, datetime]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.prefix:
            kwargs["Prefix"] = self.prefix + "/"
        while True:
            page = self._client.list_multipart_uploads(**kwargs)
            for upload in page.get("Uploads", []):
                initiated = _utc(upload["Initiated"])
                if initiated < before:
                    found.append((self._relative(upload["Key"]), upload["UploadId"], initiated))
            if not page.get("IsTruncated"):
                return found
            kwargs["KeyMarker"] = page.get("NextKeyMarker", "")
            kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort one incomplete multipart upload (blocking)."""
        self._client.abort_multipart_upload(
            Bucket=self.bucket, Key=self._full(key), UploadId=upload_id
        )

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)


def restore_state_of(header: str | None) -> RestoreState:
    """The state an archived object's `Restore` header (x-amz-restore) says."""
    if not header:
        return RestoreState.ARCHIVED
    if 'ongoing-request="true"' in header:
        return RestoreState.PENDING
    return RestoreState.RESTORED


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
