"""ICE for the SFU: media sockets bound inside the configured UDP port range.

aioice has no port-range option, so `SfuConnection` (an `aioice.Connection`) binds its host
sockets through a `PortAllocator`, announces the public IP, never contacts STUN/TURN servers,
drops remote mDNS candidates and junk datagrams. aiortc picks it up once
`make_connection_factory(config)` is installed as `aiortc.rtcicetransport.Connection`.
"""
