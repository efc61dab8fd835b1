"""Recording sessions on disk for the recovery and lease tests: a session made to look stale."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sfu.recording.manifest import MANIFEST
from sfu.recording.session import (
    HEARTBEAT,
    RecordingSession,
)

ORPHAN_S = 60.0


def stale_session(
    root: Path, session_id: str, node_id: str | None, age_s: float
) -> RecordingSession:
    session = RecordingSession(root, session_id, "room-1", node_id=node_id)
    then = time.time() - age_s
    for path in (session.dir / HEARTBEAT, session.dir / MANIFEST):
        os.utime(path, (then, then))
    return session
