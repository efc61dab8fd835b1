"""The baseline of bench/forwarding: a minimal server built the way aiortc's examples build one.

Stock aiortc throughout: the publisher's peer connection receives (depacketizes, decodes) each
track, and every subscriber's peer connection gets ``MediaRelay().subscribe(track)`` on a
send-only transceiver, whose stock sender encodes the frames again (VP8, Opus) for that
subscriber. That decode + re-encode per subscriber is the cost the SFU's RTP forwarding is
compared with.

It speaks the subset of the SFU's signalling contract (docs/api.md §3) that ``SfuClient``
needs, so the same client drives both: one implicit room, ``GET /ws`` (any ``token`` or none),
``joined``, ``publish_offer``/``publish_answer``, ``subscribe_offer``/``subscribe_answer``,
``ping``/``pong`` and ``leave``. ICE gathers on the given addresses only (127.0.0.1 by default).

Run: ``python -m bench.relay_server --port 8090``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import signal
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay

from sfu.ice.connection import IceConfig
from sfu.media.seams import client_peer_connection

logger = logging.getLogger("bench.relay_server")

MAX_MESSAGES_PER_SOCKET = 10_000
NEGOTIATION_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0
Message = dict[str, Any]


@dataclass(slots=True)
class Published:
    track_id: str
    participant_id: str
    source: str
    kind: str
    track: MediaStreamTrack


@dataclass(eq=False)
class Participant:
    participant_id: str
    ws: web.WebSocketResponse
    publisher: RTCPeerConnection | None = None
    subscriber: RTCPeerConnection | None = None
    subscribed: dict[str, RTCRtpTransceiver] = field(default_factory=dict)
    offer_out: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, message: Message) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(message))


def _preferences(kind: str) -> list[Any]:
    """VP8 (+RTX) for video, Opus for audio: the codecs the SFU bench publishes."""
    wanted = {"video": ("video/vp8", "video/rtx"), "audio": ("audio/opus",)}[kind]
    return [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() in wanted]


class RelayRoom:
    """The one implicit room."""

    def __init__(self, ice: IceConfig, *, buffered: bool) -> None:
        self.ice = ice
        self.buffered = buffered
        self.relay = MediaRelay()
        self.participants: dict[str, Participant] = {}
        self.tracks: dict[str, Published] = {}
        self._ids = itertools.count(1)

    def new_participant(self, ws: web.WebSocketResponse) -> Participant:
        participant = Participant(f"p{next(self._ids)}", ws)
        self.participants[participant.participant_id] = participant
        return participant

    # -- publishing -----------------------------------------------------------------------

    async def publish(self, participant: Participant, message: Message) -> None:
        sdp = message.get("sdp")
        sources = message.get("sources")
        if not isinstance(sdp, str) or not isinstance(sources, dict):
            await _error(participant, "invalid_message", "publish_offer needs sdp and sources")
            return
        if participant.publisher is None:
            participant.publisher = client_peer_connection(self.ice)
        pc = participant.publisher
        received: list[MediaStreamTrack] = []
        pc.on("track", received.append)
        async with asyncio.timeout(NEGOTIATION_TIMEOUT_S):
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        pc.remove_all_listeners("track")
        for track in received:
            track_id = str(track.id)
            self.tracks[track_id] = Published(
                track_id=track_id,
                participant_id=participant.participant_id,
                source=str(sources.get(track_id, "camera" if track.kind == "video" else "mic")),
                kind=str(track.kind),
                track=track,
            )
        await participant.send({"type": "publish_answer", "sdp": pc.localDescription.sdp})
        for other in list(self.participants.values()):
            if other is not participant:
                await self.offer(other)

    # -- subscribing ----------------------------------------------------------------------

    async def offer(self, participant: Participant) -> None:
        """Offer every remote track the participant does not have yet (after any pending
        answer: the next offer follows it)."""
        async with participant.lock:
            if participant.offer_out:
                return
            new = [
                t
                for t in self.tracks.values()
                if t.participant_id != participant.participant_id
                and t.track_id not in participant.subscribed
            ]
            if not new:
                return
            if participant.subscriber is None:
                participant.subscriber = client_peer_connection(self.ice)
            pc = participant.subscriber
            for published in new:
                relayed = self.relay.subscribe(published.track, buffered=self.buffered)
                transceiver = pc.addTransceiver(relayed, direction="sendonly")
                transceiver.setCodecPreferences(_preferences(published.kind))
                participant.subscribed[published.track_id] = transceiver
            async with asyncio.timeout(NEGOTIATION_TIMEOUT_S):
                await pc.setLocalDescription(await pc.createOffer())
            labels = {
                track_id: {
                    "participant_id": self.tracks[track_id].participant_id,
                    "source": self.tracks[track_id].source,
                    "kind": self.tracks[track_id].kind,
                    "mid": transceiver.mid or "",
                }
                for track_id, transceiver in participant.subscribed.items()
                if track_id in self.tracks
            }
            participant.offer_out = True
            await participant.send(
                {"type": "subscribe_offer", "sdp": pc.localDescription.sdp, "tracks": labels}
            )

    async def answer(self, participant: Participant, message: Message) -> None:
        sdp = message.get("sdp")
        pc = participant.subscriber
        if not isinstance(sdp, str) or pc is None or not participant.offer_out:
            await _error(participant, "out_of_order", "subscribe_answer without an offer")
            return
        async with participant.lock:
            async with asyncio.timeout(NEGOTIATION_TIMEOUT_S):
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            participant.offer_out = False
        await self.offer(participant)  # tracks published while the offer was out

    # -- leaving --------------------------------------------------------------------------

    async def leave(self, participant: Participant) -> None:
        self.participants.pop(participant.participant_id, None)
        for track_id in [
            t for t, p in self.tracks.items() if p.participant_id == participant.participant_id
        ]:
            self.tracks.pop(track_id).track.stop()
        for pc in (participant.publisher, participant.subscriber):
            if pc is None:
                continue
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await pc.close()
            except TimeoutError:
                logger.warning("peer connection of %s did not close", participant.participant_id)


async def _error(participant: Participant, code: str, text: str) -> None:
    await participant.send({"type": "error", "error": {"code": code, "message": text}})


async def handle_ws(request: web.Request) -> web.WebSocketResponse:
    room: RelayRoom = request.app["room"]
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    participant = room.new_participant(ws)
    await participant.send(
        {
            "type": "joined",
            "participant": {"participant_id": participant.participant_id, "role": "mentee"},
            "room": {"room_id": "relay", "participants": []},
            "ice_servers": [],
        }
    )
    await room.offer(participant)
    try:
        for _ in range(MAX_MESSAGES_PER_SOCKET):
            msg = await ws.receive()
            if msg.type != WSMsgType.TEXT:
                break
            try:
                message = json.loads(msg.data)
            except json.JSONDecodeError:
                await _error(participant, "invalid_message", "not JSON")
                continue
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "publish_offer":
                await room.publish(participant, message)
            elif kind == "subscribe_answer":
                await room.answer(participant, message)
            elif kind == "ping":
                await participant.send({"type": "pong"})
            elif kind == "leave":
                break
            elif kind in ("candidate", "request_keyframe"):
                continue
            else:
                await _error(participant, "unknown_type", f"unsupported message {kind!r}")
    except (TimeoutError, ValueError, ConnectionError) as exc:
        logger.warning("participant %s: %r", participant.participant_id, exc)
    finally:
        await room.leave(participant)
        await ws.close()
    return ws


async def handle_health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(ice: IceConfig, *, buffered: bool = False) -> web.Application:
    app = web.Application()
    app["room"] = RelayRoom(ice, buffered=buffered)
    app.router.add_get("/ws", handle_ws)
    app.router.add_get("/health", handle_health)
    return app


async def serve(host: str, port: int, ice: IceConfig, buffered: bool, max_seconds: float) -> None:
    app = make_app(ice, buffered=buffered)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max_seconds):  # never outlives a forgotten benchmark
            await stop.wait()
    room: RelayRoom = app["room"]
    for participant in list(room.participants.values()):
        await participant.ws.close()
    async with asyncio.timeout(CLOSE_TIMEOUT_S * 2):
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument(
        "--rtc-address", default="127.0.0.1", help="address ICE gathers on (default loopback)"
    )
    parser.add_argument(
        "--buffered",
        action="store_true",
        help="MediaRelay buffered mode (unbounded queue per subscriber; default: latest frame)",
    )
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper())
    try:
        import uvloop  # the SFU runs on uvloop when it is installed: so does the baseline

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    ice = IceConfig(addresses=(args.rtc_address,))
    asyncio.run(serve(args.host, args.port, ice, args.buffered, args.max_seconds))


if __name__ == "__main__":
    main()
