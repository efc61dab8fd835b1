"""`sfu lifecycle ...` and `sfu analytics ...`: their arguments, and which module runs each.

Each sub-command is run by the `main(args, settings) -> int` of the module named in
`_RUNNERS`, imported only when that command runs (the SFU's own start-up never loads them)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sfu.config.settings import Settings

if TYPE_CHECKING:
    from argparse import _SubParsersAction

_RUNNERS = {
    ("lifecycle", "run"): "sfu.lifecycle.run_command",
    ("lifecycle", "explain"): "sfu.lifecycle.run_command",
    ("lifecycle", "restore"): "sfu.lifecycle.run_command",
    ("lifecycle", "orphans"): "sfu.lifecycle.orphans",
    ("lifecycle", "report"): "sfu.lifecycle.report",
    ("lifecycle", "simulate"): "sfu.lifecycle.report",
    ("lifecycle", "ingest-logs"): "sfu.analytics.ingest",
    ("analytics", "serve"): "sfu.api.analytics_server",
}


class _Runner(Protocol):
    def main(self, args: argparse.Namespace, settings: Settings) -> int: ...


def add_parsers(sub: _SubParsersAction[argparse.ArgumentParser]) -> None:
    lifecycle = sub.add_parser(
        "lifecycle", help="tier, restore, report on and clean up the published VOD sessions"
    )
    steps = lifecycle.add_subparsers(dest="lifecycle_command", required=True)
    run = steps.add_parser("run", help="apply the tier rules to every published session")
    run.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    _now(run)
    run.add_argument("--json", action="store_true", help="a machine-readable summary on stdout")
    run.add_argument("--no-progress", action="store_true", help="no progress bar on a terminal")
    explain = steps.add_parser("explain", help="a session's tier, score and their inputs")
    explain.add_argument("session_id")
    _now(explain)
    explain.add_argument("--json", action="store_true")
    restore = steps.add_parser("restore", help="restore an archived session (every object)")
    restore.add_argument("session_id")
    restore.add_argument("--wait", action="store_true", help="wait until it is readable")
    orphans = steps.add_parser("orphans", help="report (and with --apply delete) orphans")
    orphans.add_argument("--apply", action="store_true", help="delete what is reported")
    _now(orphans)
    orphans.add_argument("--json", action="store_true")
    report = steps.add_parser("report", help="objects, GB and $/month per tier; the forecast")
    report.add_argument("--json", action="store_true")
    report.add_argument("--png", type=Path, help="a chart of bytes and cost per tier")
    _now(report)
    simulate = steps.add_parser(
        "simulate", help="the design's synthetic catalogue through the rules and the prices"
    )
    simulate.add_argument("--json", action="store_true")
    simulate.add_argument("--png", type=Path)
    ingest = steps.add_parser(
        "ingest-logs", help="count plays from CDN or object-storage access logs (gzip too)"
    )
    ingest.add_argument("files", nargs="+", type=Path)
    ingest.add_argument(
        "--again",
        action="store_true",
        help="count these files from their first line, whatever an earlier ingest counted",
    )
    analytics = sub.add_parser("analytics", help="the storage analytics service")
    service = analytics.add_subparsers(dest="analytics_command", required=True)
    service.add_parser("serve", help="take plays (POST /vod/views), export storage metrics")


def _now(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--now", metavar="RFC3339", help="evaluate as at this time (default: now)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    step = args.lifecycle_command if args.command == "lifecycle" else args.analytics_command
    runner: _Runner = importlib.import_module(_RUNNERS[(args.command, step)])
    return runner.main(args, settings)
