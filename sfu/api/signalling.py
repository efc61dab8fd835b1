"""WebSocket signalling (docs/api.md §3): `GET /ws?token=...`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from aiohttp import WSCloseCode, WSMsgType, web

from sfu import metrics
from sfu.api.edge_state import EdgeState
from sfu.api.error_mapping import ws_close_code
from sfu.api.messages import (
    MAX_MESSAGE_BYTES,
    Candidate,
    Leave,
    Ping,
    PublishOffer,
    RequestKeyframe,
    SubscribeAnswer,
    message_size,
    parse_message,
)
from sfu.api.middleware import audit_line, request_ip
from sfu.api.relay import relay
from sfu.api.tokens import verify_participant_token
from sfu.cluster.node_token import CLIENT_IP_HEADER
from sfu.core.errors import (
    Draining,
    InvalidMessage,
    MessageTooLarge,
    RateLimited,
    RoomNotFound,
    SfuError,
)
from sfu.core.token_bucket import TokenBucket
from sfu.rooms.participant import Participant
from sfu.rooms.room import Room

logger = logging.getLogger(__name__)

READ_LIMIT = 1024 * 1024
"""Frames above this are cut off by aiohttp itself; 64 KiB..1 MiB are refused by us. Both
close with 4413."""


class SignallingSocket(web.WebSocketResponse):
    """aiohttp's WebSocketResponse, with two changes:

    - an oversized frame is closed with 4413 (docs/api.md §3.5), not aiohttp's 1009;
    - no heartbeat is armed once the socket is closing or closed. aiohttp (3.14) re-arms its
      heartbeat timer whenever data arrives (`_on_data_received` → `_reset_heartbeat`), also
      after `close()` cancelled it, and that timer held the departed participant's socket
      (its request, transport and buffers) for up to a heartbeat and a pong timeout (30 s).
      A private seam: tests/unit/test_seams.py checks the method is still there.
    """

    def _reset_heartbeat(self) -> None:
        if self.closed or self._closing:
            return
        super()._reset_heartbeat()

    async def close(
        self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True
    ) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG:
            code = ws_close_code(MessageTooLarge.code)
            message = b"message too large"
        return await super().close(code=code, message=message, drain=drain)


class WsSignal:
    """The Signal a Participant talks through."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._send_lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        if self.ws.closed:
            raise ConnectionError("socket closed")
        async with self._send_lock:
            await self.ws.send_json(message)

    async def close(self, error: SfuError | None) -> None:
        if self.ws.closed:
            return
        if error is None:
            code = int(WSCloseCode.OK)
        else:
            code = ws_close_code(error.code)
            with contextlib.suppress(ConnectionError):
                await self.send({"type": "error", **error.to_body()})
        metrics.WS_CLOSES.labels(str(code)).inc()
        reason = (error.code if error else "bye").encode()[:120]
        await self.ws.close(code=code, message=reason)


async def _refuse(ws: web.WebSocketResponse, error: SfuError) -> web.WebSocketResponse:
    await WsSignal(ws).close(error)
    return ws


def make_ws_handler(edge: EdgeState) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """`GET /ws`, bound to the edge state it serves."""

    async def ws_handler(request: web.Request) -> web.StreamResponse:
        return await _ws(edge, request)

    return ws_handler


async def _ws(edge: EdgeState, request: web.Request) -> web.StreamResponse:
    settings = edge.settings
    ws = SignallingSocket(max_msg_size=READ_LIMIT, heartbeat=20.0, compress=False)
    await ws.prepare(request)
    relayed_by = edge.internal_node(request)
    if relayed_by is not None:
        # The edge node that relays this socket checked the client's address limits.
        ip = request.headers.get(CLIENT_IP_HEADER, "unknown")[:64]
        return await _join_here(edge, request, ws, ip, relayed_by)
    ip = request_ip(request)
    if not edge.limiter.take(ip, edge.clock()):
        metrics.LIMIT_HITS.labels("ws_connect").inc()
        audit_line("GET /ws", ip, "rate_limited")
        return await _refuse(ws, RateLimited("too many connection attempts"))
    if not edge.ws_per_ip.acquire(ip):
        metrics.LIMIT_HITS.labels("ws_per_ip").inc()
        audit_line("GET /ws", ip, "too_many_sockets")
        return await _refuse(
            ws, RateLimited(f"more than {settings.limits.ws_per_ip} connections from one address")
        )
    try:
        return await _join_here(edge, request, ws, ip, None)
    finally:
        edge.ws_per_ip.release(ip)


async def _join_here(
    edge: EdgeState,
    request: web.Request,
    ws: web.WebSocketResponse,
    ip: str,
    relayed_by: str | None,
) -> web.StreamResponse:
    """Join the token's room if this node holds it, else relay to the node that does (only a
    client's own socket is relayed: a relayed one never hops again)."""
    settings = edge.settings
    edge.sockets.add(ws)
    try:
        try:
            grant = verify_participant_token(settings.jwt_secret, request.query.get("token", ""))
            room = edge.manager.rooms.get(grant.room_id)
            if room is None or room.closed:
                owner = None if relayed_by else await edge.directory.owner_of(grant.room_id)
                if owner is None or owner.node_id == edge.directory.identity.node_id:
                    edge.manager.get(grant.room_id)  # raises room_not_found
                    raise RoomNotFound(f"room {grant.room_id} not found")
                upstream = await edge.node_client.websocket(owner, request.path_qs, client_ip=ip)
                audit_line(
                    "GET /ws", ip, "relayed", actor=f"user:{grant.user_id}", node=owner.node_id
                )
                edge.relays += 1
                try:
                    await relay(ws, upstream)
                finally:
                    edge.relays -= 1
                return ws
            if edge.manager.draining:
                raise Draining("node is draining")
            participant = await room.join(grant, WsSignal(ws))
        except SfuError as exc:
            audit_line("GET /ws", ip, exc.code, actor=_actor_of(request))
            return await _refuse(ws, exc)
        audit_line(
            "GET /ws",
            ip,
            "joined",
            actor=f"user:{participant.user_id}",
            room_id=room.room_id,
            participant_id=participant.participant_id,
            **({"relayed_by": relayed_by} if relayed_by else {}),
        )
        bucket = TokenBucket(
            settings.limits.ws_messages_per_s, settings.limits.ws_message_burst, edge.clock()
        )
        await _serve(ws, room, participant, bucket, edge.clock)
        return ws
    finally:
        edge.sockets.discard(ws)


def _actor_of(request: web.Request) -> str:
    """Who a refused token claimed to be (unverified; for the audit line only)."""
    token = request.query.get("token", "")
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return "-"
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return f"claimed:{str(sub)[:64]}" if sub else "-"


async def _serve(
    ws: web.WebSocketResponse,
    room: Room,
    participant: Participant,
    bucket: TokenBucket,
    clock: Callable[[], float],
) -> None:
    signal = participant.signal
    leave_reason: SfuError | None = None
    try:
        async for msg in ws:
            if not bucket.take(clock()):
                leave_reason = RateLimited("too many messages")
                break
            if msg.type == WSMsgType.TEXT:
                data: str = msg.data
                if message_size(data) > MAX_MESSAGE_BYTES:
                    leave_reason = MessageTooLarge(f"message larger than {MAX_MESSAGE_BYTES} bytes")
                    break
                try:
                    if await _dispatch(room, participant, data):
                        break
                except MessageTooLarge as exc:
                    leave_reason = exc
                    break
                except SfuError as exc:
                    metrics.WS_ERRORS.labels(exc.code).inc()
                    participant.log.info("refused message: %s (%s)", exc.code, exc.message)
                    await participant.send({"type": "error", **exc.to_body()})
            elif msg.type == WSMsgType.BINARY:
                error = InvalidMessage("binary frames are not part of the protocol")
                metrics.WS_ERRORS.labels(error.code).inc()
                await participant.send({"type": "error", **error.to_body()})
            else:
                break
    finally:
        if room.participants.get(participant.participant_id) is participant:
            await room.remove(participant, leave_reason)
        elif not ws.closed:
            await signal.close(leave_reason)


async def _dispatch(room: Room, participant: Participant, raw: str) -> bool:
    """Handle one message; True when the participant leaves."""
    message = parse_message(raw)
    if isinstance(message, PublishOffer):
        await participant.publish_offer(message.sdp, message.sources)
    elif isinstance(message, SubscribeAnswer):
        await participant.subscribe_answer(message.sdp)
    elif isinstance(message, Candidate):
        await participant.candidate(message.target, message.candidate)
    elif isinstance(message, RequestKeyframe):
        room.find_track(message.track_id).fanout.request_keyframe()
    elif isinstance(message, Ping):
        await participant.send({"type": "pong"})
    elif isinstance(message, Leave):
        return True
    return False
