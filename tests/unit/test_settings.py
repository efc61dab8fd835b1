"""Settings: contract defaults, environment, TOML file, precedence, and readable refusals."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from sfu.config.loading import ENV_NAMES, FlatSettings, env_name, load_flat
from sfu.config.settings import (
    DEV_JWT_SECRET,
    KEY_PATHS,
    Settings,
    SettingsError,
    load_settings,
    value_at,
)

EXAMPLE_FILE = Path(__file__).resolve().parents[2] / "config" / "sfu.example.toml"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SFU_* / REDIS_URL from the outside, and no config/sfu.toml of the checkout."""
    for name in list(os.environ):
        if name.startswith("SFU_") or name == "REDIS_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _toml(tmp_path: Path, text: str, name: str = "sfu.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return str(caught.value)


# --- defaults -------------------------------------------------------------------------------


def test_defaults_match_the_contract() -> None:
    settings = load_settings()
    assert settings.http.port == 8080
    assert (settings.media.port_min, settings.media.port_max) == (50000, 50200)
    assert settings.media.port_count == 201
    assert settings.stun.port == 3478
    assert settings.stun.host == "sfu.cotept.com"
    assert settings.jwt_secret == DEV_JWT_SECRET
    assert settings.media.addresses == ()
    assert settings.media.public_ip is None
    assert settings.redis_url is None
    assert settings.node_id


def test_example_file_loads_and_states_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """config/sfu.example.toml says it lists every key with its default."""
    monkeypatch.setenv("SFU_CONFIG_FILE", str(EXAMPLE_FILE))
    from_file = load_settings(node_id="n1")
    monkeypatch.delenv("SFU_CONFIG_FILE")
    assert from_file == load_settings(node_id="n1")


# --- environment ----------------------------------------------------------------------------


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFU_HTTP_PORT", "9090")
    monkeypatch.setenv("SFU_RTC_ADDRESSES", "127.0.0.1, 10.0.0.1")
    monkeypatch.setenv("SFU_RTC_PORT_MIN", "40000")
    monkeypatch.setenv("SFU_RTC_PORT_MAX", "40009")
    monkeypatch.setenv("SFU_RTC_UDP_PORT", "40000")
    monkeypatch.setenv("SFU_PUBLIC_IP", "203.0.113.10")
    monkeypatch.setenv("SFU_JWT_SECRET", "a-long-enough-secret")
    monkeypatch.setenv("REDIS_URL", "redis://redis:6379/0")
    monkeypatch.setenv("SFU_LOG_LEVEL", "debug")
    settings = load_settings()
    assert settings.http.port == 9090
    assert settings.media.addresses == ("127.0.0.1", "10.0.0.1")
    assert settings.media.port_count == 10
    assert settings.media.udp_port == 40000
    assert load_settings(rtc_udp_port=None).media.udp_port is None
    assert settings.media.public_ip == "203.0.113.10"
    assert settings.jwt_secret == "a-long-enough-secret"
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.ops.log_level == "DEBUG"


def test_empty_public_ip_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFU_PUBLIC_IP", "")
    assert load_settings().media.public_ip is None


def test_redis_url_by_field_name_as_override() -> None:
    assert load_settings(redis_url="redis://r:6379/1").redis_url == "redis://r:6379/1"


# --- TOML file ------------------------------------------------------------------------------


def test_toml_file_is_read_and_environment_beats_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _toml(
        tmp_path,
        'http_port = 7000\nstun_port = 3479\nrtc_addresses = ["127.0.0.1"]\n'
        'public_ip = "198.51.100.1"\n',
        "custom.toml",
    )
    monkeypatch.setenv("SFU_CONFIG_FILE", str(path))
    settings = load_settings()
    assert (settings.http.port, settings.stun.port) == (7000, 3479)
    assert settings.media.addresses == ("127.0.0.1",)
    assert settings.media.public_ip == "198.51.100.1"
    monkeypatch.setenv("SFU_HTTP_PORT", "7100")
    monkeypatch.setenv("SFU_RTC_ADDRESSES", "10.0.0.2")
    settings = load_settings()
    assert settings.http.port == 7100
    assert settings.media.addresses == ("10.0.0.2",)
    assert settings.stun.port == 3479


def test_config_sfu_toml_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    _toml(tmp_path / "config", "http_port = 8181\n")
    assert load_settings().http.port == 8181


def test_redis_url_in_the_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The example file documents `redis_url = "redis://..."` as a key."""
    path = _toml(tmp_path, 'redis_url = "redis://from-file:6379/0"\n')
    monkeypatch.setenv("SFU_CONFIG_FILE", str(path))
    assert load_settings().redis_url == "redis://from-file:6379/0"
    monkeypatch.setenv("REDIS_URL", "redis://from-env:6379/0")
    assert load_settings().redis_url == "redis://from-env:6379/0"


def test_missing_config_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    message = _error(monkeypatch, SFU_CONFIG_FILE=str(tmp_path / "nope.toml"))
    assert "SFU_CONFIG_FILE" in message


def test_broken_toml_file_is_a_settings_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _toml(tmp_path, "http_port = \n")
    message = _error(monkeypatch, SFU_CONFIG_FILE=str(path))
    assert "sfu.toml" in message


def test_bad_value_in_toml_file_names_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _toml(tmp_path, 'http_port = "eighty"\n')
    assert "HTTP_PORT" in _error(monkeypatch, SFU_CONFIG_FILE=str(path))


def test_unknown_key_in_toml_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _toml(tmp_path, "http_prot = 8080\n")
    assert "http_prot" in _error(monkeypatch, SFU_CONFIG_FILE=str(path)).lower()


# --- bad values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SFU_RTC_PORT_MIN": "abc"}, "SFU_RTC_PORT_MIN"),
        ({"SFU_RTC_UDP_PORT": "80"}, "SFU_RTC_UDP_PORT"),
        ({"SFU_RTC_UDP_PORT": "50000-50200"}, "SFU_RTC_UDP_PORT"),
        ({"SFU_RTC_PORT_MAX": "70000"}, "SFU_RTC_PORT_MAX"),
        ({"SFU_RTC_PORT_MIN": "50300"}, "SFU_RTC_PORT_MIN"),
        ({"SFU_RTC_PORT_MIN": "40010", "SFU_RTC_PORT_MAX": "40000"}, "SFU_RTC_PORT_MAX"),
        ({"SFU_PUBLIC_IP": "203.0.113"}, "SFU_PUBLIC_IP"),
        ({"SFU_PUBLIC_IP": "sfu.cotept.com"}, "SFU_PUBLIC_IP"),
        ({"SFU_RTC_ADDRESSES": "127.0.0.1,localhost"}, "SFU_RTC_ADDRESSES"),
        ({"SFU_HTTP_PORT": "0"}, "SFU_HTTP_PORT"),
        ({"SFU_HTTP_PORT": "eighty"}, "SFU_HTTP_PORT"),
        ({"SFU_JWT_SECRET": "short"}, "SFU_JWT_SECRET"),
        ({"SFU_EVENT_LOOP": "trio"}, "SFU_EVENT_LOOP"),
        ({"SFU_LOG_LEVEL": "LOUD"}, "SFU_LOG_LEVEL"),
        ({"SFU_ICE_TIMEOUT_S": "-1"}, "SFU_ICE_TIMEOUT_S"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    message = _error(monkeypatch, **env)
    assert named in message
    assert message.startswith("invalid settings")


def test_min_above_max_says_both() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(rtc_port_min=50100, rtc_port_max=50050)
    assert "SFU_RTC_PORT_MIN (50100)" in str(caught.value)
    assert "SFU_RTC_PORT_MAX (50050)" in str(caught.value)


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


# --- frozen ---------------------------------------------------------------------------------


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.http.port = 1  # type: ignore[misc]
    assert settings.http.port == 8080
    assert isinstance(settings, Settings)
    assert hash(settings) == hash(load_settings(node_id=settings.node_id))


# --- sections -------------------------------------------------------------------------------


def _leaf_fields(value: object) -> list[str]:
    leaves: list[str] = []
    assert dataclasses.is_dataclass(value)
    for item in dataclasses.fields(value):
        inner = getattr(value, item.name)
        if dataclasses.is_dataclass(inner):
            leaves.extend(f"{item.name}.{name}" for name in _leaf_fields(inner))
        else:
            leaves.append(item.name)
    return leaves


def test_every_setting_lands_in_one_section() -> None:
    """Each key of the file (and so each SFU_* variable) is one field of one section: none
    is dropped when the flat settings are grouped."""
    settings = load_settings()
    assert len(_leaf_fields(settings)) == len(FlatSettings.model_fields)
    assert {env_name(key) for key in FlatSettings.model_fields} == ENV_NAMES
    assert "REDIS_URL" in ENV_NAMES and "SFU_RTC_PORT_MIN" in ENV_NAMES


def test_a_section_carries_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFU_WEBHOOK_TIMEOUT_S", "7.5")
    monkeypatch.setenv("SFU_RECORDINGS_DIR", "rec")
    monkeypatch.setenv("SFU_DATA_DIR", "/srv/sfu")
    settings = load_settings()
    assert settings.webhooks.timeout_s == 7.5
    assert settings.recording.root == Path("/srv/sfu/rec")
    assert settings.vod.queue_root == Path("/srv/sfu/vod-queue")


def test_key_paths_name_where_each_key_lands(monkeypatch: pytest.MonkeyPatch) -> None:
    """KEY_PATHS (used to read a setting by its file key) agrees with how the sections are
    built: every key has a path, and the value there is the value loaded for it."""
    monkeypatch.setenv("SFU_STUN_HOST", "stun.example")
    monkeypatch.setenv("SFU_VOD_POLL_S", "2.5")
    flat = load_flat()
    settings = Settings.from_flat(flat)
    assert set(KEY_PATHS) == set(FlatSettings.model_fields)
    resolved = {"recordings_dir", "vod_queue_dir"}
    for key in set(KEY_PATHS) - resolved:
        assert value_at(settings, key) == getattr(flat, key), key
    assert value_at(settings, "stun_host") == "stun.example"
    assert value_at(settings, "vod_poll_s") == 2.5
    assert value_at(settings, "recordings_dir") == flat.data_dir / "recordings"


def test_cluster_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (settings.cluster.heartbeat_s, settings.cluster.node_ttl_s) == (2.0, 10.0)
    assert settings.cluster.node_url is None
    monkeypatch.setenv("SFU_NODE_URL", "http://10.0.0.12:8080")
    assert load_settings().cluster.node_url == "http://10.0.0.12:8080"
    monkeypatch.setenv("SFU_NODE_URL", "10.0.0.12:8080")
    with pytest.raises(SettingsError, match="SFU_NODE_URL"):
        load_settings()
    monkeypatch.delenv("SFU_NODE_URL")
    monkeypatch.setenv("SFU_CLUSTER_NODE_TTL_S", "3")
    with pytest.raises(SettingsError, match="SFU_CLUSTER_NODE_TTL_S"):
        load_settings()
