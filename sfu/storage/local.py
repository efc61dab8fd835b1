"""LocalStore: objects as files under a root folder, the embedded default.

Layout under `root`: each object is the file `root/<key>`, so the tree mirrors the bucket
and can be served as is. Its content type, cache control, tier and ETag are a small JSON
sidecar `root/.meta/<key>.json`, and writes are staged in `root/.tmp/`; both folders are
hidden from listings and are reserved (no key may start with `.meta/` or `.tmp/`).

A put writes the data to a temp file, fsyncs it, renames it over the object
(`os.replace`, atomic on POSIX), then does the same for the sidecar, and fsyncs the
folders. A crash leaves either the old object or the new one, never a partial file; a crash
between the two renames leaves the new data with the old sidecar (head then reports the old
content type). Temp files older than an hour are removed when a store is opened.

Archive is a flag in the sidecar: `get` of an archived object raises ObjectArchived unless it
is restored. `restore` writes a `restore` entry into the sidecar: the copy is readable from
`ready_at` (now + `restore_delay_s`, 0 by default: at once; a delay imitates the hours a
cloud restore takes) until `expires_at` (now + the hours asked). Any tier change or put
drops the entry.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import itertools
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sfu.storage.base import (
    InvalidKey,
    ObjectArchived,
    ObjectInfo,
    ObjectNotFound,
    RestoreState,
    StorageError,
    Tier,
    validate_key,
    validate_prefix,
)

logger = logging.getLogger(__name__)

META_DIR = ".meta"
TMP_DIR = ".tmp"
_STALE_TMP_S = 3600.0
_CHUNK = 1 << 20
_LIST_PAGE = 1000
DEFAULT_CONTENT_TYPE = "application/octet-stream"


class LocalStore:
    """An ObjectStore on the local filesystem."""

    def __init__(
        self,
        root: Path | str,
        *,
        restore_delay_s: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root).resolve()
        self.restore_delay_s = restore_delay_s
        self._clock = clock
        self._tmp = self.root / TMP_DIR
        self._meta = self.root / META_DIR
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            self._meta.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create object store folder {self.root}: {exc}") from exc
        self._remove_stale_temp_files()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # --- paths ------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        validate_key(key)
        if key.split("/", 1)[0] in (META_DIR, TMP_DIR):
            raise InvalidKey(f"object key uses a reserved folder of the local store: {key!r}")
        return self.root / key

    def _meta_path(self, key: str) -> Path:
        return self._meta / (key + ".json")

    def _remove_stale_temp_files(self) -> None:
        cutoff = time.time() - _STALE_TMP_S
        for entry in self._tmp.iterdir():
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    logger.info("removed stale temp file %s", entry)

    # --- blocking parts (run in a worker thread) --------------------------------------------

    def _write_atomic(self, target: Path, source: bytes | Path) -> str:
        """Write `source` to `target` through a temp file; return the content's MD5 hex."""
        digest = hashlib.md5(usedforsecurity=False)
        temp = self._tmp / f"{uuid.uuid4().hex}.part"
        try:
            with open(temp, "wb") as out:
                if isinstance(source, bytes):
                    out.write(source)
                    digest.update(source)
                else:
                    with open(source, "rb") as src:
                        while chunk := src.read(_CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                out.flush()
                os.fsync(out.fileno())
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        _fsync_dir(target.parent)
        return digest.hexdigest()

    def _put(
        self,
        key: str,
        data: bytes | Path,
        content_type: str,
        cache_control: str | None,
        tier: Tier,
    ) -> ObjectInfo:
        path = self._path(key)
        if path.is_dir():
            raise StorageError(f"cannot put {key!r}: keys under {key + '/'!r} exist")
        try:
            etag = self._write_atomic(path, data)
            meta = {
                "content_type": content_type,
                "cache_control": cache_control,
                "tier": tier.value,
                "etag": etag,
            }
            self._write_atomic(self._meta_path(key), json.dumps(meta).encode())
        except FileNotFoundError as exc:
            if isinstance(data, Path) and not data.is_file():
                raise StorageError(f"cannot put {key!r}: no such file {data}") from exc
            raise StorageError(f"cannot put {key!r}: {exc}") from exc
        except (NotADirectoryError, FileExistsError) as exc:
            raise StorageError(f"cannot put {key!r}: a parent is an object: {exc}") from exc
        except OSError as exc:
            raise StorageError(f"cannot put {key!r}: {exc}") from exc
        return self._head(key)

    def _read_meta(self, key: str) -> dict[str, Any]:
        try:
            loaded = json.loads(self._meta_path(key).read_bytes())
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def _head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StorageError(f"cannot stat {key!r}: {exc}") from exc
        if not path.is_file():
            raise ObjectNotFound(key)
        return self._info(key, stat.st_size, stat.st_mtime)

    def _info(self, key: str, size: int, mtime: float) -> ObjectInfo:
        meta = self._read_meta(key)
        try:
            tier = Tier(meta.get("tier", Tier.STANDARD.value))
        except ValueError:
            tier = Tier.STANDARD
        return ObjectInfo(
            key=key,
            size=size,
            etag=str(meta.get("etag", "")),
            last_modified=datetime.fromtimestamp(mtime, UTC),
            content_type=str(meta.get("content_type") or DEFAULT_CONTENT_TYPE),
            cache_control=meta.get("cache_control"),
            tier=tier,
        )

    def _get(self, key: str) -> bytes:
        path = self._path(key)
        if path.is_file() and self._restore_state(key) in (
            RestoreState.ARCHIVED,
            RestoreState.PENDING,
        ):
            raise ObjectArchived(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StorageError(f"cannot read {key!r}: {exc}") from exc

    def _walk(self, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
        """Every file under the prefix, in S3's key order, one folder held at a time.

        A folder's entries are sorted as their keys sort: a sub-folder `d` as `d/`, since all
        its keys start so, and a file by its name, both compared as UTF-8 bytes (S3's order).
        """
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / folder if folder else self.root
        if start.is_dir():
            yield from self._walk_folder(start, f"{folder}/" if folder else "", prefix)

    def _walk_folder(
        self, path: Path, relative: str, prefix: str
    ) -> Iterator[tuple[str, os.stat_result]]:
        try:
            with os.scandir(path) as scan:
                entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in scan]
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StorageError(f"cannot list {relative or '/'!r}: {exc}") from exc
        entries.sort(key=lambda entry: (entry[0] + "/" if entry[1] else entry[0]).encode())
        for name, is_dir in entries:
            key = relative + name
            if is_dir:
                if not relative and name in (META_DIR, TMP_DIR):
                    continue
                below = key + "/"
                if below.startswith(prefix) or prefix.startswith(below):
                    yield from self._walk_folder(path / name, below, prefix)
            elif key.startswith(prefix):
                with contextlib.suppress(FileNotFoundError):
                    yield key, os.stat(path / name)

    def _list(self, found: Iterator[tuple[str, os.stat_result]]) -> builtins.list[ObjectInfo]:
        """The next page (up to 1,000 objects, as S3 pages) of a walk."""
        return [
            self._info(key, stat.st_size, stat.st_mtime)
            for key, stat in itertools.islice(found, _LIST_PAGE)
        ]

    def _delete(self, key: str) -> None:
        path = self._path(key)
        for target in (path, self._meta_path(key)):
            try:
                target.unlink()
            except (FileNotFoundError, NotADirectoryError):
                pass
            except IsADirectoryError:
                return
            except OSError as exc:
                raise StorageError(f"cannot delete {key!r}: {exc}") from exc
        self._prune(path.parent, self.root)
        self._prune(self._meta_path(key).parent, self._meta)

    @staticmethod
    def _prune(folder: Path, stop: Path) -> None:
        """Remove folders left empty by a delete, up to (not including) `stop`."""
        while folder != stop and stop in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def _set_tier(self, key: str, tier: Tier) -> None:
        info = self._head(key)
        meta = self._read_meta(key)
        meta.update(tier=tier.value, content_type=info.content_type, etag=info.etag)
        meta.setdefault("cache_control", info.cache_control)
        meta.pop("restore", None)
        try:
            self._write_atomic(self._meta_path(key), json.dumps(meta).encode())
        except OSError as exc:
            raise StorageError(f"cannot set the tier of {key!r}: {exc}") from exc

    def _restore_state(self, key: str) -> RestoreState:
        info = self._head(key)
        if info.tier is not Tier.ARCHIVE:
            return RestoreState.NOT_ARCHIVED
        entry = self._read_meta(key).get("restore")
        if not isinstance(entry, dict):
            return RestoreState.ARCHIVED
        now = self._clock()
        if now >= float(entry.get("expires_at", 0.0)):
            return RestoreState.ARCHIVED
        if now < float(entry.get("ready_at", 0.0)):
            return RestoreState.PENDING
        return RestoreState.RESTORED

    def _restore(self, key: str, hours: int) -> None:
        if self._restore_state(key) is not RestoreState.ARCHIVED:
            return  # readable, or a restore already pending / done
        now = self._clock()
        meta = self._read_meta(key)
        meta["restore"] = {
            "requested_at": now,
            "ready_at": now + self.restore_delay_s,
            "expires_at": now + self.restore_delay_s + hours * 3600.0,
        }
        try:
            self._write_atomic(self._meta_path(key), json.dumps(meta).encode())
        except OSError as exc:
            raise StorageError(f"cannot restore {key!r}: {exc}") from exc

    def stale_temp_files(self, before: float) -> builtins.list[Path]:
        """Staged writes (this store's incomplete uploads) last touched before `before`."""
        found = []
        for entry in sorted(self._tmp.iterdir()):
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < before:
                    found.append(entry)
        return found

    # --- the ObjectStore interface ----------------------------------------------------------

    async def put(
        self,
        key: str,
        data: bytes | Path,
        *,
        content_type: str,
        cache_control: str | None = None,
        tier: Tier | None = None,
    ) -> ObjectInfo:
        self._path(key)
        return await asyncio.to_thread(
            self._put, key, data, content_type, cache_control, tier or Tier.STANDARD
        )

    async def get(self, key: str) -> bytes:
        self._path(key)
        return await asyncio.to_thread(self._get, key)

    async def exists(self, key: str) -> bool:
        try:
            await self.head(key)
        except ObjectNotFound:
            return False
        return True

    async def head(self, key: str) -> ObjectInfo:
        self._path(key)
        return await asyncio.to_thread(self._head, key)

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        validate_prefix(prefix)
        found = self._walk(prefix)
        while page := await asyncio.to_thread(self._list, found):
            for info in page:
                yield info

    async def delete(self, key: str) -> None:
        self._path(key)
        await asyncio.to_thread(self._delete, key)

    async def get_tier(self, key: str) -> Tier:
        return (await self.head(key)).tier

    async def set_tier(self, key: str, tier: Tier) -> None:
        self._path(key)
        await asyncio.to_thread(self._set_tier, key, Tier(tier))

    async def restore(self, key: str, *, hours: int = 24) -> None:
        self._path(key)
        await asyncio.to_thread(self._restore, key, hours)

    async def restore_state(self, key: str) -> RestoreState:
        self._path(key)
        return await asyncio.to_thread(self._restore_state, key)

    async def close(self) -> None:
        return None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
