"""UdpMux: every peer connection's ICE, DTLS and SRTP on one UDP port (`SFU_RTC_UDP_PORT`).

One socket per local address, bound on the configured port. Each ICE connection attaches a
`MuxedStunProtocol` to each socket, as it would otherwise bind a socket of its own; the
protocol's transport is a `MuxedTransport`, which sends through the shared socket and, when
closed, detaches the connection instead of closing the socket. Incoming datagrams are
demultiplexed by `MuxTable` (sfu/ice/mux_table.py): by remote address when it is bound, else,
for a STUN binding request, by the local ufrag in its USERNAME once its MESSAGE-INTEGRITY
checks with that connection's password. Anything else from an unknown address is dropped and
counted (`sfu_ice_mux_unrouted_total{reason}`). Unknown-source STUN requests are rate limited
per source (the STUN responder's `SourceRateLimiter`), as each one costs an HMAC.

Consent freshness (aioice's checks every few seconds) goes to bound addresses and its
answers come back from them; an address change arrives as a checked binding request from
the new address, which binds it. The embedded STUN responder keeps its own port (3478).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, cast

from aioice import stun

from sfu.ice.connection import SfuConnection, SfuStunProtocol
from sfu.ice.mux_table import Address, MuxTable
from sfu.ice.source_limiter import RateConfig, SourceRateLimiter
from sfu.metrics import ICE_MUX_ADDRESSES, ICE_MUX_CONNECTIONS, ICE_MUX_UNROUTED

logger = logging.getLogger(__name__)

_STUN_MAGIC_COOKIE = b"\x21\x12\xa4\x42"
SOCKET_BUFFER_BYTES = 4 << 20
"""Asked for the shared socket's buffers (all connections queue there; the kernel caps it at
net.core.rmem_max / wmem_max)."""
UNKNOWN_SOURCE_RATE = RateConfig(
    rate_per_source=50.0, burst_per_source=100.0, rate_total=5000.0, max_sources=10_000
)
"""STUN requests from addresses not bound yet: a browser sends a few per candidate pair."""


class MuxedTransport(asyncio.DatagramTransport):
    """A connection's view of the shared socket: sends through it, closes only itself."""

    def __init__(self, mux_socket: MuxSocket, protocol: SfuStunProtocol) -> None:
        super().__init__()
        self._socket = mux_socket
        self._protocol = protocol
        self._closing = False
        # The packet path calls `transport.sendto` per packet: the shared one, unwrapped.
        self.sendto = mux_socket.transport.sendto  # type: ignore[method-assign]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._socket.transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._closing or self._socket.transport.is_closing()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._socket.detach(self._protocol)
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_write_buffer_size(self) -> int:
        return 0


class MuxedStunProtocol(SfuStunProtocol):
    """A connection's protocol on a shared socket: what it sends STUN to is bound to it."""

    def __init__(self, receiver: SfuConnection, component: int, mux_socket: MuxSocket) -> None:
        super().__init__(receiver, component)
        self._mux_socket = mux_socket

    def send_stun(self, message: stun.Message, addr: tuple[str, int]) -> None:
        self._mux_socket.sent_stun(self, addr)
        super().send_stun(message, addr)


class MuxSocket(asyncio.DatagramProtocol):
    """The shared socket of one local address and its table."""

    def __init__(
        self,
        limiter: SourceRateLimiter,
        clock: Callable[[], float],
        on_change: Callable[[], None],
    ) -> None:
        self.table: MuxTable[SfuStunProtocol] = MuxTable()
        self.transport: asyncio.DatagramTransport
        self._limiter = limiter
        self._clock = clock
        self._on_change = on_change

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        for protocol in self.table.entries():
            protocol.transport.close()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        # Hot path: every datagram of every connection on this address.
        remote = (addr[0], addr[1])
        protocol = self.table.route(remote)
        if protocol is not None:
            protocol.datagram_received(data, remote)
        else:
            self._unknown(data, remote)

    def _unknown(self, data: bytes, remote: Address) -> None:
        if len(data) < 20 or data[0] > 3 or data[4:8] != _STUN_MAGIC_COOKIE:
            return _unrouted("not stun", data, remote)
        if not self._limiter.allow(remote[0], self._clock()):
            return _unrouted("rate limited", data, remote)
        try:
            message = stun.parse_message(data)
        except (ValueError, struct.error):
            return _unrouted("bad stun", data, remote)
        if message.message_class != stun.Class.REQUEST:
            return _unrouted("not a request", data, remote)
        username = message.attributes.get("USERNAME")
        if not isinstance(username, str):
            return _unrouted("no username", data, remote)
        protocol = self.table.by_ufrag(username.split(":", 1)[0])
        if protocol is None:
            return _unrouted("unknown ufrag", data, remote)
        if not message.check_message_integrity(protocol.receiver.local_password.encode()):
            return _unrouted("bad integrity", data, remote)
        self.table.bind(remote, protocol, move=True)
        self._on_change()
        protocol.datagram_received(data, remote)

    def error_received(self, exc: Exception) -> None:
        logger.debug("shared media socket: %s", exc)

    def attach(self, protocol: SfuStunProtocol, ufrag: str) -> MuxedTransport:
        self.table.add(ufrag, protocol)
        transport = MuxedTransport(self, protocol)
        protocol.connection_made(transport)
        self._on_change()
        return transport

    def detach(self, protocol: SfuStunProtocol) -> None:
        self.table.remove(protocol)
        self._on_change()

    def sent_stun(self, protocol: SfuStunProtocol, remote: Address) -> None:
        """A connection sent STUN to `remote`: its answers come back from there. Never takes
        an address from another connection (only a checked request may move one)."""
        if self.table.bind(remote, protocol, move=False):
            self._on_change()


def _unrouted(reason: str, data: bytes, remote: Address) -> None:
    ICE_MUX_UNROUTED.labels(reason=reason).inc()
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("dropped %d bytes from %s:%d: %s", len(data), *remote, reason)


class UdpMux:
    """The shared media port on each local address; `attach` a connection to all of them."""

    def __init__(
        self,
        port: int,
        addresses: tuple[str, ...],
        *,
        rate: RateConfig = UNKNOWN_SOURCE_RATE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not addresses:
            raise ValueError("the shared media port needs at least one local address")
        self.port = port
        self.addresses = addresses
        self._limiter = SourceRateLimiter(rate, clock())
        self._clock = clock
        self.sockets: dict[str, MuxSocket] = {}

    def __repr__(self) -> str:
        return f"UdpMux({self.port} on {', '.join(self.addresses)})"

    async def open(self) -> None:
        """Bind the port on every address; OSError naming the address when one fails."""
        loop = asyncio.get_running_loop()
        try:
            for address in self.addresses:
                sock = _bind(address, self.port)
                mux_socket = MuxSocket(self._limiter, self._clock, self._gauges)
                await loop.create_datagram_endpoint(_factory(mux_socket), sock=sock)
                self.sockets[address] = mux_socket
        except OSError:
            self.close()
            raise

    def _gauges(self) -> None:
        ICE_MUX_CONNECTIONS.set(max((len(s.table) for s in self.sockets.values()), default=0))
        ICE_MUX_ADDRESSES.set(sum(s.table.bound for s in self.sockets.values()))

    def attach(
        self, connection: SfuConnection, component: int
    ) -> list[tuple[str, SfuStunProtocol]]:
        """One protocol per shared socket for `connection`, registered by its local ufrag;
        (local address, protocol) pairs. UfragTaken if another connection has its ufrag."""
        attached: list[tuple[str, SfuStunProtocol]] = []
        try:
            for address, mux_socket in self.sockets.items():
                protocol: SfuStunProtocol = MuxedStunProtocol(connection, component, mux_socket)
                mux_socket.attach(protocol, connection.local_username)
                attached.append((address, protocol))
        except ValueError:
            for _, protocol in attached:
                protocol.transport.close()
            raise
        return attached

    def has_ufrag(self, ufrag: str) -> bool:
        return any(s.table.by_ufrag(ufrag) is not None for s in self.sockets.values())

    def close(self) -> None:
        """Close the sockets (their connections with them). Safe to call twice."""
        sockets, self.sockets = self.sockets, {}
        for mux_socket in sockets.values():
            mux_socket.transport.close()
        self._gauges()


def _factory(mux_socket: MuxSocket) -> Callable[[], MuxSocket]:
    return lambda: mux_socket


def _bind(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((address, port))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"SFU_RTC_UDP_PORT {port} on {address}: {exc.strerror}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
    except OSError as exc:
        logger.debug("could not size the buffers of %s:%d: %s", address, port, exc)
    return sock
