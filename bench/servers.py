"""The servers the forwarding bench measures, each as its own process behind one small `Server`
protocol: this SFU, the aiortc MediaRelay baseline (bench/relay_server.py) and a minimal Pion
(Go) SFU (bench/pion/main.go, built here from Debian's Go packages)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
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

    def __init__(self, rtc_min: int, rtc_max: int, udp_port: int | None = None) -> None:
        """`udp_port`: all media on that one port (SFU_RTC_UDP_PORT), named "sfu-1port"."""
        extra = {"SFU_RTC_UDP_PORT": str(udp_port)} if udp_port is not None else {}
        if udp_port is not None:
            self.name = "sfu-1port"
        self._proc = make_sfu(
            rtc_min,
            rtc_max,
            "bench-sfu",
            SFU_LOG_LEVEL="WARNING",
            SFU_DRAIN_TIMEOUT_S="0",
            **extra,
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


class _LoopbackServer:
    """A bench server process of the signalling subset on 127.0.0.1 (one implicit room, any
    token): what the relay and Pion share. Subclasses start the process in `start`."""

    name = ""

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

    def _spawn(self, command: list[str], env: dict[str, str] | None = None) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        with (LOG_DIR / f"{self.name}.log").open("ab") as log:
            self._proc = subprocess.Popen(
                command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        wait_healthy(self._proc, f"http://127.0.0.1:{self.port}/health")

    def stop(self) -> None:
        stop_process(self._proc)

    async def prepare(self) -> str:
        return self.name

    def token(self, room: str, user: str, role: Role) -> str:
        return f"{room}:{user}:{role}"  # ignored: one implicit room, no tokens


class RelayServer(_LoopbackServer):
    """``python -m bench.relay_server``: stock aiortc, MediaRelay, decode + re-encode."""

    name = "relay"

    def start(self) -> None:
        self._spawn([sys.executable, "-m", "bench.relay_server", "--port", str(self.port)])


PION_SOURCE = REPO / "bench" / "pion" / "main.go"
GOCODE = Path("/usr/share/gocode")
PION_PACKAGES = "golang-go golang-github-pion-webrtc.v3-dev golang-github-gorilla-websocket-dev"
PION_BUILD_TIMEOUT_S = 300.0


class PionUnavailable(RuntimeError):
    """Go or Debian's Pion packages are missing, or the build failed."""


def build_pion(build_dir: Path | None = None) -> Path:
    """Build bench/pion once per version of main.go; returns the binary.

    Offline, from Debian's packages only, in GOPATH mode: the source is copied under a GOPATH
    of its own next to a one-line go.mod, which is only a marker here: with GO111MODULE=off,
    the go command resolves an import like github.com/pion/webrtc/v3 to the
    /usr/share/gocode/src/github.com/pion/webrtc that Debian installs (whose go.mod says
    module .../v3) only for code inside a tree that has a go.mod ("minimal module
    compatibility"). No module is downloaded (GOPROXY=off, GOFLAGS cleared).
    """
    go = shutil.which("go")
    missing = [
        path
        for path in (
            GOCODE / "src/github.com/pion/webrtc/go.mod",
            GOCODE / "src/github.com/gorilla/websocket",
        )
        if not path.exists()
    ]
    if go is None or missing:
        what = "go" if go is None else ", ".join(map(str, missing))
        raise PionUnavailable(
            f"cannot build the Pion SFU: {what} missing; as root: "
            f"apt-get update && apt-get install -y {PION_PACKAGES}"
        )
    source = PION_SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    build = build_dir or LOG_DIR / "pion-build"
    binary = build / f"pion-{digest}"
    if binary.exists():
        return binary
    package = build / "gopath" / "src" / "cotept" / "pion"
    package.mkdir(parents=True, exist_ok=True)
    (package / "main.go").write_bytes(source)
    (package / "go.mod").write_text("module cotept/pion\n")
    partial = build / f".pion-{digest}.{os.getpid()}"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{build / 'gopath'}:{GOCODE}",
        "GOCACHE": str(build / "gocache"),
        "GOPROXY": "off",
        "GOFLAGS": "",
    }
    try:
        done = subprocess.run(
            [go, "build", "-o", str(partial), "."],
            cwd=package,
            env=env,
            capture_output=True,
            timeout=PION_BUILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise PionUnavailable(f"go build of {PION_SOURCE} took over {exc.timeout} s") from None
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace").strip()
        raise PionUnavailable(
            f"go build of {PION_SOURCE} failed (are {PION_PACKAGES} installed?):\n{output}"
        )
    partial.replace(binary)
    return binary


class PionServer(_LoopbackServer):
    """bench/pion: a minimal Pion v3 SFU (TrackLocalStaticRTP fan-out) speaking the same
    signalling subset as the relay. ``cpus``: GOMAXPROCS is set to their count, since the Go
    runtime sizes itself from the affinity it starts with, before ``pin`` narrows it."""

    name = "pion"

    def __init__(self, rtc_min: int, rtc_max: int, cpus: set[int] | None = None) -> None:
        super().__init__()
        self.binary = build_pion()
        self.rtc_min, self.rtc_max = rtc_min, rtc_max
        self.cpus = cpus

    def start(self) -> None:
        env = dict(os.environ)
        if self.cpus:
            env["GOMAXPROCS"] = str(len(self.cpus))
        command = [str(self.binary), "-port", str(self.port)]
        command += ["-rtc-min", str(self.rtc_min), "-rtc-max", str(self.rtc_max)]
        self._spawn(command, env)


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(CLOSE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


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
