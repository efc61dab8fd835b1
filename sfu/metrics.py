"""Prometheus collectors of the SFU, in one place so names stay consistent.

Per-packet counters are incremented in batches by the forwarding path (see
sfu/media/fanout.py), never one `inc()` per packet from several places.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROOMS = Gauge("sfu_rooms", "Rooms open on this node")
PARTICIPANTS = Gauge("sfu_participants", "Participants connected, by role", ["role"])
RELAYED_SOCKETS = Gauge(
    "sfu_relayed_sockets", "Participants' WebSockets this node relays to the node of their room"
)
FORWARDED_REQUESTS = Counter(
    "sfu_forwarded_requests_total",
    "REST calls this node forwarded to the node that holds the room, by outcome",
    ["outcome"],
)
PUBLICATIONS = Gauge("sfu_publications", "Tracks published, by kind", ["kind"])
SUBSCRIPTIONS = Gauge("sfu_subscriptions", "Tracks forwarded to a subscriber, by kind", ["kind"])

RTP_PACKETS_IN = Counter("sfu_rtp_packets_in", "RTP packets received from publishers", ["kind"])
RTP_BYTES_IN = Counter("sfu_rtp_bytes_in", "RTP payload bytes received from publishers", ["kind"])
RTP_PACKETS_OUT = Counter("sfu_rtp_packets_out", "RTP packets forwarded to subscribers", ["kind"])
RTP_BYTES_OUT = Counter("sfu_rtp_bytes_out", "RTP payload bytes forwarded to subscribers", ["kind"])
RTP_DROPPED = Counter(
    "sfu_rtp_dropped", "RTP packets not forwarded to a subscriber, by reason", ["reason"]
)

KEYFRAME_REQUESTS = Counter(
    "sfu_keyframe_requests",
    "Keyframe requests (PLI/FIR): received from subscribers, and sent to publishers",
    ["direction"],
)
NACKS_RECEIVED = Counter("sfu_nacks_received", "Sequence numbers NACKed by subscribers")
NACKS_ANSWERED = Counter("sfu_nacks_answered", "NACKed packets retransmitted from history")
NACKS_SENT = Counter("sfu_nacks_sent", "NACK packets sent to publishers for upstream loss")

JOIN_TO_CONNECTED = Histogram(
    "sfu_join_to_connected_seconds",
    "From the WebSocket join to the first peer connection reaching 'connected'",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0),
)

MEDIA_PORTS_IN_USE = Gauge("sfu_media_ports_in_use", "UDP media ports bound by the SFU")
MEDIA_PORTS_FREE = Gauge("sfu_media_ports_free", "UDP media ports left in the configured range")
ICE_JUNK_DATAGRAMS = Counter(
    "sfu_ice_junk_datagrams", "Datagrams on media ports that were neither STUN, DTLS nor SRTP"
)
ICE_MUX_CONNECTIONS = Gauge(
    "sfu_ice_mux_connections", "ICE connections attached to the shared media port"
)
ICE_MUX_ADDRESSES = Gauge(
    "sfu_ice_mux_addresses", "Remote addresses bound to a connection on the shared media port"
)
ICE_MUX_UNROUTED = Counter(
    "sfu_ice_mux_unrouted",
    "Datagrams on the shared media port that no connection took, by reason",
    ["reason"],
)
ICE_MDNS_CANDIDATES_DROPPED = Counter(
    "sfu_ice_mdns_candidates_dropped", "Remote .local (mDNS) candidates dropped unresolved"
)
PEER_CONNECTION_TIMEOUTS = Counter(
    "sfu_peer_connection_timeouts", "Peer connections torn down for not connecting in time"
)
WS_CLOSES = Counter("sfu_ws_closes", "WebSocket closes by close code", ["code"])
WS_ERRORS = Counter("sfu_ws_errors", "WebSocket error messages sent, by error code", ["code"])

ASYNCIO_TASKS = Gauge("sfu_asyncio_tasks", "asyncio tasks alive in the SFU's event loop")
LIMIT_HITS = Counter("sfu_limit_hits", "Requests refused by an abuse limit, by limit", ["limit"])

WEBHOOK_EVENTS = Counter(
    "sfu_webhook_events",
    "Webhook events by result: delivered; failed (rejected or out of attempts); dropped "
    "(queue full, or still queued at shutdown); retried (one per attempt after the first)",
    ["result"],
)
for _result in ("delivered", "failed", "dropped", "retried"):
    WEBHOOK_EVENTS.labels(_result)
WEBHOOK_QUEUE = Gauge("sfu_webhook_queue", "Webhook events waiting for delivery")

STUN_REQUESTS = Counter(
    "sfu_stun_requests",
    "Datagrams on the STUN port by result: answered (Binding success sent); ignored (not a "
    "plain Binding request, dropped silently); rate_limited (per-IP or global STUN limit)",
    ["result"],
)
for _result in ("answered", "ignored", "rate_limited"):
    STUN_REQUESTS.labels(_result)

RECORDING_TRACKS = Gauge("sfu_recording_tracks", "Track segments being recorded, by kind", ["kind"])
RECORDING_FRAMES_WRITTEN = Counter(
    "sfu_recording_frames_written", "Encoded frames muxed into recordings, by kind", ["kind"]
)
RECORDING_WRITE_ERRORS = Counter(
    "sfu_recording_write_errors",
    "Recorder writes that failed (a full disk, an I/O error): the file is closed and the "
    "track goes on in a new segment once it can; forwarding is not affected",
)
RECORDING_PACKETS_DROPPED = Counter(
    "sfu_recording_packets_dropped",
    "RTP packets a recorder dropped because its queue was full (the writer fell behind)",
    ["kind"],
)

VOD_JOBS = Counter(
    "sfu_vod_jobs",
    "VOD jobs by result: published (rendered, uploaded, acked); retried (an attempt failed, "
    "queued again); failed (out of attempts, recording_failed sent); reclaimed (taken over "
    "from a worker that stopped)",
    ["result"],
)
for _result in ("published", "retried", "failed", "reclaimed"):
    VOD_JOBS.labels(_result)
VOD_RENDER_SECONDS = Histogram(
    "sfu_vod_render_seconds",
    "Seconds to render and publish one recording session",
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)
