"""Restores of archived sessions: one restore per session, tracked until done or failed.

`request_session(store, session_id, state_path)` is what a reader that met ObjectArchived
calls (the analytics views endpoint, `sfu lifecycle restore`): it asks the store to restore
every archived object of the session, once; asking again while the session's restore is
pending does nothing. The state is a small JSON file, `<data_dir>/lifecycle/restores.json`
(one entry per session: state, attempts, next try, last error), read and written under an
exclusive file lock, so the CLI, the CronJob and the analytics service can share it on one
volume.

`RestoreTracker.poll` (run by `sfu lifecycle run`, and by `restore --wait` in a loop) checks
each pending session: every object readable → done; an object back in plain Archive (the
request was lost, or the copy expired before the poll) → asked again. A failing request is
retried with exponential back-off (`BACKOFF_S * 2**attempts`, at most `MAX_ATTEMPTS`, then the
session is failed). `restore_counts(state_path)` gives the numbers the exporter shows
(`restores_pending`, `restores_failed`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfu.storage.base import ObjectStore, RestoreState, StorageError, Tier

logger = logging.getLogger(__name__)

BACKOFF_S = 60.0
MAX_ATTEMPTS = 6
RESTORE_HOURS = 48
_PREFIX = "vod/sessions/"


@dataclass(frozen=True, slots=True)
class RestoreCounts:
    pending: int
    failed: int
    done: int


def restore_counts(state_path: Path) -> RestoreCounts:
    entries = _read(state_path)
    states = [str(e.get("state")) for e in entries.values()]
    return RestoreCounts(states.count("pending"), states.count("failed"), states.count("done"))


def restore_metrics(data_dir: Path) -> dict[str, int]:
    """`restores_pending` and `restores_failed` for the analytics exporter."""
    counts = restore_counts(state_path_for(data_dir))
    return {"restores_pending": counts.pending, "restores_failed": counts.failed}


def _read(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return (
        {str(k): v for k, v in data.items() if isinstance(v, dict)}
        if isinstance(data, dict)
        else {}
    )


class RestoreTracker:
    def __init__(self, state_path: Path) -> None:
        self.path = state_path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = _read(self.path)
            yield entries
            temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            temp.write_text(json.dumps(entries, indent=1, sort_keys=True))
            os.replace(temp, self.path)

    def state(self, session_id: str) -> str | None:
        entry = _read(self.path).get(session_id)
        return str(entry["state"]) if entry else None

    async def request(self, store: ObjectStore, session_id: str, now: float) -> str:
        """Start the session's restore unless one is pending; returns the session's state."""
        with self._locked() as entries:
            entry = entries.get(session_id)
            if entry is not None and entry.get("state") == "pending":
                return "pending"
            entry = {"state": "pending", "requested_at": now, "attempts": 0, "next_try_at": now}
            entries[session_id] = entry
        return await self._check(store, session_id, now, ask=True)

    async def poll(self, store: ObjectStore, now: float | None = None) -> RestoreCounts:
        now = time.time() if now is None else now
        for session_id, entry in _read(self.path).items():
            if entry.get("state") == "pending" and float(entry.get("next_try_at", 0)) <= now:
                await self._check(store, session_id, now, ask=True)
        return restore_counts(self.path)

    async def _check(self, store: ObjectStore, session_id: str, now: float, *, ask: bool) -> str:
        error: str | None = None
        readable = True
        objects = 0
        try:
            async for info in store.list(f"{_PREFIX}{session_id}/"):
                objects += 1
                if info.tier is not Tier.ARCHIVE:
                    continue
                state = await store.restore_state(info.key)
                if state is RestoreState.ARCHIVED and ask:
                    await store.restore(info.key, hours=RESTORE_HOURS)
                    state = await store.restore_state(info.key)
                if state is not RestoreState.RESTORED:
                    readable = False
        except StorageError as exc:
            error = str(exc)
        if objects == 0 and error is None:
            error = "no objects under this session"
        with self._locked() as entries:
            entry = entries.setdefault(session_id, {"requested_at": now, "attempts": 0})
            if error is not None:
                attempts = int(entry.get("attempts", 0)) + 1
                entry.update(attempts=attempts, error=error)
                entry["next_try_at"] = now + BACKOFF_S * 2**attempts
                entry["state"] = "failed" if attempts >= MAX_ATTEMPTS or objects == 0 else "pending"
                logger.warning(
                    "restore of session %s: %s (attempt %d)", session_id, error, attempts
                )
            elif readable:
                entry.update(state="done", done_at=now)
                logger.info("restore of session %s: done", session_id)
            else:
                entry.update(state="pending", next_try_at=now)
            return str(entry["state"])


async def request_session(
    store: ObjectStore, session_id: str, state_path: Path, now: float | None = None
) -> str:
    """Ask for the whole session to be restored (once); returns pending, done or failed."""
    tracker = RestoreTracker(state_path)
    return await tracker.request(store, session_id, time.time() if now is None else now)


def state_path_for(data_dir: Path) -> Path:
    return data_dir / "lifecycle" / "restores.json"
