"""`sfu loadtest` as a subprocess against a real SFU process: its JSON result, its chart, and
that it leaves no room behind; refused joins are counted by close code, not fatal."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from sfu.api.tokens import mint_participant_token
from sfu.testing.process import TEST_SECRET, SfuProcess, make_sfu
from tests.support.rooms import create_room

RUN_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def loadtest_sfu() -> Iterator[SfuProcess]:
    server = make_sfu(47700, 47760, name="sfu-loadtest", SFU_LOG_LEVEL="WARNING")
    server.start()
    yield server
    server.stop()


def run_loadtest(sfu: SfuProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sfu", "loadtest", "--url", sfu.url, *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


async def rooms_on(sfu: SfuProcess) -> list[str]:
    async with aiohttp.ClientSession() as http:
        response = await http.get(sfu.url + "/rooms", headers=sfu.service_headers())
        assert response.status == 200
        body: dict[str, Any] = await response.json()
    return [room["room_id"] for room in body["rooms"]]


def numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


async def test_two_rooms_json_chart_and_cleanup(loadtest_sfu: SfuProcess, tmp_path: Path) -> None:
    out, chart = tmp_path / "out.json", tmp_path / "out.png"
    done = run_loadtest(
        loadtest_sfu,
        "--secret",
        TEST_SECRET,
        "--rooms",
        "2",
        "--duration",
        "6",
        "--ramp",
        "1",
        "--json",
        str(out),
        "--chart",
        str(chart),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "joins" in done.stdout and "video fps min/mean" in done.stdout  # the table
    assert "loadtest:" in done.stderr  # progress lines (stderr is not a terminal here)
    result = json.loads(out.read_text())
    assert result["schema"] == "sfu-loadtest/1"
    assert result["options"]["publisher"] == "direct"  # the default
    assert "direct publisher" in done.stdout

    assert result["rooms"]["requested"] == 2 and result["rooms"]["created"] == 2
    assert result["rooms"]["max_live"] == 2
    joins = result["joins"]
    assert (joins["attempted"], joins["succeeded"], joins["failed"]) == (4, 4, 0)
    assert joins["failed_by_code"] == {}
    assert joins["join_s"]["n"] == 4 and 0 < joins["join_s"]["p50"] <= joins["join_s"]["p99"]
    assert joins["publish_s"]["n"] == 4

    subs = result["subscriptions"]
    # mentor <-> mentee in each room, video + audio each way
    assert len(subs) == 8
    assert {(s["kind"], s["receiver_role"], s["publisher_role"]) for s in subs} == {
        (kind, a, b)
        for kind in ("video", "audio")
        for a, b in (("mentor", "mentee"), ("mentee", "mentor"))
    }
    for sub in subs:
        assert sub["frames"] > 0 and sub["packets"] > 0 and sub["bytes"] > 0, sub
        assert sub["fps"] is not None and sub["fps"] > 20, sub
        assert sub["window_s"] > 0, sub
        for name, value in sub["loss"].items():
            assert numeric(value), (name, value)
        assert sub["loss"]["packets_expected"] > 0
    video = [s for s in subs if s["kind"] == "video"]
    assert all(s["kbps"] > 500 for s in video), video  # ~1 Mbit/s clip by default
    decoded = [s for s in video if s["decoded"]]
    assert len(decoded) == 1 and (decoded[0]["width"], decoded[0]["height"]) == (640, 480)
    assert result["first_frame_s"]["n"] == 4

    loss = result["loss"]
    for name in (
        "packets_expected",
        "packets_received",
        "lost_before_retransmission",
        "retransmissions_received",
        "nack_packets_sent",
        "nacked_sequence_numbers",
        "loss_ratio_before_retransmission",
        "sfu_nacked_sequence_numbers_from_subscribers",
        "sfu_nack_packets_sent_to_publishers",
    ):
        assert numeric(loss[name]), (name, loss[name])
    assert loss["packets_expected"] == sum(s["loss"]["packets_expected"] for s in subs)

    sfu = result["sfu"]
    assert sfu["samples"] >= 3 and sfu["scrape_errors"] == 0
    assert sfu["cpu_cores_steady_mean"] > 0 and sfu["rss_mib_max"] > 10
    assert sfu["counter_changes"]["sfu_rtp_packets_out_total"] > 0
    client = result["client"]
    assert client["cpu_cores_steady_mean"] > 0 and client["cpu_seconds_total"] > 0
    assert client["forwarded_streams"] == 4
    assert numeric(client["cpu_s_per_s_per_stream"])
    assert isinstance(client["cheaper_per_stream_than_sfu"], bool)
    timeline = result["timeline"]
    assert any(p["sfu_cpu_cores"] is not None and p["rooms_live"] == 2 for p in timeline)
    assert any(p["video_fps_mean"] is not None for p in timeline)

    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(chart) as image:
        image.verify()
    with Image.open(chart) as image:
        assert image.size[0] >= 400 and image.size[1] >= 300

    assert result["rooms"]["left_behind"] == [] and result["rooms"]["deleted"] == 2
    remaining = await rooms_on(loadtest_sfu)
    assert not set(result["rooms"]["ids"]) & set(remaining), remaining


async def test_stock_publisher_still_works(loadtest_sfu: SfuProcess, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    done = run_loadtest(
        loadtest_sfu,
        "--secret",
        TEST_SECRET,
        "--publisher",
        "stock",
        "--duration",
        "4",
        "--no-progress",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stock publisher" in done.stdout
    result = json.loads(out.read_text())
    assert result["options"]["publisher"] == "stock"
    assert len(result["subscriptions"]) == 4
    assert all(s["fps"] is not None and s["fps"] > 20 for s in result["subscriptions"])
    assert result["video"]["decoded_subscriptions"] == 1
    assert result["rooms"]["left_behind"] == []


async def test_refused_joins_counted_by_close_code(
    loadtest_sfu: SfuProcess, tmp_path: Path
) -> None:
    """Tokens from "the backend" for existing rooms: a token signed with another secret is
    refused with 4401, counted, and the run goes on; the tool leaves those rooms alone."""
    good = await create_room(loadtest_sfu, record=False)
    bad = await create_room(loadtest_sfu, record=False)
    good_id, bad_id = str(good["room_id"]), str(bad["room_id"])
    tokens = {
        "rooms": [
            {
                "room_id": good_id,
                "mentor": loadtest_sfu.token(good_id, "m1", "mentor"),
                "mentee": loadtest_sfu.token(good_id, "e1", "mentee"),
            },
            {
                "room_id": bad_id,
                "mentor": loadtest_sfu.token(bad_id, "m2", "mentor"),
                "mentee": mint_participant_token(
                    "not-the-secret-but-as-long-as-one-0123",
                    room_id=bad_id,
                    user_id="e2",
                    role="mentee",
                ),
            },
        ]
    }
    tokens_path, out = tmp_path / "tokens.json", tmp_path / "out.json"
    tokens_path.write_text(json.dumps(tokens))
    done = run_loadtest(
        loadtest_sfu,
        "--tokens",
        str(tokens_path),
        "--rooms",
        "2",
        "--duration",
        "4",
        "--decode",
        "none",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    joins = result["joins"]
    assert (joins["attempted"], joins["succeeded"], joins["failed"]) == (4, 3, 1)
    assert joins["failed_by_code"] == {"4401": 1}
    refused = [j for j in joins["records"] if not j["ok"]]
    assert [(j["room_id"], j["role"]) for j in refused] == [(bad_id, "mentee")]
    assert result["rooms"]["created"] == 0 and result["rooms"]["max_live"] == 1
    flowing = [s for s in result["subscriptions"] if s["room_id"] == good_id]
    assert len(flowing) == 4 and all(s["fps"] and s["fps"] > 20 for s in flowing)
    assert {good_id, bad_id} <= set(await rooms_on(loadtest_sfu))  # not the tool's to delete


async def test_rate_limited_joins_reported_as_4429(tmp_path: Path) -> None:
    server = make_sfu(47770, 47790, name="sfu-loadtest-limited", SFU_WS_PER_IP="3")
    server.start()
    try:
        out = tmp_path / "out.json"
        done = run_loadtest(
            server,
            "--secret",
            TEST_SECRET,
            "--rooms",
            "2",
            "--duration",
            "3",
            "--decode",
            "none",
            "--no-progress",
            "--json",
            str(out),
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "SFU_WS_PER_IP" in done.stdout  # the table names the setting to raise
        result = json.loads(out.read_text())
        assert result["joins"]["succeeded"] == 3
        assert result["joins"]["failed_by_code"] == {"4429": 1}
        assert result["rooms"]["left_behind"] == []
        assert await rooms_on(server) == []
    finally:
        server.stop()


async def test_churn_turns_rooms_over_and_leaves_nothing(
    loadtest_sfu: SfuProcess, tmp_path: Path
) -> None:
    """Two slots of rooms living 3 s each over 11 s: each slot turns over at least twice,
    every room's subscriptions flowed while it lived, the first and every second room of a
    slot was recorded, and no room is left behind."""
    out = tmp_path / "churn.json"
    done = run_loadtest(
        loadtest_sfu,
        "--secret",
        TEST_SECRET,
        "--rooms",
        "2",
        "--duration",
        "11",
        "--churn",
        "3",
        "--churn-record-every",
        "2",
        "--no-progress",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rooms turned over" in done.stdout
    result = json.loads(out.read_text())
    churn = result["churn"]
    assert churn["room_lifetime_s"] == 3 and churn["rooms_turned_over"] >= 4
    created = result["rooms"]["created"]
    assert churn["rooms_turned_over"] < created <= churn["rooms_turned_over"] + 2
    assert result["joins"]["failed_by_code"] == {}
    video = [s for s in result["subscriptions"] if s["kind"] == "video"]
    rooms_seen = {s["room_id"] for s in video}
    assert len(rooms_seen) >= churn["rooms_turned_over"]
    assert all(s["frames"] > 0 for s in video), [s["frames"] for s in video]
    assert 0 < churn["rooms_recorded"] < created
    assert result["rooms"]["left_behind"] == []
    assert not [r for r in await rooms_on(loadtest_sfu) if r.startswith("lt-")]
