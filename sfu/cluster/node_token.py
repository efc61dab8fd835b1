"""The token one node shows another on an internal hop (a forwarded REST call, a relayed
WebSocket): an HS256 JWT signed with SFU_JWT_SECRET with `role: node`, the sending node's id
and a short life. A client that reaches a node's port without the secret cannot mint one, so
it cannot use the hop to skip the edge's checks."""

from __future__ import annotations

import time

import jwt

HEADER = "X-SFU-Node"
"""The request header that carries the token."""
CLIENT_IP_HEADER = "X-SFU-Client-IP"
"""On a relayed WebSocket: the address the client connected from (the edge node's view)."""
WS_URL_HEADER = "X-SFU-WS-URL"
"""On a forwarded `POST /rooms`: the `ws_url` the placing node derived from the client's
request (the owner sees a request from the placing node, not from the client)."""
TTL_S = 60
ALGORITHM = "HS256"
LEEWAY_S = 5


def mint_node_token(secret: str, node_id: str, *, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    claims = {"role": "node", "sub": node_id, "iat": issued, "exp": issued + TTL_S}
    return jwt.encode(claims, secret, ALGORITHM)


def verify_node_token(secret: str, token: str) -> str | None:
    """The sending node's id, or None when the token is not a valid node token."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], leeway=LEEWAY_S, options={"require": ["exp"]}
        )
    except (jwt.InvalidTokenError, UnicodeError):
        return None
    if claims.get("role") != "node" or not isinstance(claims.get("sub"), str):
        return None
    return str(claims["sub"])
