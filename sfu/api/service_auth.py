"""The backend's service token on a request (`Authorization: Bearer <token>`)."""

from __future__ import annotations

from aiohttp import web

from sfu.api.tokens import verify_service_token
from sfu.core.errors import Unauthorized


def require_service(request: web.Request, secret: str) -> None:
    """Unauthorized (401) unless the request carries a valid service token."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a service token is required (Authorization: Bearer ...)")
    verify_service_token(secret, token.strip())
