"""Tears down a peer connection whose ICE/DTLS handshake never completes, and reports states."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiortc import RTCPeerConnection

from sfu import metrics


class ConnectionWatch:
    """Calls `on_state(state)` on every connection-state change, and `on_state("timeout")` when
    the connection is not 'connected' within `timeout` seconds of `arm()`."""

    def __init__(
        self, pc: RTCPeerConnection, timeout: float, on_state: Callable[[str], None]
    ) -> None:
        self.pc = pc
        self.timeout = timeout
        self.on_state = on_state
        self.connected_once = False
        self._timer: asyncio.TimerHandle | None = None
        pc.on("connectionstatechange", self._changed)

    def arm(self) -> None:
        if self.connected_once or self._timer is not None:
            return
        self._timer = asyncio.get_running_loop().call_later(self.timeout, self._expired)

    def _changed(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self.connected_once = True
            self._cancel()
        self.on_state(state)

    def _expired(self) -> None:
        self._timer = None
        if self.pc.connectionState != "connected":
            metrics.PEER_CONNECTION_TIMEOUTS.inc()
            self.on_state("timeout")

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self._cancel()
        self.on_state = _ignore


def _ignore(state: str) -> None:
    return None
