"""Recovery of what a crash left behind, and the hand-off of a finalised session.

`hand_off` enqueues a finalised session and then writes its `queued.json` marker. At SFU
start, `recover_unfinished` finalises and hands off sessions a crash left in
`status: "recording"`, and `recover_unqueued` hands off finalised sessions without a marker
(a crash between finalising and enqueueing), unless the queue already knows them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path

from redis.exceptions import RedisError

from sfu.core.timestamps import parse_rfc3339, rfc3339_from_s
from sfu.recording.job_queue import JobQueue
from sfu.recording.manifest import MANIFEST, SessionManifest
from sfu.recording.session import find_unfinished, find_unqueued, mark_queued

logger = logging.getLogger(__name__)


def finalise_crashed(session_dir: Path) -> SessionManifest:
    """Close a manifest a crash left in "recording": open tracks end at their file's mtime,
    the session at the last track end (or the newest file's mtime if it has no tracks)."""
    path = session_dir / MANIFEST
    manifest = SessionManifest.read(path)
    started = parse_rfc3339(manifest.started_at)
    last = 0.0
    for track in manifest.tracks:
        if track.end_s is None:
            try:
                mtime = (session_dir / track.file).stat().st_mtime
            except OSError:
                mtime = started + track.start_s
            track.end_s = round(max(track.start_s, mtime - started), 3)
        last = max(last, track.end_s)
    if not manifest.tracks:
        mtimes = [p.stat().st_mtime for p in session_dir.rglob("*") if p.is_file()]
        last = max(0.0, max(mtimes, default=started) - started)
    for participant in manifest.participants:
        if participant.left_at_s is None:
            participant.left_at_s = round(max(participant.joined_at_s, last), 3)
    manifest.ended_at = rfc3339_from_s(started + last)
    manifest.status = "finalised"
    manifest.write(path)
    return manifest


async def recover_unfinished(
    recordings_dir: Path | str,
    queue: JobQueue,
    *,
    node_id: str | None = None,
    stale_after_s: float | None = None,
    live: frozenset[str] = frozenset(),
    alive_nodes: frozenset[str] = frozenset(),
) -> list[str]:
    """Finalise and enqueue every session a crash left in "recording"; their ids.

    `node_id`, `stale_after_s`, `live` and `alive_nodes` say which sessions are abandoned when
    several nodes share the directory (see `find_unfinished`)."""
    root = Path(recordings_dir)
    recovered: list[str] = []
    abandoned = functools.partial(
        find_unfinished,
        root,
        node_id=node_id,
        stale_after_s=stale_after_s,
        live=live,
        alive_nodes=alive_nodes,
    )
    for manifest in await asyncio.to_thread(abandoned):
        session_dir = root / manifest.session_id
        try:
            await asyncio.to_thread(finalise_crashed, session_dir)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.error("recording %s: cannot finalise after a crash: %s", session_dir, exc)
            continue
        await hand_off(root, queue, manifest.session_id)
        logger.warning("recording %s: finalised after a crash and enqueued", manifest.session_id)
        recovered.append(manifest.session_id)
    return recovered


async def hand_off(recordings_dir: Path | str, queue: JobQueue, session_id: str) -> None:
    """Enqueue a finalised session, then write its `queued.json` marker.

    The marker is written only once the queue holds the job, so a crash in between leaves a
    finalised session without one, which `recover_unqueued` hands off at the next start (a
    second enqueue of a queued session is a no-op). Redis errors surface as ConnectionError,
    which the room's recording logs without failing the room."""
    try:
        await queue.enqueue(session_id)
    except RedisError as exc:
        raise ConnectionError(f"vod queue unavailable: {exc}") from exc
    await asyncio.to_thread(mark_queued, Path(recordings_dir) / session_id)


async def recover_unqueued(
    recordings_dir: Path | str, queue: JobQueue, *, stale_after_s: float | None = None
) -> list[str]:
    """Hand off every finalised session without a `queued.json` marker; the ids enqueued.

    A session the queue already knows (queued, done: published, or dead: left to an
    operator's `requeue`) is only marked, so a published session is never rendered again.
    `stale_after_s`: only sessions finalised longer ago (another node may be handing off)."""
    root = Path(recordings_dir)
    enqueued: list[str] = []
    unqueued = functools.partial(find_unqueued, root, stale_after_s=stale_after_s)
    for manifest in await asyncio.to_thread(unqueued):
        session_id = manifest.session_id
        try:
            state = await queue.state(session_id)
        except ValueError as exc:  # a session id the queue cannot hold
            logger.error("recording %s: cannot be queued: %s", session_id, exc)
            continue
        if state is None:
            await queue.enqueue(session_id)
            enqueued.append(session_id)
            logger.warning("recording %s: finalised but never queued; enqueued", session_id)
        else:
            logger.info("recording %s: already known to the queue (%s)", session_id, state)
        await asyncio.to_thread(mark_queued, root / session_id)
    return enqueued
