"""Plays of published VOD sessions: what the lifecycle reads to keep a watched session warm.

A play is one viewer opening one session. The store keeps, per session, the total count, a
score that decays with a half-life of `HALF_LIFE_DAYS` (each play adds 1 at its own time), and
the latest `RECENT_PLAYS` plays with their user ids (who watched, and when). `MemoryPlayStore`
keeps them in the process; the file and Redis stores (`open_play_store`) keep them across
runs and processes."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

HALF_LIFE_DAYS = 14.0
RECENT_PLAYS = 50
DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Play:
    session_id: str
    at: float
    """Seconds since the epoch (any date: backfills are accepted)."""
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class PlaySummary:
    session_id: str
    plays: int
    """Every play ever recorded."""
    score: float
    """The decayed score at the time asked for."""
    recent: tuple[Play, ...]
    """The latest plays, newest first (at most RECENT_PLAYS)."""

    def plays_since(self, since: float) -> int:
        """Plays at or after `since`, as far as the recent plays reach."""
        return sum(1 for play in self.recent if play.at >= since)


def decay(score: float, from_s: float, to_s: float) -> float:
    """`score` at `from_s`, seen at `to_s` (a later time lowers it; an earlier one raises it)."""
    return score * math.pow(2.0, -(to_s - from_s) / (HALF_LIFE_DAYS * DAY_S))


class PlayStore(Protocol):
    async def record(self, plays: Iterable[Play]) -> int:
        """Add plays; returns how many."""
        ...

    async def summary(self, session_id: str, now: float) -> PlaySummary: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class _Tally:
    plays: int = 0
    score: float = 0.0
    stamp: float = 0.0
    recent: list[Play] = field(default_factory=list)

    def add(self, play: Play) -> None:
        self.plays += 1
        if self.plays == 1:
            self.score, self.stamp = 1.0, play.at
        else:  # keep the score at the later of the two times
            later = max(self.stamp, play.at)
            self.score = decay(self.score, self.stamp, later) + decay(1.0, play.at, later)
            self.stamp = later
        self.recent.append(play)
        self.recent.sort(key=lambda p: -p.at)
        del self.recent[RECENT_PLAYS:]


class MemoryPlayStore:
    """Plays kept in this process (tests, a dry run with no store configured)."""

    def __init__(self) -> None:
        self._tallies: dict[str, _Tally] = {}

    async def record(self, plays: Iterable[Play]) -> int:
        count = 0
        for play in plays:
            self._tallies.setdefault(play.session_id, _Tally()).add(play)
            count += 1
        return count

    async def summary(self, session_id: str, now: float) -> PlaySummary:
        tally = self._tallies.get(session_id)
        if tally is None:
            return PlaySummary(session_id, 0, 0.0, ())
        score = decay(tally.score, tally.stamp, now)
        return PlaySummary(session_id, tally.plays, score, tuple(tally.recent))

    async def close(self) -> None:
        return None
