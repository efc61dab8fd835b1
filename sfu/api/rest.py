"""REST: request bodies and their limits, the probes, /metrics, and the routes (docs/api.md §2,
docs/openapi.yaml). The room handlers are sfu/api/rooms_api.py."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import Any, NoReturn

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sfu import metrics
from sfu.api.edge_state import EdgeState
from sfu.api.middleware import error_response
from sfu.core.errors import DependencyUnavailable, Draining, InvalidRequest
from sfu.rooms.models import RoomOptions

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
MAX_METADATA_BYTES = 4 * 1024


def ws_url(request: web.Request, public: str | None) -> str:
    """Where participants connect: from SFU_PUBLIC_URL, else from the request's Host."""
    if public:
        base = public.rstrip("/")
        if base.startswith("https://"):
            base = "wss://" + base[len("https://") :]
        elif base.startswith("http://"):
            base = "ws://" + base[len("http://") :]
        return base + "/ws"
    scheme = "wss" if request.secure else "ws"
    return f"{scheme}://{request.host}/ws"


async def read_body(request: web.Request) -> dict[str, Any]:
    """The JSON object a request carries (at most MAX_BODY_BYTES), or InvalidRequest."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise InvalidRequest(f"body larger than {MAX_BODY_BYTES} bytes")
    # read(n) returns what has arrived so far, not n bytes: a body in several TCP segments
    # needs several reads.
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY_BYTES:
        chunk = await request.content.read(MAX_BODY_BYTES + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > MAX_BODY_BYTES:
        raise InvalidRequest(f"body larger than {MAX_BODY_BYTES} bytes")
    return decode_body(b"".join(chunks))


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:32]} is out of range")
    return value


def _not_json(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def decode_body(raw: bytes) -> dict[str, Any]:
    """A request body → a JSON object, or InvalidRequest. Empty means `{}`. `NaN`, `Infinity`
    and numbers too large for a double are refused: they could not be echoed as JSON."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_float=_finite, parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object")
    return body


def _integer(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    """An integer field. JSON has one number type: `4.0` is the integer 4 (as JSON Schema
    and the OpenAPI document say), `4.5` and `true` are not integers."""
    value = body.get(name, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be an integer from {low} to {high}")
    return value


def parse_room_options(body: dict[str, Any], room_id: str, default_timeout: int) -> RoomOptions:
    unknown = set(body) - {"room_id", "record", "max_participants", "empty_timeout_s", "metadata"}
    if unknown:
        raise InvalidRequest(f"unknown fields: {', '.join(sorted(unknown))}")
    record = body.get("record", True)
    if not isinstance(record, bool):
        raise InvalidRequest("'record' must be a boolean")
    max_participants = _integer(body, "max_participants", 4, 2, 16)
    timeout = _integer(body, "empty_timeout_s", default_timeout, 1, 86400)
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InvalidRequest("'metadata' must be an object")
    if len(json.dumps(metadata, separators=(",", ":")).encode()) > MAX_METADATA_BYTES:
        raise InvalidRequest(f"'metadata' is larger than {MAX_METADATA_BYTES} bytes")
    return RoomOptions(
        room_id=room_id,
        record=record,
        max_participants=max_participants,
        empty_timeout_s=timeout,
        metadata=metadata,
    )


class Probes:
    """`/health` and `/ready`, bound to the edge state they report on."""

    def __init__(self, edge: EdgeState) -> None:
        self.edge = edge

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(self, request: web.Request) -> web.Response:
        if self.edge.manager.draining:
            return error_response(Draining("node is draining"))
        for check in self.edge.ready_checks:
            problem = await check()
            if problem:
                return error_response(DependencyUnavailable(problem))
        return web.json_response({"status": "ready"})


async def metrics_handler(request: web.Request) -> web.Response:
    metrics.ASYNCIO_TASKS.set(len(asyncio.all_tasks()))
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response
