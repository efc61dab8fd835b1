"""The aioice seam: an ICE connection that binds inside the media port range, or shares one.

`SfuConnection` is an `aioice.Connection` that
- binds its host sockets through a `PortAllocator` (or on port 0 when there is none, for test
  clients) and raises `PortsExhausted` when it cannot bind any, where stock aioice would
  produce an SDP without candidates; or, with `IceConfig.udp_mux`, attaches to the shared
  media port's sockets (sfu/ice/udp_mux.py) under a 16-digit ufrag of its own;
- announces `public_ip` in its host candidates (NAT 1:1) while the socket stays bound to the
  local address;
- never contacts a STUN or TURN server, whatever aiortc passes;
- drops remote mDNS (`.local`) candidates instead of resolving them (peer-reflexive candidates
  cover them);
- drops junk datagrams on its sockets without a traceback (`SfuStunProtocol`).

aiortc builds its connections through `aiortc.rtcicetransport.Connection`; install
`make_connection_factory(config)` there.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import secrets
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import aioice
from aioice import stun
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.ice import StunProtocol, TransportPolicy
from aioice.turn import UDP_SOCKET_BUFFER_SIZE

from sfu.ice.ports import PortAllocator, PortsExhausted
from sfu.metrics import ICE_JUNK_DATAGRAMS, ICE_MDNS_CANDIDATES_DROPPED

logger = logging.getLogger(__name__)

# RFC 8489 section 5: every STUN message since RFC 5389 carries this cookie.
_STUN_MAGIC_COOKIE = b"\x21\x12\xa4\x42"


class SharedPort(Protocol):
    """What a connection needs of the shared media port (sfu/ice/udp_mux.py's UdpMux)."""

    port: int

    def attach(
        self, connection: SfuConnection, component: int
    ) -> list[tuple[str, SfuStunProtocol]]: ...

    def has_ufrag(self, ufrag: str) -> bool: ...


@dataclass(frozen=True)
class IceConfig:
    """How the SFU's ICE connections gather candidates."""

    addresses: tuple[str, ...] = ()
    """Local addresses to bind host sockets on. Empty: aioice's `get_host_addresses` (the
    machine's non-loopback interfaces)."""
    public_ip: str | None = None
    """Announced as the host of candidates whose socket has the same IP version."""
    allocator: PortAllocator | None = None
    """Where host sockets come from. None: port 0 (any port), for test clients."""
    use_ipv6: bool = False
    udp_mux: SharedPort | None = None
    """The shared media port (SFU_RTC_UDP_PORT): when set, connections attach to its sockets
    (one per address, sfu/ice/udp_mux.py) instead of binding their own; `allocator` and
    `addresses` are then not used (the mux was opened on the addresses)."""

    def __post_init__(self) -> None:
        for address in (*self.addresses, *([self.public_ip] if self.public_ip else [])):
            ipaddress.ip_address(address)  # ValueError names the bad value


class _Lease:
    """One (address, port) of an allocator, given back once, whoever gives it back first."""

    __slots__ = ("_address", "_allocator", "_port")

    def __init__(self, allocator: PortAllocator, address: str, port: int) -> None:
        self._allocator: PortAllocator | None = allocator
        self._address = address
        self._port = port

    def release(self) -> None:
        allocator, self._allocator = self._allocator, None
        if allocator is not None:
            allocator.release(self._address, self._port)


class SfuStunProtocol(StunProtocol):
    """aioice's datagram protocol, with RFC 7983 demultiplexing and silent junk dropping.

    A datagram whose first byte is above 3 is not STUN (DTLS is 20-63, RTP/RTCP 128-191): it
    goes to the connection's `rtp_handler` first when it has one (the SFU's synchronous SRTP
    path), else to the connection's queue unparsed. One starting with 0-3 must be a STUN
    message with the magic cookie; anything else is counted in `ICE_JUNK_DATAGRAMS` and dropped.
    """

    def __init__(
        self, receiver: aioice.Connection, component: int = 1, lease: _Lease | None = None
    ) -> None:
        super().__init__(receiver)
        self._lease = lease
        self.component = component
        self._owner = receiver if isinstance(receiver, SfuConnection) else None
        self.ready = False
        """Set once `local_candidate` is assigned. Datagrams that arrive on the fresh socket
        before that (nobody can know the port yet but a scanner) are dropped as junk."""

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lease is not None:
            self._lease.release()
        super().connection_lost(exc)

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        # Hot path: every RTP packet comes through here.
        raw = cast(bytes, data)
        if not self.ready:
            self._drop_junk(raw, (addr[0], addr[1]), "before the candidate was ready")
        elif raw and raw[0] > 3:
            handler = self._owner.rtp_handler if self._owner is not None else None
            if handler is None or not handler(raw):
                self.receiver.data_received(raw, self.component)
        else:
            self._stun_received(raw, (addr[0], addr[1]))

    def _stun_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data[4:8] != _STUN_MAGIC_COOKIE:
            self._drop_junk(data, addr, "no STUN magic cookie")
            return
        try:
            message = stun.parse_message(data)
        except (ValueError, struct.error) as exc:
            self._drop_junk(data, addr, exc)
            return
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%r %r < %s %s", self.receiver, self, addr, message)

        if message.message_class in (stun.Class.RESPONSE, stun.Class.ERROR):
            transaction = self.transactions.get(message.transaction_id)
            if transaction is not None:
                transaction.response_received(message, addr)
        elif message.message_class == stun.Class.REQUEST:
            self.receiver.request_received(message, addr, self)

    def _drop_junk(self, data: bytes, addr: tuple[str, int], reason: object) -> None:
        ICE_JUNK_DATAGRAMS.inc()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%r %r dropped %d junk bytes from %s: %s",
                self.receiver,
                self,
                len(data),
                addr,
                reason,
            )


class SfuConnection(aioice.Connection):
    """An `aioice.Connection` that gathers host candidates the SFU's way (see module doc).

    Takes aioice's arguments; `stun_server`, `turn_*`, `use_ipv4` and `use_ipv6` are accepted
    and ignored (no server is ever contacted; IPv4 is always on and `ice_config.use_ipv6`
    decides IPv6). Only the `ALL` transport policy is supported, as no relay ever exists.
    """

    def __init__(
        self,
        ice_controlling: bool,
        components: int = 1,
        stun_server: tuple[str, int] | None = None,
        turn_server: tuple[str, int] | None = None,
        turn_username: str | None = None,
        turn_password: str | None = None,
        turn_ssl: bool = False,
        turn_transport: str = "udp",
        use_ipv4: bool = True,
        use_ipv6: bool = True,
        transport_policy: TransportPolicy = TransportPolicy.ALL,
        local_username: str | None = None,
        local_password: str | None = None,
        *,
        ice_config: IceConfig,
    ) -> None:
        if transport_policy != TransportPolicy.ALL:
            raise ValueError(f"unsupported ICE transport policy {transport_policy}")
        if stun_server is not None or turn_server is not None:
            logger.debug("ignoring ICE servers stun=%s turn=%s", stun_server, turn_server)
        if ice_config.udp_mux is not None and local_username is None:
            local_username = _unique_ufrag(ice_config.udp_mux)
        super().__init__(
            ice_controlling,
            components=components,
            use_ipv4=True,
            use_ipv6=ice_config.use_ipv6,
            transport_policy=transport_policy,
            local_username=local_username,
            local_password=local_password,
        )
        self.ice_config = ice_config
        self.rtp_handler: Callable[[bytes], bool] | None = None
        """Takes SRTP datagrams synchronously in the socket callback (the SFU's RtpFastPath);
        returns False to let a datagram go aioice's queue as usual. Set once, after the DTLS
        transport exists."""

    async def add_remote_candidate(self, remote_candidate: Candidate | None) -> None:
        """As aioice's, except that mDNS (`.local`) candidates are dropped unresolved."""
        if remote_candidate is not None and _is_mdns_host(remote_candidate.host):
            ICE_MDNS_CANDIDATES_DROPPED.inc()
            logger.debug("%r dropped mDNS candidate %s", self, remote_candidate.host)
            return
        await super().add_remote_candidate(remote_candidate)

    async def get_component_candidates(
        self, component: int, addresses: list[str], timeout: int = 5
    ) -> list[Candidate]:
        """Host candidates only, one per address, bound in the port range.

        `addresses` (aioice's host addresses) is used only when the config names none.
        Raises `PortsExhausted` when no socket could be bound at all.
        """
        if self.ice_config.udp_mux is not None:
            return self._attach_to_mux(self.ice_config.udp_mux, component)
        wanted = list(self.ice_config.addresses) or addresses
        loop = asyncio.get_running_loop()
        opened: list[SfuStunProtocol] = []
        failures: list[str] = []
        complete = False
        try:
            for address in wanted:
                try:
                    protocol = await self._open_host(loop, address, component)
                except (OSError, PortsExhausted) as exc:
                    logger.warning("%r could not bind on %s: %s", self, address, exc)
                    failures.append(str(exc))
                    continue
                opened.append(protocol)
            if not opened:
                detail = "; ".join(failures) or "no local address to bind on"
                raise PortsExhausted(f"no media socket could be bound: {detail}")
            complete = True
        finally:
            if not complete:
                for protocol in opened:
                    protocol.transport.close()  # its connection_lost releases the port
        self._protocols += opened
        return [protocol.local_candidate for protocol in opened]

    async def _open_host(
        self, loop: asyncio.AbstractEventLoop, address: str, component: int
    ) -> SfuStunProtocol:
        allocator = self.ice_config.allocator
        lease: _Lease | None = None
        if allocator is None:
            sock = _bind_any_port(address)
        else:
            sock = allocator.bind_udp(address)
            lease = _Lease(allocator, address, sock.getsockname()[1])
        bound_host, port = sock.getsockname()[:2]
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_SOCKET_BUFFER_SIZE)
        except OSError as exc:
            logger.debug("could not set SO_RCVBUF on %s:%d: %s", bound_host, port, exc)

        created = False
        try:
            _, protocol = await loop.create_datagram_endpoint(
                lambda: SfuStunProtocol(self, component, lease), sock=sock
            )
            created = True
        finally:
            if not created:
                sock.close()
                if lease is not None:
                    lease.release()

        protocol.local_candidate = self._host_candidate(component, bound_host, port)
        protocol.ready = True
        return protocol

    def _attach_to_mux(self, mux: SharedPort, component: int) -> list[Candidate]:
        """Host candidates on the shared port, one per address the mux listens on."""
        attached = mux.attach(self, component)
        for address, protocol in attached:
            protocol.local_candidate = self._host_candidate(component, address, mux.port)
            protocol.ready = True
        self._protocols += [protocol for _, protocol in attached]
        return [protocol.local_candidate for _, protocol in attached]

    def _host_candidate(self, component: int, bound_host: str, port: int) -> Candidate:
        return Candidate(
            foundation=candidate_foundation("host", "udp", bound_host),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host"),
            host=self._announced_host(bound_host),
            port=port,
            type="host",
        )

    def _announced_host(self, bound_host: str) -> str:
        public_ip = self.ice_config.public_ip
        if public_ip is None:
            return bound_host
        same_version = (
            ipaddress.ip_address(public_ip).version == ipaddress.ip_address(bound_host).version
        )
        return public_ip if same_version else bound_host


def make_connection_factory(config: IceConfig) -> Callable[..., aioice.Connection]:
    """A callable taking `aioice.Connection`'s arguments that builds an `SfuConnection`."""
    return functools.partial(SfuConnection, ice_config=config)


def _unique_ufrag(mux: SharedPort) -> str:
    """A local ufrag no connection on the shared port has: 16 hex digits (64 bits), where
    aioice's 4 characters would collide among a few thousand connections."""
    for _ in range(8):
        ufrag = secrets.token_hex(8)
        if not mux.has_ufrag(ufrag):
            return ufrag
    raise RuntimeError("could not draw a unique ICE ufrag")  # 2**-64 per draw: never


def _is_mdns_host(host: str) -> bool:
    return host.lower().rstrip(".").endswith(".local")


def _bind_any_port(address: str) -> socket.socket:
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((address, 0))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
