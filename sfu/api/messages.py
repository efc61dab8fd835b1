"""Client → SFU WebSocket messages (docs/api.md §3.2): parsed and validated, without sockets."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sfu.core.errors import InvalidMessage, MessageTooLarge, UnknownType
from sfu.core.vocabulary import SOURCES

MAX_MESSAGE_BYTES = 64 * 1024
TARGETS = ("publisher", "subscriber")
MAX_SOURCES = 16
MAX_ID_LENGTH = 256


@dataclass(frozen=True, slots=True)
class PublishOffer:
    sdp: str
    sources: dict[str, str]


@dataclass(frozen=True, slots=True)
class SubscribeAnswer:
    sdp: str


@dataclass(frozen=True, slots=True)
class Candidate:
    target: str
    candidate: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class RequestKeyframe:
    track_id: str


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Leave:
    pass


ClientMessage = PublishOffer | SubscribeAnswer | Candidate | RequestKeyframe | Ping | Leave


def _str(body: dict[str, Any], name: str, *, max_len: int = MAX_MESSAGE_BYTES) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidMessage(f"'{name}' must be a non-empty string")
    if len(value) > max_len:
        raise InvalidMessage(f"'{name}' is too long")
    return value


def _sources(body: dict[str, Any]) -> dict[str, str]:
    value = body.get("sources", {})
    if not isinstance(value, dict) or len(value) > MAX_SOURCES:
        raise InvalidMessage(f"'sources' must be an object of at most {MAX_SOURCES} entries")
    for track_id, source in value.items():
        if not track_id or len(track_id) > MAX_ID_LENGTH:
            raise InvalidMessage("a track id in 'sources' is empty or too long")
        if source not in SOURCES:
            raise InvalidMessage(f"source of {track_id!r} must be one of {', '.join(SOURCES)}")
    return dict(value)


def _candidate(body: dict[str, Any]) -> Candidate:
    target = body.get("target")
    if target not in TARGETS:
        raise InvalidMessage("'target' must be 'publisher' or 'subscriber'")
    if "candidate" not in body:
        raise InvalidMessage("'candidate' is required (null for end-of-candidates)")
    candidate = body["candidate"]
    if candidate is not None:
        if not isinstance(candidate, dict):
            raise InvalidMessage("'candidate' must be an RTCIceCandidateInit object or null")
        line = candidate.get("candidate", "")
        mid = candidate.get("sdpMid")
        index = candidate.get("sdpMLineIndex")
        if not isinstance(line, str) or len(line) > 1024:
            raise InvalidMessage("'candidate.candidate' must be a string")
        if mid is not None and not isinstance(mid, str):
            raise InvalidMessage("'candidate.sdpMid' must be a string or null")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
            raise InvalidMessage("'candidate.sdpMLineIndex' must be an integer or null")
        if line and mid is None and index is None:
            raise InvalidMessage("'candidate' needs sdpMid or sdpMLineIndex")
    return Candidate(target=target, candidate=candidate)


def message_size(raw: str | bytes) -> int:
    """Size on the wire, in bytes (a str counts as UTF-8)."""
    return len(raw.encode()) if isinstance(raw, str) else len(raw)


def parse_message(raw: str | bytes) -> ClientMessage:
    """One WebSocket text frame → a typed message, or a SfuError with the contract's code."""
    if message_size(raw) > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(f"message larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidMessage(f"message is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidMessage("message must be a JSON object")
    kind = body.get("type")
    if not isinstance(kind, str):
        raise InvalidMessage("message has no 'type'")
    if kind == "publish_offer":
        return PublishOffer(sdp=_str(body, "sdp"), sources=_sources(body))
    if kind == "subscribe_answer":
        return SubscribeAnswer(sdp=_str(body, "sdp"))
    if kind == "candidate":
        return _candidate(body)
    if kind == "request_keyframe":
        return RequestKeyframe(track_id=_str(body, "track_id", max_len=MAX_ID_LENGTH))
    if kind == "ping":
        return Ping()
    if kind == "leave":
        return Leave()
    raise UnknownType(f"unknown message type {kind[:64]!r}")
