"""Every route of the app's HTTP edge, in one table (docs/openapi.yaml lists the REST ones)."""

from __future__ import annotations

from aiohttp import web

from sfu.api.edge_state import EdgeState
from sfu.api.rest import Probes, metrics_handler
from sfu.api.rooms_api import RoomsApi


def add_routes(app: web.Application, edge: EdgeState) -> None:
    probes, api = Probes(edge), RoomsApi(edge)
    app.router.add_get("/health", probes.health)
    app.router.add_get("/ready", probes.ready)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/nodes", api.list_nodes)
    app.router.add_post("/rooms", api.create_room)
    app.router.add_get("/rooms", api.list_rooms)
    app.router.add_get("/rooms/{room_id}", api.get_room)
    app.router.add_delete("/rooms/{room_id}", api.delete_room)
    app.router.add_delete("/rooms/{room_id}/participants/{participant_id}", api.kick)
