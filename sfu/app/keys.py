"""Every typed key of the aiohttp app's state, in one place. Only the wiring (sfu/app/) and the
process around it (sfu/server.py) read them; the edge is handed its `EdgeState`."""

from __future__ import annotations

from aiohttp import web

from sfu.api.edge_state import EdgeState
from sfu.config.settings import Settings
from sfu.ice.ports import PortAllocator
from sfu.recording.job_queue import JobQueue
from sfu.rooms.events import RoomEvents
from sfu.rooms.recording import OnFinalised
from sfu.webhooks.sender import WebhookSender

SETTINGS = web.AppKey("settings", Settings)
EDGE = web.AppKey("edge", EdgeState)
"""What the REST and WebSocket handlers serve: the room manager (once started), limits,
open sockets, readiness checks."""
ROOM_EVENTS = web.AppKey("room_events", RoomEvents)
ALLOCATOR = web.AppKey("allocator", PortAllocator)
VOD_QUEUE = web.AppKey("vod_queue", JobQueue)
VOD_HAND_OFF: web.AppKey[OnFinalised] = web.AppKey("vod_hand_off")
WEBHOOKS = web.AppKey("webhooks", WebhookSender)
"""The running sender, when `webhook_url` is set."""
