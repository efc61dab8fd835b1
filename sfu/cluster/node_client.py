"""How this node reaches another: a REST call forwarded as it came, and the internal WebSocket
hop of a relayed participant. Both carry a node token (node_token.py)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from sfu.cluster.node_info import NodeInfo
from sfu.cluster.node_token import CLIENT_IP_HEADER, HEADER, WS_URL_HEADER, mint_node_token
from sfu.core.errors import NodeUnavailable

logger = logging.getLogger(__name__)

FORWARDED_HEADERS = ("Authorization", "Content-Type", "Origin", WS_URL_HEADER)
"""What a forwarded REST call keeps of the original request's headers."""


@dataclass(frozen=True, slots=True)
class Forwarded:
    """The owner's answer, to be given to the client as it is."""

    status: int
    body: bytes
    content_type: str | None
    headers: dict[str, str]


class NodeClient:
    def __init__(
        self, secret: str, node_id: str, *, timeout_s: float = 5.0, connect_s: float = 2.0
    ) -> None:
        self._secret = secret
        self._node_id = node_id
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_s)
        self._connect_s = connect_s
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, auto_decompress=False)
        return self._session

    def _headers(self, extra: Mapping[str, str]) -> dict[str, str]:
        headers = {k: v for k, v in extra.items() if k in FORWARDED_HEADERS}
        headers[HEADER] = mint_node_token(self._secret, self._node_id)
        return headers

    async def request(
        self,
        node: NodeInfo,
        method: str,
        path_qs: str,
        *,
        headers: Mapping[str, str],
        body: bytes = b"",
    ) -> Forwarded:
        """`method path_qs` on `node`, with the client's Authorization; NodeUnavailable when
        the node does not answer."""
        url = node.internal_url.rstrip("/") + path_qs
        try:
            async with self._http().request(
                method, url, headers=self._headers(headers), data=body or None
            ) as response:
                payload = await response.read()
                kept = {k: v for k, v in response.headers.items() if k in ("Allow",)}
                return Forwarded(response.status, payload, response.content_type, kept)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            logger.info("node %s did not answer %s %s: %r", node.node_id, method, path_qs, exc)
            raise NodeUnavailable(f"node {node.node_id} does not answer") from exc

    async def websocket(
        self, node: NodeInfo, path_qs: str, *, client_ip: str
    ) -> aiohttp.ClientWebSocketResponse:
        """The internal hop of a relayed participant: `GET path_qs` upgraded on `node`."""
        url = node.internal_url.rstrip("/") + path_qs
        headers = self._headers({})
        headers[CLIENT_IP_HEADER] = client_ip
        try:
            return await self._http().ws_connect(
                url,
                headers=headers,
                heartbeat=20.0,
                max_msg_size=0,
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            logger.info("node %s refused the relay: %r", node.node_id, exc)
            raise NodeUnavailable(f"node {node.node_id} does not answer") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
