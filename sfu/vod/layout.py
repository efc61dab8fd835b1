"""Programme layout: which video track goes where, over the session timeline (pure, no media).

Without a screen share the programme is mentor | mentee side by side (a missing person leaves a
placeholder). While a screen share is on, the share is large on the left and both cameras are
small, stacked in the right column.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from enum import StrEnum

from sfu.recording.manifest import SessionManifest, TrackEntry


class LayoutKind(StrEnum):
    SIDE_BY_SIDE = "side_by_side"
    SCREEN = "screen"


@dataclass(frozen=True, slots=True)
class Layout:
    kind: LayoutKind
    mentor: str | None = None  # video track ids; None = placeholder
    mentee: str | None = None
    screen: str | None = None


@dataclass(frozen=True, slots=True)
class Interval:
    t0: float
    t1: float
    layout: Layout


@dataclass(frozen=True, slots=True)
class Rect:
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True, slots=True)
class Slot:
    name: str  # "mentor" | "mentee" | "screen"
    track_id: str | None
    rect: Rect


def _active(tracks: list[TrackEntry], t0: float, t1: float) -> TrackEntry | None:
    """The track covering [t0, t1]; the one that started last wins when several do."""
    best: TrackEntry | None = None
    for track in tracks:
        if (
            track.start_s <= t0
            and track.end >= t1
            and (best is None or track.start_s >= best.start_s)
        ):
            best = track
    return best


def build_timeline(manifest: SessionManifest) -> list[Interval]:
    """Consecutive, non-overlapping intervals covering [0, duration], adjacent equals merged."""
    duration = manifest.duration_s
    if duration <= 0:
        return []
    roles = {p.participant_id: p.role for p in manifest.participants}
    order = {p.participant_id: i for i, p in enumerate(manifest.participants)}
    video = [t for t in manifest.tracks if t.kind == "video"]
    video.sort(key=lambda t: (order.get(t.participant_id, len(order)), t.start_s, t.track_id))
    screens = [t for t in video if t.source == "screen" and roles.get(t.participant_id)]
    cams = {
        role: [t for t in video if t.source == "camera" and roles.get(t.participant_id) == role]
        for role in ("mentor", "mentee")
    }
    edges = {0.0, duration}
    for track in video:
        for edge in (track.start_s, track.end):
            if 0.0 < edge < duration:
                edges.add(edge)
    points = sorted(edges)
    out: list[Interval] = []
    for t0, t1 in itertools.pairwise(points):
        if t1 - t0 <= 1e-9:
            continue
        mentor = _active(cams["mentor"], t0, t1)
        mentee = _active(cams["mentee"], t0, t1)
        screen = _active(screens, t0, t1)
        layout = Layout(
            kind=LayoutKind.SCREEN if screen else LayoutKind.SIDE_BY_SIDE,
            mentor=mentor.track_id if mentor else None,
            mentee=mentee.track_id if mentee else None,
            screen=screen.track_id if screen else None,
        )
        if out and out[-1].layout == layout:
            out[-1] = Interval(out[-1].t0, t1, layout)
        else:
            out.append(Interval(t0, t1, layout))
    return out


def layout_at(timeline: list[Interval], t: float) -> Layout:
    """The layout in force at time t (the last interval's for t at or past its end)."""
    if not timeline:
        return Layout(LayoutKind.SIDE_BY_SIDE)
    starts = [iv.t0 for iv in timeline]
    index = max(0, bisect.bisect_right(starts, t) - 1)
    return timeline[index].layout


def _even(value: int) -> int:
    return max(2, value - value % 2)


def slots(layout: Layout, width: int, height: int) -> list[Slot]:
    """Where each picture goes on a width x height canvas."""
    if layout.kind == LayoutKind.SIDE_BY_SIDE:
        half = _even(width // 2)
        return [
            Slot("mentor", layout.mentor, Rect(0, 0, half, height)),
            Slot("mentee", layout.mentee, Rect(half, 0, width - half, height)),
        ]
    big = _even(width * 3 // 4)
    small_h = _even(height // 2)
    return [
        Slot("screen", layout.screen, Rect(0, 0, big, height)),
        Slot("mentor", layout.mentor, Rect(big, 0, width - big, small_h)),
        Slot("mentee", layout.mentee, Rect(big, small_h, width - big, height - small_h)),
    ]


def fit(src_w: int, src_h: int, rect: Rect) -> Rect:
    """The largest even-sized rectangle with the source's aspect ratio, centred in rect.

    Offsets stay even too (centred to within one pixel), so the picture sits on the 2x2 chroma
    grid of the yuv420p canvas."""
    if src_w <= 0 or src_h <= 0:
        return rect
    scale = min(rect.w / src_w, rect.h / src_h)
    w = min(rect.w, _even(round(src_w * scale)))
    h = min(rect.h, _even(round(src_h * scale)))
    return Rect(rect.x + (rect.w - w) // 4 * 2, rect.y + (rect.h - h) // 4 * 2, w, h)
