"""`sfu lifecycle ingest-logs FILE...`: plays counted from CDN or object-storage access logs.

A play is a successful (2xx or 304) GET of `.../vod/sessions/{id}/master.m3u8`; media
playlists and segments are not plays. The same client opening the same session again within
DEDUPE_S of its last counted play is one play (players re-fetch the master playlist); a line
without a client address is never deduplicated. Files may be gzip (recognised by their first
bytes, whatever their name). The plays go to the play store (`open_play_store`); the cache hit
ratio over every line that carries a cache status is kept for `sfu analytics serve` to export.
Ingesting a file again counts only the lines it did not have before (`IngestLedger`, in
sfu/analytics/ledger.py: appended, rotated and gzipped copies included); `--again` counts
the given files from their first line."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from sfu.analytics.ledger import IngestLedger, is_record, log_identity
from sfu.analytics.logformats import Request, Unparsed, parse_line
from sfu.analytics.plays import Play
from sfu.analytics.store import STORE_ERRORS, open_play_store, save_cdn_stats

if TYPE_CHECKING:
    from sfu.config.settings import Settings

DEDUPE_S = 30 * 60.0
MAX_AHEAD_S = 3600.0
"""A play stamped later than this ahead of the clock is a bad line, not a play."""
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(slots=True)
class Tally:
    lines: int = 0
    candidates: list[tuple[float, str, str | None]] = field(default_factory=list)
    """(time, session, client) of each successful master-playlist GET."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Lines that are not plays, by reason."""
    cache_hits: int = 0
    cache_lines: int = 0
    unreadable: list[str] = field(default_factory=list)
    already: int = 0
    """Lines an earlier ingest counted (skipped, by the ledger)."""
    done: dict[str, int] = field(default_factory=dict)
    """Per log identity, the complete lines from the top now counted (for the ledger)."""

    def add(self, request: Request, now: float) -> None:
        if request.cache is not None:
            self.cache_lines += 1
            self.cache_hits += request.cache_hit
        session_id = request.session_id
        if session_id is None:
            self.skipped["not a master playlist"] += 1
        elif request.method != "GET":
            self.skipped["not a GET"] += 1
        elif not (200 <= request.status < 300 or request.status == 304):
            self.skipped["not successful"] += 1
        elif request.at > now + MAX_AHEAD_S:
            self.skipped["in the future"] += 1
        else:
            self.candidates.append((request.at, session_id, request.client))

    def plays(self) -> list[Play]:
        """The candidates in time order, less the repeats of a client within DEDUPE_S."""
        last: dict[tuple[str, str], float] = {}
        plays = []
        for at, session_id, client in sorted(self.candidates, key=lambda c: c[0]):
            if client is not None:
                key = (client, session_id)
                previous = last.get(key)
                if previous is not None and at - previous < DEDUPE_S:
                    self.skipped["repeat within 30 min"] += 1
                    continue
                last[key] = at
            plays.append(Play(session_id, at))
        return plays

    @property
    def hit_ratio(self) -> float | None:
        return self.cache_hits / self.cache_lines if self.cache_lines else None


def open_log(path: Path) -> IO[str]:
    """A text reader of `path`, gunzipped when it starts with the gzip magic."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
    if magic == _GZIP_MAGIC:
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_lines(path: Path) -> Iterator[str]:
    with open_log(path) as text:
        yield from text


def scan(paths: list[Path], counted: Mapping[str, int] | None = None) -> Tally:
    """Read the files, less the lines `counted` (identity -> lines) says were counted."""
    tally, now = Tally(), time.time()
    known = dict(counted or {})
    for path in paths:
        _scan_file(path, known, tally, now)
    return tally


def _scan_file(path: Path, known: dict[str, int], tally: Tally, now: float) -> None:
    identity: str | None = None
    skip = done = 0
    head: list[str] = []  # headers before the first record, until it names the log

    def count(line: str) -> None:
        nonlocal done
        done += 1
        if done <= skip:
            tally.already += 1
            return
        tally.lines += 1
        try:
            tally.add(parse_line(line), now)
        except Unparsed as exc:
            tally.skipped[str(exc)] += 1

    def take(line: str) -> None:
        nonlocal identity, skip
        if identity is None:
            if not is_record(line):
                head.append(line)
                return
            identity = log_identity(line)
            skip = known.get(identity, 0)
            for header in head:
                count(header)
            head.clear()
        count(line)

    pending: str | None = None  # one line behind: a cut stream's last line is held back
    try:
        for line in read_lines(path):
            if pending is not None:
                take(pending)
            pending = line
    except (OSError, EOFError) as exc:  # missing, unreadable, a cut gzip
        tally.unreadable.append(f"{path}: {exc}")
        pending = None  # may be cut mid-line: the next run reads it whole
    if pending is not None:
        take(pending)
    for header in head:  # a log of headers only: nothing names it, nothing to remember
        count(header)
    if identity is not None:
        known[identity] = max(skip, done)  # the same log twice in one run: counted once
        tally.done[identity] = known[identity]


def report(tally: Tally, recorded: int) -> str:
    out = [f"lines read: {tally.lines}", f"plays recorded: {recorded}"]
    if tally.already:
        out.append(f"lines counted by an earlier ingest (skipped): {tally.already}")
    for reason, count in sorted(tally.skipped.items()):
        out.append(f"skipped ({reason}): {count}")
    ratio = tally.hit_ratio
    if ratio is not None:
        out.append(f"CDN hit ratio: {ratio:.3f} ({tally.cache_hits}/{tally.cache_lines})")
    else:
        out.append("CDN hit ratio: no cache status in these logs")
    return "\n".join(out)


async def ingest(
    paths: list[Path], settings: Settings, *, again: bool = False
) -> tuple[Tally, int]:
    ledger = IngestLedger(settings)
    counted = {} if again else await ledger.load()
    tally = await asyncio.to_thread(scan, paths, counted)
    plays = tally.plays()
    store = open_play_store(settings)
    try:
        recorded = await store.record(plays)
    finally:
        await store.close()
    if tally.cache_lines:
        await save_cdn_stats(settings, tally.cache_hits, tally.cache_lines, time.time())
    await ledger.save(tally.done, replace=again)  # after the plays: a crash recounts, never loses
    return tally, recorded


def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        again = bool(getattr(args, "again", False))
        tally, recorded = asyncio.run(ingest(list(args.files), settings, again=again))
    except STORE_ERRORS as exc:
        print(f"error: plays not recorded, the play store failed: {exc}", file=sys.stderr)
        return 1
    print(report(tally, recorded))
    for problem in tally.unreadable:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if tally.unreadable else 0
