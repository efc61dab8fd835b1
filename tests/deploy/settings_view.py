"""The settings the deployment files are checked against."""

from __future__ import annotations

from sfu.settings import Settings


def _env_name(field_name: str) -> str:
    return "REDIS_URL" if field_name == "redis_url" else f"SFU_{field_name.upper()}"


SETTING_ENV_NAMES = frozenset(_env_name(name) for name in Settings.model_fields)
"""SFU_<FIELD> for every field, REDIS_URL for redis_url."""
CONFIG_FILE_ENV = "SFU_CONFIG_FILE"
"""Not a field: sfu/settings.py reads it to find the settings file."""
