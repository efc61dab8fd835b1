"""Reading the settings: defaults, then a TOML file, then environment variables, into one flat,
validated model (`FlatSettings`); `sfu.config.settings` groups it into sections.

The file is `config/sfu.toml` when it exists (relative to the working directory), or the path
in `SFU_CONFIG_FILE`. Every field can be set from the environment as `SFU_<FIELD>` (upper
case), except `redis_url`, which is read from `REDIS_URL` as the production design names it.
A bad value stops start-up with a message naming the variable and what is wrong.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import SettingsError as PydanticSettingsError

from sfu.config.ladder import DEFAULT_LADDER_TEXT, parse_ladder

DEFAULT_CONFIG_FILE = Path("config/sfu.toml")
DEV_JWT_SECRET = "dev-secret-change-me"


class SettingsError(ValueError):
    """A setting has a bad value; the message says which and why."""


def _config_file() -> Path | None:
    named = os.environ.get("SFU_CONFIG_FILE")
    if named:
        path = Path(named)
        if not path.is_file():
            raise SettingsError(f"SFU_CONFIG_FILE={named!r}: no such file")
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


class FlatSettings(BaseSettings):
    """Every setting under its file key and environment name (`SFU_<KEY>`); immutable."""

    model_config = SettingsConfigDict(
        env_prefix="SFU_",
        frozen=True,
        extra="forbid",
        env_parse_none_str="",
        validate_by_name=True,
        validate_by_alias=True,
    )

    # Identity and tokens
    jwt_secret: str = Field(default=DEV_JWT_SECRET, min_length=8)
    node_id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=64)

    # HTTP
    debug_endpoints: bool = False
    """`GET /debug/memory` (service token): objects by type, tasks, fds, threads, RSS, for
    leak hunting (tests/integration/test_leaks.py, bench/soak.py). Off in production."""
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = None
    """Base URL browsers use to reach this node (e.g. https://sfu.cotept.com); the room
    object's `ws_url` is built from it. Unset: derived from the request's Host header."""

    # Media (ICE)
    rtc_port_min: int = Field(default=50000, ge=1024, le=65535)
    rtc_port_max: int = Field(default=50200, ge=1024, le=65535)
    rtc_udp_port: int | None = Field(default=None, ge=1024, le=65535)
    """One UDP port for the media of every peer connection (ICE, DTLS and SRTP demultiplexed
    by ICE ufrag and remote address, sfu/ice/udp_mux.py). When set, the range
    SFU_RTC_PORT_MIN..MAX is not used and ports no longer bound the rooms of a node. Unset
    (the default): one port of the range per peer connection."""
    rtc_addresses: Annotated[tuple[str, ...], NoDecode] = ()
    """Local addresses to gather host candidates on. Empty: the machine's non-loopback
    interfaces. Tests set 127.0.0.1."""
    public_ip: str | None = None
    """Address announced in host candidates instead of the bound one (NAT 1:1)."""
    rtc_ipv6: bool = False
    ice_timeout_s: float = Field(default=20.0, gt=0, le=600)
    """A peer connection not connected (ICE + DTLS) this long after its offer/answer is
    torn down."""
    stun_port: int = Field(default=3478, ge=1, le=65535)
    stun_host: str = "sfu.cotept.com"
    """Host browsers are told to use for STUN (`stun:<stun_host>:<stun_port>` in `joined`)."""
    stun_enabled: bool = True
    """Run the embedded STUN responder and advertise it; false: neither."""
    stun_bind: str = "0.0.0.0"
    """Local address the STUN responder binds on (port `stun_port`)."""
    stun_rate_per_ip: float = Field(default=20.0, gt=0)
    """STUN requests answered per second per source IP (IPv6: per /64)."""
    stun_burst_per_ip: int = Field(default=40, ge=1)
    stun_rate_total: float = Field(default=2000.0, gt=0)
    """STUN requests answered per second in all, whatever the number of sources."""
    stun_max_sources: int = Field(default=10_000, ge=1, le=10_000_000)
    """Source IPs the STUN limiter tracks at most; the least recently seen is forgotten."""

    # Rooms
    max_rooms: int = Field(default=100, ge=1)
    default_empty_timeout_s: int = Field(default=300, ge=1)
    keyframe_min_interval_s: float = Field(default=0.5, ge=0)

    # Abuse limits
    ws_messages_per_s: float = Field(default=30.0, gt=0)
    ws_message_burst: int = Field(default=60, ge=1)
    ws_per_ip: int = Field(default=20, ge=1)
    """Concurrent WebSockets per client IP; the next one is closed with 4429."""
    rest_rate_per_ip: float = Field(default=10.0, gt=0)
    rest_burst_per_ip: int = Field(default=40, ge=1)
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    """Networks (CIDR) whose X-Forwarded-For is believed; empty: the peer address is the client."""

    # CORS (REST API)
    cors_origins: Annotated[tuple[str, ...], NoDecode] = (
        "https://www.cotept.com",
        "https://cotept.com",
        "https://dev.cotept.com",
    )

    # Shared state
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "SFU_REDIS_URL")
    )
    """With it, the nodes that share this Redis act as one SFU (docs/architecture.md,
    "Several nodes"): a node registry, a room directory, placement and relays."""
    node_url: str | None = None
    """How the other nodes reach this node's HTTP port (`http://<pod IP>:8080`); in k8s from
    the downward API. Unset: `http://<http_host or this host's name>:<http_port>`."""
    cluster_heartbeat_s: float = Field(default=2.0, gt=0, le=60)
    """How often this node refreshes its registry entry and its rooms in Redis."""
    cluster_node_ttl_s: float = Field(default=10.0, gt=0, le=600)
    """A node entry not refreshed for this long has expired: the node is gone, and a surviving
    node removes its rooms (`room_finished`, reason `node_lost`)."""

    # Webhooks (docs/api.md §5), signed with jwt_secret
    webhook_url: str | None = None
    """Where room, participant and track events are POSTed. Unset: no webhooks."""
    webhook_max_attempts: int = Field(default=6, ge=1, le=20)
    """Attempts per event (the first included) before it is given up."""
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    """Seconds one attempt may take, connection to response."""
    webhook_queue_size: int = Field(default=1000, ge=1, le=1_000_000)
    """Events waiting for delivery at most; beyond it the oldest are dropped."""

    # Object storage (recordings, VOD)
    data_dir: Path = Path("./data")
    """Folder for the node's local data; relative to the working directory, so `sfu serve`
    from a checkout keeps it inside the checkout (the container sets an absolute path)."""
    storage_url: str | None = None
    """`file:///dir` (local filesystem), `s3://bucket[/prefix]` (S3-compatible, e.g. OCI
    Object Storage) or `oci://namespace/bucket[/prefix]` (OCI's native API: the `oci` extra).
    Unset: `file://<data_dir>/objects`."""
    s3_endpoint: str | None = None
    """Endpoint of the S3-compatible service for `s3://` URLs (OCI:
    https://<namespace>.compat.objectstorage.<region>.oraclecloud.com). Unset: AWS S3.
    Credentials and region: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION."""
    oci_auth: Literal[
        "auto", "config_file", "resource_principal", "instance_principal", "oke_workload_identity"
    ] = "auto"
    """How `oci://` stores sign their requests (sfu/storage/oci.py): `oke_workload_identity` for
    a pod on OKE with workload identity (its service account is the principal),
    `instance_principal` for the node's dynamic group, `resource_principal` (OCI Functions and
    the like), `config_file` (OCI_CONFIG_FILE / OCI_CONFIG_PROFILE, ~/.oci/config); `auto`:
    resource principals when OCI_RESOURCE_PRINCIPAL_VERSION is set, else the config file."""
    s3_multipart_threshold_mb: int = Field(default=64, ge=5, le=5120)
    """Objects of this many MiB or more go to S3 in parts (multipart upload) instead of one
    PUT, which S3 and OCI cap at 5 GiB; their tier changes are multipart copies likewise."""
    s3_multipart_chunk_mb: int = Field(default=16, ge=5, le=5120)
    """Size of one part in MiB: at least 5 (the S3 minimum for every part but the last); 4
    parts are in flight at once, each held in memory."""

    # Recordings and the VOD worker (docs/api.md §6)
    recordings_dir: Path | None = None
    """Where the recorder writes sessions (`<dir>/<session_id>/manifest.json`); a relative
    path is resolved against data_dir. Unset: `<data_dir>/recordings`. The VOD worker must
    see the same folder."""
    vod_queue_dir: Path | None = None
    """Folder of the local durable VOD job queue, used when REDIS_URL is unset; a relative
    path is resolved against data_dir. Unset: `<data_dir>/vod-queue`."""
    vod_ladder: str = DEFAULT_LADDER_TEXT
    """HLS renditions the VOD worker encodes: comma-separated WIDTHxHEIGHT@KBPSk."""
    vod_max_attempts: int = Field(default=3, ge=1, le=100)
    """Attempts per VOD job (a crashed worker's attempt included) before it is dead and
    `recording_failed` is sent."""
    vod_claim_idle_s: float = Field(default=300.0, gt=0, le=86_400)
    """A job claimed by a worker that sent no heartbeat for this long is taken over by
    another worker (workers heartbeat every third of it while rendering)."""
    recording_orphan_s: float = Field(default=60.0, ge=3, le=86_400)
    """A session still "recording" whose heartbeat (touched every sixth of this) is older than
    this belongs to a node that stopped: any SFU sharing the recordings volume finalises and
    queues it (scanned every half of this)."""
    vod_poll_s: float = Field(default=5.0, gt=0, le=60)
    """Longest a worker waits for a job in one claim call (bounds SIGTERM latency)."""
    recordings_retention_h: float = Field(default=24.0, ge=0, le=24 * 365)
    """Hours a session's raw recording (its folder under recordings_dir) is kept after its VOD
    is published, then the VOD worker deletes it; 0 deletes it as soon as the job is done.
    Sessions not published (queued, failed) are never deleted."""

    # The VOD storage lifecycle (`sfu lifecycle`) and storage analytics (`sfu analytics`)
    lifecycle_ia_after_days: int = Field(default=30, ge=1, le=36_500)
    """A published session moves from Standard to InfrequentAccess this many days after it
    was published (unless smart tiering keeps it hot)."""
    lifecycle_archive_after_days: int = Field(default=365, ge=1, le=36_500)
    """... and to Archive this many days after it was published."""
    lifecycle_delete_after_days: int = Field(default=2555, ge=1, le=36_500)
    """... and is deleted this many days after it was published (7 years)."""
    lifecycle_hot_plays: int = Field(default=3, ge=1, le=1_000_000)
    """A session played at least this often in the last `lifecycle_hot_window_days` stays in
    (or returns to) Standard."""
    lifecycle_hot_window_days: int = Field(default=30, ge=1, le=3650)
    lifecycle_concurrency: int = Field(default=8, ge=1, le=256)
    """Sessions `sfu lifecycle run` works on at once."""
    lifecycle_orphan_after_days: int = Field(default=7, ge=1, le=3650)
    """Recordings never handed off, and incomplete multipart uploads (after one day at least),
    older than this are orphans (`sfu lifecycle orphans`)."""
    price_standard_gb_month: float = Field(default=0.0255, ge=0)
    price_infrequent_gb_month: float = Field(default=0.01, ge=0)
    price_archive_gb_month: float = Field(default=0.0025, ge=0)
    """USD per GB-month per tier (OCI Object Storage list prices of the design)."""
    storage_budget_month_usd: float = Field(default=100.0, gt=0)
    """The month's storage budget the cost report and its alerts compare against."""
    analytics_port: int = Field(default=8090, ge=1, le=65535)
    """`sfu analytics serve`'s HTTP port (`POST /vod/views`, `/metrics`, `/health`)."""
    metrics_interval_s: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        validation_alias=AliasChoices("METRICS_INTERVAL", "SFU_METRICS_INTERVAL_S"),
    )
    """How often `sfu analytics serve` refreshes its storage figures (`METRICS_INTERVAL`, as
    the design names it)."""

    # Operations
    log_level: str = "INFO"
    log_json: bool = True
    drain_timeout_s: float = Field(default=60.0, ge=0)
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    """`sfu serve`'s event loop: uvloop (libuv; the default when installed) or the standard
    library's asyncio loop (for comparison, or where uvloop is missing)."""

    @field_validator("rtc_addresses", "trusted_proxies", "cors_origins", mode="before")
    @classmethod
    def _split_addresses(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("rtc_addresses")
    @classmethod
    def _check_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            ipaddress.ip_address(address)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            ipaddress.ip_network(network, strict=False)
        return value

    @field_validator("webhook_url", "s3_endpoint", "node_url")
    @classmethod
    def _check_http_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        scheme, sep, rest = value.partition("://")
        if scheme.lower() not in ("http", "https") or not sep or not rest.split("/", 1)[0]:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("storage_url")
    @classmethod
    def _check_storage_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        scheme, sep, rest = value.partition("://")
        if scheme.lower() not in ("file", "s3", "oci") or not sep or not rest:
            raise ValueError(
                "must be file:///dir, s3://bucket[/prefix] or oci://namespace/bucket[/prefix]"
            )
        return value

    @field_validator("vod_ladder")
    @classmethod
    def _check_ladder(cls, value: str) -> str:
        parse_ladder(value)
        return value

    @field_validator("public_ip")
    @classmethod
    def _check_public_ip(cls, value: str | None) -> str | None:
        if value:
            ipaddress.ip_address(value)
            return value
        return None

    @field_validator("stun_bind")
    @classmethod
    def _check_stun_bind(cls, value: str) -> str:
        ipaddress.ip_address(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return upper

    @model_validator(mode="after")
    def _check_ranges(self) -> FlatSettings:
        days = (
            self.lifecycle_ia_after_days,
            self.lifecycle_archive_after_days,
            self.lifecycle_delete_after_days,
        )
        if not days[0] < days[1] < days[2]:
            raise ValueError(
                "SFU_LIFECYCLE_IA_AFTER_DAYS < SFU_LIFECYCLE_ARCHIVE_AFTER_DAYS < "
                f"SFU_LIFECYCLE_DELETE_AFTER_DAYS must hold (got {days[0]}, {days[1]}, {days[2]})"
            )
        if self.rtc_port_min > self.rtc_port_max:
            raise ValueError(
                f"SFU_RTC_PORT_MIN ({self.rtc_port_min}) is above "
                f"SFU_RTC_PORT_MAX ({self.rtc_port_max})"
            )
        if self.cluster_node_ttl_s < 2 * self.cluster_heartbeat_s:
            raise ValueError(
                f"SFU_CLUSTER_NODE_TTL_S ({self.cluster_node_ttl_s:g}) must be at least twice "
                f"SFU_CLUSTER_HEARTBEAT_S ({self.cluster_heartbeat_s:g}), or a live node's entry "
                "could expire between two heartbeats"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def load_flat(**overrides: Any) -> FlatSettings:
    """Read and validate every setting, turning a failure into one readable SettingsError.
    `overrides` are keyed like the file (`rtc_port_min=...`) and win over everything."""
    try:
        return FlatSettings(**overrides)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(
            f"invalid settings: {_config_file()} is not valid TOML: {exc}"
        ) from None
    except PydanticSettingsError as exc:
        raise SettingsError(f"invalid settings: {exc}") from None
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            env = env_name(field) if field else "settings"
            lines.append(f"{env}: {error['msg']} (got {error.get('input')!r})")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None


def env_name(key: str) -> str:
    """The environment variable of a settings key: `SFU_<KEY>`, but REDIS_URL for redis_url."""
    if key == "redis_url":
        return "REDIS_URL"
    if key == "metrics_interval_s":
        return "METRICS_INTERVAL"
    return f"SFU_{key.upper()}"


ENV_NAMES: frozenset[str] = frozenset(env_name(key) for key in FlatSettings.model_fields)
"""Every environment variable that sets a setting (SFU_CONFIG_FILE names the file instead)."""
