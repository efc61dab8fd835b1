"""sfu.vod: layout timeline (pure) and a full render of a tiny synthetic session, decoded back."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from sfu.config.ladder import Rendition
from sfu.recording.manifest import ManifestError, load_manifest, parse_manifest
from sfu.vod.canvas import BLACK, Planes, planes_of, yuv_of_rgb
from sfu.vod.compose import (
    PLACEHOLDER,
    PLACEHOLDER_RGB,
    AudioEvent,
    VideoEvent,
    VideoTrackReader,
    programme,
)
from sfu.vod.layout import Layout, LayoutKind, Rect, build_timeline, fit, layout_at, slots
from sfu.vod.pipeline import EncoderStopped
from sfu.vod.render import RenderResult, render_session
from tests.support.media_files import write_opus_tone, write_recorded_video, write_vp8_track

SESSION_S = 6.0
MENTOR_RGB = (210, 40, 40)
MENTEE_RGB = (40, 40, 210)
SCREEN_RGB = (40, 200, 40)
SCREEN_ON = (2.0, 3.6)
MENTEE_AUDIO_START = 1.5


def _participants() -> list[dict[str, Any]]:
    return [
        {"participant_id": "p-mentor", "user_id": "u1", "name": "Kim", "role": "mentor",
         "joined_at_s": 0.0, "left_at_s": SESSION_S},
        {"participant_id": "p-mentee", "user_id": "u2", "name": "Lee", "role": "mentee",
         "joined_at_s": 0.5, "left_at_s": SESSION_S},
    ]  # fmt: skip


def _track(tid: str, pid: str, kind: str, source: str, start: float, end: float) -> dict[str, Any]:
    codec = "opus" if kind == "audio" else "vp8"
    return {
        "track_id": tid,
        "participant_id": pid,
        "kind": kind,
        "source": source,
        "codec": codec,
        "file": f"tracks/{tid}.mkv",
        "start_s": start,
        "end_s": end,
        "segment": 0,
    }


def _manifest(tracks: list[dict[str, Any]], duration: float = SESSION_S) -> dict[str, Any]:
    return {
        "session_id": "sess-1",
        "room_id": "room-1",
        "started_at": "2025-01-02T03:04:05Z",
        "ended_at": f"2025-01-02T03:04:{5 + duration:06.3f}Z",
        "status": "finalised",
        "participants": _participants(),
        "tracks": tracks,
    }


# -- layout timeline (no media) ---------------------------------------------------------------


def test_timeline_side_by_side_then_share_then_back() -> None:
    m = parse_manifest(
        _manifest(
            [
                _track("cam-a", "p-mentor", "video", "camera", 0.0, 6.0),
                _track("cam-b", "p-mentee", "video", "camera", 0.5, 5.0),
                _track("scr-1", "p-mentor", "video", "screen", 2.0, 3.0),
                _track("scr-2", "p-mentee", "video", "screen", 4.0, 4.5),
                _track("mic-a", "p-mentor", "audio", "microphone", 0.0, 6.0),
            ]
        )
    )
    tl = build_timeline(m)
    got = [(iv.t0, iv.t1, iv.layout) for iv in tl]
    sbs = LayoutKind.SIDE_BY_SIDE
    assert got == [
        (0.0, 0.5, Layout(sbs, "cam-a", None)),
        (0.5, 2.0, Layout(sbs, "cam-a", "cam-b")),
        (2.0, 3.0, Layout(LayoutKind.SCREEN, "cam-a", "cam-b", "scr-1")),
        (3.0, 4.0, Layout(sbs, "cam-a", "cam-b")),
        (4.0, 4.5, Layout(LayoutKind.SCREEN, "cam-a", "cam-b", "scr-2")),
        (4.5, 5.0, Layout(sbs, "cam-a", "cam-b")),
        (5.0, 6.0, Layout(sbs, "cam-a", None)),
    ]
    assert layout_at(tl, 2.5).screen == "scr-1"
    assert layout_at(tl, 0.1).mentee is None
    assert layout_at(tl, 99.0) == tl[-1].layout


def test_timeline_camera_segments_and_clipping() -> None:
    m = parse_manifest(
        _manifest(
            [
                _track("cam-1", "p-mentee", "video", "camera", -0.2, 2.0),
                _track("cam-2", "p-mentee", "video", "camera", 2.0, 9.0),
            ]
        )
    )
    tl = build_timeline(m)
    assert [(iv.t0, iv.t1, iv.layout.mentee) for iv in tl] == [
        (0.0, 2.0, "cam-1"),
        (2.0, 6.0, "cam-2"),
    ]
    assert all(iv.layout.mentor is None for iv in tl)


def test_slots_and_fit() -> None:
    side = slots(Layout(LayoutKind.SIDE_BY_SIDE, "a", "b"), 1280, 720)
    assert [(s.name, s.track_id, s.rect) for s in side] == [
        ("mentor", "a", Rect(0, 0, 640, 720)),
        ("mentee", "b", Rect(640, 0, 640, 720)),
    ]
    share = slots(Layout(LayoutKind.SCREEN, "a", "b", "s"), 1280, 720)
    assert [s.rect for s in share] == [
        Rect(0, 0, 960, 720),
        Rect(960, 0, 320, 360),
        Rect(960, 360, 320, 360),
    ]
    assert fit(320, 240, Rect(0, 0, 640, 720)) == Rect(0, 120, 640, 480)
    assert fit(1920, 1080, Rect(0, 0, 960, 720)) == Rect(0, 90, 960, 540)
    # offsets stay even (yuv420p chroma grid): centred to within one pixel
    assert fit(320, 240, Rect(0, 0, 640, 486)) == Rect(0, 2, 640, 480)
    assert fit(240, 320, Rect(960, 0, 324, 360)) == Rect(986, 0, 270, 360)


def test_manifest_rejects_bad_input() -> None:
    bad = _manifest([_track("x", "p-mentor", "video", "camera", 0, 1)])
    bad["tracks"][0]["file"] = "../../etc/passwd"
    with pytest.raises(ManifestError):
        parse_manifest(bad)
    bad = _manifest([])
    bad["participants"][0]["role"] = "admin"
    with pytest.raises(ManifestError):
        parse_manifest(bad)
    with pytest.raises(ManifestError):
        parse_manifest({"session_id": "x"})


# -- synthetic media ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("session")
    (root / "tracks").mkdir()
    write_vp8_track(root / "tracks/cam-a.mkv", MENTOR_RGB, 6.0, range(45, 50))
    write_vp8_track(root / "tracks/cam-b.mkv", MENTEE_RGB, 5.0, range(0))
    write_vp8_track(root / "tracks/scr-1.mkv", SCREEN_RGB, SCREEN_ON[1] - SCREEN_ON[0], range(0))
    write_opus_tone(root / "tracks/mic-a.mkv", 440.0, 6.0)
    write_opus_tone(root / "tracks/mic-b.mkv", 1000.0, SESSION_S - MENTEE_AUDIO_START)
    tracks = [
        _track("cam-a", "p-mentor", "video", "camera", 0.0, 6.0),
        _track("cam-b", "p-mentee", "video", "camera", 0.5, 5.5),
        _track("scr-1", "p-mentor", "video", "screen", *SCREEN_ON),
        _track("mic-a", "p-mentor", "audio", "microphone", 0.0, 6.0),
        _track("mic-b", "p-mentee", "audio", "microphone", MENTEE_AUDIO_START, SESSION_S),
    ]
    (root / "manifest.json").write_text(json.dumps(_manifest(tracks)))
    return root


@pytest.fixture(scope="module")
def rendered(
    session_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, RenderResult, list[float]]:
    out = tmp_path_factory.mktemp("out")
    seen: list[float] = []
    result = render_session(session_dir, out, progress=seen.append)
    return out, result, seen


def _decode_rendition(playlist: Path) -> tuple[list[tuple[float, np.ndarray]], np.ndarray, float]:
    """(programme time, rgb frame) for every video frame, mono audio at 48 kHz from programme
    time 0, and the audio's first timestamp relative to the first video frame."""
    frames: list[tuple[float, np.ndarray]] = []
    chunks: list[np.ndarray] = []
    audio_t0: float | None = None
    with av.open(str(playlist)) as c:
        for frame in c.decode(c.streams.video[0], c.streams.audio[0]):
            if isinstance(frame, av.VideoFrame):
                frames.append((float(frame.time), frame.to_ndarray(format="rgb24")))
            elif isinstance(frame, av.AudioFrame):
                assert frame.sample_rate == 48000
                if audio_t0 is None:
                    assert frame.time is not None
                    audio_t0 = float(frame.time)
                chunks.append(frame.to_ndarray().astype(np.float32).mean(axis=0))
    assert frames and chunks and audio_t0 is not None
    v0 = min(t for t, _ in frames)
    frames = sorted(((t - v0, img) for t, img in frames), key=lambda x: x[0])
    return frames, np.concatenate(chunks), audio_t0 - v0


def _at(frames: list[tuple[float, np.ndarray]], t: float) -> np.ndarray:
    return min(frames, key=lambda f: abs(f[0] - t))[1]


def _mean(img: np.ndarray, x0: float, x1: float, y0: float = 0.3, y1: float = 0.7) -> np.ndarray:
    h, w, _ = img.shape
    region = img[int(h * y0) : int(h * y1), int(w * x0) : int(w * x1)].reshape(-1, 3)
    mean: np.ndarray = region.astype(np.float64).mean(axis=0)
    return mean


def _dominant(rgb: np.ndarray, channel: int) -> bool:
    others = [rgb[i] for i in range(3) if i != channel]
    return bool(rgb[channel] > 140 and all(rgb[channel] > o + 80 for o in others))


def _tone(audio: np.ndarray, t0: float, t1: float, hz: float) -> float:
    seg = audio[int(t0 * 48000) : int(t1 * 48000)].astype(np.float64)
    n = np.arange(len(seg))
    return float(abs(np.dot(seg, np.exp(-2j * np.pi * hz * n / 48000))) * 2 / len(seg))


@pytest.mark.parametrize("name,size", [("720p", (1280, 720)), ("360p", (640, 360))])
def test_rendition_picture_and_sound(
    rendered: tuple[Path, RenderResult, list[float]], name: str, size: tuple[int, int]
) -> None:
    out, _, _ = rendered
    frames, audio, audio_offset = _decode_rendition(out / name / "index.m3u8")
    assert all(img.shape == (size[1], size[0], 3) for _, img in frames)
    duration = frames[-1][0] + 1 / 25
    assert abs(duration - SESSION_S) < 0.5, duration
    assert len(frames) == round(SESSION_S * 25)
    # before the share: mentor left (red), mentee right (blue); mentee not there yet at 0.2 s
    early, before, share, after = (_at(frames, t) for t in (0.2, 1.0, 2.8, 4.5))
    assert _dominant(_mean(early, 0.1, 0.4), 0)
    assert _mean(early, 0.6, 0.9).max() < 60  # placeholder, dark
    for img in (before, after):
        assert _dominant(_mean(img, 0.05, 0.45), 0), _mean(img, 0.05, 0.45)
        assert _dominant(_mean(img, 0.55, 0.95), 2), _mean(img, 0.55, 0.95)
    # during the share: green fills the left three quarters, both cameras small on the right
    assert _dominant(_mean(share, 0.05, 0.7, 0.1, 0.9), 1)
    g = share.astype(np.int32)
    green = (g[..., 1] > 140) & (g[..., 1] > g[..., 0] + 80) & (g[..., 1] > g[..., 2] + 80)
    assert green.mean() > 0.6, green.mean()
    assert _dominant(_mean(share, 0.8, 0.95, 0.2, 0.3), 0)  # mentor, small, top right
    assert _dominant(_mean(share, 0.8, 0.95, 0.7, 0.8), 2)  # mentee, small, bottom right
    # sound: both tones mixed, the mentee's starting at its start_s, in sync with the picture
    assert abs(audio_offset) < 0.05, audio_offset
    assert abs(len(audio) / 48000 - SESSION_S) < 0.5
    assert float(np.sqrt(np.mean(audio**2))) > 0.05
    assert _tone(audio, 0.2, 1.3, 440) > 0.05
    assert _tone(audio, 0.2, 1.3, 1000) < 0.01
    assert _tone(audio, 1.7, 5.5, 440) > 0.05
    assert _tone(audio, 1.7, 5.5, 1000) > 0.05
    assert _tone(audio, 1.3, 1.45, 1000) < 0.02 < _tone(audio, 1.55, 1.7, 1000)


def test_playlists_and_segments(rendered: tuple[Path, RenderResult, list[float]]) -> None:
    out, result, seen = rendered
    master = (out / "master.m3u8").read_text()
    entries = re.findall(r"#EXT-X-STREAM-INF:(.*)\n(.*)", master)
    assert [uri for _, uri in entries] == ["720p/index.m3u8", "360p/index.m3u8"]
    for (attrs, _), res, codecs in zip(
        entries, ("1280x720", "640x360"), ("avc1.4d001f", "avc1.4d001e"), strict=True
    ):
        assert f"RESOLUTION={res}" in attrs
        assert f'CODECS="{codecs},mp4a.40.2"' in attrs
        bandwidth = re.search(r"BANDWIDTH=(\d+)", attrs)
        assert bandwidth is not None
        assert int(bandwidth.group(1)) > 0
    for info in result.renditions:
        assert len(info.segments) >= 2
        assert all(4.0 <= d <= 6.0 for d in info.segment_durations[:-1])
        assert abs(sum(info.segment_durations) - SESSION_S) < 0.5
        for seg in info.segments:
            with av.open(str(out / seg)) as c:  # every segment opens on a keyframe
                first = next(c.demux(c.streams.video[0]))
                assert first.is_keyframe
    with av.open(str(out / "master.m3u8")) as c:
        heights = sorted({s.height for s in c.streams.video})
    assert heights == [360, 720]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == list(
        result.files
    )
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) == round(SESSION_S * 25)


def test_metadata(rendered: tuple[Path, RenderResult, list[float]]) -> None:
    out, _, _ = rendered
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["session_id"] == "sess-1" and meta["room_id"] == "room-1"
    assert meta["started_at"] == "2025-01-02T03:04:05Z"
    assert meta["ended_at"] == "2025-01-02T03:04:11.000Z"
    assert meta["duration_s"] == SESSION_S
    assert [(p["participant_id"], p["role"]) for p in meta["participants"]] == [
        ("p-mentor", "mentor"),
        ("p-mentee", "mentee"),
    ]
    assert [(r["name"], r["width"], r["height"], r["playlist"]) for r in meta["renditions"]] == [
        ("720p", 1280, 720, "720p/index.m3u8"),
        ("360p", 640, 360, "360p/index.m3u8"),
    ]
    scr = next(t for t in meta["tracks"] if t["track_id"] == "scr-1")
    assert scr == {
        "track_id": "scr-1",
        "participant_id": "p-mentor",
        "role": "mentor",
        "source": "screen",
        "kind": "video",
        "codec": "vp8",
        "file": "tracks/scr-1.mkv",
        "start_s": SCREEN_ON[0],
        "end_s": SCREEN_ON[1],
    }
    assert len(meta["tracks"]) == 5


def test_rendering_twice_is_byte_identical(
    session_dir: Path,
    rendered: tuple[Path, RenderResult, list[float]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    out, result, _ = rendered
    with caplog.at_level(logging.INFO, logger="sfu.vod"):
        again = render_session(session_dir, tmp_path / "again")
    assert again.files == result.files
    for rel in result.files:
        assert (tmp_path / "again" / rel).read_bytes() == (out / rel).read_bytes(), rel
    percents = [m for m in caplog.messages if m.endswith("% done")]
    assert len(percents) == 10 and percents[-1].endswith("100% done")


def test_small_ladder_and_missing_track(session_dir: Path, tmp_path: Path) -> None:
    """A custom ladder; a track whose file is missing renders as placeholder/silence."""
    data = json.loads((session_dir / "manifest.json").read_text())
    data["tracks"].append(_track("gone", "p-mentee", "audio", "microphone", 0.0, 6.0))
    broken = tmp_path / "session"
    broken.mkdir()
    (broken / "tracks").symlink_to(session_dir / "tracks")
    (broken / "manifest.json").write_text(json.dumps(data))
    ladder = (Rendition("180p", 320, 180, 200_000, "2.1"),)
    result = render_session(broken, tmp_path / "out", ladder=ladder)
    assert [r.name for r in result.renditions] == ["180p"]
    frames, audio, _ = _decode_rendition(tmp_path / "out" / "180p" / "index.m3u8")
    assert frames[0][1].shape == (180, 320, 3)
    assert _tone(audio, 0.2, 1.3, 440) > 0.05


# -- composition in yuv420p and the threaded pipeline -------------------------------------------


def _canvas_frames(session_dir: Path, indices: set[int]) -> dict[int, av.VideoFrame]:
    manifest = load_manifest(session_dir)
    got: dict[int, av.VideoFrame] = {}
    count = 0
    for event in programme(manifest, session_dir, 1280, 720, 25):
        if isinstance(event, VideoEvent):
            assert event.frame.format.name == "yuv420p"
            assert (event.frame.width, event.frame.height) == (1280, 720)
            assert event.frame.pts == event.index == count
            count += 1
            if event.index in indices:
                got[event.index] = event.frame
    assert count == round(SESSION_S * 25)
    return got


def _near(planes: Planes, x: int, y: int, rgb: tuple[int, int, int], tol: int = 10) -> bool:
    want = yuv_of_rgb(rgb)
    got = (int(planes.y[y, x]), int(planes.u[y // 2, x // 2]), int(planes.v[y // 2, x // 2]))
    return all(abs(g - w) <= tol for g, w in zip(got, (want.y, want.u, want.v), strict=True))


def test_programme_places_yuv_planes_where_the_layout_says(session_dir: Path) -> None:
    frames = _canvas_frames(session_dir, {5, 25, 70})
    early, before, share = (planes_of(frames[i]) for i in (5, 25, 70))
    # side by side: each 320x240 camera fitted to 640x480 at y=120 in its half
    assert _near(before, 100, 170, MENTOR_RGB) and _near(before, 740, 170, MENTEE_RGB)
    assert (before.y[:120] == BLACK.y).all() and (before.u[:60] == BLACK.u).all()
    assert (before.y[600:] == BLACK.y).all() and (before.v[300:] == BLACK.v).all()
    # 0.2 s: the mentee is not there yet: placeholder inside a 2 px black border
    assert (early.y[2:718, 642:1278] == PLACEHOLDER.y).all()
    assert (early.u[1:359, 321:639] == PLACEHOLDER.u).all()
    assert (early.y[:2, 640:] == BLACK.y).all() and (early.y[:, 1278:] == BLACK.y).all()
    # share: the screen fitted to 960x720 on the left, cameras 320x240 in the right column
    assert _near(share, 60, 60, SCREEN_RGB) and _near(share, 900, 650, SCREEN_RGB)
    assert _near(share, 1000, 80, MENTOR_RGB) and _near(share, 1000, 440, MENTEE_RGB)
    assert (share.y[:60, 960:] == BLACK.y).all() and (share.y[300:420, 960:] == BLACK.y).all()


def test_held_source_frame_is_scaled_once(session_dir: Path) -> None:
    """The 15 fps share in a 25 fps programme: 25 programme frames, 15 scaled pictures."""
    manifest = load_manifest(session_dir)
    track = next(t for t in manifest.tracks if t.track_id == "scr-1")
    reader = VideoTrackReader(session_dir / track.file, track)
    try:
        pictures: list[Planes] = []
        for i in range(25):
            placed = reader.picture(SCREEN_ON[0] + 0.1 + i / 25, Rect(0, 0, 960, 720))
            assert placed is not None
            box, picture = placed
            assert box == Rect(0, 0, 960, 720) and picture.y.shape == (720, 960)
            pictures.append(picture)
    finally:
        reader.close()
    distinct = {id(p) for p in pictures}
    assert len(distinct) in (15, 16), len(distinct)
    assert pictures[0] is pictures[1] or pictures[1] is pictures[2]


def test_encoder_failure_stops_the_render(
    session_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error in one rendition's encoder thread ends the render with that error chained, and
    leaves no encoder thread behind."""
    import threading

    from sfu.vod.hls import RenditionEncoder

    real = RenditionEncoder.encode_video
    seen: list[float] = []

    def failing(self: RenditionEncoder, index: int, frame: av.VideoFrame) -> None:
        if self.rendition.name == "360p" and index == 30:
            raise ValueError("x264 refused frame 30")
        real(self, index, frame)

    monkeypatch.setattr(RenditionEncoder, "encode_video", failing)
    with pytest.raises(EncoderStopped, match="360p") as err:
        render_session(session_dir, tmp_path / "out", progress=seen.append)
    assert isinstance(err.value.__cause__, ValueError)
    assert not [t for t in threading.enumerate() if t.name.startswith("vod-encode")]
    assert seen == sorted(seen) and len(seen) <= 30


def test_composition_failure_closes_every_encoder(
    session_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error while composing (here: a track file vanishing after 40 frames) aborts the
    encoder threads without waiting for them to flush; nothing is left running."""
    import threading

    import sfu.vod.render as render_module

    def failing(*args: Any, **kwargs: Any) -> Iterator[VideoEvent | AudioEvent]:
        for event in programme(*args, **kwargs):
            if isinstance(event, VideoEvent) and event.index == 40:
                raise OSError("track file vanished")
            yield event

    monkeypatch.setattr(render_module, "programme", failing)
    with pytest.raises(OSError, match="vanished"):
        render_session(session_dir, tmp_path / "out")
    assert not [t for t in threading.enumerate() if t.name.startswith("vod-encode")]
    assert not (tmp_path / "out" / "master.m3u8").exists()


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_a_camera_that_changes_resolution_keeps_its_picture(tmp_path: Path, codec: str) -> None:
    """A browser on a poor network lowers or changes its camera's resolution mid-session; the
    recording then holds frames of two sizes under one track header. The programme fits each
    frame by its own size: 4:3 first (640x480 in the mentor's half), then 16:9 (640x360)."""
    (tmp_path / "tracks").mkdir()
    write_recorded_video(
        tmp_path / "tracks/cam-a.mkv", codec, MENTOR_RGB, [(320, 240, 2.0), (640, 360, 2.0)]
    )
    write_vp8_track(tmp_path / "tracks/cam-b.mkv", MENTEE_RGB, 4.0)
    tracks = [
        _track("cam-a", "p-mentor", "video", "camera", 0.0, 4.0) | {"codec": codec},
        _track("cam-b", "p-mentee", "video", "camera", 0.0, 4.0),
    ]
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest(tracks, duration=4.0)))
    with av.open(str(tmp_path / "tracks/cam-a.mkv")) as recorded:
        sizes = {(f.width, f.height) for f in recorded.decode(video=0)}
    assert sizes == {(320, 240), (640, 360)}
    got = {}
    for event in programme(load_manifest(tmp_path), tmp_path, 1280, 720, 25):
        if isinstance(event, VideoEvent) and event.index in (25, 75):
            got[event.index] = planes_of(event.frame)
    before, after = got[25], got[75]
    assert _near(before, 100, 150, MENTOR_RGB) and _near(before, 100, 590, MENTOR_RGB)
    assert _near(after, 100, 200, MENTOR_RGB) and _near(after, 100, 530, MENTOR_RGB)
    assert (after.y[:180, :640] == BLACK.y).all() and (after.y[540:, :640] == BLACK.y).all()
    assert _near(after, 740, 170, MENTEE_RGB)  # the other camera is unaffected


def test_a_track_that_went_on_in_a_new_segment_shows_both(tmp_path: Path) -> None:
    """A track whose file failed (a full disk) goes on in a new segment, a new file under the
    same track id: the programme shows the first file, then the placeholder while neither is
    there, then the second file."""
    (tmp_path / "tracks").mkdir()
    write_vp8_track(tmp_path / "tracks/cam-a-0.mkv", MENTOR_RGB, 1.5)
    write_vp8_track(tmp_path / "tracks/cam-a-1.mkv", MENTOR_RGB, 1.5)
    write_vp8_track(tmp_path / "tracks/cam-b.mkv", MENTEE_RGB, 4.0)
    first = _track("cam-a", "p-mentor", "video", "camera", 0.0, 1.5)
    tracks = [
        first | {"file": "tracks/cam-a-0.mkv"},
        first | {"file": "tracks/cam-a-1.mkv", "start_s": 2.5, "end_s": 4.0, "segment": 1},
        _track("cam-b", "p-mentee", "video", "camera", 0.0, 4.0),
    ]
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest(tracks, duration=4.0)))
    got = {}
    for event in programme(load_manifest(tmp_path), tmp_path, 1280, 720, 25):
        if isinstance(event, VideoEvent) and event.index in (20, 50, 80):
            got[event.index] = planes_of(event.frame)
    assert _near(got[20], 100, 170, MENTOR_RGB)  # 0.8 s: the first segment
    assert _near(got[50], 100, 170, PLACEHOLDER_RGB)  # 2.0 s: between the two
    assert _near(got[80], 100, 170, MENTOR_RGB)  # 3.2 s: the second segment
