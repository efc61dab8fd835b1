"""The settings the deployment files are checked against, seen through their env names.

The Dockerfile, the ConfigMaps and the pods' env name settings by environment variable
(`SFU_HTTP_PORT`, `REDIS_URL`), so the tests do too, and this module maps such a name to the
settings: their defaults and the value a loaded `Settings` holds (`sfu.config.settings`'s
`KEY_PATHS` says where each key lands in its sections). It is the only module of tests/deploy/
that knows how the settings are laid out: when that changes, this file changes and the tests do
not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sfu.config.loading import ENV_NAMES, FlatSettings, env_name
from sfu.config.settings import Settings, SettingsError, load_settings, value_at
from sfu.config.settings import default_of as default_of_key
from sfu.ice.stun_server import ice_servers as stun_ice_servers

__all__ = [
    "CONFIG_FILE_ENV",
    "Settings",
    "SettingsError",
    "all_values",
    "default_of",
    "defaults",
    "env_names",
    "get",
    "ice_servers",
    "load",
    "load_source",
    "reads_env",
    "recordings_root",
    "settings_file_text",
]

CONFIG_FILE_ENV = "SFU_CONFIG_FILE"
"""Not a field: sfu/config/settings.py reads it to find the settings file."""


_FIELDS = {env_name(name): name for name in FlatSettings.model_fields}
"""SFU_<FIELD> for every field, REDIS_URL for redis_url → the field's name."""


def _field(env_name: str) -> str:
    assert env_name in _FIELDS, f"{env_name} sets no setting"
    return _FIELDS[env_name]


def env_names() -> frozenset[str]:
    """The environment variables that set a setting, one per setting."""
    assert frozenset(_FIELDS) == ENV_NAMES
    return ENV_NAMES


def reads_env(name: str) -> bool:
    """Whether loading the settings may read this environment variable."""
    return name.startswith("SFU_") or name in _FIELDS


def defaults() -> Settings:
    """The settings as loaded with nothing set (the caller clears the environment and leaves
    no settings file in the working directory)."""
    return load_settings()


def default_of(env_name: str) -> Any:
    """The model's default for the setting this variable sets, whatever the environment."""
    return default_of_key(_field(env_name))


def load() -> Settings:
    """The settings as the SFU loads them from the current environment and settings file."""
    return load_settings()


def get(settings: Settings, env_name: str) -> Any:
    """The value `settings` holds for the setting this variable sets."""
    return value_at(settings, _field(env_name))


def all_values(settings: Settings) -> dict[str, Any]:
    """Every setting's value in `settings`, by environment variable."""
    return {name: get(settings, name) for name in env_names()}


def ice_servers(settings: Settings) -> list[dict[str, list[str]]]:
    """What `joined.ice_servers` tells browsers on a node with these settings."""
    return stun_ice_servers(settings.stun)


def recordings_root(settings: Settings) -> Path:
    """The folder recordings are written to (SFU_RECORDINGS_DIR resolved against
    SFU_DATA_DIR)."""
    return settings.recording.root


def settings_file_text(values: dict[str, str]) -> str:
    """A settings file (TOML) that sets these settings, named by env name."""
    return "".join(f"{_field(name)} = {json.dumps(value)}\n" for name, value in values.items())


def load_source(target: str) -> str:
    """Python source that, run in a fresh interpreter, loads the settings from its environment
    into the variable `target`."""
    return f"from sfu.config.settings import load_settings\n{target} = load_settings()\n"
