"""The options every media session of a node is built with, in one frozen value."""

from __future__ import annotations

from dataclasses import dataclass

from sfu.ice.connection import IceConfig


@dataclass(frozen=True, slots=True)
class MediaOptions:
    ice: IceConfig
    """Where the peer connections gather (port range, addresses, public IP)."""
    ice_timeout_s: float
    """A peer connection not connected this long after its offer/answer is torn down."""
    keyframe_min_interval_s: float
    """At most one PLI per published track in this interval."""
