"""`sfu lifecycle run | explain | restore`: the store and the play store from the settings,
then LifecycleRun, `explain` or the RestoreTracker. Exit 0 on success, 1 when a session could
not be handled (the summary says which), 2 for a bad argument."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sfu.analytics.plays import MemoryPlayStore, PlayStore
from sfu.config.settings import Settings
from sfu.lifecycle.engine import LAST_RUN, LifecycleRun, explain
from sfu.lifecycle.summary import LastRun, RunProgress
from sfu.storage import store_from_settings
from sfu.storage.restores import RestoreTracker

logger = logging.getLogger(__name__)

WAIT_POLL_S = 5.0


def parse_now(value: str | None) -> datetime:
    """`--now` (RFC 3339; a bare date or a naive time is UTC), or the current time."""
    if not value:
        return datetime.now(UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def state_dir(settings: Settings) -> Path:
    return settings.data_dir / "lifecycle"


def open_plays(settings: Settings) -> PlayStore:
    try:
        from sfu.analytics.store import open_play_store  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        logger.warning("no play store available yet: plays count as none (in-memory store)")
        return MemoryPlayStore()
    store: PlayStore = open_play_store(settings)
    return store


def progress(args: argparse.Namespace, settings: Settings) -> RunProgress:
    """The bar on a terminal, measured against the previous complete run's sessions."""
    last = LastRun.load(state_dir(settings) / LAST_RUN)
    return RunProgress(not args.no_progress, expected=last.sessions if last else None)


def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        now = parse_now(getattr(args, "now", None))
    except ValueError as exc:
        print(f"--now: {exc}", file=sys.stderr)
        return 2
    command = args.lifecycle_command
    if command == "run":
        return asyncio.run(_run(args, settings, now))
    if command == "explain":
        return asyncio.run(_explain(args, settings, now))
    return asyncio.run(_restore(args, settings))


async def _run(args: argparse.Namespace, settings: Settings, now: datetime) -> int:
    store = store_from_settings(settings)
    plays = open_plays(settings)
    try:
        engine = LifecycleRun(
            store,
            plays,
            settings.lifecycle,
            state_dir(settings),
            dry_run=args.dry_run,
            progress=progress(args, settings),
        )
        summary = await engine.run(now)
    finally:
        await plays.close()
        await store.close()
    if args.json:
        print(json.dumps({"now": now.isoformat(), "dry_run": args.dry_run, **summary.as_dict()}))
    else:
        verb = "would change" if args.dry_run else "changed"
        print(
            f"{summary.sessions} sessions, {summary.objects_seen} objects: {verb} "
            f"{summary.changed} tiers, deleted {summary.deleted}, {summary.skipped} already "
            f"right, {summary.restores_asked} restores asked, {len(summary.errors)} errors"
        )
        for error in summary.errors:
            print(f"  {error}")
    return 1 if summary.errors else 0


async def _explain(args: argparse.Namespace, settings: Settings, now: datetime) -> int:
    store = store_from_settings(settings)
    plays = open_plays(settings)
    try:
        found = await explain(
            store, plays, settings.lifecycle, state_dir(settings), args.session_id, now
        )
    finally:
        await plays.close()
        await store.close()
    if found is None:
        print(f"no published session {args.session_id!r}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(found))
        return 0
    decision = found["decision"]
    print(f"session {found['session_id']} as at {found['now']}")
    print(f"  published   {found['published_at']} (from {found['published_from']})")
    print(f"  age         {decision['age_days']:.1f} days -> {decision['age_tier'] or 'delete'}")
    print(f"  plays       {found['plays_in_window']} in the hot window (hot: {decision['hot']})")
    days = found["mentee_watched_days_ago"]
    print(
        f"  mentee      {'never watched' if days is None else f'last watched {days:.1f} days ago'}"
    )
    print(f"  mentor      {found['mentor_id']}: {found['mentor_plays']} plays")
    print(
        f"  score       {decision['score']:.2f} = mentee {decision['mentee_score']:.2f} + "
        f"mentor {decision['mentor_score']:.2f} (likely: {decision['likely']})"
    )
    print(f"  objects     {found['objects']} {found['objects_by_tier']}")
    print(f"  decision    {decision['action']} {decision['target'] or ''} ({decision['reason']})")
    return 0


async def _restore(args: argparse.Namespace, settings: Settings) -> int:
    store = store_from_settings(settings)
    tracker = RestoreTracker(state_dir(settings) / "restores.json")
    try:
        state = await tracker.request(store, args.session_id, time.time())
        while args.wait and state == "pending":
            await asyncio.sleep(WAIT_POLL_S)
            await tracker.poll(store)
            state = tracker.state(args.session_id) or "failed"
    finally:
        await store.close()
    print(f"session {args.session_id}: restore {state}")
    return 1 if state == "failed" else 0
