"""Progress of a load test on stderr: a bar redrawn in place on a terminal, otherwise a plain
line every few seconds (logs, CI)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

BAR_WIDTH = 24
LINE_INTERVAL_S = 5.0


@dataclass(frozen=True, slots=True)
class ProgressState:
    elapsed_s: float
    total_s: float
    rooms_live: int
    rooms_total: int
    joins_ok: int
    joins_failed: int
    video_fps_min: float | None
    sfu_cpu_cores: float | None


def describe(state: ProgressState) -> str:
    fps = "-" if state.video_fps_min is None else f"{state.video_fps_min:.1f}"
    cpu = "-" if state.sfu_cpu_cores is None else f"{state.sfu_cpu_cores:.2f}"
    return (
        f"{state.elapsed_s:5.1f}/{state.total_s:g} s  rooms {state.rooms_live}/"
        f"{state.rooms_total}  joins {state.joins_ok} ok {state.joins_failed} failed  "
        f"fps min {fps}  SFU cores {cpu}"
    )


class Progress:
    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self._last_line_at: float | None = None
        self._pending: ProgressState | None = None
        self._drawn = False

    def update(self, state: ProgressState) -> None:
        if not self.enabled:
            return
        if self.tty:
            done = min(1.0, state.elapsed_s / state.total_s) if state.total_s > 0 else 1.0
            filled = round(done * BAR_WIDTH)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            self.stream.write(f"\r[{bar}] {describe(state)}\x1b[K")
            self._drawn = True
        elif self._last_line_at is None or state.elapsed_s - self._last_line_at >= LINE_INTERVAL_S:
            self._last_line_at = state.elapsed_s
            self._pending = None
            self.stream.write(f"loadtest: {describe(state)}\n")
        else:
            self._pending = state  # printed by finish() if no later line shows it
        self.stream.flush()

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        self.finish()
        self.stream.write(f"loadtest: {text}\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the bar's line (terminal), or print the last state not printed yet (lines)."""
        if self._pending is not None:
            self.stream.write(f"loadtest: {describe(self._pending)}\n")
            self.stream.flush()
            self._pending = None
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
