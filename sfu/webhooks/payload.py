"""What a webhook request carries: the body bytes, its event id, and its signature.

Pure functions, no I/O. The body is compact JSON with sorted keys, built once when the
event happens; every retry sends the same bytes, so the same `id` and the same signature
(receivers deduplicate by `id`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sfu.core.timestamps import rfc3339_from_ms

SIGNATURE_HEADER = "X-SFU-Signature"
SIGNATURE_PREFIX = "sha256="
RESERVED_KEYS = ("event", "id", "created_at", "room")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One event ready to send: `body` is exactly what is signed and POSTed."""

    event: str
    event_id: str
    room_id: str
    body: bytes
    signature: str


def new_event_id(now_ms: int | None = None) -> str:
    """`evt_` + a ULID: 48-bit millisecond time then 80 random bits, Crockford base32.
    Ids sort by creation time (to the millisecond) and never repeat in practice."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = ((ms & ((1 << 48) - 1)) << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "evt_" + "".join(reversed(chars))


def encode_body(
    event: str, event_id: str, created_at: str, room: dict[str, Any], fields: dict[str, Any]
) -> bytes:
    """`{"event", "id", "created_at", "room", ...fields}` as compact, key-sorted JSON.
    A field named like a reserved key is ignored; values JSON cannot encode become strings."""
    body: dict[str, Any] = {k: v for k, v in fields.items() if k not in RESERVED_KEYS}
    body.update(event=event, id=event_id, created_at=created_at, room=room)
    return json.dumps(body, separators=(",", ":"), sort_keys=True, default=str).encode()


def sign(secret: str, body: bytes) -> str:
    """The `X-SFU-Signature` value: `sha256=` + hex HMAC-SHA256 of the raw body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """For receivers: does `header` sign `body` with `secret`? Constant-time compare."""
    if not header:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


def build_event(
    secret: str,
    event: str,
    room: dict[str, Any],
    fields: dict[str, Any],
    now_ms: int | None = None,
) -> WebhookEvent:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    event_id = new_event_id(ms)
    body = encode_body(event, event_id, rfc3339_from_ms(ms), room, fields)
    return WebhookEvent(
        event=event,
        event_id=event_id,
        room_id=str(room.get("room_id", "")),
        body=body,
        signature=sign(secret, body),
    )
