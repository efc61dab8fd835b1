"""`sfu lifecycle ingest-logs FILE...`: plays counted from CDN or object-storage access logs.

A play is a successful (2xx or 304) GET of `.../vod/sessions/{id}/master.m3u8`; media
playlists and segments are not plays. The same client opening the same session again within
DEDUPE_S of its last counted play is one play (players re-fetch the master playlist); a line
without a client address is never deduplicated. Files may be gzip (recognised by their first
bytes, whatever their name). The plays go to the play store (`open_play_store`); the cache hit
ratio over every line that carries a cache status is kept for `sfu analytics serve` to export.
Ingesting the same file twice counts its plays twice."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

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


def scan(paths: list[Path]) -> Tally:
    tally, now = Tally(), time.time()
    for path in paths:
        try:
            for line in read_lines(path):
                tally.lines += 1
                try:
                    tally.add(parse_line(line), now)
                except Unparsed as exc:
                    tally.skipped[str(exc)] += 1
        except (OSError, EOFError) as exc:  # missing, unreadable, a cut gzip
            tally.unreadable.append(f"{path}: {exc}")
    return tally


def report(tally: Tally, recorded: int) -> str:
    out = [f"lines read: {tally.lines}", f"plays recorded: {recorded}"]
    for reason, count in sorted(tally.skipped.items()):
        out.append(f"skipped ({reason}): {count}")
    ratio = tally.hit_ratio
    if ratio is not None:
        out.append(f"CDN hit ratio: {ratio:.3f} ({tally.cache_hits}/{tally.cache_lines})")
    else:
        out.append("CDN hit ratio: no cache status in these logs")
    return "\n".join(out)


async def ingest(paths: list[Path], settings: Settings) -> tuple[Tally, int]:
    tally = await asyncio.to_thread(scan, paths)
    plays = tally.plays()
    store = open_play_store(settings)
    try:
        recorded = await store.record(plays)
    finally:
        await store.close()
    if tally.cache_lines:
        await save_cdn_stats(settings, tally.cache_hits, tally.cache_lines, time.time())
    return tally, recorded


def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        tally, recorded = asyncio.run(ingest(list(args.files), settings))
    except STORE_ERRORS as exc:
        print(f"error: plays not recorded, the play store failed: {exc}", file=sys.stderr)
        return 1
    print(report(tally, recorded))
    for problem in tally.unreadable:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if tally.unreadable else 0
