"""VOD worker, local part: a recorded session directory to an HLS programme with metadata.

Names are imported on first use (PEP 562): `sfu.settings` validates `SFU_VOD_LADDER` with
`sfu.vod.ladder`, which is pure, and must not pull PyAV and numpy into every settings load."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sfu.vod.hls import RenditionInfo as RenditionInfo
    from sfu.vod.ladder import DEFAULT_LADDER as DEFAULT_LADDER
    from sfu.vod.ladder import Rendition as Rendition
    from sfu.vod.ladder import parse_ladder as parse_ladder
    from sfu.vod.layout import Interval as Interval
    from sfu.vod.layout import Layout as Layout
    from sfu.vod.layout import LayoutKind as LayoutKind
    from sfu.vod.layout import build_timeline as build_timeline
    from sfu.vod.manifest import Manifest as Manifest
    from sfu.vod.manifest import ManifestError as ManifestError
    from sfu.vod.manifest import load_manifest as load_manifest
    from sfu.vod.manifest import parse_manifest as parse_manifest
    from sfu.vod.render import RenderResult as RenderResult
    from sfu.vod.render import render_session as render_session

_WHERE = {
    "RenditionInfo": "hls",
    "DEFAULT_LADDER": "ladder",
    "Rendition": "ladder",
    "parse_ladder": "ladder",
    "Interval": "layout",
    "Layout": "layout",
    "LayoutKind": "layout",
    "build_timeline": "layout",
    "Manifest": "manifest",
    "ManifestError": "manifest",
    "load_manifest": "manifest",
    "parse_manifest": "manifest",
    "RenderResult": "render",
    "render_session": "render",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'sfu.vod' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sfu.vod.{module}"), name)
