"""The tier rules and the re-watch score: pure functions of a session's facts and a date.

Age rule (`age`: days since publication, fractional; "after N days" is strictly more than N):
    age <= ia_after_days                  -> Standard
    ia_after_days < age <= archive_after  -> InfrequentAccess
    archive_after < age <= delete_after   -> Archive
    age > delete_after_days               -> deleted (retention wins over every score)
With the defaults (30/365/2555) a session published on day 0 moves to InfrequentAccess on
day 31, to Archive on day 366 and is deleted on day 2556 (a nightly run).

Smart tiering, applied to the age tier (never to a deletion):
- hot: `plays_in_window >= hot_plays` (plays in the `hot_window_days` before the evaluation
  date) -> Standard, whatever the age.
- re-watch score, `score = mentee + mentor`, where
    mentee = 1.0 if a mentee of the session (metadata.json participants with role "mentee")
             played it within `MENTEE_WINDOW_DAYS` before the evaluation date, else 0.0;
    mentor = min(1.0, mentor_plays / MENTOR_POPULAR_PLAYS), mentor_plays being the plays in
             the hot window of the mentor's sessions, counted while the run streams the
             catalogue: the larger of this run's count so far (the mentor's sessions before
             this one in key order) and the previous run's total (all of them).
  `score >= LIKELY_SCORE` means a re-watch is likely: the session stays one tier warmer than
  its age says (Archive -> InfrequentAccess, InfrequentAccess -> Standard).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sfu.config.settings import LifecycleSettings
from sfu.storage.base import Tier

DAY_S = 86_400.0
MENTEE_WINDOW_DAYS = 30
MENTOR_POPULAR_PLAYS = 10
LIKELY_SCORE = 1.0

_ORDER = (Tier.STANDARD, Tier.INFREQUENT_ACCESS, Tier.ARCHIVE)


class Action(enum.StrEnum):
    KEEP = "keep"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What the rules need to know about one session (all read while streaming)."""

    session_id: str
    published_at: datetime
    published_from: str
    """Where published_at came from: "metadata.ended_at" or "master.last_modified", as
    "state (...)" when remembered from an earlier run."""
    plays_in_window: int
    mentee_watched_days_ago: float | None
    """Days since a mentee last played it (None: never, as far as the recent plays reach)."""
    mentor_id: str | None
    mentor_plays: int


@dataclass(frozen=True, slots=True)
class Decision:
    session_id: str
    age_days: float
    age_tier: Tier | None
    """The tier the age alone says (None: delete)."""
    hot: bool
    mentee_score: float
    mentor_score: float
    score: float
    likely: bool
    target: Tier | None
    """The tier the session should be in; None with action DELETE."""
    action: Action
    reason: str

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["age_tier"] = self.age_tier.value if self.age_tier else None
        data["target"] = self.target.value if self.target else None
        data["action"] = self.action.value
        return data


def age_tier(age_days: float, cfg: LifecycleSettings) -> Tier | None:
    """The tier of a session `age_days` old by age alone; None once it is to be deleted."""
    if age_days > cfg.delete_after_days:
        return None
    if age_days > cfg.archive_after_days:
        return Tier.ARCHIVE
    if age_days > cfg.ia_after_days:
        return Tier.INFREQUENT_ACCESS
    return Tier.STANDARD


def warmer(tier: Tier) -> Tier:
    return _ORDER[max(0, _ORDER.index(tier) - 1)]


def rewatch_score(facts: SessionFacts) -> tuple[float, float]:
    """(mentee part, mentor part) of the re-watch score (see the module docstring)."""
    mentee = (
        1.0
        if facts.mentee_watched_days_ago is not None
        and facts.mentee_watched_days_ago <= MENTEE_WINDOW_DAYS
        else 0.0
    )
    mentor = min(1.0, facts.mentor_plays / MENTOR_POPULAR_PLAYS) if facts.mentor_id else 0.0
    return mentee, mentor


def decide(facts: SessionFacts, now: datetime, cfg: LifecycleSettings) -> Decision:
    age = (now - facts.published_at).total_seconds() / DAY_S
    by_age = age_tier(age, cfg)
    hot = facts.plays_in_window >= cfg.hot_plays
    mentee, mentor = rewatch_score(facts)
    score = mentee + mentor
    likely = score >= LIKELY_SCORE
    if by_age is None:
        return Decision(
            facts.session_id, age, None, hot, mentee, mentor, score, likely, None,
            Action.DELETE, f"older than {cfg.delete_after_days} days",
        )  # fmt: skip
    if hot:
        target, reason = Tier.STANDARD, f"{facts.plays_in_window} plays in the hot window"
    elif likely:
        target, reason = warmer(by_age), f"re-watch likely (score {score:.2f})"
    else:
        target, reason = by_age, f"{age:.1f} days since publication"
    return Decision(
        facts.session_id, age, by_age, hot, mentee, mentor, score, likely, target,
        Action.KEEP, reason,
    )  # fmt: skip
