"""MuxTable: which ICE connection a datagram on the shared media port belongs to.

With one UDP port for every peer connection (`SFU_RTC_UDP_PORT`, sfu/ice/udp_mux.py) a
datagram is told apart by where it comes from. A connection is known first by its local ICE
ufrag, which every STUN binding request to it carries (USERNAME `<our ufrag>:<their ufrag>`,
RFC 8445 section 7.2.2); once such a request has passed its MESSAGE-INTEGRITY check, or once
the connection has itself sent a STUN message to an address, that remote address is bound to
the connection, and everything from it (STUN, DTLS, SRTP) goes there with one dict lookup.
This is how Pion's UDPMux and mediasoup's WebRtcServer share a port.

An address belongs to one connection at a time: a checked request naming another connection's
ufrag moves it (a client port reused by a new peer connection). A connection keeps at most
`max_addresses` addresses (an address change adds one; the oldest goes first), so a peer that
keeps changing its address cannot grow the table. Pure state, no sockets: tested alone.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

Address = tuple[str, int]
T = TypeVar("T", bound=Hashable)

MAX_ADDRESSES = 8
"""Remote addresses bound to one connection at most (host, reflexive, relayed, a change)."""


class UfragTaken(ValueError):
    """Another connection on this port already has this local ufrag."""


class MuxTable(Generic[T]):
    def __init__(self, max_addresses: int = MAX_ADDRESSES) -> None:
        if max_addresses < 1:
            raise ValueError("max_addresses must be at least 1")
        self.max_addresses = max_addresses
        self._by_ufrag: dict[str, T] = {}
        self._ufrag_of: dict[T, str] = {}
        self._by_address: dict[Address, T] = {}
        self._addresses: dict[T, dict[Address, None]] = {}  # insertion-ordered sets

    def __len__(self) -> int:
        """Connections registered."""
        return len(self._ufrag_of)

    @property
    def bound(self) -> int:
        """Remote addresses bound, over all connections."""
        return len(self._by_address)

    def add(self, ufrag: str, entry: T) -> None:
        if not ufrag:
            raise ValueError("an ICE ufrag cannot be empty")
        if ufrag in self._by_ufrag:
            raise UfragTaken(ufrag)
        if entry in self._ufrag_of:
            raise ValueError(f"{entry!r} is registered already")
        self._by_ufrag[ufrag] = entry
        self._ufrag_of[entry] = ufrag
        self._addresses[entry] = {}

    def remove(self, entry: T) -> None:
        """Forget a connection and its addresses. Removing one twice does nothing."""
        ufrag = self._ufrag_of.pop(entry, None)
        if ufrag is not None:
            del self._by_ufrag[ufrag]
        for address in self._addresses.pop(entry, {}):
            if self._by_address.get(address) is entry:
                del self._by_address[address]

    def by_ufrag(self, ufrag: str) -> T | None:
        return self._by_ufrag.get(ufrag)

    def route(self, address: Address) -> T | None:
        """The connection bound to a remote address (the per-datagram lookup)."""
        return self._by_address.get(address)

    def addresses(self, entry: T) -> list[Address]:
        return list(self._addresses.get(entry, ()))

    def entries(self) -> list[T]:
        return list(self._ufrag_of)

    def bind(self, address: Address, entry: T, *, move: bool) -> bool:
        """Bind a remote address to a registered connection. One bound to another connection
        moves only with `move` (a request that passed its integrity check); returns whether
        the address is now `entry`'s."""
        mine = self._addresses.get(entry)
        if mine is None:
            return False  # closed meanwhile: nothing to bind to
        owner = self._by_address.get(address)
        if owner is entry:
            return True
        if owner is not None:
            if not move:
                return False
            logger.info("remote %s:%d moves from %r to %r", *address, owner, entry)
            self._addresses[owner].pop(address, None)
        while len(mine) >= self.max_addresses:
            oldest = next(iter(mine))
            del mine[oldest]
            if self._by_address.get(oldest) is entry:
                del self._by_address[oldest]
        mine[address] = None
        self._by_address[address] = entry
        return True
