"""The HTTP edge: client address, CORS (docs/api.md §2.5), per-IP REST rate limit, audit lines,
and domain errors → the error body of docs/api.md §7. Order (outermost first): client IP, CORS,
errors, rate limit."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from sfu import metrics
from sfu.api.clientip import client_ip, parse_networks
from sfu.api.edge_state import EdgeState
from sfu.api.error_mapping import http_status
from sfu.core.errors import (
    Forbidden,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    SfuError,
    Unauthorized,
)

logger = logging.getLogger(__name__)
audit = logging.getLogger("sfu.audit")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CLIENT_IP = "sfu_client_ip"
ACTOR = "sfu_actor"
"""Set on the request once its token is verified: who made the call."""
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOW_HEADERS = "Content-Type, Authorization"
UNLIMITED_PATHS = frozenset({"/health", "/ready", "/metrics"})
"""Probes and scrapes: never rate limited (kubelet and Prometheus poll them)."""


def request_ip(request: web.Request) -> str:
    ip = request.get(CLIENT_IP)
    return ip if isinstance(ip, str) else (request.remote or "unknown")


def error_response(error: SfuError) -> web.Response:
    return web.json_response(error.to_body(), status=http_status(error.code))


def audit_line(action: str, ip: str, outcome: str, actor: str = "-", **extra: object) -> None:
    """One line per room-API call, refused token or limit hit: who, what, from where."""
    audit.info(
        "%s %s by %s from %s",
        action,
        outcome,
        actor,
        ip,
        extra={"action": action, "outcome": outcome, "actor": actor, "ip": ip, **extra},
    )


def make_middlewares(edge: EdgeState) -> list[Middleware]:
    settings = edge.settings
    trusted = parse_networks(settings.http.trusted_proxies)
    origins = frozenset(settings.http.cors_origins)
    limiter = edge.limiter

    @web.middleware
    async def client_address(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[CLIENT_IP] = client_ip(
            request.remote, request.headers.get("X-Forwarded-For"), trusted
        )
        return await handler(request)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        allowed = origin is not None and origin in origins and request.path != "/ws"
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204)
            if allowed:
                response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
                response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
                response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = await handler(request)
        if allowed and origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers.add("Vary", "Origin")
        return response

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Domain errors → the contract's body; every room-API call and refused token → an
        audit line."""
        response: web.StreamResponse
        try:
            response = await handler(request)
            outcome = str(response.status)
        except SfuError as exc:
            response, outcome = error_response(exc), exc.code
        except web.HTTPNotFound:
            response = error_response(NotFound("no such resource"))
            outcome = NotFound.code
        except web.HTTPMethodNotAllowed as exc:
            response = error_response(MethodNotAllowed("method not allowed"))
            response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))  # RFC 9110
            outcome = MethodNotAllowed.code
        if request.path.startswith("/rooms") or outcome in (Unauthorized.code, Forbidden.code):
            actor = request.get(ACTOR)
            audit_line(
                f"{request.method} {request.path}",
                request_ip(request),
                outcome,
                actor=actor if isinstance(actor, str) else "-",
            )
        return response

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in UNLIMITED_PATHS or request.path == "/ws":
            return await handler(request)
        ip = request_ip(request)
        if not limiter.take(ip, edge.clock()):
            metrics.LIMIT_HITS.labels("rest").inc()
            audit_line(f"{request.method} {request.path}", ip, "rate_limited")
            raise RateLimited(f"more than {settings.limits.rest_rate_per_ip:g} requests per second")
        return await handler(request)

    return [client_address, cors, errors, rate_limit]
