"""OCIStore: OCI Object Storage through its native API (the `oci` SDK, the `oci` extra).

OCI's Amazon S3 Compatibility API reads and writes objects but cannot change an existing
object's tier or restore one from Archive (docs/lifecycle-costs.md); the native API can:
`set_tier` is UpdateObjectStorageTier and `restore` is RestoreObjects, and `restore_state`
reads HeadObject's `archival-state` (Archived, Restoring, Restored). An object in Archive cannot
be moved to another tier by UpdateObjectStorageTier: set_tier refuses that with StorageError.

`oci://namespace/bucket[/prefix]`. Credentials as SFU_OCI_AUTH says (`default_client`): OKE
workload identity (the pod's service account, what k8s/ uses), instance or resource
principals, or the SDK's config file (OCI_CONFIG_FILE, OCI_CONFIG_PROFILE; default
~/.oci/config, DEFAULT); `auto` takes resource principals when OCI_RESOURCE_PRINCIPAL_VERSION
is set, else the config file. The SDK is synchronous: each call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar

import oci

from sfu.storage.base import (
    ObjectArchived,
    ObjectInfo,
    ObjectNotFound,
    RestoreState,
    StorageError,
    Tier,
    validate_key,
    validate_prefix,
)

T = TypeVar("T")
LIST_FIELDS = "name,size,etag,timeModified,storageTier"
_ARCHIVAL = {
    "archived": RestoreState.ARCHIVED,
    "restoring": RestoreState.PENDING,
    "restored": RestoreState.RESTORED,
}


AUTH_MODES = (
    "auto",
    "config_file",
    "resource_principal",
    "instance_principal",
    "oke_workload_identity",
)


def default_client(auth: str = "auto") -> Any:
    """An ObjectStorageClient signed as `auth` says (SFU_OCI_AUTH, see AUTH_MODES).

    A principal that cannot be had here (no OKE token, no metadata service) is a
    StorageError naming the mode, raised when the store is opened, not at its first call."""
    if auth not in AUTH_MODES:
        raise StorageError(f"unknown OCI auth {auth!r}: use one of {', '.join(AUTH_MODES)}")
    if auth == "auto":
        auth = (
            "resource_principal"
            if os.environ.get("OCI_RESOURCE_PRINCIPAL_VERSION")
            else "config_file"
        )
    if auth == "config_file":
        return _config_file_client()
    signers = oci.auth.signers
    make: Callable[[], Any] = {
        "resource_principal": signers.get_resource_principals_signer,
        "instance_principal": signers.InstancePrincipalsSecurityTokenSigner,
        "oke_workload_identity": signers.get_oke_workload_identity_resource_principal_signer,
    }[auth]
    try:
        signer = make()
    except (oci.exceptions.ClientError, oci.exceptions.ServiceError, OSError, ValueError) as exc:
        raise StorageError(f"OCI auth {auth}: no credentials here: {exc}") from None
    config = {"region": signer.region} if getattr(signer, "region", None) else {}
    return oci.object_storage.ObjectStorageClient(config, signer=signer)


def _config_file_client() -> Any:
    try:
        config = oci.config.from_file(
            os.environ.get("OCI_CONFIG_FILE", oci.config.DEFAULT_LOCATION),
            os.environ.get("OCI_CONFIG_PROFILE", oci.config.DEFAULT_PROFILE),
        )
        return oci.object_storage.ObjectStorageClient(config)
    except (oci.exceptions.ClientError, OSError, ValueError) as exc:
        raise StorageError(f"OCI auth config_file: {exc}") from None


def _tier(value: str | None) -> Tier:
    if not value:
        return Tier.STANDARD
    try:
        return Tier(value)
    except ValueError:
        raise StorageError(f"unknown OCI storage tier {value!r}") from None


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        return parsedate_to_datetime(value)
    return datetime.fromtimestamp(0, UTC)


class OCIStore:
    def __init__(
        self, namespace: str, bucket: str, prefix: str = "", *, client: Any | None = None
    ) -> None:
        if not namespace or not bucket:
            raise StorageError("OCI storage needs a namespace and a bucket")
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
            prefix += "/"
        self.namespace = namespace
        self.bucket = bucket
        self.prefix = prefix
        self._client = client if client is not None else default_client()

    def _name(self, key: str) -> str:
        return self.prefix + validate_key(key)

    async def _call(self, key: str, what: str, call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(call)
        except oci.exceptions.ServiceError as exc:
            if exc.status == 404:
                raise ObjectNotFound(key) from None
            if exc.status == 409 and "restor" in str(exc.code).lower():
                raise ObjectArchived(key) from None
            raise StorageError(f"cannot {what} {key!r}: {exc.status} {exc.code}") from exc
        except (oci.exceptions.RequestException, OSError) as exc:
            raise StorageError(f"cannot {what} {key!r}: {exc}") from exc

    async def put(
        self,
        key: str,
        data: bytes | Path,
        *,
        content_type: str,
        cache_control: str | None = None,
        tier: Tier | None = None,
    ) -> ObjectInfo:
        name = self._name(key)
        extra: dict[str, Any] = {"content_type": content_type}
        if cache_control:
            extra["cache_control"] = cache_control
        if tier is not None and tier is not Tier.STANDARD:
            extra["storage_tier"] = Tier(tier).value

        def send() -> None:
            if isinstance(data, Path):
                with data.open("rb") as body:
                    self._client.put_object(self.namespace, self.bucket, name, body, **extra)
            else:
                self._client.put_object(self.namespace, self.bucket, name, data, **extra)

        await self._call(key, "put", send)
        return await self.head(key)

    async def get(self, key: str) -> bytes:
        name = self._name(key)
        response = await self._call(
            key, "get", lambda: self._client.get_object(self.namespace, self.bucket, name)
        )
        content: bytes = response.data.content
        return content

    async def exists(self, key: str) -> bool:
        try:
            await self.head(key)
        except ObjectNotFound:
            return False
        return True

    async def _head_headers(self, key: str) -> Any:
        name = self._name(key)
        response = await self._call(
            key, "head", lambda: self._client.head_object(self.namespace, self.bucket, name)
        )
        return response.headers

    async def head(self, key: str) -> ObjectInfo:
        headers = await self._head_headers(key)
        return ObjectInfo(
            key=key,
            size=int(headers.get("content-length", 0)),
            etag=str(headers.get("etag", "")).strip('"'),
            last_modified=_when(headers.get("last-modified")),
            content_type=headers.get("content-type"),
            cache_control=headers.get("cache-control"),
            tier=_tier(headers.get("storage-tier")),
        )

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        validate_prefix(prefix)
        start: str | None = None
        while True:
            page = await self._call(prefix, "list", functools.partial(self._page, prefix, start))
            for item in page.objects:
                yield ObjectInfo(
                    key=item.name[len(self.prefix) :],
                    size=int(item.size or 0),
                    etag=str(item.etag or "").strip('"'),
                    last_modified=_when(item.time_modified),
                    content_type=None,
                    cache_control=None,
                    tier=_tier(item.storage_tier),
                )
            start = page.next_start_with
            if not start:
                return

    def _page(self, prefix: str, start: str | None) -> Any:
        extra: dict[str, Any] = {"fields": LIST_FIELDS, "prefix": self.prefix + prefix}
        if start:
            extra["start"] = start
        return self._client.list_objects(self.namespace, self.bucket, **extra).data

    async def delete(self, key: str) -> None:
        name = self._name(key)
        try:
            await self._call(
                key, "delete", lambda: self._client.delete_object(self.namespace, self.bucket, name)
            )
        except ObjectNotFound:
            return

    async def get_tier(self, key: str) -> Tier:
        return (await self.head(key)).tier

    async def set_tier(self, key: str, tier: Tier) -> None:
        tier = Tier(tier)
        current = await self.get_tier(key)
        if current is tier:
            return
        if current is Tier.ARCHIVE:
            raise StorageError(f"{key!r} is in Archive: OCI cannot move it to {tier.value}")
        details = oci.object_storage.models.UpdateObjectStorageTierDetails(
            object_name=self._name(key), storage_tier=tier.value
        )
        await self._call(
            key,
            "set the tier of",
            lambda: self._client.update_object_storage_tier(self.namespace, self.bucket, details),
        )

    async def restore(self, key: str, *, hours: int = 24) -> None:
        details = oci.object_storage.models.RestoreObjectsDetails(
            object_name=self._name(key), hours=hours
        )
        await self._call(
            key,
            "restore",
            lambda: self._client.restore_objects(self.namespace, self.bucket, details),
        )

    async def restore_state(self, key: str) -> RestoreState:
        headers = await self._head_headers(key)
        if _tier(headers.get("storage-tier")) is not Tier.ARCHIVE:
            return RestoreState.NOT_ARCHIVED
        state = str(headers.get("archival-state") or "archived").lower()
        return _ARCHIVAL.get(state, RestoreState.ARCHIVED)

    async def close(self) -> None:
        session = getattr(getattr(self._client, "base_client", None), "session", None)
        if session is not None:
            await asyncio.to_thread(session.close)
