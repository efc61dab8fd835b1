"""Command line of `sfu loadtest`, validated into :class:`LoadtestOptions`.

Only the standard library is imported here: `sfu.cli` builds its parser from this module
without loading aiortc.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

Codec = Literal["vp8", "h264"]
DecodeMode = Literal["none", "one", "per-room"]
PublisherMode = Literal["stock", "direct"]
PUBLISHER_MODES: tuple[PublisherMode, ...] = ("direct", "stock")
CODECS: tuple[Codec, ...] = ("vp8", "h264")
DECODE_MODES: tuple[DecodeMode, ...] = ("none", "one", "per-room")
MAX_OBSERVERS = 14  # max_participants is at most 16 (docs/api.md §2.1)


class OptionsError(ValueError):
    """A bad option: the CLI prints it and exits with status 2."""


@dataclass(frozen=True, slots=True)
class RoomTokens:
    """Participant tokens for one existing room (``--tokens``: issued by the backend)."""

    room_id: str
    mentor: str
    mentee: str
    observers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LoadtestOptions:
    url: str
    """Base HTTP URL of the SFU (REST, /ws, /metrics), without a trailing slash."""
    rooms: int
    duration_s: float
    ramp_s: float
    observers: int
    codec: Codec
    video_kbps: int
    audio: bool
    decode: DecodeMode
    secret: str | None
    publisher: PublisherMode = "direct"
    """How publishers send: ``direct`` (clips packetized once, paced into the SFU's forwarding
    sender) or ``stock`` (aiortc's RTCRtpSender packing ``av.Packet`` objects)."""
    """Mints the service token and participant tokens (None with ``--tokens``)."""
    room_tokens: tuple[RoomTokens, ...] = ()
    """With ``--tokens``: the rooms exist already and are neither created nor deleted."""
    record: bool = False
    churn_s: float | None = None
    """``--churn``: each room lives this long, then everyone leaves, it is deleted and a new
    room takes its slot, until the end of the run (None: rooms live the whole run)."""
    churn_record_every: int = 0
    """With ``--churn``: every Nth room of a slot is recorded (0: as ``--record`` says)."""
    json_path: Path | None = None
    chart_path: Path | None = None
    ice_addresses: tuple[str, ...] = ()
    connect_timeout_s: float = 15.0
    progress: bool = True
    verbose: bool = False
    command: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ws_url(self) -> str:
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path}/ws"

    @property
    def creates_rooms(self) -> bool:
        return not self.room_tokens


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `sfu loadtest` (validated later by :func:`options_from_args`)."""
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the SFU's HTTP base URL")
    parser.add_argument(
        "--secret",
        help="SFU_JWT_SECRET, to mint its own tokens (default: $SFU_JWT_SECRET)",
    )
    parser.add_argument(
        "--tokens",
        type=Path,
        help="JSON file of tokens from the backend for existing rooms: "
        '{"rooms": [{"room_id", "mentor", "mentee", "observers": [...]}]}; the rooms must exist '
        "and are left as they are",
    )
    parser.add_argument("--rooms", type=int, default=1, help="number of rooms (default 1)")
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds from the first join to the end"
    )
    parser.add_argument("--ramp", type=float, default=0.0, help="joins spread over this many s")
    parser.add_argument("--observers", type=int, default=0, help="observers per room")
    parser.add_argument("--codec", default="vp8", help="vp8 or h264 (default vp8)")
    parser.add_argument("--video-kbps", type=int, default=1000, help="video bitrate per side")
    parser.add_argument("--no-audio", action="store_true", help="publish video only")
    parser.add_argument(
        "--decode",
        default="one",
        help="which subscriptions decode (to prove the media is sound): none, one (the "
        "first room's mentee), per-room (each room's mentee); the others count RTP only",
    )
    parser.add_argument(
        "--publisher",
        default="direct",
        help="how the clients send: direct (clips packetized once and paced straight into "
        "RTP, cheaper per packet) or stock (aiortc's sender); default direct",
    )
    parser.add_argument("--record", action="store_true", help="create rooms with record=true")
    parser.add_argument(
        "--churn",
        type=float,
        metavar="SECONDS",
        help="rooms come and go: each lives this long, then everyone leaves, it is deleted and "
        "a new room takes its slot, until --duration ends (a long-lived SFU under turnover)",
    )
    parser.add_argument(
        "--churn-record-every",
        type=int,
        default=0,
        metavar="N",
        help="with --churn, record every Nth room of each slot (default 0: as --record says)",
    )
    parser.add_argument("--json", type=Path, help="write the result as JSON here")
    parser.add_argument("--chart", type=Path, help="write a PNG of CPU and fps against rooms")
    parser.add_argument(
        "--ice-address",
        action="append",
        default=[],
        help="local address the clients gather ICE candidates on (repeatable; default "
        "127.0.0.1 when --url is on loopback, else every interface)",
    )
    parser.add_argument("--connect-timeout", type=float, default=15.0, help="per join, seconds")
    parser.add_argument("--no-progress", action="store_true", help="no progress output")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")


def _url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise OptionsError(f"--url must be an http(s) URL, got {text!r}")
    if parts.query or parts.fragment:
        raise OptionsError(f"--url must not have a query or fragment, got {text!r}")
    return text.rstrip("/")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_room_tokens(path: Path) -> tuple[RoomTokens, ...]:
    """Read a ``--tokens`` file."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise OptionsError(f"--tokens: cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise OptionsError(f"--tokens: {path} is not JSON: {exc}") from exc
    rooms = data.get("rooms") if isinstance(data, dict) else None
    if not isinstance(rooms, list) or not rooms:
        raise OptionsError(f'--tokens: {path} needs a non-empty "rooms" list')
    parsed: list[RoomTokens] = []
    for index, room in enumerate(rooms):
        if not isinstance(room, dict):
            raise OptionsError(f"--tokens: rooms[{index}] is not an object")
        fields = {key: room.get(key) for key in ("room_id", "mentor", "mentee")}
        missing = [key for key, value in fields.items() if not isinstance(value, str) or not value]
        observers = room.get("observers", [])
        if missing or not isinstance(observers, list):
            raise OptionsError(f"--tokens: rooms[{index}] lacks {missing or ['observers']}")
        if not all(isinstance(token, str) and token for token in observers):
            raise OptionsError(f"--tokens: rooms[{index}].observers must be token strings")
        parsed.append(
            RoomTokens(
                room_id=str(fields["room_id"]),
                mentor=str(fields["mentor"]),
                mentee=str(fields["mentee"]),
                observers=tuple(observers),
            )
        )
    return tuple(parsed)


def options_from_args(
    args: argparse.Namespace, environ: dict[str, str] | None = None
) -> LoadtestOptions:
    """Validate parsed arguments; raises :class:`OptionsError` naming the bad option."""
    env = dict(os.environ) if environ is None else environ
    url = _url(args.url)
    if args.rooms < 1:
        raise OptionsError(f"--rooms must be at least 1, got {args.rooms}")
    if not args.duration > 0:
        raise OptionsError(f"--duration must be above 0, got {args.duration:g}")
    if args.ramp < 0 or args.ramp >= args.duration:
        raise OptionsError(
            f"--ramp must be at least 0 and below --duration ({args.duration:g}), got {args.ramp:g}"
        )
    if not 0 <= args.observers <= MAX_OBSERVERS:
        raise OptionsError(f"--observers must be 0..{MAX_OBSERVERS}, got {args.observers}")
    if args.codec not in CODECS:
        raise OptionsError(f"--codec must be one of {', '.join(CODECS)}, got {args.codec!r}")
    if not 50 <= args.video_kbps <= 20_000:
        raise OptionsError(f"--video-kbps must be 50..20000, got {args.video_kbps}")
    if args.decode not in DECODE_MODES:
        raise OptionsError(
            f"--decode must be one of {', '.join(DECODE_MODES)}, got {args.decode!r}"
        )
    if args.publisher not in PUBLISHER_MODES:
        raise OptionsError(
            f"--publisher must be one of {', '.join(PUBLISHER_MODES)}, got {args.publisher!r}"
        )
    if not args.connect_timeout > 0:
        raise OptionsError(f"--connect-timeout must be above 0, got {args.connect_timeout:g}")
    for address in args.ice_address:
        try:
            ipaddress.ip_address(address)
        except ValueError as exc:
            raise OptionsError(f"--ice-address: {address!r} is not an IP address") from exc
    if args.chart is not None and args.chart.suffix.lower() != ".png":
        raise OptionsError(f"--chart must name a .png file, got {str(args.chart)!r}")
    secret: str | None = args.secret or env.get("SFU_JWT_SECRET") or None
    room_tokens: tuple[RoomTokens, ...] = ()
    if args.tokens is not None:
        if args.secret:
            raise OptionsError("give --secret or --tokens, not both")
        secret = None
        room_tokens = load_room_tokens(args.tokens)
        if len(room_tokens) < args.rooms:
            raise OptionsError(
                f"--tokens has {len(room_tokens)} rooms, fewer than --rooms {args.rooms}"
            )
        room_tokens = room_tokens[: args.rooms]
        short = [r.room_id for r in room_tokens if len(r.observers) < args.observers]
        if short:
            raise OptionsError(f"--tokens: fewer than {args.observers} observers in {short}")
        for room in room_tokens:
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", room.room_id):
                raise OptionsError(f"--tokens: bad room_id {room.room_id!r}")
    elif secret is None:
        raise OptionsError("--secret (or SFU_JWT_SECRET) or --tokens is required")
    if args.record and room_tokens:
        raise OptionsError("--record only applies to rooms the tool creates (not --tokens)")
    churn = getattr(args, "churn", None)
    record_every = int(getattr(args, "churn_record_every", 0) or 0)
    if churn is not None:
        if room_tokens:
            raise OptionsError("--churn creates and deletes rooms: not with --tokens")
        if not 1.0 <= churn <= args.duration:
            raise OptionsError(
                f"--churn must be 1..--duration ({args.duration:g}) seconds, got {churn:g}"
            )
    if record_every < 0 or (record_every and churn is None):
        raise OptionsError("--churn-record-every takes N >= 0, with --churn")
    addresses = tuple(args.ice_address) or (("127.0.0.1",) if _is_loopback(url) else ())
    return LoadtestOptions(
        url=url,
        rooms=args.rooms,
        duration_s=float(args.duration),
        ramp_s=float(args.ramp),
        observers=args.observers,
        codec=args.codec,
        video_kbps=args.video_kbps,
        audio=not args.no_audio,
        decode=args.decode,
        secret=secret,
        publisher=args.publisher,
        room_tokens=room_tokens,
        record=bool(args.record),
        churn_s=float(churn) if churn is not None else None,
        churn_record_every=record_every,
        json_path=args.json,
        chart_path=args.chart,
        ice_addresses=addresses,
        connect_timeout_s=float(args.connect_timeout),
        progress=not args.no_progress,
        verbose=bool(args.verbose),
        command=tuple(getattr(args, "argv", ()) or ()),
    )
