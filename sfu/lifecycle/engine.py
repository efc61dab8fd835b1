"""LifecycleRun: the rules applied to every published session, a few sessions at a time.

The catalogue is streamed (`catalogue.sessions`); up to `concurrency` sessions are worked on
at once. Within a session the objects move together, segments first, then the index
playlists and metadata.json, master.m3u8 last. A deletion goes the other way round for the
manifest: master.m3u8 first (so no player finds a master whose segments are going), then the
segments and index playlists, metadata.json last.

Idempotent and resumable: an object already in its target tier is skipped (its tier comes
with the listing), so a run killed half-way and run again changes each object once. Leaving
Archive needs a restored copy: an archived session that should be warmer gets a restore asked
(`restores.RestoreTracker`, on the real clock whatever `--now` says) and moves on the first
run after the copy is readable.

Each change is one audit line on the `sfu.lifecycle.audit` logger (see `audit`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sfu.analytics.plays import PlayStore
from sfu.config.settings import LifecycleSettings
from sfu.lifecycle.audit import audit_change
from sfu.lifecycle.catalogue import METADATA, FactsReader, SessionObjects, sessions
from sfu.lifecycle.rules import Action, Decision, decide
from sfu.lifecycle.summary import LastRun, RunProgress, RunSummary
from sfu.storage.base import ObjectInfo, ObjectStore, RestoreState, StorageError, Tier
from sfu.storage.restores import RestoreTracker

logger = logging.getLogger(__name__)

LAST_RUN = "last_run.json"
"""Under the state folder: the size of the last complete run, for the progress bar."""


def _finished(
    tasks: set[asyncio.Task[None]], limit: asyncio.Semaphore, task: asyncio.Task[None]
) -> None:
    tasks.discard(task)
    limit.release()


class LifecycleRun:
    def __init__(
        self,
        store: ObjectStore,
        plays: PlayStore,
        cfg: LifecycleSettings,
        state_dir: Path,
        *,
        dry_run: bool = False,
        progress: RunProgress | None = None,
        before_change: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.cfg = cfg
        self.dry_run = dry_run
        self.facts = FactsReader(store, plays, state_dir, cfg.hot_window_days)
        self.restores = RestoreTracker(state_dir / "restores.json")
        self.progress = progress or RunProgress(False)
        self.last_run_path = state_dir / LAST_RUN
        self.before_change = before_change
        """Called with each key before it is changed (tests use it to simulate a kill)."""
        self.summary = RunSummary()
        self._failure: Exception | None = None

    async def run(self, now: datetime) -> RunSummary:
        """Every session, `concurrency` at a time. If one fails (other than a StorageError,
        which is counted and logged), no new session or object is started, the changes in
        flight finish (and are audited), and the error is raised."""
        limit = asyncio.Semaphore(self.cfg.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        try:
            async for session in sessions(self.store):
                await limit.acquire()
                if self._failure is not None:
                    break
                task = asyncio.create_task(self._one(session, now))
                tasks.add(task)
                task.add_done_callback(functools.partial(_finished, tasks, limit))
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            self.progress.done(self.summary)
        if self._failure is not None:
            raise self._failure
        if not self.dry_run:
            self.facts.save_mentors()
            LastRun(self.summary.sessions, self.summary.objects_seen, time.time()).save(
                self.last_run_path
            )
            await self.restores.poll(self.store)  # restores are real: the real clock
        return self.summary

    async def _one(self, session: SessionObjects, now: datetime) -> None:
        try:
            await self._session(session, now)
        except Exception as exc:
            if self._failure is None:
                self._failure = exc
            raise

    async def _session(self, session: SessionObjects, now: datetime) -> None:
        facts = await self.facts.facts(session, now)
        self.summary.sessions += 1
        self.summary.objects_seen += len(session.objects)
        if facts is None:
            self.summary.skipped += len(session.objects)
            logger.info("session %s: no master.m3u8 nor metadata: left alone", session.session_id)
            self.progress.update(self.summary)
            return
        decision = decide(facts, now, self.cfg)
        target = decision.target.value if decision.target else "deleted"
        self.summary.by_target[target] = self.summary.by_target.get(target, 0) + 1
        try:
            if decision.action is Action.DELETE:
                await self._delete(session)
            else:
                await self._move(session, decision, now)
        except StorageError as exc:
            self.summary.errors.append(f"{session.session_id}: {exc}")
            logger.warning("session %s: %s", session.session_id, exc)
        self.progress.update(self.summary)

    async def _move(self, session: SessionObjects, decision: Decision, now: datetime) -> None:
        assert decision.target is not None
        pending = [o for o in session.ordered() if o.tier is not decision.target]
        self.summary.skipped += len(session.objects) - len(pending)
        if not pending:
            return
        archived = [o for o in pending if o.tier is Tier.ARCHIVE]
        if archived and not await self._readable(session, archived, now):
            return
        for info in pending:
            if self._failure is not None:
                return
            if self.dry_run:
                self.summary.changed += 1
                continue
            if self.before_change is not None:
                self.before_change(info.key)
            await self.store.set_tier(info.key, decision.target)
            audit_change(session.session_id, info.key, info.tier.value, decision.target.value)
            self.summary.changed += 1

    async def _readable(
        self, session: SessionObjects, archived: list[ObjectInfo], now: datetime
    ) -> bool:
        """Whether every archived object has a restored copy; if not, ask for the restore."""
        states = [await self.store.restore_state(o.key) for o in archived]
        if all(s is RestoreState.RESTORED for s in states):
            return True
        if not self.dry_run:
            await self.restores.request(self.store, session.session_id, time.time())
        self.summary.restores_asked += 1
        self.summary.skipped += len(archived)
        return False

    async def _delete(self, session: SessionObjects) -> None:
        master = session.key("master.m3u8")
        meta = session.key(METADATA)
        rest = [o for o in session.ordered() if o.key not in (master, meta)]
        first = [o for o in session.objects if o.key == master]
        last = [o for o in session.objects if o.key == meta]
        for info in [*first, *rest, *last]:
            if self._failure is not None:
                return
            if self.dry_run:
                self.summary.deleted += 1
                continue
            if self.before_change is not None:
                self.before_change(info.key)
            await self.store.delete(info.key)
            audit_change(session.session_id, info.key, info.tier.value, "deleted")
            self.summary.deleted += 1
        if not self.dry_run:
            self.facts.forget(session.session_id)


async def explain(
    store: ObjectStore, plays: PlayStore, cfg: LifecycleSettings, state_dir: Path,
    session_id: str, now: datetime,
) -> dict[str, Any] | None:  # fmt: skip
    """The decision for one session with its inputs (None: no such session)."""
    reader = FactsReader(store, plays, state_dir, cfg.hot_window_days)
    async for session in sessions(store, only=session_id):
        facts = await reader.facts(session, now)
        if facts is None:
            return None
        decision = decide(facts, now, cfg)
        tiers: dict[str, int] = {}
        for info in session.objects:
            tiers[info.tier.value] = tiers.get(info.tier.value, 0) + 1
        return {
            "session_id": session_id,
            "now": now.isoformat(),
            "published_at": facts.published_at.isoformat(),
            "published_from": facts.published_from,
            "plays_in_window": facts.plays_in_window,
            "mentee_watched_days_ago": facts.mentee_watched_days_ago,
            "mentor_id": facts.mentor_id,
            "mentor_plays": facts.mentor_plays,
            "objects": len(session.objects),
            "objects_by_tier": tiers,
            "decision": decision.as_dict(),
        }
    return None
