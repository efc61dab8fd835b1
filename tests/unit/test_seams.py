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
from aiohttp import web
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import (
    RTCP_PSFB_PLI,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtpPacket,
    is_rtcp,
)

from sfu.client.header_count import SRTP_TAG_LENGTHS
from sfu.ice.connection import IceConfig
from sfu.ice.ports import PortAllocator
from sfu.media import client_seams, seams
from sfu.media.fanout import TrackFanout
from sfu.media.internals import internal
from sfu.media.rtp_fast_path import RtpFastPath
from sfu.media.seams import (
    ForwardingSender,
    PeerSetup,
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


# --- the test client's and the load tester's hooks (sfu/media/client_seams.py) ----------------


def _video_codecs(mime: str) -> list[RTCRtpCodecCapability]:
    return [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == mime]


async def _until_started(receiver: RTCRtpReceiver) -> None:
    await _until(lambda: internal(receiver, "_RTCRtpReceiver__started"), "receiver started")


def test_set_track_id_names_the_msid_track() -> None:
    track = VideoStreamTrack()
    client_seams.set_track_id(track, "seam-cam")
    assert track.id == "seam-cam"
    track.stop()


async def test_stock_connection_hooks_drop_observe_and_count() -> None:
    """Outgoing loss on the publisher's transport, the NACKs and packets seen at the
    subscriber's stock receiver, its per-SSRC statistics, the sender's SSRCs and its
    keyframe requests."""
    publisher = client_peer_connection(_client_ice())
    subscriber = client_peer_connection(_client_ice())
    source = VideoStreamTrack()
    try:
        sender = publisher.addTransceiver(source, "sendonly").sender
        media, rtx = client_seams.sender_ssrcs(sender)
        assert (media, rtx) == (sender._ssrc, sender._rtx_ssrc)
        replaced: list[bytes] = []

        def keep(data: bytes) -> bool:
            replaced.append(data)
            return False

        client_seams.drop_outgoing_rtp(sender.transport, keep)
        dropped: set[int] = set()

        def drop(data: bytes) -> bool:
            seq = int.from_bytes(data[2:4], "big")
            if is_rtcp(data) or int.from_bytes(data[8:12], "big") != media or seq % 10 != 3:
                return False
            dropped.add(seq)
            return True

        client_seams.drop_outgoing_rtp(sender.transport, drop)  # replaces the first filter
        keyframe_requests: list[float] = []
        client_seams.on_keyframe_request(sender, lambda: keyframe_requests.append(time.time()))
        rtcp: list[object] = []
        client_seams.observe_received_rtcp(sender, rtcp.append)

        await publisher.setLocalDescription(await publisher.createOffer())
        offer = publisher.localDescription.sdp
        assert f"a=ssrc-group:FID {media} {rtx}" in offer
        await subscriber.setRemoteDescription(publisher.localDescription)
        receiver = subscriber.getTransceivers()[0].receiver
        arrived: list[tuple[int, int]] = []
        nacked: list[tuple[int, int]] = []
        assert client_seams.observe_received_rtp(
            receiver, lambda p: arrived.append((p.ssrc, p.sequence_number))
        )
        assert not client_seams.observe_received_rtp(receiver, lambda p: None)  # once only
        assert client_seams.observe_sent_nacks(
            receiver, lambda ssrc, lost: nacked.extend((ssrc, seq) for seq in lost)
        )
        assert not client_seams.observe_sent_nacks(receiver, lambda ssrc, lost: None)
        await subscriber.setLocalDescription(await subscriber.createAnswer())
        await publisher.setRemoteDescription(subscriber.localDescription)

        def repaired() -> bool:
            asked = {seq for ssrc, seq in nacked if ssrc == media}
            return len(dropped & asked) >= 3 and any(ssrc == rtx for ssrc, _ in arrived)

        await _until(repaired, "dropped packets NACKed and retransmitted over RTX")
        assert replaced == []
        first_arrivals = {seq for ssrc, seq in arrived if ssrc == media}
        assert first_arrivals and first_arrivals.isdisjoint(dropped)
        streams = {s.ssrc: s for s in client_seams.received_streams(receiver)}
        assert set(streams) == {media, rtx}
        assert not streams[media].rtx and streams[rtx].rtx
        assert streams[rtx].statistics.packets_received >= 1
        media_stats = streams[media].statistics
        assert media_stats.packets_expected > media_stats.packets_received

        await receiver._send_rtcp_pli(media)
        await _until(lambda: bool(keyframe_requests), "the PLI at the callback")
        await _until(
            lambda: any(
                isinstance(p, RtcpRrPacket) and any(r.ssrc == media for r in p.reports)
                for p in rtcp
            ),
            "a receiver report at the sender",
        )
        assert any(isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_PLI for p in rtcp)
        requests = len(keyframe_requests)
        await client_seams.deliver_rtcp(sender, RtcpPsfbPacket(RTCP_PSFB_PLI, 1, media))
        assert len(keyframe_requests) == requests + 1
    finally:
        source.stop()
        for pc in (subscriber, publisher):
            await asyncio.wait_for(pc.close(), WAIT)


async def test_drop_incoming_rtp_loses_packets_before_the_receiver() -> None:
    publisher = client_peer_connection(_client_ice())
    subscriber = client_peer_connection(_client_ice())
    source = VideoStreamTrack()
    try:
        sender = publisher.addTransceiver(source, "sendonly").sender
        media, _ = client_seams.sender_ssrcs(sender)
        await publisher.setLocalDescription(await publisher.createOffer())
        await subscriber.setRemoteDescription(publisher.localDescription)
        receiver = subscriber.getTransceivers()[0].receiver
        dropped: set[int] = set()

        def drop(data: bytes) -> bool:
            seq = int.from_bytes(data[2:4], "big")
            if int.from_bytes(data[8:12], "big") != media or seq % 7 != 5 or seq in dropped:
                return False
            dropped.add(seq)  # first arrivals only
            return True

        client_seams.drop_incoming_rtp(receiver.transport, lambda data: True)
        client_seams.drop_incoming_rtp(receiver.transport, drop)  # replaces the first filter
        arrived: list[int] = []
        client_seams.observe_received_rtp(
            receiver, lambda p: arrived.append(p.sequence_number) if p.ssrc == media else None
        )
        await subscriber.setLocalDescription(await subscriber.createAnswer())
        await publisher.setRemoteDescription(subscriber.localDescription)
        await _until(lambda: len(arrived) >= 50 and len(dropped) >= 3, "media with losses")
        assert dropped.isdisjoint(arrived)
    finally:
        source.stop()
        for pc in (subscriber, publisher):
            await asyncio.wait_for(pc.close(), WAIT)


async def test_forwarding_connection_hooks_transports_and_forwarded_loss() -> None:
    """A ForwardingSender to a TapReceiver (RtpFastPath in the socket callback): the SRTP
    profile, the SSRC routes, the socket RTP handler, and loss on the forwarded path."""
    sending = SeamPeerConnection(PeerSetup(ice=_client_ice(), forwarding=True))
    receiving = SeamPeerConnection(PeerSetup(ice=_client_ice(), forwarding=True))
    stock = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transceiver = sending.addTransceiver("video", "sendonly")
        forwarder = transceiver.sender
        assert isinstance(forwarder, ForwardingSender)
        client_seams.drop_forwarded_rtp(
            forwarder, lambda plain: int.from_bytes(plain[2:4], "big") % 2 == 1
        )
        await sending.setLocalDescription(await sending.createOffer())
        await receiving.setRemoteDescription(sending.localDescription)
        tap = receiving.getTransceivers()[0].receiver
        assert isinstance(tap, TapReceiver)
        seen: list[tuple[int, int]] = []
        client_seams.observe_received_rtp(tap, lambda p: seen.append((p.ssrc, p.sequence_number)))
        await receiving.setLocalDescription(await receiving.createAnswer())
        await sending.setRemoteDescription(receiving.localDescription)
        dtls = tap.transport
        await _until_started(tap)
        await _until(lambda: forwarder.started, "forwarding sender started")

        profile = client_seams.negotiated_srtp_profile(dtls)
        assert profile in SRTP_TAG_LENGTHS
        assert client_seams.negotiated_srtp_profile(forwarder.transport) == profile
        unconnected = stock.addTransceiver("video", "recvonly").receiver.transport
        assert client_seams.negotiated_srtp_profile(unconnected) is None
        routes = client_seams.ssrc_routes(dtls)
        assert routes is internal(dtls, "_rtp_router").ssrc_table  # live, not a copy
        assert routes[client_seams.sender_ssrcs(forwarder).media] is tap

        full = client_seams.socket_rtp_handler(dtls)
        assert isinstance(full, RtpFastPath)
        datagrams: list[int] = []

        def counting(data: bytes) -> bool:
            datagrams.append(len(data))
            return full(data)

        client_seams.set_socket_rtp_handler(dtls, counting)
        assert client_seams.socket_rtp_handler(dtls) is counting
        assert client_seams.socket_rtp_handler(unconnected) is None  # stock aioice
        with pytest.raises(TypeError):
            client_seams.set_socket_rtp_handler(unconnected, counting)

        vp8 = next(
            c.payloadType for c in transceiver_codecs(transceiver) if c.mimeType == "video/VP8"
        )
        assert vp8 is not None
        for i in range(20):
            packet = RtpPacket(
                payload_type=vp8, sequence_number=500 + i, timestamp=3000 * i, marker=1
            )
            packet.payload = b"\x10\x00" + bytes(100)
            forwarder.forward(packet, vp8, 0)
        media, rtx = client_seams.sender_ssrcs(forwarder)

        def first_transmissions() -> list[int]:
            return [seq for ssrc, seq in seen if ssrc == media]

        await _until(lambda: len(first_transmissions()) >= 10, "the packets that were not dropped")
        await asyncio.sleep(0.2)  # nothing more comes
        # The gaps were NACKed; RTX (its own sequence numbers) goes the same filtered way.
        assert {ssrc for ssrc, _ in seen} <= {media, rtx}
        assert all(seq % 2 == 0 for _, seq in seen)
        assert len(first_transmissions()) == 10 and forwarder.packets == 20
        assert len(datagrams) >= 10
        assert full.handled >= 10
    finally:
        for pc in (receiving, sending, stock):
            await asyncio.wait_for(pc.close(), WAIT)


async def test_accept_renegotiated_codecs_routes_a_codec_a_re_offer_adds() -> None:
    publisher = client_peer_connection(_client_ice())
    subscriber = client_peer_connection(_client_ice())
    source = VideoStreamTrack()
    try:
        transceiver = publisher.addTransceiver(source, "sendonly")
        transceiver.setCodecPreferences(_video_codecs("video/VP8"))
        await _negotiate(publisher, subscriber)
        (sub_transceiver,) = subscriber.getTransceivers()
        receiver = sub_transceiver.receiver
        await _until_started(receiver)
        client_seams.accept_renegotiated_codecs(subscriber)  # nothing new: no change
        codecs: dict[int, object] = internal(receiver, "_RTCRtpReceiver__codecs")
        before = dict(codecs)

        transceiver.setCodecPreferences(_video_codecs("video/VP8") + _video_codecs("video/H264"))
        await _negotiate(publisher, subscriber)
        added = [
            c.payloadType
            for c in transceiver_codecs(sub_transceiver)
            if c.mimeType == "video/H264" and c.payloadType is not None
        ]
        assert added and not set(added) & set(codecs)
        router = internal(receiver.transport, "_rtp_router")
        probe = RtpPacket(
            payload_type=added[0], ssrc=client_seams.sender_ssrcs(transceiver.sender).media
        )
        assert router.route_rtp(probe) is None  # aiortc alone drops the new codec's packets
        client_seams.accept_renegotiated_codecs(subscriber)
        assert router.route_rtp(probe) is receiver
        assert set(added) <= set(codecs) and before.items() <= codecs.items()
    finally:
        source.stop()
        for pc in (subscriber, publisher):
            await asyncio.wait_for(pc.close(), WAIT)


async def test_accept_renegotiated_codecs_leaves_unstarted_receivers_alone() -> None:
    offerer = client_peer_connection(_client_ice())
    answerer = client_peer_connection(_client_ice())
    try:
        offerer.addTransceiver("video", "sendonly")
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        (transceiver,) = answerer.getTransceivers()
        client_seams.accept_renegotiated_codecs(answerer)
        assert internal(transceiver.receiver, "_RTCRtpReceiver__codecs") == {}
    finally:
        for pc in (answerer, offerer):
            await pc.close()


async def test_tap_receiver_disable_remb_drops_the_estimator() -> None:
    stock = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    dtls = stock.addTransceiver("video", "recvonly").receiver.transport
    tap = TapReceiver("video", dtls)
    assert tap._estimator is internal(tap, "_RTCRtpReceiver__remote_bitrate_estimator")
    tap.disable_remb()
    assert tap._estimator is None
    await stock.close()


async def test_a_closed_signalling_socket_arms_no_heartbeat() -> None:
    """The aiohttp seam of SignallingSocket: data arriving after close (the peer's close frame,
    a late message) must not re-arm the heartbeat timer that would hold the socket."""
    from aiohttp import WSMsgType
    from aiohttp.test_utils import TestClient, TestServer

    from sfu.api.signalling import SignallingSocket

    assert "_reset_heartbeat" in vars(web.WebSocketResponse)  # the method overridden
    assert "_on_data_received" in vars(web.WebSocketResponse)  # what calls it on data
    closed: list[SignallingSocket] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = SignallingSocket(heartbeat=20.0)
        await ws.prepare(request)
        closed.append(ws)
        await ws.receive()  # the client's first message
        await ws.close()
        ws._on_data_received()  # what aiohttp does when bytes arrive after the close
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    async with TestClient(TestServer(app)) as client:
        ws = await client.ws_connect("/ws")
        await ws.send_str("hello")
        assert (await ws.receive()).type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
        await ws.close()
        await asyncio.sleep(0.1)  # the server's reset callback has run
        assert closed and closed[0].closed
    assert closed and closed[0]._heartbeat_cb is None
