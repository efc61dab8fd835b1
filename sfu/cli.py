"""The `sfu` command: serve, token, vod-worker, loadtest, lifecycle, analytics."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from sfu.api.tokens import mint_participant_token, mint_service_token
from sfu.config.settings import DEV_JWT_SECRET, SettingsError, load_settings
from sfu.core.vocabulary import ROLES
from sfu.lifecycle.commands import add_parsers as add_lifecycle_parsers
from sfu.loadtest.options import add_arguments as add_loadtest_arguments
from sfu.logs import configure_logging

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
    dead = vod.add_mutually_exclusive_group()
    dead.add_argument(
        "--list-dead", action="store_true", help="print the dead jobs as JSON lines, then exit"
    )
    dead.add_argument(
        "--requeue",
        metavar="SESSION_ID",
        help="put a dead session back in the queue (attempts reset), then exit",
    )
    loadtest = sub.add_parser(
        "loadtest", help="headless clients that load a running SFU and report what they got"
    )
    add_loadtest_arguments(loadtest)
    add_lifecycle_parsers(sub)
    return parser


def _vod_worker(args: argparse.Namespace) -> int:
    import os
    import socket

    from sfu.vod.worker import dead_json_lines, list_dead, requeue_dead, run_worker

    settings = load_settings()
    configure_logging(settings.ops.log_level, json_lines=settings.ops.log_json)
    if args.list_dead:
        sys.stdout.write(dead_json_lines(asyncio.run(list_dead(settings))))
        return 0
    if args.requeue is not None:
        try:
            requeued = asyncio.run(requeue_dead(settings, args.requeue))
        except ValueError as exc:
            print(f"sfu vod-worker: {exc}", file=sys.stderr)
            return 2
        if not requeued:
            print(
                f"sfu vod-worker: no dead job for session {args.requeue!r} (see --list-dead)",
                file=sys.stderr,
            )
            return 1
        print(f"sfu vod-worker: session {args.requeue} requeued", file=sys.stderr)
        return 0
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
    configure_logging(settings.ops.log_level, json_lines=settings.ops.log_json)
    if settings.jwt_secret == DEV_JWT_SECRET:
        logger.warning("SFU_JWT_SECRET is the development default; set it in production")
    if settings.ops.event_loop == "uvloop":
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            logger.warning("uvloop is not installed; using the asyncio event loop")
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
        if args.command == "loadtest":
            from sfu.loadtest.runner import main as loadtest_main

            return loadtest_main(args)
        if args.command in ("lifecycle", "analytics"):
            from sfu.lifecycle.commands import run as run_lifecycle

            settings = load_settings()
            configure_logging(settings.ops.log_level, json_lines=settings.ops.log_json)
            return run_lifecycle(args, settings)
    except SettingsError as exc:
        print(f"sfu: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    raise SystemExit(main())
