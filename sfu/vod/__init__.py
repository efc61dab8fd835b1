"""VOD worker, local part: a recorded session directory to an HLS programme with metadata.

Names are imported on first use (PEP 562): `sfu.config.settings` validates `SFU_VOD_LADDER` with
`sfu.config.ladder`, which is pure, and must not pull PyAV and numpy into every settings load."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sfu.config.ladder import DEFAULT_LADDER as DEFAULT_LADDER
    from sfu.config.ladder import Rendition as Rendition
    from sfu.config.ladder import parse_ladder as parse_ladder
    from sfu.recording.manifest import Manifest as Manifest
    from sfu.recording.manifest import ManifestError as ManifestError
    from sfu.recording.manifest import load_manifest as load_manifest
    from sfu.recording.manifest import parse_manifest as parse_manifest
    from sfu.vod.hls import RenditionInfo as RenditionInfo
    from sfu.vod.layout import Interval as Interval
    from sfu.vod.layout import Layout as Layout
    from sfu.vod.layout import LayoutKind as LayoutKind
    from sfu.vod.layout import build_timeline as build_timeline
    from sfu.vod.render import RenderResult as RenderResult
    from sfu.vod.render import render_session as render_session

_WHERE = {
    "RenditionInfo": "sfu.vod.hls",
    "DEFAULT_LADDER": "sfu.config.ladder",
    "Rendition": "sfu.config.ladder",
    "parse_ladder": "sfu.config.ladder",
    "Interval": "sfu.vod.layout",
    "Layout": "sfu.vod.layout",
    "LayoutKind": "sfu.vod.layout",
    "build_timeline": "sfu.vod.layout",
    "Manifest": "sfu.recording.manifest",
    "ManifestError": "sfu.recording.manifest",
    "load_manifest": "sfu.recording.manifest",
    "parse_manifest": "sfu.recording.manifest",
    "RenderResult": "sfu.vod.render",
    "render_session": "sfu.vod.render",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'sfu.vod' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
