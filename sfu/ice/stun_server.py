"""The embedded STUN responder (docs/api.md §4): RFC 8489 Binding requests on UDP `stun_port`.

`StunResponder` is the protocol, without sockets: `handle(data, addr, now)` returns the reply
to send back to `addr`, or None. `StunServer` is the asyncio glue around it,
`open_stun_server(stun)` starts one for the app's cleanup context, and `ice_servers(stun)` is
what `joined` advertises.

What gets an answer: a Binding request (RFC 8489 section 6) with the magic cookie, a body
length matching the datagram, at most `MAX_REQUEST_SIZE` bytes, well-formed attributes, only
comprehension-optional ones (SOFTWARE, FINGERPRINT, ... but not ICE-CONTROLLED/-CONTROLLING),
and a valid FINGERPRINT if it has one, as its last attribute. The answer is a Binding success
response with the same transaction id, the source's XOR-MAPPED-ADDRESS (IPv4 or IPv6; an
IPv4-mapped IPv6 source is answered as IPv4), an optional SOFTWARE and a FINGERPRINT.

Everything else is dropped without a reply and without a log line, and counted in
`sfu_stun_requests_total{result="ignored"}`: other STUN methods and classes, non-STUN data,
and requests with USERNAME, MESSAGE-INTEGRITY or any other comprehension-required attribute
(ICE connectivity checks belong on the media ports; RFC 8489 would answer an unknown
comprehension-required attribute with a 420 error, this port stays silent instead).

Abuse bounds:
- amplification: a reply is at most `MAX_REPLY_GROWTH` (64) bytes longer than its request
  (header 20 + XOR-MAPPED-ADDRESS 24 for IPv6 + FINGERPRINT 8 + SOFTWARE at most 32, against a
  request of at least 20), i.e. at most 4.2 times the smallest request, once per request;
- CPU and reflection: a request-shaped datagram is parsed only once its source's token bucket
  and the global one allowed it (`sfu_stun_requests_total{result="rate_limited"}` otherwise);
  junk is refused by a few byte comparisons before any of that;
- memory: the per-source table is bounded (`SourceRateLimiter`).
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import struct
import time
from collections.abc import Callable
from typing import Any, cast

from aioice import stun

from sfu.config.settings import StunSettings
from sfu.ice.source_limiter import RateConfig, SourceRateLimiter
from sfu.metrics import STUN_REQUESTS

logger = logging.getLogger(__name__)

HEADER_LENGTH = 20
MAGIC_COOKIE = b"\x21\x12\xa4\x42"
BINDING_REQUEST = b"\x00\x01"  # method 0x001, class request; the top two bits zero
MAX_REQUEST_SIZE = 1024
"""Larger datagrams are not read at all: a plain Binding request is 20 to ~100 bytes."""
MAX_SOFTWARE_BYTES = 28
MAX_REPLY_GROWTH = 64
"""A reply is never more than this many bytes longer than the request it answers."""

_COMPREHENSION_OPTIONAL = 0x8000
_FINGERPRINT = 0x8028
_FINGERPRINT_LENGTH = 4
# Comprehension-optional, but only ever in ICE connectivity checks.
_ICE_ONLY = frozenset({0x8029, 0x802A})


class Result(enum.Enum):
    ANSWERED = "answered"
    IGNORED = "ignored"
    RATE_LIMITED = "rate_limited"


_COUNTERS = {result: STUN_REQUESTS.labels(result=result.value) for result in Result}


class StunResponder:
    """Answers Binding requests (see the module doc); pure: no sockets, no clock."""

    def __init__(self, limiter: SourceRateLimiter, software: str | None = None) -> None:
        if software is not None and len(software.encode("utf-8")) > MAX_SOFTWARE_BYTES:
            raise ValueError(f"SOFTWARE is limited to {MAX_SOFTWARE_BYTES} bytes: {software!r}")
        self.limiter = limiter
        self.software = software or None

    @classmethod
    def from_settings(cls, stun: StunSettings, now: float) -> StunResponder:
        config = RateConfig(
            rate_per_source=stun.rate_per_ip,
            burst_per_source=stun.burst_per_ip,
            rate_total=stun.rate_total,
            max_sources=stun.max_sources,
        )
        return cls(SourceRateLimiter(config, now))

    def handle(self, data: bytes, addr: tuple[str, int], now: float) -> bytes | None:
        """The reply to send to `addr`, or None. Never raises on any `data`."""
        result, reply = self._respond(data, addr, now)
        _COUNTERS[result].inc()
        return reply

    def _respond(
        self, data: bytes, addr: tuple[str, int], now: float
    ) -> tuple[Result, bytes | None]:
        if not is_binding_request_header(data):
            return Result.IGNORED, None
        if not self.limiter.allow(addr[0], now):
            return Result.RATE_LIMITED, None
        if not acceptable_attributes(data):
            return Result.IGNORED, None
        try:
            request = stun.parse_message(data)  # verifies FINGERPRINT
            reply = self._reply(request.transaction_id, addr)
        except (ValueError, struct.error):  # UnicodeDecodeError, AddressValueError included
            return Result.IGNORED, None
        if len(reply) > len(data) + MAX_REPLY_GROWTH:  # cannot happen; the bound is a promise
            return Result.IGNORED, None
        return Result.ANSWERED, reply

    def _reply(self, transaction_id: bytes, addr: tuple[str, int]) -> bytes:
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=transaction_id,
            attributes={"XOR-MAPPED-ADDRESS": mapped_address(addr)},
        )
        if self.software:
            response.attributes["SOFTWARE"] = self.software
        response.add_fingerprint()
        return bytes(response)


def is_binding_request_header(data: bytes) -> bool:
    """The cheap checks: size, Binding request type, magic cookie, and a body length that
    matches the datagram and is a multiple of 4."""
    size = len(data)
    if size < HEADER_LENGTH or size > MAX_REQUEST_SIZE:
        return False
    if data[0:2] != BINDING_REQUEST or data[4:8] != MAGIC_COOKIE:
        return False
    length = int.from_bytes(data[2:4], "big")
    return length == size - HEADER_LENGTH and length % 4 == 0


def acceptable_attributes(data: bytes) -> bool:
    """Walks the attributes of a message whose header passed: each must fit in the message,
    be comprehension-optional and not ICE-only, and a FINGERPRINT must be the last one."""
    end = len(data)
    pos = HEADER_LENGTH
    fingerprint_seen = False
    while pos < end:  # pos grows by at least 4 each turn: at most MAX_REQUEST_SIZE/4 turns
        if fingerprint_seen or pos + 4 > end:
            return False
        attr_type = int.from_bytes(data[pos : pos + 2], "big")
        attr_length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        pos += 4 + attr_length + (-attr_length % 4)
        if pos > end:
            return False
        if attr_type < _COMPREHENSION_OPTIONAL or attr_type in _ICE_ONLY:
            return False
        if attr_type == _FINGERPRINT:
            if attr_length != _FINGERPRINT_LENGTH:
                return False
            fingerprint_seen = True
    return True


def mapped_address(addr: tuple[str, int]) -> tuple[str, int]:
    """The address to report: an IPv4-mapped IPv6 source as its IPv4 address, an IPv6 scope
    id dropped."""
    host, port = addr[0], addr[1]
    if ":" in host:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
        mapped = address.ipv4_mapped
        host = str(mapped) if mapped is not None else str(address)
    return host, port


class _StunProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: StunResponder, clock: Callable[[], float]) -> None:
        self._responder = responder
        self._clock = clock
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        # No logging here, whatever arrives: the responder counts it.
        reply = self._responder.handle(data, (addr[0], addr[1]), self._clock())
        transport = self._transport
        if reply is not None and transport is not None and not transport.is_closing():
            transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for replies to (possibly spoofed) sources: nothing to do, nothing to log.
        pass


class StunServer:
    """A UDP socket feeding a `StunResponder`. `start` once; `close` any number of times."""

    def __init__(
        self, responder: StunResponder, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.responder = responder
        self._clock = clock
        self._transport: asyncio.DatagramTransport | None = None
        self._started = False

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound (host, port) while running (the real port when started on port 0)."""
        if self._transport is None:
            return None
        sockname = self._transport.get_extra_info("sockname")
        return (str(sockname[0]), int(sockname[1]))

    async def start(self, host: str, port: int) -> tuple[str, int]:
        if self._started:
            raise RuntimeError("StunServer.start() called twice")
        self._started = True
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _StunProtocol(self.responder, self._clock), local_addr=(host, port)
        )
        self._transport = transport
        address = self.address
        assert address is not None
        return address

    def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()


async def open_stun_server(stun: StunSettings, now: float) -> StunServer | None:
    """The STUN responder on `stun.bind`:`stun.port`, started; None when it is disabled. A
    port that cannot be bound raises OSError (start-up stops)."""
    if not stun.enabled:
        logger.info("STUN responder disabled")
        return None
    server = StunServer(StunResponder.from_settings(stun, now))
    try:
        await server.start(stun.bind, stun.port)
    except OSError as exc:
        logger.error("STUN responder cannot bind udp %s:%d: %s", stun.bind, stun.port, exc)
        raise
    logger.info(
        "STUN responder on udp %s:%d (%s/s per IP, burst %d, %s/s in all)",
        stun.bind,
        stun.port,
        stun.rate_per_ip,
        stun.burst_per_ip,
        stun.rate_total,
    )
    return server


def ice_servers(stun: StunSettings) -> list[dict[str, list[str]]]:
    """The `ice_servers` of `joined`: this node's STUN responder, or none when disabled."""
    if not stun.enabled:
        return []
    host = stun.host
    if ":" in host and not host.startswith("["):  # an IPv6 literal (RFC 7064 URI syntax)
        host = f"[{host}]"
    return [{"urls": [f"stun:{host}:{stun.port}"]}]
