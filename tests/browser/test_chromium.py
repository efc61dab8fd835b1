"""The demo page (`/demo`) in a real headless Chromium, talking to a real SFU process.

Chromium joins as the mentor (`autojoin=1`: fake camera and microphone); an aiortc `SfuClient`
joins as the mentee and publishes a pre-encoded VP8 clip and Opus. Each side must decode the
other's video, the page must label its tiles, and leaving must remove them.

Everything stays on 127.0.0.1 (the suite may run in a network namespace with only loopback).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from sfu.client.client import SfuClient
from sfu.client.clips import PacedPacketTrack
from sfu.client.remote import RemoteTrackInfo
from sfu.ice.connection import IceConfig
from sfu.testing.process import LOG_DIR, SfuProcess
from tests.support.rooms import unpublished

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    # getDisplayMedia without a picker: share the tab itself.
    "--auto-accept-this-tab-capture",
    "--auto-select-tab-capture-source-by-title=CoTePT SFU demo",
]
ICE = IceConfig(addresses=("127.0.0.1",))
WAIT_S = 30.0
POLL_S = 0.25

T = TypeVar("T")


async def poll(
    fetch: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    what: str,
    timeout: float = WAIT_S,
) -> T:
    """Fetch until `accept` holds; fail with the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await fetch()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout} s; last value {value!r}")
        await asyncio.sleep(POLL_S)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    # A missing Chromium must fail the suite, never skip it.
    assert CHROMIUM.exists(), f"{CHROMIUM} is not installed (apt-get install chromium)"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    opened = await context.new_page()
    opened.set_default_timeout(WAIT_S * 1000)
    lines: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        lines.append(f"{message.type}: {message.text}")

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: lines.append(f"pageerror: {error}"))
    try:
        yield opened
    finally:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        name = request.node.name.replace("/", "_")
        (LOG_DIR / f"chromium-{name}.log").write_text("\n".join(lines) + "\n")
        await context.close()


@pytest.fixture
async def room_id(sfu: SfuProcess) -> AsyncIterator[str]:
    """A fresh room, deleted afterwards (a room left behind would hold up the SFU's drain)."""
    name = "browser-" + uuid.uuid4().hex[:10]
    headers = sfu.service_headers()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.post(f"{sfu.url}/rooms", json={"room_id": name}, headers=headers) as r:
            assert r.status == 201, await r.text()
        yield name
        async with http.delete(f"{sfu.url}/rooms/{name}", headers=headers) as r:
            assert r.status == 200, await r.text()


async def demo(page: Page, expression: str) -> Any:
    return await page.evaluate(f"() => window.sfuDemo.{expression}")


def video_from(participant_id: str, source: str) -> Callable[[RemoteTrackInfo], bool]:
    def matches(info: RemoteTrackInfo) -> bool:
        return (
            info.kind == "video"
            and info.source == source
            and info.participant_id == participant_id
            and info.active
        )

    return matches


async def frames_decoded_of(page: Page, track_id: str) -> int:
    stats = await demo(page, "stats()")
    return int(stats["framesDecoded"].get(track_id, 0))


@pytest.fixture(name="sfu")
def sfu_chosen(
    request: pytest.FixtureRequest, sfu: SfuProcess, sfu_one_port: SfuProcess
) -> SfuProcess:
    """The shared SFU with a port range, or (parametrized indirectly with "one port") the one
    with all media on one UDP port."""
    return sfu_one_port if getattr(request, "param", "port range") == "one port" else sfu


@pytest.mark.parametrize(
    ("trickle", "sfu"),
    [(True, "port range"), (False, "port range"), (True, "one port")],
    ids=["trickle", "candidates-in-sdp", "trickle-one-udp-port"],
    indirect=["sfu"],
)
async def test_demo_page_exchanges_media_with_aiortc(
    sfu: SfuProcess, room_id: str, page: Page, trickle: bool
) -> None:
    mentor_token = sfu.token(room_id, "mentor-1", "mentor")
    url = f"{sfu.url}/demo?token={mentor_token}&autojoin=1" + ("" if trickle else "&trickle=0")
    await page.goto(url)
    await poll(lambda: demo(page, "state"), lambda s: s == "joined", "page joined")
    mentor_id = await demo(page, "participantId")
    assert isinstance(mentor_id, str) and mentor_id.startswith("PA_")

    mentee = await SfuClient.connect(
        sfu.ws_url, sfu.token(room_id, "mentee-1", "mentee"), ice=ICE, timeout=10
    )
    try:
        video = PacedPacketTrack.from_codec("vp8")
        audio = PacedPacketTrack.from_codec("opus")
        await mentee.publish({video: "camera", audio: "microphone"}, timeout=10)

        # The browser decodes the mentee's VP8 clip (inbound-rtp framesDecoded, via the mid).
        await poll(
            lambda: frames_decoded_of(page, video.id),
            lambda n: n > 60,
            "browser framesDecoded of the mentee's camera",
        )
        # The mentee decodes the browser's fake camera (and hears its fake microphone).
        await mentee.wait_frames(video_from(mentor_id, "camera"), n=30, timeout=WAIT_S)
        microphone = await mentee.wait_frames(
            lambda info: info.kind == "audio" and info.participant_id == mentor_id,
            n=10,
            timeout=WAIT_S,
        )
        assert microphone.source == "microphone"

        stats = await demo(page, "stats()")
        remote_audio = [s for s in stats["remote"] if s["kind"] == "audio"]
        assert remote_audio and remote_audio[0]["trackId"] == audio.id, stats
        assert remote_audio[0]["packetsReceived"] > 0, stats
        assert {s["source"] for s in stats["local"]} == {"camera", "microphone"}, stats

        # The publish_offer named each track by the msid id Chrome wrote in the SDP.
        checks = await demo(page, "msidChecks")
        assert len(checks) == 2 and all(c["msid"] for c in checks), checks
        # Candidates went out the way the page was told to send them (and none was refused:
        # the page logs every `error` reply, checked at the end).
        ice = await demo(page, "iceSent")
        for target in ("publisher", "subscriber"):
            sent = ice[target]
            if trickle:
                assert sent["trickled"] > 0 and sent["endOfCandidates"] >= 1, ice
            else:
                assert sent["inSdp"] > 0 and sent["trickled"] == 0, ice
                assert sent["endOfCandidates"] == 0, ice

        # Tiles: the page's own camera and the mentee's camera, labelled with role and source.
        labels = await page.locator(".tile .label").all_text_contents()
        assert len(labels) == 2, labels
        assert any("mentee" in text and "camera" in text for text in labels), labels
        assert any("mentor" in text and "camera" in text for text in labels), labels
        assert await page.locator(f'.tile[data-key="{video.id}"] video').count() == 1
        status = await page.locator("#status").text_content()
        assert status is not None and "subscriber connected" in status, status

        if trickle:  # one screenshot of the page with both videos playing
            LOG_DIR.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(LOG_DIR / "demo.png"), full_page=True)

        # The mentee stops its camera (track_unpublished): that tile goes, the audio stays.
        await mentee.unpublish(video, timeout=10)
        await poll(
            lambda: page.locator(f'.tile[data-key="{video.id}"]').count(),
            lambda n: n == 0,
            "remote tile removed after track_unpublished",
        )
        assert await page.locator(f'#audio audio[data-key="{audio.id}"]').count() == 1

        # The mentee leaves: the rest of its media goes.
        await mentee.leave()
        await poll(
            lambda: page.locator(".tile:not(.local)").count(),
            lambda n: n == 0,
            "remote tile removed after participant_left",
        )
        assert await page.locator("#audio audio").count() == 0
    finally:
        await mentee.close()

    # The page leaves; the socket closes normally and its tiles go.
    await page.click("#leave")
    await poll(lambda: demo(page, "state"), lambda s: s == "left", "page left")
    assert await page.locator(".tile").count() == 0
    errors = [e["text"] for e in await demo(page, "events") if e["error"]]
    assert errors == [], errors


async def test_demo_page_screen_share_start_and_stop(
    sfu: SfuProcess, room_id: str, page: Page
) -> None:
    """Start and stop the share three times (a mentor shows code, talks, shows it again): each
    share reaches the mentee as a new track, each stop unpublishes it, and the camera keeps
    flowing through every re-offer (Chrome recycles the stopped share's m-line)."""
    mentor_token = sfu.token(room_id, "mentor-1", "mentor")
    mentee = await SfuClient.connect(
        sfu.ws_url, sfu.token(room_id, "mentee-1", "mentee"), ice=ICE, timeout=10
    )
    try:
        await page.goto(f"{sfu.url}/demo?token={mentor_token}&autojoin=1")
        await poll(lambda: demo(page, "state"), lambda s: s == "joined", "page joined")
        mentor_id = await demo(page, "participantId")
        await mentee.wait_frames(video_from(mentor_id, "camera"), n=10, timeout=WAIT_S)

        shared: list[str] = []
        for _ in range(3):
            await page.click("#share")
            await poll(lambda: demo(page, "sharing"), bool, "screen share started")
            screen = await mentee.wait_frames(
                lambda t: video_from(mentor_id, "screen")(t) and t.track_id not in shared,
                n=10,
                timeout=WAIT_S,
            )
            shared.append(screen.track_id)
            await poll(
                lambda: page.locator("#share").text_content(),
                lambda text: text == "Stop sharing",
                "share button turns into stop",
            )

            await page.click("#share")
            gone = await mentee.wait_for(
                "track_unpublished", unpublished(screen.track_id), timeout=WAIT_S
            )
            assert gone["track"]["source"] == "screen"
            await poll(lambda: demo(page, "sharing"), lambda on: not on, "screen share stopped")
            assert await page.locator('.tile[data-key="local:screen"]').count() == 0
            # The camera keeps flowing after the re-offer.
            camera = await mentee.wait_frames(video_from(mentor_id, "camera"), n=1, timeout=WAIT_S)
            before = camera.frames
            await mentee.wait_frames(video_from(mentor_id, "camera"), n=before + 30, timeout=WAIT_S)
        assert len(set(shared)) == 3
        errors = [e["text"] for e in await demo(page, "events") if e["error"]]
        assert errors == [], errors
    finally:
        await mentee.close()


async def test_demo_page_receives_a_share_started_again_and_again(
    sfu: SfuProcess, room_id: str, page: Page
) -> None:
    """Chrome as the viewer of a share started three times: each share's frames are decoded and
    tiled under its own track id, and every share after the first arrives on the section the
    previous one left (the SFU reuses it), so the page's subscriber keeps two sections."""
    mentor = await SfuClient.connect(
        sfu.ws_url, sfu.token(room_id, "mentor-1", "mentor"), ice=ICE, timeout=10
    )
    try:
        await page.goto(
            f"{sfu.url}/demo?token={sfu.token(room_id, 'mentee-1', 'mentee')}&autojoin=1"
        )
        await poll(lambda: demo(page, "state"), lambda s: s == "joined", "page joined")
        camera = PacedPacketTrack.from_codec("vp8")
        await mentor.publish({camera: "camera"}, timeout=10)
        await poll(lambda: frames_decoded_of(page, camera.id), lambda n: n > 30, "camera")
        decoded = 0  # a reused section's inbound-rtp counts on from the previous share
        for _ in range(3):
            screen = PacedPacketTrack.from_codec("vp8")
            await mentor.publish({screen: "screen"}, timeout=10)

            def share_decoded(s: PacedPacketTrack = screen) -> Awaitable[int]:
                return frames_decoded_of(page, s.id)

            def past(n: int, floor: int = decoded) -> bool:
                return n > floor + 30

            decoded = await poll(share_decoded, past, "browser framesDecoded of the share")
            tile = page.locator(f'.tile[data-key="{screen.id}"] video')
            assert await tile.count() == 1
            await mentor.unpublish(screen)
            await poll(tile.count, lambda n: n == 0, "share tile removed")
        assert len(await demo(page, "subscriberMids")) == 2  # the camera and one share section
        await poll(
            lambda: frames_decoded_of(page, camera.id),
            lambda n: n > 200,
            "the camera still decodes",
        )
        errors = [e["text"] for e in await demo(page, "events") if e["error"]]
        assert errors == [], errors
    finally:
        await mentor.close()


async def test_demo_page_reports_a_refused_token(sfu: SfuProcess, page: Page) -> None:
    await page.goto(f"{sfu.url}/demo?token=not-a-token&autojoin=1")
    await poll(lambda: demo(page, "state"), lambda s: s == "error", "page refused")
    assert "4401" in (await demo(page, "lastError")), await demo(page, "events")
    status = await page.locator("#status").text_content()
    assert status is not None and "bad or expired token" in status, status
    assert await page.locator("#join").is_enabled()


async def test_browser_publisher_bandwidth_estimate_ramps_up(
    sfu: SfuProcess, room_id: str, page: Page
) -> None:
    """The SFU's REMB (its receive-side estimate, fed once per video frame) lets Chrome's
    send-side estimate climb from its 300 kbit/s start: a REMB that under-estimated would cap
    the publisher's video (a blurry shared screen). On loopback it climbs by some 8 %/s, the
    receive-side AIMD's rate, to 1.5x what Chrome actually sends (about 0.7 Mbit/s for the
    fake camera); 600 kbit/s is reached after 12-15 s."""
    url = f"{sfu.url}/demo?token={sfu.token(room_id, 'mentor-1', 'mentor')}&autojoin=1"
    await page.goto(url)
    await poll(lambda: demo(page, "state"), lambda s: s == "joined", "page joined")
    target = 600_000
    seen: list[tuple[float, int]] = []
    deadline = time.monotonic() + 45
    while not seen or seen[-1][0] < target:
        assert time.monotonic() < deadline, f"estimate stayed below {target}: {seen[-10:]}"
        await asyncio.sleep(0.5)
        stats = await demo(page, "stats()")
        sent = sum(s["bytesSent"] for s in stats["local"] if s["kind"] == "video")
        seen.append((float(stats["availableOutgoingBitrate"] or 0), sent))
    video_bps = (seen[-1][1] - seen[-5][1]) * 8 / 2.0  # over the last 2 s
    assert video_bps > 300_000, (video_bps, seen)  # and the encoder uses it
