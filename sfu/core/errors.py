"""Domain errors. Each carries its `code` (docs/api.md §7); the edge (sfu/api/error_mapping.py)
maps a code to an HTTP status or a WebSocket close code in one table, so the layers below never
know either."""

from __future__ import annotations


class SfuError(Exception):
    """Base of every error the SFU reports to a client."""

    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

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


class NotFound(SfuError):
    """A path the REST API does not have."""

    code = "not_found"


class MethodNotAllowed(SfuError):
    code = "method_not_allowed"


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


class Removed(SfuError):
    """The service removed the participant (`DELETE /rooms/{id}/participants/{pid}`)."""

    code = "removed"


class IceFailed(SfuError):
    """A peer connection never connected in time, or failed later."""

    code = "ice_failed"


class DependencyUnavailable(NoCapacity):
    """A configured dependency (Redis) does not answer: `/ready` is 503 with `no_capacity`."""

    code = "no_capacity"


class DirectoryUnavailable(SfuError):
    """With several nodes, the room directory (Redis) does not answer: no room can be created,
    and a room on another node cannot be found."""

    code = "directory_unavailable"


class NodeUnavailable(SfuError):
    """The node that holds the room does not answer (it stopped, or is unreachable)."""

    code = "node_unavailable"
