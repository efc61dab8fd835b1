"""The aiortc seams: internals still where sfu/media/seams.py expects them, which peer connections
get tap receivers and forwarding senders, and an in-process publisher → SFU → subscriber run
that forwards RTP without decoding and walks keyframe requests back to the publisher."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable

import aiortc.mediastreams
import aiortc.rtcicetransport
import aiortc.rtcpeerconnection
import av
import pytest
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtpPacket

from sfu.ice.connection import IceConfig
from sfu.ice.ports import PortAllocator
from sfu.media import seams
from sfu.media.fanout import TrackFanout
from sfu.media.internals import internal
from sfu.media.rtp_fast_path import RtpFastPath
from sfu.media.seams import (
    ForwardingSender,
    SeamPeerConnection,
    TapReceiver,
    check_seams,
    client_peer_connection,
    install,
    sfu_peer_connection,
    transceiver_codecs,
)

LOCALHOST = "127.0.0.1"
WAIT = 15.0
FRAMES = 30


def _client_ice() -> IceConfig:
    return IceConfig(addresses=(LOCALHOST,))


def _sfu_ice(low: int, high: int) -> IceConfig:
    return IceConfig(addresses=(LOCALHOST,), allocator=PortAllocator(low, high))


def _candidate_ports(sdp: str) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(r"a=candidate:\S+ \d+ udp \d+ \S+ (\d+)", sdp)]


async def _negotiate(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


async def _until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _decoder_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.endswith("-decoder")}


# --- the seams themselves -------------------------------------------------------------------


def test_check_seams_passes_on_the_pinned_aiortc() -> None:
    assert aiortc.__version__ == "1.16.0"
    check_seams()


def test_check_seams_fails_loudly_when_an_internal_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RTCDtlsTransport, "_send_rtp")
    with pytest.raises(RuntimeError, match=r"RTCDtlsTransport\._send_rtp is gone"):
        check_seams()


def _hooked() -> tuple[object, object, object]:
    """What aiortc currently builds receivers, senders and ICE connections with."""
    return (
        getattr(aiortc.rtcpeerconnection, "RTCRtpReceiver"),  # noqa: B009
        getattr(aiortc.rtcpeerconnection, "RTCRtpSender"),  # noqa: B009
        getattr(aiortc.rtcicetransport, "Connection"),  # noqa: B009
    )


def test_install_is_idempotent() -> None:
    install()
    first = _hooked()
    receiver, sender, _ = first
    assert receiver is not RTCRtpReceiver
    assert sender is not RTCRtpSender
    install()
    assert _hooked() == first


async def test_stock_peer_connection_keeps_stock_receivers_and_senders() -> None:
    install()
    offerer = client_peer_connection(_client_ice())
    stock = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    client = client_peer_connection(_client_ice())
    source = VideoStreamTrack()
    try:
        offerer.addTransceiver(source, "sendonly")
        await offerer.setLocalDescription(await offerer.createOffer())
        added = stock.addTransceiver("video", "sendonly")
        await stock.setRemoteDescription(offerer.localDescription)
        for pc in (stock, client):
            if pc is client:
                client.addTransceiver("video", "sendonly")
                await client.setRemoteDescription(offerer.localDescription)
            for transceiver in pc.getTransceivers():
                assert type(transceiver.receiver) is RTCRtpReceiver
                assert type(transceiver.sender) is RTCRtpSender
        assert type(added.sender) is RTCRtpSender
        assert seams._SETUP.get() is None
    finally:
        source.stop()
        for pc in (offerer, stock, client):
            await pc.close()


async def test_sfu_peer_connection_builds_tap_receiver_and_forwarding_sender() -> None:
    publisher = client_peer_connection(_client_ice())
    sfu_in = sfu_peer_connection(_sfu_ice(41300, 41320))
    sfu_out = sfu_peer_connection(_sfu_ice(41300, 41320))
    source = VideoStreamTrack()
    try:
        assert isinstance(sfu_in, SeamPeerConnection)
        publisher.addTransceiver(source, "sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        await sfu_in.setRemoteDescription(publisher.localDescription)
        await sfu_in.setLocalDescription(await sfu_in.createAnswer())
        (answering,) = sfu_in.getTransceivers()
        assert type(answering.receiver) is TapReceiver
        ports = _candidate_ports(sfu_in.localDescription.sdp)
        assert ports
        assert all(41300 <= port <= 41320 for port in ports), ports

        offering = sfu_out.addTransceiver("video", "sendonly")
        assert type(offering.sender) is ForwardingSender
        assert type(offering.receiver) is TapReceiver
        await sfu_out.setLocalDescription(await sfu_out.createOffer())
        ports = _candidate_ports(sfu_out.localDescription.sdp)
        assert ports
        assert all(41300 <= port <= 41320 for port in ports), ports
        assert seams._SETUP.get() is None
        # A stock connection made afterwards, in the same task, is still stock.
        stock = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        assert type(stock.addTransceiver("video", "sendonly").sender) is RTCRtpSender
        await stock.close()
    finally:
        source.stop()
        for pc in (publisher, sfu_in, sfu_out):
            await pc.close()


async def test_renewed_sender_continues_the_stream() -> None:
    """A reused subscriber section gets a fresh ForwardingSender that goes on with the old
    stream: same SSRCs (receivers route by SSRC), the next sequence number (no gap to report
    as loss), timestamps a second on, cumulative counters; the offer names the same SSRC."""
    sfu_out = sfu_peer_connection(_sfu_ice(41300, 41320))
    try:
        transceiver = sfu_out.addTransceiver("video", "sendonly")
        old = transceiver.sender
        assert isinstance(old, ForwardingSender)
        old.rewriter.rewrite(1000, 5000)
        last_seq, last_ts = old.rewriter.rewrite(1001, 8000)
        old.packets, old.octets = 2, 2400
        await old.stop(bye=False)
        new = seams.renew_sender(transceiver)
        assert transceiver.sender is new and new is not old
        assert (new._ssrc, new._rtx_ssrc) == (old._ssrc, old._rtx_ssrc)
        assert (new.packets, new.octets) == (2, 2400)
        assert not new.started
        seq, ts = new.rewriter.rewrite(17, 123)  # another publisher's numbers
        assert seq == (last_seq + 1) % 65536
        assert ts == (last_ts + 90000) % (1 << 32)
        await sfu_out.setLocalDescription(await sfu_out.createOffer())
        assert f"a=ssrc:{old._ssrc} " in sfu_out.localDescription.sdp
        with pytest.raises(TypeError):
            stock = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            try:
                seams.renew_sender(stock.addTransceiver("video", "sendonly"))
            finally:
                await stock.close()
    finally:
        await sfu_out.close()


# --- publisher → SFU → subscriber, in process -----------------------------------------------


async def test_end_to_end_forwarding_without_decoding() -> None:
    threads_before = _decoder_threads()
    publisher = client_peer_connection(_client_ice())
    sfu_in = sfu_peer_connection(_sfu_ice(41330, 41339))
    sfu_out = sfu_peer_connection(_sfu_ice(41340, 41349))
    subscriber = client_peer_connection(_client_ice())
    source = VideoStreamTrack()
    fanout: TrackFanout | None = None
    try:
        # The publisher's sender counts keyframe requests it turns into keyframes.
        pub_transceiver = publisher.addTransceiver(source, "sendonly")
        pub_sender = pub_transceiver.sender
        keyframes_requested: list[float] = []
        force_keyframe = pub_sender._send_keyframe

        def counting_send_keyframe() -> None:
            keyframes_requested.append(time.monotonic())
            force_keyframe()

        setattr(pub_sender, "_send_keyframe", counting_send_keyframe)  # noqa: B010

        await _negotiate(publisher, sfu_in)
        (in_transceiver,) = sfu_in.getTransceivers()
        tap = in_transceiver.receiver
        assert isinstance(tap, TapReceiver)
        fanout = TrackFanout(
            tap, "video", transceiver_codecs(in_transceiver), keyframe_interval=0.1
        )
        # The publisher is established (its first keyframe has gone by) before anyone
        # subscribes: the subscriber can only start on a keyframe the SFU asks for.
        await _until(lambda: tap.packets > 10, "publisher media at the SFU")
        assert keyframes_requested == []

        out_transceiver = sfu_out.addTransceiver("video", "sendonly")
        forwarder = out_transceiver.sender
        assert isinstance(forwarder, ForwardingSender)
        fanout.add(forwarder, [])

        tracks: asyncio.Queue[object] = asyncio.Queue()
        subscriber.on("track", tracks.put_nowait)
        await sfu_out.setLocalDescription(await sfu_out.createOffer())
        await subscriber.setRemoteDescription(sfu_out.localDescription)
        (sub_transceiver,) = subscriber.getTransceivers()
        sub_receiver = sub_transceiver.receiver

        seen: list[tuple[int, int]] = []
        handle_rtp = sub_receiver._handle_rtp_packet

        async def spying_handle_rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
            seen.append((packet.ssrc, packet.payload_type))
            await handle_rtp(packet, arrival_time_ms=arrival_time_ms)

        setattr(sub_receiver, "_handle_rtp_packet", spying_handle_rtp)  # noqa: B010

        await subscriber.setLocalDescription(await subscriber.createAnswer())
        answer = subscriber.localDescription
        await sfu_out.setRemoteDescription(RTCSessionDescription(answer.sdp, answer.type))
        fanout.update_codecs(forwarder, transceiver_codecs(out_transceiver))
        assert fanout.downstream[0].payload_types, "VP8 must map onto the subscriber's codec"

        track = await asyncio.wait_for(tracks.get(), WAIT)
        assert isinstance(track, aiortc.mediastreams.MediaStreamTrack)
        assert track.kind == "video"

        async def decode(count: int) -> None:
            for _ in range(count):
                frame = await track.recv()
                assert isinstance(frame, av.VideoFrame)
                assert (frame.width, frame.height) == (640, 480)

        await asyncio.wait_for(decode(FRAMES), WAIT)

        # The SFU tapped RTP and forwarded it, decoding nothing.
        assert tap.packets >= FRAMES
        assert fanout.packets_in >= FRAMES
        assert forwarder.packets >= FRAMES
        # Once DTLS-SRTP was up, the SFU took RTP in the socket callback (RtpFastPath), not
        # through aioice's queue.
        fast = internal(tap.transport.transport, "_connection").rtp_handler
        assert isinstance(fast, RtpFastPath)
        assert fast.handled >= FRAMES
        assert fast.dropped == 0
        assert getattr(tap, "_RTCRtpReceiver__decoder_thread") is None  # noqa: B009
        assert getattr(sub_receiver, "_RTCRtpReceiver__decoder_thread") is not None  # noqa: B009
        new_decoders = _decoder_threads() - threads_before
        assert [t.name for t in new_decoders] == ["video-decoder"]  # the subscriber's only

        # Every packet the subscriber got carries the forwarding sender's SSRC and the
        # payload type it negotiated for VP8.
        vp8_pt = next(
            c.payloadType
            for c in transceiver_codecs(out_transceiver)
            if c.mimeType.lower() == "video/vp8"
        )
        assert seen
        assert {ssrc for ssrc, _ in seen} == {forwarder._ssrc}
        assert {pt for _, pt in seen} == {vp8_pt}
        assert forwarder._ssrc != pub_sender._ssrc

        # The forwarding sender's start asked the publisher for the keyframe it began on.
        assert len(keyframes_requested) == 1
        # A PLI from the subscriber walks back to the publisher.
        requests_before = forwarder.keyframe_requests
        made_before = len(keyframes_requested)
        await asyncio.sleep(0.15)  # let the throttle interval pass
        await sub_receiver._send_rtcp_pli(forwarder._ssrc)
        await _until(lambda: forwarder.keyframe_requests > requests_before, "PLI at the SFU")
        await _until(lambda: len(keyframes_requested) > made_before, "PLI at the publisher")
        # and media keeps flowing
        await asyncio.wait_for(decode(5), WAIT)
    finally:
        if fanout is not None:
            fanout.close()
        source.stop()
        for pc in (subscriber, sfu_out, sfu_in, publisher):
            await asyncio.wait_for(pc.close(), WAIT)
