"""The servers the forwarding bench measures: this SFU as a process, and the aiortc MediaRelay
baseline (bench/relay_server.py) as a process; both behind one small `Server` protocol."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Protocol

import aiohttp

from bench.harness import LOG_DIR, REPO
from sfu.core.vocabulary import Role
from sfu.testing.process import free_tcp_port, make_sfu

START_TIMEOUT_S = 20.0
CLOSE_TIMEOUT_S = 15.0


class Server(Protocol):
    name: str

    @property
    def pid(self) -> int: ...

    @property
    def ws_url(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    async def prepare(self) -> str:
        """Create what a session needs; returns the room id."""
        ...

    def token(self, room: str, user: str, role: Role) -> str: ...


class SfuServer:
    """``python -m sfu serve`` via sfu/testing/process.make_sfu, logging at WARNING."""

    name = "sfu"

    def __init__(self, rtc_min: int, rtc_max: int) -> None:
        self._proc = make_sfu(
            rtc_min, rtc_max, "bench-sfu", SFU_LOG_LEVEL="WARNING", SFU_DRAIN_TIMEOUT_S="0"
        )

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def ws_url(self) -> str:
        return self._proc.ws_url

    def start(self) -> None:
        self._proc.start(timeout=START_TIMEOUT_S)

    def stop(self) -> None:
        self._proc.stop()

    async def prepare(self) -> str:
        room_id = f"bench-{uuid.uuid4().hex[:8]}"
        body = {"room_id": room_id, "record": False, "max_participants": 16}
        async with aiohttp.ClientSession() as http:
            response = await http.post(
                self._proc.url + "/rooms", json=body, headers=self._proc.service_headers()
            )
            if response.status != 201:
                raise RuntimeError(f"POST /rooms: {response.status} {await response.text()}")
        return room_id

    def token(self, room: str, user: str, role: Role) -> str:
        return self._proc.token(room, user, role)


class RelayServer:
    """``python -m bench.relay_server``: stock aiortc, MediaRelay, decode + re-encode."""

    name = "relay"

    def __init__(self) -> None:
        self.port = free_tcp_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        with (LOG_DIR / "relay.log").open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "bench.relay_server", "--port", str(self.port)],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_healthy(self._proc, f"http://127.0.0.1:{self.port}/health")

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)

    async def prepare(self) -> str:
        return "relay"

    def token(self, room: str, user: str, role: Role) -> str:
        return f"{room}:{user}:{role}"  # ignored by the relay server


def wait_healthy(proc: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}; see {LOG_DIR}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {START_TIMEOUT_S} s")
