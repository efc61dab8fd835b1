"""The words of the contract (docs/api.md): roles, track sources and kinds, and what a valid
participant token grants."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Role = Literal["mentor", "mentee", "observer"]
ROLES: tuple[Role, ...] = ("mentor", "mentee", "observer")

Source = Literal["camera", "microphone", "screen"]
SOURCES: tuple[Source, ...] = ("camera", "microphone", "screen")

Kind = Literal["audio", "video"]
KINDS: tuple[Kind, ...] = ("audio", "video")

SOURCE_KINDS: dict[str, Kind] = {"camera": "video", "screen": "video", "microphone": "audio"}
"""The media kind each source is sent as."""

ROOM_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A room id (given or generated), and the `room` claim of a participant token."""


@dataclass(frozen=True, slots=True)
class ParticipantGrant:
    """What a valid participant token allows."""

    user_id: str
    room_id: str
    role: Role
    name: str
    expires_at: float
