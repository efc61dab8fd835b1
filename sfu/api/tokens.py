"""JWT (HS256) tokens of docs/api.md §1: service tokens and participant tokens."""

from __future__ import annotations

import time
from typing import Any

import jwt

from sfu.core.errors import Forbidden, Unauthorized
from sfu.core.vocabulary import ROLES, ROOM_ID_RE, ParticipantGrant, Role

ALGORITHM = "HS256"
LEEWAY_S = 5


def mint_service_token(secret: str, ttl_s: int = 3600) -> str:
    now = int(time.time())
    return jwt.encode({"role": "service", "iat": now, "exp": now + ttl_s}, secret, ALGORITHM)


def mint_participant_token(
    secret: str,
    *,
    room_id: str,
    user_id: str,
    role: Role,
    name: str | None = None,
    ttl_s: int = 3600,
) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "room": room_id,
        "role": role,
        "iat": now,
        "exp": now + ttl_s,
    }
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, ALGORITHM)


def _decode(secret: str, token: str) -> dict[str, Any]:
    if not token:
        raise Unauthorized("token missing")
    if not token.isascii():
        # A JWT is base64url and dots. An HTTP header byte that is not UTF-8 reaches us as a
        # lone surrogate, which PyJWT cannot even encode.
        raise Unauthorized("invalid token: not ASCII")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            leeway=LEEWAY_S,
            options={"require": ["exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.ImmatureSignatureError:
        raise Unauthorized("token not valid yet (nbf)") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    return claims


def verify_service_token(secret: str, token: str) -> None:
    claims = _decode(secret, token)
    if claims.get("role") != "service":
        raise Forbidden("a service token is required")


def verify_participant_token(secret: str, token: str) -> ParticipantGrant:
    claims = _decode(secret, token)
    role = claims.get("role")
    if role == "service":
        raise Forbidden("a service token cannot join a room")
    if role not in ROLES:
        raise Unauthorized("token has no valid participant role")
    sub, room = claims.get("sub"), claims.get("room")
    if not isinstance(sub, str) or not sub or len(sub) > 128:
        raise Unauthorized("token has no valid sub")
    if not isinstance(room, str) or not ROOM_ID_RE.fullmatch(room):
        raise Unauthorized("token has no valid room")
    name = claims.get("name")
    if not isinstance(name, str) or len(name) > 128:
        name = sub
    return ParticipantGrant(
        user_id=sub, room_id=room, role=role, name=name, expires_at=float(claims["exp"])
    )
