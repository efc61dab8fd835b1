"""SFU_VOD_LADDER: parsed into renditions, or refused at start with what is wrong."""

from __future__ import annotations

import pytest

from sfu.config.ladder import DEFAULT_LADDER, DEFAULT_LADDER_TEXT, parse_ladder
from sfu.config.settings import SettingsError, default_of, load_settings


def test_default_text_is_the_default_ladder() -> None:
    assert parse_ladder(DEFAULT_LADDER_TEXT) == DEFAULT_LADDER
    assert default_of("vod_ladder") == DEFAULT_LADDER_TEXT


def test_rungs_are_named_by_height_largest_first_with_a_fitting_level() -> None:
    ladder = parse_ladder(" 640x360@800k , 1920x1080@5000k,1280x720@2500k")
    assert [r.name for r in ladder] == ["1080p", "720p", "360p"]
    assert [r.level for r in ladder] == ["4.0", "3.1", "3.0"]
    assert ladder[0].video_bitrate == 5_000_000


@pytest.mark.parametrize(
    "text",
    [
        "",
        "720p",
        "1280x720",
        "1280x720@2500",
        "1281x720@2500k",
        "1280x720@50k",
        "1280x720@2500k,1280x720@1000k",
        "10x10@200k",
    ],
)
def test_bad_ladders_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ladder(text)


def test_a_bad_ladder_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.chdir(str(tmp_path))
    monkeypatch.setenv("SFU_VOD_LADDER", "1280x720@2500k,oops")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "SFU_VOD_LADDER" in str(refused.value)
