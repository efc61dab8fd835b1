"""One frozen, typed settings object in sections: defaults, then a TOML file, then environment
variables.

The file is `config/sfu.toml` when it exists (relative to the working directory), or the path
in `SFU_CONFIG_FILE`. Its keys are flat (`rtc_port_min = 50000`) and every key can be set from
the environment as `SFU_<KEY>` (upper case), except `redis_url`, which is read from `REDIS_URL`
as the production design names it; `sfu.config.loading` reads and validates them. This module
groups them by the part of the SFU that uses them, so a part is handed its section only. A bad
value stops start-up with a message naming the variable and what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sfu.config.ladder import Rendition, parse_ladder
from sfu.config.loading import (
    DEFAULT_CONFIG_FILE,
    DEV_JWT_SECRET,
    ENV_NAMES,
    FlatSettings,
    SettingsError,
    env_name,
    load_flat,
)

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "DEV_JWT_SECRET",
    "ENV_NAMES",
    "Settings",
    "SettingsError",
    "env_name",
    "load_settings",
]


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """REST, WebSocket signalling, probes, metrics, demo (`SFU_HTTP_*`, `SFU_PUBLIC_URL`,
    `SFU_CORS_ORIGINS`, `SFU_TRUSTED_PROXIES`)."""

    host: str
    port: int
    public_url: str | None
    """Base URL browsers use to reach this node; the room object's `ws_url` is built from
    it. None: derived from the request's Host header."""
    cors_origins: tuple[str, ...]
    trusted_proxies: tuple[str, ...]
    """Networks (CIDR) whose X-Forwarded-For is believed."""
    debug_endpoints: bool
    """`GET /debug/memory` is served (SFU_DEBUG_ENDPOINTS; service token)."""


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Abuse limits at the edge (`SFU_WS_*`, `SFU_REST_*`)."""

    ws_messages_per_s: float
    ws_message_burst: int
    ws_per_ip: int
    rest_rate_per_ip: float
    rest_burst_per_ip: int


@dataclass(frozen=True, slots=True)
class MediaSettings:
    """ICE and the packet path (`SFU_RTC_*`, `SFU_PUBLIC_IP`, `SFU_ICE_TIMEOUT_S`,
    `SFU_KEYFRAME_MIN_INTERVAL_S`)."""

    port_min: int
    port_max: int
    udp_port: int | None
    """The shared media port (SFU_RTC_UDP_PORT); None: a port of the range per connection."""
    addresses: tuple[str, ...]
    """Local addresses to gather host candidates on; empty: the non-loopback interfaces."""
    public_ip: str | None
    """Address announced in host candidates instead of the bound one (NAT 1:1)."""
    ipv6: bool
    ice_timeout_s: float
    keyframe_min_interval_s: float

    @property
    def port_count(self) -> int:
        return self.port_max - self.port_min + 1


@dataclass(frozen=True, slots=True)
class StunSettings:
    """The embedded STUN responder (`SFU_STUN_*`)."""

    enabled: bool
    host: str
    """Host browsers are told to use (`stun:<host>:<port>` in `joined.ice_servers`)."""
    port: int
    bind: str
    rate_per_ip: float
    burst_per_ip: int
    rate_total: float
    max_sources: int


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """Several nodes as one SFU (`REDIS_URL`, `SFU_NODE_URL`, `SFU_CLUSTER_*`)."""

    node_url: str | None
    """How the other nodes reach this node's HTTP port; None: derived at start."""
    heartbeat_s: float
    node_ttl_s: float


@dataclass(frozen=True, slots=True)
class RoomSettings:
    """`SFU_MAX_ROOMS`, `SFU_DEFAULT_EMPTY_TIMEOUT_S`."""

    max_rooms: int
    default_empty_timeout_s: int


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Signed events to the backend (`SFU_WEBHOOK_*`)."""

    url: str | None
    max_attempts: int
    timeout_s: float
    queue_size: int


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Object storage for VOD (`SFU_STORAGE_URL`, `SFU_S3_*`)."""

    url: str | None
    """`file:///dir` or `s3://bucket[/prefix]`; None: `file://<data_dir>/objects`."""
    s3_endpoint: str | None
    oci_auth: str
    """`auto`, `config_file`, `resource_principal`, `instance_principal` or
    `oke_workload_identity` (SFU_OCI_AUTH): how oci:// stores sign their requests."""
    s3_multipart_threshold_mb: int
    s3_multipart_chunk_mb: int


@dataclass(frozen=True, slots=True)
class RecordingSettings:
    """The recorder and its hand-off (`SFU_RECORDINGS_DIR`, `SFU_RECORDING_ORPHAN_S`,
    `SFU_RECORDINGS_RETENTION_H`)."""

    root: Path
    """recordings_dir resolved against data_dir (default `<data_dir>/recordings`)."""
    orphan_s: float
    retention_h: float


@dataclass(frozen=True, slots=True)
class VodSettings:
    """The VOD job queue and worker (`SFU_VOD_*`)."""

    queue_root: Path
    """vod_queue_dir resolved against data_dir (default `<data_dir>/vod-queue`)."""
    ladder: str
    max_attempts: int
    claim_idle_s: float
    poll_s: float

    @property
    def renditions(self) -> tuple[Rendition, ...]:
        return parse_ladder(self.ladder)


@dataclass(frozen=True, slots=True)
class LifecycleSettings:
    """The VOD storage lifecycle and its analytics (`SFU_LIFECYCLE_*`, `SFU_PRICE_*`,
    `SFU_STORAGE_BUDGET_MONTH_USD`, `SFU_ANALYTICS_PORT`, `METRICS_INTERVAL`)."""

    ia_after_days: int
    archive_after_days: int
    delete_after_days: int
    hot_plays: int
    hot_window_days: int
    concurrency: int
    orphan_after_days: int
    price_standard_gb_month: float
    price_infrequent_gb_month: float
    price_archive_gb_month: float
    budget_month_usd: float
    analytics_port: int
    metrics_interval_s: float


@dataclass(frozen=True, slots=True)
class OpsSettings:
    """`SFU_LOG_LEVEL`, `SFU_LOG_JSON`, `SFU_DRAIN_TIMEOUT_S`, `SFU_EVENT_LOOP`."""

    log_level: str
    log_json: bool
    drain_timeout_s: float
    event_loop: Literal["uvloop", "asyncio"]


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the SFU process can be told, by section. Immutable once loaded."""

    node_id: str
    jwt_secret: str
    redis_url: str | None
    data_dir: Path
    http: HttpSettings
    limits: LimitSettings
    media: MediaSettings
    stun: StunSettings
    cluster: ClusterSettings
    rooms: RoomSettings
    webhooks: WebhookSettings
    storage: StorageSettings
    recording: RecordingSettings
    vod: VodSettings
    lifecycle: LifecycleSettings
    ops: OpsSettings

    @classmethod
    def from_flat(cls, flat: FlatSettings) -> Settings:
        return cls(
            node_id=flat.node_id,
            jwt_secret=flat.jwt_secret,
            redis_url=flat.redis_url,
            data_dir=flat.data_dir,
            http=HttpSettings(
                host=flat.http_host,
                port=flat.http_port,
                public_url=flat.public_url,
                cors_origins=flat.cors_origins,
                trusted_proxies=flat.trusted_proxies,
                debug_endpoints=flat.debug_endpoints,
            ),
            limits=LimitSettings(
                ws_messages_per_s=flat.ws_messages_per_s,
                ws_message_burst=flat.ws_message_burst,
                ws_per_ip=flat.ws_per_ip,
                rest_rate_per_ip=flat.rest_rate_per_ip,
                rest_burst_per_ip=flat.rest_burst_per_ip,
            ),
            media=MediaSettings(
                port_min=flat.rtc_port_min,
                port_max=flat.rtc_port_max,
                udp_port=flat.rtc_udp_port,
                addresses=flat.rtc_addresses,
                public_ip=flat.public_ip,
                ipv6=flat.rtc_ipv6,
                ice_timeout_s=flat.ice_timeout_s,
                keyframe_min_interval_s=flat.keyframe_min_interval_s,
            ),
            stun=StunSettings(
                enabled=flat.stun_enabled,
                host=flat.stun_host,
                port=flat.stun_port,
                bind=flat.stun_bind,
                rate_per_ip=flat.stun_rate_per_ip,
                burst_per_ip=flat.stun_burst_per_ip,
                rate_total=flat.stun_rate_total,
                max_sources=flat.stun_max_sources,
            ),
            cluster=ClusterSettings(
                node_url=flat.node_url,
                heartbeat_s=flat.cluster_heartbeat_s,
                node_ttl_s=flat.cluster_node_ttl_s,
            ),
            rooms=RoomSettings(
                max_rooms=flat.max_rooms,
                default_empty_timeout_s=flat.default_empty_timeout_s,
            ),
            webhooks=WebhookSettings(
                url=flat.webhook_url,
                max_attempts=flat.webhook_max_attempts,
                timeout_s=flat.webhook_timeout_s,
                queue_size=flat.webhook_queue_size,
            ),
            storage=StorageSettings(
                url=flat.storage_url,
                s3_endpoint=flat.s3_endpoint,
                oci_auth=flat.oci_auth,
                s3_multipart_threshold_mb=flat.s3_multipart_threshold_mb,
                s3_multipart_chunk_mb=flat.s3_multipart_chunk_mb,
            ),
            recording=RecordingSettings(
                root=flat.data_dir / (flat.recordings_dir or Path("recordings")),
                orphan_s=flat.recording_orphan_s,
                retention_h=flat.recordings_retention_h,
            ),
            vod=VodSettings(
                queue_root=flat.data_dir / (flat.vod_queue_dir or Path("vod-queue")),
                ladder=flat.vod_ladder,
                max_attempts=flat.vod_max_attempts,
                claim_idle_s=flat.vod_claim_idle_s,
                poll_s=flat.vod_poll_s,
            ),
            lifecycle=LifecycleSettings(
                ia_after_days=flat.lifecycle_ia_after_days,
                archive_after_days=flat.lifecycle_archive_after_days,
                delete_after_days=flat.lifecycle_delete_after_days,
                hot_plays=flat.lifecycle_hot_plays,
                hot_window_days=flat.lifecycle_hot_window_days,
                concurrency=flat.lifecycle_concurrency,
                orphan_after_days=flat.lifecycle_orphan_after_days,
                price_standard_gb_month=flat.price_standard_gb_month,
                price_infrequent_gb_month=flat.price_infrequent_gb_month,
                price_archive_gb_month=flat.price_archive_gb_month,
                budget_month_usd=flat.storage_budget_month_usd,
                analytics_port=flat.analytics_port,
                metrics_interval_s=flat.metrics_interval_s,
            ),
            ops=OpsSettings(
                log_level=flat.log_level,
                log_json=flat.log_json,
                drain_timeout_s=flat.drain_timeout_s,
                event_loop=flat.event_loop,
            ),
        )


def load_settings(**overrides: Any) -> Settings:
    """Defaults, then the file, then the environment, then `overrides` (keyed like the file:
    `load_settings(rtc_port_min=40000)`). A bad value raises SettingsError naming it."""
    return Settings.from_flat(load_flat(**overrides))


_LIFECYCLE_KEYS = (
    "ia_after_days",
    "archive_after_days",
    "delete_after_days",
    "hot_plays",
    "hot_window_days",
    "concurrency",
    "orphan_after_days",
)
_TIERS = ("standard", "infrequent")

KEY_PATHS: dict[str, str] = {
    **{key: key for key in ("node_id", "jwt_secret", "redis_url", "data_dir")},
    "debug_endpoints": "http.debug_endpoints",
    "http_host": "http.host",
    "http_port": "http.port",
    "public_url": "http.public_url",
    "cors_origins": "http.cors_origins",
    "trusted_proxies": "http.trusted_proxies",
    **{key: f"limits.{key}" for key in LimitSettings.__dataclass_fields__},
    "rtc_port_min": "media.port_min",
    "rtc_port_max": "media.port_max",
    "rtc_udp_port": "media.udp_port",
    "rtc_addresses": "media.addresses",
    "public_ip": "media.public_ip",
    "rtc_ipv6": "media.ipv6",
    "ice_timeout_s": "media.ice_timeout_s",
    "keyframe_min_interval_s": "media.keyframe_min_interval_s",
    **{f"stun_{name}": f"stun.{name}" for name in StunSettings.__dataclass_fields__},
    "node_url": "cluster.node_url",
    "cluster_heartbeat_s": "cluster.heartbeat_s",
    "cluster_node_ttl_s": "cluster.node_ttl_s",
    **{key: f"rooms.{key}" for key in RoomSettings.__dataclass_fields__},
    **{f"webhook_{name}": f"webhooks.{name}" for name in WebhookSettings.__dataclass_fields__},
    "storage_url": "storage.url",
    **{key: f"storage.{key}" for key in StorageSettings.__dataclass_fields__ if key != "url"},
    "recordings_dir": "recording.root",
    "recording_orphan_s": "recording.orphan_s",
    "recordings_retention_h": "recording.retention_h",
    "vod_queue_dir": "vod.queue_root",
    **{
        f"vod_{name}": f"vod.{name}"
        for name in VodSettings.__dataclass_fields__
        if name != "queue_root"
    },
    **{f"lifecycle_{name}": f"lifecycle.{name}" for name in _LIFECYCLE_KEYS},
    **{f"price_{t}_gb_month": f"lifecycle.price_{t}_gb_month" for t in _TIERS},
    "price_archive_gb_month": "lifecycle.price_archive_gb_month",
    "storage_budget_month_usd": "lifecycle.budget_month_usd",
    "analytics_port": "lifecycle.analytics_port",
    "metrics_interval_s": "lifecycle.metrics_interval_s",
    **{key: f"ops.{key}" for key in OpsSettings.__dataclass_fields__},
}
"""Where each file key (and so each `SFU_*` variable) lands in `Settings`, as a dotted path.
`recordings_dir` and `vod_queue_dir` land resolved against `data_dir`."""


def value_at(settings: Settings, key: str) -> Any:
    """The value `settings` holds for a file key (`http_port` → `settings.http.port`)."""
    value: Any = settings
    for name in KEY_PATHS[key].split("."):
        value = getattr(value, name)
    return value


def default_of(key: str) -> Any:
    """The built-in default of a settings key (`http_port` → 8080), before file and env."""
    field = FlatSettings.model_fields[key]
    return field.get_default(call_default_factory=True)
