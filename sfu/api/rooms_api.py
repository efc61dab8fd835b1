"""The room API (docs/api.md §2), answered for the whole cluster from any node.

A call for a room this node holds is answered here. Any other goes to the node that holds it
(the room directory says which), forwarded as it came with the caller's service token and
answered with that node's status and body, so a call through any node looks like a direct one;
404 only when no node holds the room. `POST /rooms` first places the room (placement.py):
created here, or forwarded to the chosen node. `GET /rooms` asks every live node for its own
rooms. A forwarded call carries a node token, and a node never forwards such a call again.
Without Redis the directory is this node alone, and every call is answered here as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from sfu import metrics
from sfu.api.edge_state import EdgeState
from sfu.api.middleware import ACTOR
from sfu.api.rest import parse_room_options, read_body, ws_url
from sfu.api.service_auth import require_service
from sfu.cluster.node_client import Forwarded
from sfu.cluster.node_info import NodeInfo
from sfu.cluster.node_token import WS_URL_HEADER
from sfu.core.errors import (
    InvalidRequest,
    NodeUnavailable,
    RoomExists,
    RoomNotFound,
    SfuError,
)
from sfu.core.vocabulary import ROOM_ID_RE

logger = logging.getLogger(__name__)


def _service(request: web.Request, secret: str) -> None:
    require_service(request, secret)
    request[ACTOR] = "service"


def _answer(forwarded: Forwarded) -> web.Response:
    metrics.FORWARDED_REQUESTS.labels(str(forwarded.status)).inc()
    return web.Response(
        status=forwarded.status,
        body=forwarded.body,
        content_type=forwarded.content_type or "application/json",
        headers=forwarded.headers,
    )


class RoomsApi:
    """The room handlers, bound to the edge state they serve."""

    def __init__(self, edge: EdgeState) -> None:
        self.edge = edge

    @property
    def _me(self) -> str:
        return self.edge.directory.identity.node_id

    async def _forward(
        self,
        node: NodeInfo,
        request: web.Request,
        body: bytes = b"",
        extra: Mapping[str, str] | None = None,
    ) -> web.Response:
        headers = {**request.headers, **(extra or {})}
        try:
            forwarded = await self.edge.node_client.request(
                node, request.method, request.path_qs, headers=headers, body=body
            )
        except NodeUnavailable:
            metrics.FORWARDED_REQUESTS.labels("unavailable").inc()
            raise
        return _answer(forwarded)

    async def _owner(self, request: web.Request, room_id: str) -> NodeInfo | None:
        """The other node that holds `room_id`, None when it is this node's; RoomNotFound
        when no node holds it (or the call was forwarded here already)."""
        room = self.edge.manager.rooms.get(room_id)
        if room is not None and not room.closed:
            return None
        if self.edge.internal_node(request) is None:
            owner = await self.edge.directory.owner_of(room_id)
            if owner is not None and owner.node_id != self._me:
                return owner
        raise RoomNotFound(f"room {room_id} not found")

    # -- handlers ----------------------------------------------------------------------------

    async def create_room(self, request: web.Request) -> web.Response:
        _service(request, self.edge.settings.jwt_secret)
        body = await read_body(request)
        manager = self.edge.manager
        room_id = body.get("room_id", manager.new_room_id())
        if not isinstance(room_id, str) or not ROOM_ID_RE.fullmatch(room_id):
            raise InvalidRequest("'room_id' must match [A-Za-z0-9_-]{1,64}")
        options = parse_room_options(
            body, room_id, self.edge.settings.rooms.default_empty_timeout_s
        )
        public = self.edge.settings.http.public_url
        internal = self.edge.internal_node(request)
        url = ws_url(request, public)
        if internal is not None and not public:
            url = request.headers.get(WS_URL_HEADER) or url
        if internal is None and self.edge.directory.clustered:
            target = await self.edge.directory.place()
            if target.node_id != self._me:
                payload = json.dumps({**body, "room_id": room_id}).encode()
                return await self._forward(target, request, payload, {WS_URL_HEADER: url})
        directory = self.edge.directory
        if not await directory.claim(room_id, {"room_id": room_id}):
            raise RoomExists(f"room {room_id} exists")
        try:
            room = manager.create(options, url)
        except SfuError:
            if directory.clustered:
                await directory.release(room_id)
            raise
        return web.json_response(room.to_json(), status=201)

    async def list_rooms(self, request: web.Request) -> web.Response:
        _service(request, self.edge.settings.jwt_secret)
        rooms = [r.to_json() for r in self.edge.manager.rooms.values() if not r.closed]
        if self.edge.internal_node(request) is None and self.edge.directory.clustered:
            others = [n for n in await self.edge.directory.nodes() if n.node_id != self._me]
            answers = await asyncio.gather(*(self._rooms_of(node, request) for node in others))
            for listed in answers:
                rooms.extend(listed)
            rooms.sort(key=lambda r: (str(r.get("created_at")), str(r.get("room_id"))))
        return web.json_response({"rooms": rooms})

    async def _rooms_of(self, node: NodeInfo, request: web.Request) -> list[dict[str, Any]]:
        """A node's own rooms; none when it does not answer (its rooms cannot be reached)."""
        try:
            forwarded = await self.edge.node_client.request(
                node, "GET", "/rooms", headers=request.headers
            )
        except NodeUnavailable:
            return []
        if forwarded.status != 200:
            logger.warning("GET /rooms on node %s: %d", node.node_id, forwarded.status)
            return []
        listed = json.loads(forwarded.body).get("rooms", [])
        return [r for r in listed if isinstance(r, dict)]

    async def get_room(self, request: web.Request) -> web.Response:
        _service(request, self.edge.settings.jwt_secret)
        room_id = request.match_info["room_id"]
        owner = await self._owner(request, room_id)
        if owner is not None:
            return await self._forward(owner, request)
        return web.json_response(self.edge.manager.get(room_id).to_json())

    async def delete_room(self, request: web.Request) -> web.Response:
        _service(request, self.edge.settings.jwt_secret)
        room_id = request.match_info["room_id"]
        owner = await self._owner(request, room_id)
        if owner is not None:
            return await self._forward(owner, request)
        room = await self.edge.manager.delete(room_id, "deleted")
        recording = room.recording.to_json() if room.recording else None
        return web.json_response({"room_id": room_id, "recording": recording})

    async def kick(self, request: web.Request) -> web.Response:
        _service(request, self.edge.settings.jwt_secret)
        room_id, pid = request.match_info["room_id"], request.match_info["participant_id"]
        owner = await self._owner(request, room_id)
        if owner is not None:
            return await self._forward(owner, request)
        await self.edge.manager.kick(room_id, pid)
        return web.Response(status=204)

    async def list_nodes(self, request: web.Request) -> web.Response:
        _service(request, self.edge.settings.jwt_secret)
        nodes = await self.edge.directory.nodes()
        return web.json_response({"nodes": [n.to_json() for n in nodes]})
