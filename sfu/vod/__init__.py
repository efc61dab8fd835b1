"""VOD worker, local part: a recorded session directory to an HLS programme with metadata."""

from sfu.vod.hls import RenditionInfo
from sfu.vod.ladder import DEFAULT_LADDER, Rendition, parse_ladder
from sfu.vod.layout import Interval, Layout, LayoutKind, build_timeline
from sfu.vod.manifest import Manifest, ManifestError, load_manifest, parse_manifest
from sfu.vod.render import RenderResult, render_session

__all__ = [
    "DEFAULT_LADDER",
    "Interval",
    "Layout",
    "LayoutKind",
    "Manifest",
    "ManifestError",
    "RenderResult",
    "Rendition",
    "RenditionInfo",
    "build_timeline",
    "load_manifest",
    "parse_ladder",
    "parse_manifest",
    "render_session",
]
