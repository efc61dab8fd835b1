"""Which "recording" sessions a node may finalise on a shared recordings volume, and the watch
that keeps its own sessions' heartbeats fresh and adopts abandoned ones (real files, a real
LocalJobQueue)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TypedDict, Unpack

from sfu.recording.local_queue import LocalJobQueue
from sfu.recording.manifest import MANIFEST
from sfu.recording.session import (
    HEARTBEAT,
    RecordingSession,
    find_unfinished,
    find_unqueued,
    last_sign_of_life,
)
from sfu.recording.watch import RecordingWatch
from tests.support.recordings import ORPHAN_S, stale_session


class UnfinishedFilters(TypedDict, total=False):
    """The keyword arguments of `find_unfinished`."""

    node_id: str | None
    stale_after_s: float | None
    live: frozenset[str]
    alive_nodes: frozenset[str]
    now: float | None


def _ids(root: Path, **kwargs: Unpack[UnfinishedFilters]) -> list[str]:
    return [m.session_id for m in find_unfinished(root, **kwargs)]


def test_a_shared_volume_keeps_other_nodes_live_sessions(tmp_path: Path) -> None:
    stale_session(tmp_path, "SE_fresh_other", "node-b", age_s=5)
    stale_session(tmp_path, "SE_stale_other", "node-b", age_s=ORPHAN_S + 5)
    stale_session(tmp_path, "SE_fresh_mine", "node-a", age_s=5)
    stale_session(tmp_path, "SE_stale_live", "node-a", age_s=ORPHAN_S + 5)
    stale_session(tmp_path, "SE_no_node", None, age_s=ORPHAN_S + 5)
    shared = _ids(
        tmp_path, node_id="node-a", stale_after_s=ORPHAN_S, live=frozenset({"SE_stale_live"})
    )
    assert shared == ["SE_fresh_mine", "SE_no_node", "SE_stale_other"]
    # A periodic scan (no node id): only what has been silent for the orphan time.
    assert _ids(tmp_path, stale_after_s=ORPHAN_S) == [
        "SE_no_node",
        "SE_stale_live",
        "SE_stale_other",
    ]
    # One SFU owning the directory: everything left in "recording".
    assert len(_ids(tmp_path)) == 5


def test_sign_of_life_without_a_heartbeat_is_the_newest_file(tmp_path: Path) -> None:
    session = stale_session(tmp_path, "SE_old_format", None, age_s=600)
    (session.dir / HEARTBEAT).unlink()
    track = session.dir / "tracks" / "p-camera-0.mkv"
    track.write_bytes(b"x")
    assert abs(last_sign_of_life(session.dir) - time.time()) < 5
    assert _ids(tmp_path, stale_after_s=ORPHAN_S) == []
    os.utime(track, (time.time() - 600, time.time() - 600))
    assert _ids(tmp_path, stale_after_s=ORPHAN_S) == ["SE_old_format"]


async def test_unqueued_sessions_are_left_to_a_hand_off_in_progress(tmp_path: Path) -> None:
    recent = RecordingSession(tmp_path, "SE_recent", "room-1")
    await recent.finalise()
    old = RecordingSession(tmp_path, "SE_old", "room-1")
    await old.finalise()
    then = time.time() - ORPHAN_S - 5
    os.utime(old.manifest_path, (then, then))
    assert [m.session_id for m in find_unqueued(tmp_path, stale_after_s=ORPHAN_S)] == ["SE_old"]
    assert len(find_unqueued(tmp_path)) == 2


async def test_watch_beats_for_live_sessions_and_adopts_abandoned_ones(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    live = stale_session(root, "SE_live", "node-a", age_s=ORPHAN_S + 5)
    stale_session(root, "SE_abandoned", "node-b", age_s=ORPHAN_S + 5)
    stale_session(root, "SE_other_live", "node-b", age_s=1)
    queue = LocalJobQueue(tmp_path / "queue")
    watch = RecordingWatch(root, queue, lambda: [live], node_id="node-a", orphan_s=ORPHAN_S)

    await watch.beat()
    assert time.time() - last_sign_of_life(live.dir) < 5

    assert await watch.scan() == ["SE_abandoned"]
    manifest = json.loads((root / "SE_abandoned" / MANIFEST).read_text())
    assert manifest["status"] == "finalised"
    assert (root / "SE_abandoned" / "queued.json").exists()
    assert await queue.state("SE_abandoned") is not None
    for session_id in ("SE_live", "SE_other_live"):
        assert json.loads((root / session_id / MANIFEST).read_text())["status"] == "recording"
        assert await queue.state(session_id) is None
    assert await watch.scan() == []  # adopted once
    await watch.close()
    await queue.close()
