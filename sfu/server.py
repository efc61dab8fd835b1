"""Runs the app: a first SIGTERM (or SIGINT) drains, a second forces.

Draining: /ready answers 503, the node's registry entry says so at once (placement skips it),
new rooms and joins here are refused (4503), rooms in progress go on until their participants
have left and the sockets this node relays to other nodes have closed, or `drain_timeout_s`
passes; then every room is closed with `node_shutdown` and the process exits. A second signal
skips the wait.
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal

from aiohttp import web

from sfu.app.factory import create_app
from sfu.app.keys import EDGE
from sfu.config.settings import Settings
from sfu.core.waits import wait_set

logger = logging.getLogger(__name__)

DRAIN_POLL_S = 0.5


class Server:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._signals = 0

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals == 1:
            logger.info("signal %s: draining (send again to stop at once)", signum)
            self._stop.set()
        else:
            logger.info("signal %s again: stopping now", signum)
            self._force.set()

    async def run(self) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.http.host, self.settings.http.port)
        await site.start()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        loop.add_signal_handler(signal.SIGUSR1, log_tasks)
        logger.info("listening on %s:%d", self.settings.http.host, self.settings.http.port)
        try:
            await self._stop.wait()
            await self.drain()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            try:
                await runner.cleanup()
            finally:
                loop.remove_signal_handler(signal.SIGUSR1)
        logger.info("stopped")

    async def drain(self) -> None:
        edge = self.app[EDGE]
        manager = edge.manager
        manager.draining = True
        await edge.directory.heartbeat_now()  # placement skips this node from now on
        deadline = loop_time() + self.settings.ops.drain_timeout_s
        while (
            (any(room.participants for room in manager.rooms.values()) or edge.relays)
            and not self._force.is_set()
            and loop_time() < deadline
        ):
            await wait_set(self._force, DRAIN_POLL_S)
        if manager.rooms:
            logger.info("closing %d rooms (node_shutdown)", len(manager.rooms))
        await manager.close_all("node_shutdown")


def log_tasks() -> None:
    """SIGUSR1: log every asyncio task and where it waits (for an operator whose node does
    not stop, or does not answer)."""
    tasks = asyncio.all_tasks()
    for task in tasks:
        stack = io.StringIO()
        task.print_stack(limit=8, file=stack)
        logger.warning("task %s:\n%s", task.get_name(), stack.getvalue())
    logger.warning("%d tasks", len(tasks))


def loop_time() -> float:
    return asyncio.get_running_loop().time()
