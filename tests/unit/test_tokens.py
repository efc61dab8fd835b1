"""Service and participant tokens (docs/api.md §1): minting, verification, and every refusal."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from sfu.api.tokens import (
    LEEWAY_S,
    mint_participant_token,
    mint_service_token,
    verify_participant_token,
    verify_service_token,
)
from sfu.core.errors import Forbidden, SfuError, Unauthorized
from sfu.core.vocabulary import ROLES, ParticipantGrant, Role

SECRET = "test-secret-" + "s" * 64
OTHER_SECRET = "other-secret-" + "o" * 64


def _sign(claims: dict[str, Any], *, secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm)


def _participant_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "user-1",
        "room": "room-1",
        "role": "mentor",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict[str, Any]) -> str:
    """An `alg: none` token: header and claims, empty signature."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{header}.{body}."


# --- minting and accepting ------------------------------------------------------------------


def test_service_token_round_trip() -> None:
    token = mint_service_token(SECRET, ttl_s=60)
    verify_service_token(SECRET, token)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["role"] == "service"
    assert 55 <= claims["exp"] - time.time() <= 61


@pytest.mark.parametrize("role", ROLES)
def test_participant_token_round_trip(role: Role) -> None:
    token = mint_participant_token(
        SECRET, room_id="room_A-1", user_id="u-42", role=role, name="Ada", ttl_s=120
    )
    grant = verify_participant_token(SECRET, token)
    assert grant == ParticipantGrant(
        user_id="u-42", room_id="room_A-1", role=role, name="Ada", expires_at=grant.expires_at
    )
    assert 115 <= grant.expires_at - time.time() <= 121


def test_participant_name_defaults_to_sub() -> None:
    token = mint_participant_token(SECRET, room_id="r", user_id="u-7", role="mentee")
    assert "name" not in jwt.decode(token, SECRET, algorithms=["HS256"])
    assert verify_participant_token(SECRET, token).name == "u-7"


def test_mint_refuses_unknown_role() -> None:
    with pytest.raises(ValueError, match="role"):
        mint_participant_token(SECRET, room_id="r", user_id="u", role="admin")  # type: ignore[arg-type]


def test_nbf_in_the_past_is_accepted() -> None:
    token = _sign(_participant_claims(nbf=int(time.time()) - 30))
    assert verify_participant_token(SECRET, token).user_id == "user-1"


# --- 401: missing, expired, not yet valid, badly signed -------------------------------------

EXPIRED = _participant_claims(exp=int(time.time()) - LEEWAY_S - 60)


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("", "missing"),
        ("not-a-jwt", "garbage"),
        ("a.b.c", "garbage with dots"),
        ("\udcff.\udcfe.c", "lone surrogates"),
        (_sign(EXPIRED), "expired"),
        (_sign(_participant_claims(nbf=int(time.time()) + 3600)), "nbf in the future"),
        (_sign(_participant_claims(), secret=OTHER_SECRET), "wrong secret"),
        (_sign(_participant_claims(), algorithm="HS512"), "HS512 with the right secret"),
        (_unsigned(_participant_claims()), "alg none"),
        (_sign(_participant_claims(exp=None)), "no exp"),
        (_sign(_participant_claims(sub=None)), "missing sub"),
        (_sign(_participant_claims(sub="")), "empty sub"),
        (_sign(_participant_claims(sub="x" * 129)), "sub too long"),
        (_sign(_participant_claims(room=None)), "missing room"),
        (_sign(_participant_claims(room="")), "empty room"),
        (_sign(_participant_claims(room="room/../b")), "bad room id"),
        (_sign(_participant_claims(room="r" * 65)), "room id too long"),
        (_sign(_participant_claims(room=42)), "room not a string"),
        (_sign(_participant_claims(role=None)), "missing role"),
        (_sign(_participant_claims(role="admin")), "unknown role"),
    ],
)
def test_participant_token_unauthorized(token: str, why: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        verify_participant_token(SECRET, token)
    assert caught.value.code == "unauthorized", why


def test_expired_within_leeway_is_still_accepted() -> None:
    token = _sign(_participant_claims(exp=int(time.time()) - 1))
    assert verify_participant_token(SECRET, token).room_id == "room-1"


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("", "missing"),
        ("\udce9" + mint_service_token(SECRET), "a non-UTF-8 header byte (a lone surrogate)"),
        (mint_service_token(SECRET) + "é", "not ASCII"),
        (_sign({"role": "service", "exp": int(time.time()) - 3600}), "expired"),
        (_sign({"role": "service", "exp": int(time.time()) + 60}, secret=OTHER_SECRET), "secret"),
        (_unsigned({"role": "service", "exp": int(time.time()) + 60}), "alg none"),
        (_sign({"role": "service"}), "no exp"),
        (
            _sign({"role": "service", "exp": int(time.time()) + 60, "nbf": time.time() + 600}),
            "nbf in the future",
        ),
    ],
)
def test_service_token_unauthorized(token: str, why: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        verify_service_token(SECRET, token)
    assert caught.value.code == "unauthorized", why


# --- 403: valid token, wrong kind -----------------------------------------------------------


def test_service_token_cannot_join() -> None:
    with pytest.raises(Forbidden) as caught:
        verify_participant_token(SECRET, mint_service_token(SECRET))
    assert caught.value.code == "forbidden"


@pytest.mark.parametrize("role", ROLES)
def test_participant_token_is_not_a_service_token(role: Role) -> None:
    token = mint_participant_token(SECRET, room_id="r", user_id="u", role=role)
    with pytest.raises(Forbidden) as caught:
        verify_service_token(SECRET, token)
    assert caught.value.code == "forbidden"


def test_errors_carry_the_contract_body() -> None:
    with pytest.raises(SfuError) as caught:
        verify_service_token(SECRET, "")
    assert caught.value.to_body()["error"]["code"] == "unauthorized"
    assert caught.value.to_body()["error"]["message"]
