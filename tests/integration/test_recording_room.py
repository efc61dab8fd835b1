"""A recorded room on a real SFU: every published track lands in a Matroska file that decodes,
the manifest lines them up, and recording does not change forwarding."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import av

from sfu.testing.process import SfuProcess
from tests.support.rooms import Join, camera, create_room, microphone
from tests.support.vod_worker import run_worker


def decoded_frames(path: Path) -> tuple[int, int]:
    """(video frames, audio samples) decoded from a recorded file."""
    frames = samples = 0
    with av.open(str(path)) as container:
        for frame in container.decode():
            if isinstance(frame, av.VideoFrame):
                frames += 1
            elif isinstance(frame, av.AudioFrame):
                samples += frame.samples
    return frames, samples


async def test_recorded_room_writes_decodable_tracks(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu)
    room_id = str(room["room_id"])
    assert room["recording"]["status"] == "recording"
    session_id = room["recording"]["session_id"]
    mentor = await join(room_id, "mentor")
    mentee = await join(room_id, "mentee")
    await mentor.publish({camera(): "camera", microphone(): "microphone"})
    await mentee.publish({camera(): "camera", microphone(): "microphone"})
    await mentee.wait_frames(lambda i: i.kind == "video", 30, timeout=30)
    await asyncio.sleep(2.0)
    screen = camera()
    await mentee.publish({screen: "screen"})
    await mentor.wait_frames(screen.id, 1, timeout=20)
    await asyncio.sleep(4.0)  # the middle of the session is shared
    await mentee.unpublish(screen)
    await mentor.wait_for("track_unpublished", timeout=10)
    info = await mentor.wait_frames(lambda i: i.source == "camera", 1, timeout=5)
    # recording does not slow forwarding: the camera keeps its 30 fps
    start, count = asyncio.get_running_loop().time(), info.frames
    await mentor.wait_frames(lambda i: i.source == "camera", count + 60, timeout=10)
    assert 60 / (asyncio.get_running_loop().time() - start) > 25

    async with aiohttp.ClientSession() as http:
        deleted = await http.delete(f"{sfu.url}/rooms/{room_id}", headers=sfu.service_headers())
        body = await deleted.json()
    assert body["recording"]["session_id"] == session_id
    assert body["recording"]["status"] == "queued"
    data_dir = Path(sfu.env["SFU_DATA_DIR"])
    assert (data_dir / "vod-queue" / "pending").exists()

    session_dir = Path(sfu.env["SFU_DATA_DIR"]) / "recordings" / session_id
    manifest = json.loads((session_dir / "manifest.json").read_text())
    assert manifest["status"] == "finalised"
    assert manifest["room_id"] == room_id
    roles = {p["participant_id"]: p["role"] for p in manifest["participants"]}
    assert sorted(roles.values()) == ["mentee", "mentor"]
    tracks = manifest["tracks"]
    assert sorted((roles[t["participant_id"]], t["source"]) for t in tracks) == [
        ("mentee", "camera"),
        ("mentee", "microphone"),
        ("mentee", "screen"),
        ("mentor", "camera"),
        ("mentor", "microphone"),
    ]
    for track in tracks:
        assert track["end_s"] is not None and track["end_s"] > track["start_s"]
        frames, samples = decoded_frames(session_dir / track["file"])
        seconds = track["end_s"] - track["start_s"]
        if track["kind"] == "video":
            assert frames >= 25 * seconds * 0.8, (track, frames)
        else:
            assert samples >= 48000 * seconds * 0.8, (track, samples)
    screen_entry = next(t for t in tracks if t["source"] == "screen")
    cameras = [t for t in tracks if t["source"] == "camera"]
    assert all(screen_entry["start_s"] > c["start_s"] + 1 for c in cameras)

    # the VOD pipeline: `sfu vod-worker --once` with the same settings turns it into HLS
    env = {**sfu.env}
    code, logs = await run_worker(env, "--once", timeout=240)
    assert code == 0, logs[-3000:]
    vod = data_dir / "objects" / "vod" / "sessions" / session_id
    metadata = json.loads((vod / "metadata.json").read_text())
    assert metadata["session_id"] == session_id and metadata["room_id"] == room_id
    assert sorted(p["role"] for p in metadata["participants"]) == ["mentee", "mentor"]
    session_s = metadata["duration_s"]
    for rendition, height in (("720p", 720), ("360p", 360)):
        with av.open(str(vod / rendition / "index.m3u8")) as container:
            video = audio = 0
            last = 0.0
            for frame in container.decode():
                if isinstance(frame, av.VideoFrame):
                    video += 1
                    assert frame.height == height
                    if frame.time is not None:
                        last = max(last, frame.time)
                elif isinstance(frame, av.AudioFrame):
                    audio += frame.samples
        assert abs(last - session_s) < 0.5 + 0.1, (rendition, last, session_s)
        assert audio > 48000 * session_s * 0.8
    with av.open(str(vod / "master.m3u8")) as container:
        assert container.streams.video


async def test_unrecorded_room_writes_nothing(sfu: SfuProcess, join: Join) -> None:
    room = await create_room(sfu, record=False)
    assert room["recording"] is None
    mentor = await join(room["room_id"], "mentor")
    await mentor.publish({camera(): "camera"})
    async with aiohttp.ClientSession() as http:
        deleted = await http.delete(
            f"{sfu.url}/rooms/{room['room_id']}", headers=sfu.service_headers()
        )
        assert (await deleted.json())["recording"] is None


async def test_a_reconnect_mid_session_keeps_both_parts_in_the_vod(
    sfu: SfuProcess, join: Join
) -> None:
    """The mentee's browser reconnects (a flaky network: a new socket of the same user replaces
    the old one, 4409) and publishes again. The recording keeps the mentee's camera from before
    and after as two tracks, and the VOD shows the mentee's video in both parts."""
    room = await create_room(sfu)
    room_id = str(room["room_id"])
    session_id = room["recording"]["session_id"]
    mentor = await join(room_id, "mentor")
    mentee = await join(room_id, "mentee", user="lee")
    await mentor.publish({camera(): "camera", microphone(): "microphone"})
    await mentee.publish({camera(): "camera", microphone(): "microphone"})
    await mentor.wait_frames(lambda i: i.participant_id == mentee.participant_id, 30, timeout=30)
    await asyncio.sleep(2.0)
    again = await join(room_id, "mentee", user="lee")
    assert await mentee.wait_closed(10) == 4409
    await again.publish({camera(): "camera", microphone(): "microphone"})
    await mentor.wait_frames(lambda i: i.participant_id == again.participant_id, 30, timeout=30)
    await asyncio.sleep(2.0)
    async with aiohttp.ClientSession() as http:
        deleted = await http.delete(f"{sfu.url}/rooms/{room_id}", headers=sfu.service_headers())
        assert deleted.status == 200, await deleted.text()

    session_dir = Path(sfu.env["SFU_DATA_DIR"]) / "recordings" / session_id
    manifest = json.loads((session_dir / "manifest.json").read_text())
    ids = (mentee.participant_id, again.participant_id)
    mentee_cameras = sorted(
        (t for t in manifest["tracks"] if t["source"] == "camera" and t["participant_id"] in ids),
        key=lambda t: t["start_s"],
    )
    assert [t["participant_id"] for t in mentee_cameras] == [
        mentee.participant_id,
        again.participant_id,
    ]
    code, logs = await run_worker({**sfu.env}, "--once", timeout=240)
    assert code == 0, logs[-3000:]
    vod = Path(sfu.env["SFU_DATA_DIR"]) / "objects" / "vod" / "sessions" / session_id
    metadata = json.loads((vod / "metadata.json").read_text())
    assert [p["role"] for p in metadata["participants"]].count("mentee") == 2
    wanted = [(t["start_s"] + t["end_s"]) / 2 for t in mentee_cameras]
    found: dict[float, float] = {}
    with av.open(str(vod / "360p" / "index.m3u8")) as container:
        for frame in container.decode(video=0):
            if frame.time is None:
                continue
            for t in wanted:
                if t not in found and frame.time >= t:
                    # side by side at 640x360: the mentee's 4:3 camera fills 320x240 at (320, 60)
                    luma = frame.to_ndarray(format="gray")[80:280, 340:620]
                    found[t] = float(luma.std())
    assert len(found) == 2, (wanted, found)
    assert all(std > 3.0 for std in found.values()), found  # video, not a flat placeholder
