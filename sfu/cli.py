"""The `sfu` command: serve, token (later: loadtest, vod-worker, lifecycle)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from sfu.api.tokens import ROLES, mint_participant_token, mint_service_token
from sfu.logs import configure_logging
from sfu.settings import DEV_JWT_SECRET, SettingsError, load_settings

logger = logging.getLogger("sfu")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sfu", description="CoTePT media plane")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the SFU (settings: config/sfu.toml, SFU_* env)")
    token = sub.add_parser("token", help="mint a JWT with SFU_JWT_SECRET")
    token.add_argument("--service", action="store_true", help="a service (backend) token")
    token.add_argument("--room", help="room id (participant token)")
    token.add_argument("--user", help="user id, the token's sub (participant token)")
    token.add_argument("--role", choices=ROLES, help="participant role")
    token.add_argument("--name", help="display name")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until expiry")
    vod = sub.add_parser(
        "vod-worker", help="render queued recording sessions to HLS and publish them"
    )
    vod.add_argument("--once", action="store_true", help="process what is queued, then exit")
    vod.add_argument("--consumer", help="this worker's name in the queue (default: host-pid)")
    vod.add_argument("--progress", action="store_true", help="a progress bar on stderr")
    return parser


def _vod_worker(args: argparse.Namespace) -> int:
    import os
    import socket

    from sfu.vod.worker import run_worker

    settings = load_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    consumer = args.consumer or f"{socket.gethostname()}-{os.getpid()}"
    return asyncio.run(
        run_worker(settings, once=args.once, consumer=consumer, progress_bar=args.progress)
    )


def _token(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.service:
        print(mint_service_token(settings.jwt_secret, args.ttl))
        return 0
    if not (args.room and args.user and args.role):
        print("sfu token: --room, --user and --role are required (or --service)", file=sys.stderr)
        return 2
    print(
        mint_participant_token(
            settings.jwt_secret,
            room_id=args.room,
            user_id=args.user,
            role=args.role,
            name=args.name,
            ttl_s=args.ttl,
        )
    )
    return 0


def _serve() -> int:
    from sfu.server import Server

    settings = load_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    if settings.jwt_secret == DEV_JWT_SECRET:
        logger.warning("SFU_JWT_SECRET is the development default; set it in production")
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    asyncio.run(Server(settings).run())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "token":
            return _token(args)
        if args.command == "serve":
            return _serve()
        if args.command == "vod-worker":
            return _vod_worker(args)
    except SettingsError as exc:
        print(f"sfu: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    raise SystemExit(main())
