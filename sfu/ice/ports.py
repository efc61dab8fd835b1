"""UDP port allocation inside the configured media range (SFU_RTC_PORT_MIN..MAX).

aioice binds its host sockets on port 0; the SFU binds them here instead, so every media socket
lies in the range the firewall opens. Ports are handed out round-robin, starting after the last
one handed out, so a port released a moment ago (whose peer may still be sending to it) is not
reused at once. A port some other process holds is skipped.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import Container, Iterator

from sfu.core.errors import NoCapacity
from sfu.metrics import MEDIA_PORTS_FREE, MEDIA_PORTS_IN_USE

logger = logging.getLogger(__name__)

# bind() errors meaning "this port, not this address, is unusable": try the next port.
_SKIP_ERRNOS = frozenset({errno.EADDRINUSE, errno.EACCES})


class PortsExhausted(NoCapacity):
    """Every port of the media range is in use (by the SFU or by another process)."""


def candidate_ports(
    port_min: int, port_max: int, cursor: int | None, taken: Container[int]
) -> Iterator[int]:
    """Yield each port of `port_min..port_max` not in `taken`, once, in round-robin order.

    The order starts right after `cursor` (the last port handed out; `None`: at `port_min`)
    and wraps around at `port_max`.
    """
    size = port_max - port_min + 1
    start = 0 if cursor is None else (cursor - port_min + 1) % size
    for offset in range(size):
        port = port_min + (start + offset) % size
        if port not in taken:
            yield port


def normalize_address(address: str) -> str:
    """The canonical text of an IP address (`ValueError` if it is not one)."""
    return str(ipaddress.ip_address(address))


class PortAllocator:
    """Binds UDP sockets on free ports of `port_min..port_max`, one range per allocator.

    Ports are tracked per (address, port): a socket on each local address is separate. Not
    thread-safe; use it from the event loop's thread.
    """

    def __init__(self, port_min: int, port_max: int) -> None:
        if not 1 <= port_min <= port_max <= 65535:
            raise ValueError(f"bad media port range {port_min}-{port_max}")
        self.port_min = port_min
        self.port_max = port_max
        self._cursor: int | None = None
        self._in_use: dict[str, set[int]] = {}
        self._update_gauges()

    def __repr__(self) -> str:
        return f"PortAllocator({self.port_min}-{self.port_max}, in_use={self.in_use})"

    @property
    def capacity(self) -> int:
        """Number of ports in the range."""
        return self.port_max - self.port_min + 1

    @property
    def in_use(self) -> int:
        """Number of (address, port) pairs bound through this allocator."""
        return sum(len(ports) for ports in self._in_use.values())

    @property
    def free(self) -> int:
        """Number of ports of the range with no socket of this allocator on any address."""
        used: set[int] = set()
        for ports in self._in_use.values():
            used |= ports
        return self.capacity - len(used)

    def is_bound(self, address: str, port: int) -> bool:
        return port in self._in_use.get(normalize_address(address), ())

    def bind_udp(self, address: str) -> socket.socket:
        """A non-blocking UDP socket bound to `address` on a free port of the range.

        Raises `PortsExhausted` when no port of the range can be bound on `address`, and
        `OSError` when the address itself cannot be bound (e.g. not a local address).
        """
        key = normalize_address(address)
        family = socket.AF_INET6 if ":" in key else socket.AF_INET
        taken = self._in_use.setdefault(key, set())
        for port in candidate_ports(self.port_min, self.port_max, self._cursor, taken):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((key, port))
            except OSError as exc:
                sock.close()
                if exc.errno in _SKIP_ERRNOS:
                    logger.debug("port %s:%d is taken: %s", key, port, exc)
                    continue
                raise
            sock.setblocking(False)
            taken.add(port)
            self._cursor = port
            self._update_gauges()
            return sock
        raise PortsExhausted(f"no free media port in {self.port_min}-{self.port_max} on {key}")

    def release(self, address: str, port: int) -> None:
        """Forget (address, port). Releasing a pair that is not bound does nothing."""
        taken = self._in_use.get(normalize_address(address))
        if taken is None or port not in taken:
            return
        taken.discard(port)
        self._update_gauges()

    def _update_gauges(self) -> None:
        MEDIA_PORTS_IN_USE.set(self.in_use)
        MEDIA_PORTS_FREE.set(self.free)
