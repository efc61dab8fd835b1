"""`GET /debug/memory`: what the process holds, for leak hunting (SFU_DEBUG_ENDPOINTS=true).

A service token is required, and the route exists only when the setting is on (it walks
every object the collector tracks: milliseconds to a second on a busy node). `?gc=1` runs a
full collection first, so only what is still reachable is counted. The answer:

    {"collected": n, "objects": {"<module>.<type>": count, ...}, "tasks": n, "fds": n,
     "threads": n, "rss_bytes": n}

`objects` holds the 50 most numerous types and every type of this package and of aiortc,
aioice and pylibsrtp, so a departed participant's peer connections, transports and senders
show by name (tests/integration/test_leaks.py, bench/soak.py).
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web

from sfu.api.service_auth import require_service

TOP_TYPES = 50
WATCHED_PREFIXES = ("sfu.", "aiortc.", "aioice.", "pylibsrtp")


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def object_counts() -> dict[str, int]:
    """Objects the collector tracks, by `module.qualname` of their type."""
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        counts[f"{kind.__module__}.{kind.__qualname__}"] += 1
    kept = dict(counts.most_common(TOP_TYPES))
    kept.update({name: n for name, n in counts.items() if name.startswith(WATCHED_PREFIXES)})
    return kept


def make_memory_handler(secret: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The `GET /debug/memory` handler, checking service tokens signed with `secret`."""

    async def memory(request: web.Request) -> web.Response:
        require_service(request, secret)
        collected = gc.collect() if request.query.get("gc") in ("1", "true") else 0
        return web.json_response(
            {
                "collected": collected,
                "objects": object_counts(),
                "tasks": len(asyncio.all_tasks()),
                "fds": _fds(),
                "threads": threading.active_count(),
                "rss_bytes": _rss_bytes(),
            }
        )

    return memory
