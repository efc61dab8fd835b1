"""`sfu loadtest` options: every bad value is a clear message and exit status 2."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import pytest

from sfu.cli import main
from sfu.loadtest.options import (
    LoadtestOptions,
    OptionsError,
    add_arguments,
    options_from_args,
)


def parse(*argv: str, environ: dict[str, str] | None = None) -> LoadtestOptions:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return options_from_args(parser.parse_args(list(argv)), environ or {})


def test_defaults_and_derived_urls() -> None:
    options = parse("--secret", "s" * 32)
    assert (options.rooms, options.observers, options.codec, options.video_kbps) == (
        1,
        0,
        "vp8",
        1000,
    )
    assert options.audio and options.decode == "one" and options.creates_rooms
    assert options.publisher == "direct"
    assert parse("--secret", "s" * 32, "--publisher", "stock").publisher == "stock"
    assert options.ws_url == "ws://127.0.0.1:8080/ws"
    assert options.ice_addresses == ("127.0.0.1",)  # loopback URL: gather on loopback only
    remote = parse("--url", "https://sfu.example.org/", "--secret", "x" * 32)
    assert remote.url == "https://sfu.example.org"
    assert remote.ws_url == "wss://sfu.example.org/ws"
    assert remote.ice_addresses == ()


def test_secret_from_environment() -> None:
    assert parse(environ={"SFU_JWT_SECRET": "from-env"}).secret == "from-env"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "--secret (or SFU_JWT_SECRET) or --tokens is required"),
        (("--rooms", "0"), "--rooms must be at least 1"),
        (("--duration", "0"), "--duration must be above 0"),
        (("--duration", "5", "--ramp", "5"), "--ramp must be at least 0 and below --duration"),
        (("--ramp", "-1"), "--ramp must be at least 0"),
        (("--observers", "15"), "--observers must be 0..14"),
        (("--codec", "av1"), "--codec must be one of vp8, h264"),
        (("--video-kbps", "10"), "--video-kbps must be 50..20000"),
        (("--decode", "all"), "--decode must be one of none, one, per-room"),
        (("--publisher", "fast"), "--publisher must be one of direct, stock"),
        (("--url", "ftp://x"), "--url must be an http(s) URL"),
        (("--url", "http://x/?a=1"), "--url must not have a query"),
        (("--ice-address", "nope"), "--ice-address: 'nope' is not an IP address"),
        (("--chart", "out.svg"), "--chart must name a .png file"),
        (("--connect-timeout", "0"), "--connect-timeout must be above 0"),
        (("--churn", "0.5"), "--churn must be 1..--duration (30) seconds"),
        (("--churn", "40"), "--churn must be 1..--duration (30) seconds"),
        (("--churn-record-every", "2"), "--churn-record-every takes N >= 0, with --churn"),
        (("--churn", "5", "--churn-record-every", "-1"), "--churn-record-every takes N >= 0"),
    ],
)
def test_bad_options(argv: tuple[str, ...], message: str) -> None:
    secret = () if not argv else ("--secret", "s" * 32)
    with pytest.raises(OptionsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(*secret, *argv)


def test_cli_exits_2_with_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["loadtest", "--secret", "s" * 32, "--rooms", "0"])
    assert status == 2
    assert "sfu loadtest: --rooms must be at least 1, got 0" in capsys.readouterr().err


def test_cli_type_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["loadtest", "--rooms", "two"])
    assert exited.value.code == 2
    assert "--rooms: invalid int value: 'two'" in capsys.readouterr().err


def _tokens_file(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(data))
    return path


def test_tokens_file(tmp_path: Path) -> None:
    rooms = [
        {"room_id": "r1", "mentor": "a", "mentee": "b", "observers": ["c"]},
        {"room_id": "r2", "mentor": "d", "mentee": "e", "observers": ["f"]},
    ]
    path = _tokens_file(tmp_path, {"rooms": rooms})
    options = parse("--tokens", str(path), "--observers", "1")
    assert options.secret is None and not options.creates_rooms
    assert [r.room_id for r in options.room_tokens] == ["r1"]  # --rooms 1 takes the first
    assert options.room_tokens[0].observers == ("c",)
    with pytest.raises(OptionsError, match="fewer than 2 observers"):
        parse("--tokens", str(path), "--observers", "2")
    with pytest.raises(OptionsError, match="has 2 rooms, fewer than --rooms 3"):
        parse("--tokens", str(path), "--rooms", "3")
    with pytest.raises(OptionsError, match="not both"):
        parse("--tokens", str(path), "--secret", "s" * 32)
    with pytest.raises(OptionsError, match="--record only applies"):
        parse("--tokens", str(path), "--record")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rooms": []}, 'needs a non-empty "rooms" list'),
        ([1, 2], 'needs a non-empty "rooms" list'),
        ({"rooms": [{"room_id": "r", "mentor": "a"}]}, r"rooms\[0\] lacks \['mentee'\]"),
        ({"rooms": [{"room_id": "r", "mentor": "a", "mentee": "b", "observers": [1]}]}, "token"),
        ({"rooms": [{"room_id": "r r", "mentor": "a", "mentee": "b"}]}, "bad room_id"),
    ],
)
def test_bad_tokens_files(tmp_path: Path, data: object, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        parse("--tokens", str(_tokens_file(tmp_path, data)))


def test_unreadable_tokens_file(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="cannot read"):
        parse("--tokens", str(tmp_path / "missing.json"))
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(OptionsError, match="is not JSON"):
        parse("--tokens", str(broken))


def test_chart_without_matplotlib_is_refused_before_the_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    status = main(["loadtest", "--secret", "s" * 32, "--chart", "out.png"])
    assert status == 2
    assert "--chart needs matplotlib" in capsys.readouterr().err


def test_the_tool_imports_without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for name in [m for m in sys.modules if m.startswith("sfu.loadtest")]:
        monkeypatch.delitem(sys.modules, name)
    runner = importlib.import_module("sfu.loadtest.runner")
    assert runner.main is not None
