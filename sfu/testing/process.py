"""Runs the real SFU (`python -m sfu serve`) as a child process for integration tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sfu.api.tokens import mint_participant_token, mint_service_token
from sfu.core.vocabulary import Role

TEST_SECRET = "integration-test-secret-0123456789abcdef"
LOG_DIR = Path(os.environ.get("SFU_TEST_LOG_DIR", "/tmp/sfu-test-logs"))


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SfuProcess:
    port: int
    rtc_min: int
    rtc_max: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=lambda: LOG_DIR / "sfu.log")
    cwd: Path | None = None
    """Working directory of the process (`python -m sfu` imports `sfu` from it first)."""
    prefix: list[str] = field(default_factory=list)
    """Run the SFU through this command (which must exec it, keeping the pid), e.g. `unshare`
    into a mount namespace of its own."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def service_token(self) -> str:
        return mint_service_token(TEST_SECRET)

    def service_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.service_token()}"}

    def token(self, room: str, user: str, role: Role = "mentee", ttl: int = 600) -> str:
        return mint_participant_token(TEST_SECRET, room_id=room, user_id=user, role=role, ttl_s=ttl)

    def start(self, timeout: float = 20.0) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "sfu", "serve"],
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"SFU exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"SFU did not answer /health within {timeout}s")

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def make_sfu(rtc_min: int, rtc_max: int, name: str = "sfu", **overrides: str) -> SfuProcess:
    port = free_tcp_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFU_")}
    env.update(
        {
            "SFU_JWT_SECRET": TEST_SECRET,
            "SFU_HTTP_HOST": "127.0.0.1",
            "SFU_HTTP_PORT": str(port),
            "SFU_RTC_ADDRESSES": "127.0.0.1",
            "SFU_RTC_PORT_MIN": str(rtc_min),
            "SFU_RTC_PORT_MAX": str(rtc_max),
            "SFU_LOG_JSON": "false",
            "SFU_ICE_TIMEOUT_S": "10",
            "SFU_NODE_ID": name,
            "SFU_STUN_PORT": str(free_tcp_port()),
            # every test client comes from 127.0.0.1: limits are raised unless a test sets them
            "SFU_REST_RATE_PER_IP": "1000",
            "SFU_REST_BURST_PER_IP": "1000",
            "SFU_WS_PER_IP": "200",
            "SFU_DATA_DIR": tempfile.mkdtemp(prefix=f"{name}-data-"),
        }
    )
    env.update(overrides)
    return SfuProcess(
        port=port, rtc_min=rtc_min, rtc_max=rtc_max, env=env, log_path=LOG_DIR / f"{name}.log"
    )


class RedisProcess:
    """`redis-server` on a fixed loopback port, stopped and started at will (no persistence:
    a restart comes back empty, as a Redis that lost its data)."""

    def __init__(self) -> None:
        self.port = free_tcp_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is installed by scripts/test.sh"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    """A throwaway `redis-server` on 127.0.0.1 (no persistence); yields its port."""
    server = RedisProcess()
    server.start()
    try:
        yield server.port
    finally:
        server.stop()
