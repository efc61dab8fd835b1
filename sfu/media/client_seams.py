"""The test client's and the load tester's hooks into aiortc (sfu/client, sfu/loadtest).

The SFU itself does not use them. Each private name they read or replace is listed in
sfu/media/internals.py and checked by seams.check_seams().
"""

from __future__ import annotations

import logging
from typing import Any

from aiortc import RTCPeerConnection

from sfu.media.internals import internal
from sfu.media.seams import transceiver_codecs

logger = logging.getLogger(__name__)


def accept_renegotiated_codecs(pc: RTCPeerConnection) -> None:
    """Make each started receiver accept the payload types its section now negotiates.

    The SFU reuses an ended subscription's section for the next track of the same kind,
    which may be in another codec (a VP8 screen share, then an H.264 one): the same SSRC,
    a payload type the re-offer added. aiortc's RTCRtpReceiver.receive() applies its
    parameters on its first call only (its codec table, and the payload types the
    transport's RtpRouter accepts for it, an SSRC being routed only with one of those), so
    every packet of the new codec would be dropped as unroutable and the track never play.
    A browser updates both on renegotiation. Codecs no longer offered are kept (packets
    still in flight)."""
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        if not internal(receiver, "_RTCRtpReceiver__started"):
            continue  # its first receive() takes the negotiated codecs
        codecs: dict[int, Any] = internal(receiver, "_RTCRtpReceiver__codecs")
        listed = transceiver_codecs(transceiver)
        negotiated = {c.payloadType: c for c in listed if c.payloadType is not None}
        added = [pt for pt in negotiated if pt not in codecs]
        codecs.update(negotiated)
        if added:
            router = internal(receiver.transport, "_rtp_router")
            router.register_receiver(receiver, ssrcs=[], payload_types=added)
