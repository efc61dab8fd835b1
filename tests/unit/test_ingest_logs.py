"""`sfu lifecycle ingest-logs`: plays from combined, JSON and OCI log lines, plain or gzip."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from sfu.analytics import ingest
from sfu.analytics.logformats import Unparsed, parse_line
from sfu.analytics.store import FilePlayStore, load_cdn_ratio, open_play_store
from sfu.config.settings import Settings, load_settings
from sfu.testing.process import redis_server

T0 = datetime(2026, 11, 3, 10, 0, tzinfo=UTC).timestamp()

COMBINED = [
    # a play, then the same viewer's player re-fetching it 5 minutes later: one play
    '203.0.113.7 - - [03/Nov/2026:10:00:00 +0000] "GET /vod/sessions/s1/master.m3u8 HTTP/1.1" '
    '200 512 "-" "hls.js" HIT',
    '203.0.113.7 - - [03/Nov/2026:10:05:00 +0000] "GET /vod/sessions/s1/master.m3u8?x=1 HTTP/1.1"'
    ' 200 512 "-" "hls.js" "MISS"',
    # segments and media playlists are not plays (their cache status still counts)
    '203.0.113.7 - - [03/Nov/2026:10:00:01 +0000] "GET /vod/sessions/s1/720p/seg_00001.ts '
    'HTTP/1.1" 200 99999 "-" "hls.js" cache=HIT',
    '203.0.113.7 - - [03/Nov/2026:10:00:01 +0000] "GET /vod/sessions/s1/720p/index.m3u8 '
    'HTTP/1.1" 200 900 "-" "hls.js" HIT',
    # the same viewer 40 minutes later: a second play; another viewer: a play; a 404: not
    '203.0.113.7 - - [03/Nov/2026:10:40:00 +0000] "GET /vod/sessions/s1/master.m3u8 HTTP/1.1" '
    '304 0 "-" "hls.js"',
    '198.51.100.2 - - [03/Nov/2026:10:01:00 +0000] "GET /vod/sessions/s2/master.m3u8 HTTP/1.1" '
    "200 512",
    '198.51.100.2 - - [03/Nov/2026:10:02:00 +0000] "GET /vod/sessions/s3/master.m3u8 HTTP/1.1" '
    "404 0",
    '198.51.100.2 - - [03/Nov/2026:10:02:00 +0000] "HEAD /vod/sessions/s2/master.m3u8 HTTP/1.1" '
    "200 0",
    # a line from the far future would poison the session's score: not a play
    '198.51.100.2 - - [03/Nov/2999:10:02:00 +0000] "GET /vod/sessions/s2/master.m3u8 HTTP/1.1" '
    "200 0",
    "garbage line",
    "",
]

JSON_LINES = [
    {
        "time": "2026-11-03T11:00:00Z",
        "uri": "/vod/sessions/s2/master.m3u8",
        "status": 200,
        "cache": "HIT",
        "client_ip": "192.0.2.1",
    },
    {
        "timestamp": T0 * 1000,
        "url": "https://cdn.example/vod/sessions/s2/master.m3u8",
        "status_code": "200",
        "cache_status": "MISS",
    },
    {"time": "2026-11-03T11:00:00Z", "uri": "/vod/sessions/s2/master.m3u8"},
]

OCI = {
    "data": {
        "requestAction": "GET",
        "objectName": "cotept/vod/sessions/s3/master.m3u8",
        "statusCode": 200,
        "clientIpAddress": "192.0.2.9",
        "startTime": "2026-11-03T12:00:00.123Z",
        "bucketName": "media",
    },
    "id": "x",
    "time": "2026-11-03T12:00:00.200Z",
    "type": "com.oraclecloud.objectstorage.getobject",
}


def test_line_shapes() -> None:
    combined = parse_line(COMBINED[0])
    assert (combined.at, combined.session_id, combined.cache, combined.status) == (
        T0,
        "s1",
        "HIT",
        200,
    )
    assert parse_line(COMBINED[2]).session_id is None
    oci = parse_line(json.dumps(OCI))
    assert (oci.session_id, oci.client, oci.method) == ("s3", "192.0.2.9", "GET")
    assert oci.at == datetime(2026, 11, 3, 12, 0, 0, 123000, tzinfo=UTC).timestamp()
    assert parse_line(json.dumps(JSON_LINES[1])).at == T0
    for bad, reason in (("", "empty"), ("nope", "unrecognised"), ("{", "bad json")):
        with pytest.raises(Unparsed, match=reason):
            parse_line(bad)


def write(path: Path, lines: list[str], *, gz: bool) -> Path:
    body = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(body) if gz else body)
    return path


async def test_ingest_counts_plays_and_hit_ratio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    plain = write(tmp_path / "access.log", COMBINED, gz=False)
    # gzip recognised by its bytes, whatever the name
    zipped = write(tmp_path / "cdn.json", [json.dumps(r) for r in JSON_LINES], gz=True)
    oci = write(tmp_path / "oci.log.gz", [json.dumps(OCI)], gz=True)
    tally, recorded = await ingest.ingest([plain, zipped, oci], settings)
    # s1: 10:00 and 10:40; s2: a combined play + two JSON plays; s3: the OCI GET (the 404 is not)
    assert recorded == 6
    assert tally.lines == len(COMBINED) + len(JSON_LINES) + 1
    assert tally.skipped["repeat within 30 min"] == 1
    assert tally.skipped["not a master playlist"] == 2
    assert tally.skipped["not successful"] == 1
    assert tally.skipped["not a GET"] == 1
    assert tally.skipped["in the future"] == 1
    assert tally.skipped["unrecognised"] == 1
    assert tally.skipped["empty"] == 1
    assert tally.skipped["missing field"] == 1
    # cache statuses: HIT MISS HIT HIT (combined), HIT MISS (JSON)
    assert (tally.cache_hits, tally.cache_lines) == (4, 6)
    assert await load_cdn_ratio(settings) == pytest.approx(4 / 6)
    store = FilePlayStore(tmp_path / "data" / "analytics")
    counts = {s: (await store.summary(s, T0)).plays for s in ("s1", "s2", "s3")}
    assert counts == {"s1": 2, "s2": 3, "s3": 1}
    print(ingest.report(tally, recorded))
    out = capsys.readouterr().out
    assert "plays recorded: 6" in out
    assert "CDN hit ratio: 0.667 (4/6)" in out


def test_main_reports_and_fails_on_unreadable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    plain = write(tmp_path / "a.log", COMBINED[:1], gz=False)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(b"x" * 1000)[:20])
    args = argparse.Namespace(files=[plain, cut, tmp_path / "missing.log"])
    assert ingest.main(args, settings) == 1
    captured = capsys.readouterr()
    assert "plays recorded: 1" in captured.out
    assert "missing.log" in captured.err and "cut.gz" in captured.err
    assert ingest.main(argparse.Namespace(files=[plain]), settings) == 0


def _play(minute: int, session: str = "s1", client: str = "203.0.113.7") -> str:
    return (
        f'{client} - - [03/Nov/2026:10:{minute:02d}:00 +0000] "GET /vod/sessions/{session}/'
        'master.m3u8 HTTP/1.1" 200 512'
    )


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as port:
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture(params=["file", "redis"])
def ledger_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "file":
        return load_settings(data_dir=tmp_path / "data")
    url = request.getfixturevalue("redis_url")
    redis.Redis.from_url(url).flushdb()
    return load_settings(data_dir=tmp_path / "data", redis_url=url)


async def _plays(settings: Settings, session: str = "s1") -> int:
    store = open_play_store(settings)
    try:
        return (await store.summary(session, T0)).plays
    finally:
        await store.close()


async def test_a_log_ingested_again_counts_only_its_new_lines(
    ledger_settings: Settings, tmp_path: Path
) -> None:
    # Distinct clients: every line is a play, so any double count shows in the total.
    lines = [_play(0, client=f"192.0.2.{n}") for n in range(1, 6)]
    log = write(tmp_path / "access.log", ["#Version: 1.0", *lines[:3]], gz=False)
    assert (await ingest.ingest([log], ledger_settings))[1] == 3
    tally, recorded = await ingest.ingest([log], ledger_settings)  # tomorrow's CronJob
    assert (recorded, tally.already, tally.lines) == (0, 4, 0)
    write(log, ["#Version: 1.0", *lines], gz=False)  # the CDN appended two lines
    assert (await ingest.ingest([log], ledger_settings))[1] == 2
    # rotated and gzipped under another name, passed twice in one run: nothing new
    rotated = write(tmp_path / "access.log.1.gz", ["#Version: 1.0", *lines], gz=True)
    tally, recorded = await ingest.ingest([rotated, rotated], ledger_settings)
    assert (recorded, tally.already) == (0, 12)
    assert await _plays(ledger_settings) == 5
    # another log (its first record differs) is counted in full
    other_lines = [_play(50, "s2"), _play(51, "s2", "192.0.2.99")]
    other = write(tmp_path / "other.log", other_lines, gz=False)
    assert (await ingest.ingest([other, log], ledger_settings))[1] == 2
    # --again counts what it is given from the top, and the ledger then knows it whole
    assert (await ingest.ingest([log], ledger_settings, again=True))[1] == 5
    assert await _plays(ledger_settings) == 10
    assert (await ingest.ingest([log], ledger_settings))[1] == 0


async def test_the_cut_end_of_a_gzip_is_held_back(
    ledger_settings: Settings, tmp_path: Path
) -> None:
    lines = [_play(0, client=f"198.51.100.{n}") for n in range(1, 41)]
    whole = gzip.compress(("\n".join(lines) + "\n").encode())
    cut = tmp_path / "live.log.gz"
    cut.write_bytes(whole[: len(whole) * 2 // 3])  # still being written
    tally, recorded = await ingest.ingest([cut], ledger_settings)
    assert tally.unreadable and 0 < recorded < 40
    cut.write_bytes(whole)  # finished: the rest, and the held-back line, exactly once
    tally, recorded_later = await ingest.ingest([cut], ledger_settings)
    assert not tally.unreadable and recorded + recorded_later == 40
    assert await _plays(ledger_settings) == 40


def test_a_damaged_ledger_file_is_an_error_and_records_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    log = write(tmp_path / "a.log", [_play(0)], gz=False)
    ledger = tmp_path / "data" / "analytics" / "ingested.json"
    ledger.parent.mkdir(parents=True)
    ledger.write_text("{cut", encoding="utf-8")
    assert ingest.main(argparse.Namespace(files=[log]), settings) == 1
    assert "ingested.json is not a JSON ledger" in capsys.readouterr().err
    assert asyncio.run(_plays(settings)) == 0
