"""The HLS ladder: which renditions the VOD worker encodes. Pure (no PyAV import), so the
settings can validate `SFU_VOD_LADDER` cheaply."""

from __future__ import annotations

import re
from dataclasses import dataclass

_RUNG = re.compile(r"^\s*(\d{2,4})x(\d{2,4})@(\d{2,6})k\s*$")


@dataclass(frozen=True, slots=True)
class Rendition:
    name: str
    width: int
    height: int
    video_bitrate: int  # bits per second
    level: str  # H.264 level, e.g. "3.1"

    @property
    def codecs(self) -> str:
        level = round(float(self.level) * 10)
        return f"avc1.4d00{level:02x},mp4a.40.2"  # Main profile, AAC-LC


DEFAULT_LADDER: tuple[Rendition, ...] = (
    Rendition("720p", 1280, 720, 2_500_000, "3.1"),
    Rendition("360p", 640, 360, 800_000, "3.0"),
)
DEFAULT_LADDER_TEXT = "1280x720@2500k,640x360@800k"


def _level(width: int, height: int) -> str:
    """The lowest H.264 level whose frame size fits (at up to 30 fps)."""
    macroblocks = ((width + 15) // 16) * ((height + 15) // 16)
    for limit, level in ((396, "2.1"), (1620, "3.0"), (3600, "3.1"), (8192, "4.0")):
        if macroblocks <= limit:
            return level
    return "5.1"


def parse_ladder(text: str) -> tuple[Rendition, ...]:
    """`1280x720@2500k,640x360@800k` → renditions named by height, largest first.

    Raises ValueError with what is wrong: a malformed rung, odd sizes (H.264 4:2:0 needs even),
    a bitrate outside 100k..20000k, two rungs of the same height, or no rung at all."""
    rungs: list[Rendition] = []
    for part in text.split(","):
        match = _RUNG.match(part)
        if not match:
            raise ValueError(f"ladder rung {part.strip()!r} is not WIDTHxHEIGHT@KBPSk")
        width, height, kbps = (int(g) for g in match.groups())
        if width % 2 or height % 2 or not (16 <= width <= 3840 and 16 <= height <= 2160):
            raise ValueError(f"ladder rung {part.strip()!r}: sizes must be even, 16..3840x2160")
        if not 100 <= kbps <= 20_000:
            raise ValueError(f"ladder rung {part.strip()!r}: bitrate must be 100k..20000k")
        rungs.append(Rendition(f"{height}p", width, height, kbps * 1000, _level(width, height)))
    if len({r.name for r in rungs}) != len(rungs):
        raise ValueError("two ladder rungs have the same height")
    return tuple(sorted(rungs, key=lambda r: -r.height))
