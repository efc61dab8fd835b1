"""What a lifecycle run did (`RunSummary`), and its progress bar on a terminal (`RunProgress`).

The catalogue is streamed, so its size is not known before the end. The bar measures against
the previous complete run instead, which `LastRun` keeps in `<data_dir>/lifecycle/last_run.json`
(sessions and objects seen, when): "4,500 of ~10,000 sessions". Without an earlier run, or
past its count, it is a counter. Nothing is drawn unless stderr is a terminal, and at most
ten redraws a second.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sfu.lifecycle.catalogue import write_json

logger = logging.getLogger(__name__)

BAR_WIDTH = 24
REDRAW_S = 0.1


@dataclass(slots=True)
class RunSummary:
    sessions: int = 0
    objects_seen: int = 0
    changed: int = 0
    deleted: int = 0
    skipped: int = 0
    restores_asked: int = 0
    errors: list[str] = field(default_factory=list)
    by_target: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "objects_seen": self.objects_seen,
            "changed": self.changed,
            "deleted": self.deleted,
            "skipped": self.skipped,
            "restores_asked": self.restores_asked,
            "errors": self.errors,
            "sessions_by_target": self.by_target,
        }


@dataclass(frozen=True, slots=True)
class LastRun:
    """The size of the catalogue the previous complete run went through."""

    sessions: int
    objects: int
    finished_at: float

    @classmethod
    def load(cls, path: Path) -> LastRun | None:
        try:
            raw = json.loads(path.read_bytes())
            return cls(int(raw["sessions"]), int(raw["objects"]), float(raw["finished_at"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring %s: %s", path, exc)
            return None

    def save(self, path: Path) -> None:
        body = {"sessions": self.sessions, "objects": self.objects, "finished_at": self.finished_at}
        write_json(path, body)


def describe(summary: RunSummary, expected: int | None) -> str:
    """The line drawn for a summary: a bar against the expected sessions, else a counter."""
    counts = (
        f"{summary.objects_seen:,} objects, {summary.changed:,} moved, {summary.deleted:,} deleted"
    )
    if expected and summary.sessions <= expected:
        filled = BAR_WIDTH * summary.sessions // expected
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        share = 100 * summary.sessions // expected
        return (
            f"lifecycle [{bar}] {share:3d}% {summary.sessions:,} of ~{expected:,} sessions, "
            + counts
        )
    return f"lifecycle: {summary.sessions:,} sessions, " + counts


class RunProgress:
    """The progress line on stderr when it is a terminal, redrawn in place."""

    def __init__(
        self,
        enabled: bool,
        out: TextIO = sys.stderr,
        *,
        expected: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled and out.isatty()
        self.out = out
        self.expected = expected
        self._clock = clock
        self._drawn_at: float | None = None
        self._width = 0

    def update(self, summary: RunSummary, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self._clock()
        if not force and self._drawn_at is not None and now - self._drawn_at < REDRAW_S:
            return
        self._drawn_at = now
        line = describe(summary, self.expected)
        pad = " " * max(0, self._width - len(line))  # wipe what a longer line left
        self._width = len(line)
        with contextlib.suppress(OSError):
            self.out.write("\r" + line + pad)
            self.out.flush()

    def done(self, summary: RunSummary) -> None:
        if self.enabled:
            self.update(summary, force=True)
            with contextlib.suppress(OSError):
                self.out.write("\n")
