"""Helpers for the lifecycle tests: a fake published session and its keys."""

from __future__ import annotations

import json

from sfu.storage import ObjectStore

SEGMENTS = ("720p/0.ts", "720p/1.ts", "360p/0.ts")
PLAYLISTS = ("720p/index.m3u8", "360p/index.m3u8")


def session_keys(session_id: str) -> list[str]:
    names = [*SEGMENTS, *PLAYLISTS, "metadata.json", "master.m3u8"]
    return [f"vod/sessions/{session_id}/{name}" for name in names]


async def publish_fake(
    store: ObjectStore,
    session_id: str,
    ended_at: str,
    *,
    mentor: str = "mentor-1",
    mentee: str = "mentee-1",
    master: bool = True,
    metadata: bool = True,
) -> None:
    """What the VOD worker publishes, in its order: segments, playlists and metadata, master."""
    prefix = f"vod/sessions/{session_id}/"
    for name in SEGMENTS:
        await store.put(prefix + name, b"ts" + name.encode(), content_type="video/mp2t")
    for name in PLAYLISTS:
        lines = ["#EXTM3U", "#EXTINF:2.0,", name.split("/")[1].replace("index.m3u8", "0.ts")]
        await store.put(prefix + name, "\n".join(lines).encode(), content_type="x/m3u8")
    if metadata:
        meta = {
            "session_id": session_id,
            "ended_at": ended_at,
            "participants": [
                {"user_id": mentor, "role": "mentor"},
                {"user_id": mentee, "role": "mentee"},
            ],
        }
        await store.put(prefix + "metadata.json", json.dumps(meta).encode(), content_type="a/j")
    if master:
        body = b"#EXTM3U\n720p/index.m3u8\n360p/index.m3u8\n"
        await store.put(prefix + "master.m3u8", body, content_type="x/m3u8")
