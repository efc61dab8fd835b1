"""Domain errors. Each carries its `code` (docs/api.md §7); the edge (sfu/api/edge.py) maps a
code to an HTTP status or a WebSocket close code in one table, so the layers below never know
either."""

from __future__ import annotations


class SfuError(Exception):
    """Base of every error the SFU reports to a client."""

    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class InvalidRequest(SfuError):
    """A body, query or message that does not follow the contract."""

    code = "invalid_request"


class InvalidMessage(SfuError):
    """A WebSocket message that is not JSON, has no known type, or misses a field."""

    code = "invalid_message"


class UnknownType(InvalidMessage):
    code = "unknown_type"


class OutOfOrder(SfuError):
    """A message that is valid but not expected now (an answer with no offer pending)."""

    code = "out_of_order"


class InvalidSdp(SfuError):
    code = "invalid_sdp"


class Unauthorized(SfuError):
    """Missing, expired or badly signed token."""

    code = "unauthorized"


class Forbidden(SfuError):
    """A valid token that does not allow this room or action."""

    code = "forbidden"


class RoomNotFound(SfuError):
    code = "room_not_found"


class ParticipantNotFound(SfuError):
    code = "participant_not_found"


class TrackNotFound(SfuError):
    code = "track_not_found"


class RoomExists(SfuError):
    code = "room_exists"


class RoomFull(SfuError):
    code = "room_full"


class NoCapacity(SfuError):
    """No room slot, no media port, or the node is draining."""

    code = "no_capacity"


class Draining(NoCapacity):
    code = "draining"


class MessageTooLarge(SfuError):
    code = "message_too_large"


class RateLimited(SfuError):
    code = "rate_limited"


class Replaced(SfuError):
    code = "replaced"
