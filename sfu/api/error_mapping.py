"""The one place where error codes become HTTP statuses and WebSocket close codes."""

from __future__ import annotations

from aiohttp import WSCloseCode

HTTP_STATUS: dict[str, int] = {
    "invalid_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "room_not_found": 404,
    "participant_not_found": 404,
    "not_found": 404,
    "method_not_allowed": 405,
    "room_exists": 409,
    "message_too_large": 413,
    "rate_limited": 429,
    "no_capacity": 503,
    "draining": 503,
    "directory_unavailable": 503,
    "node_unavailable": 503,
}

WS_CLOSE: dict[str, int] = {
    "unauthorized": 4401,
    "forbidden": 4403,
    "room_not_found": 4404,
    "replaced": 4409,
    "message_too_large": 4413,
    "rate_limited": 4429,
    "no_capacity": 4503,
    "draining": 4503,
    "room_full": 4503,
    "directory_unavailable": 4503,
    "node_unavailable": 4503,
    "ice_failed": int(WSCloseCode.INTERNAL_ERROR),
    "removed": int(WSCloseCode.OK),
}


def http_status(code: str) -> int:
    return HTTP_STATUS.get(code, 500)


def ws_close_code(code: str) -> int:
    return WS_CLOSE.get(code, int(WSCloseCode.INTERNAL_ERROR))
