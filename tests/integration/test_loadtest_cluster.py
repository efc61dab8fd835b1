"""`sfu loadtest` aimed at one node of a two-node cluster (a real `redis-server`, two real
`sfu serve` processes): placement spreads its rooms over both nodes, the participants of the
rooms on the other node are relayed, and the report says how many rooms each node held."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sfu.testing.process import TEST_SECRET, RedisProcess, SfuProcess
from tests.support.cluster import HEARTBEAT_S, call, make_node, node_ids, until

RUN_TIMEOUT_S = 90


@pytest.fixture
def cluster() -> Iterator[list[SfuProcess]]:
    redis = RedisProcess()
    redis.start()
    nodes = [make_node(redis, f"lt-node-{name}", SFU_LOG_LEVEL="WARNING") for name in "ab"]
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        redis.stop()


async def test_rooms_per_node_in_the_report(cluster: list[SfuProcess], tmp_path: Path) -> None:
    entry = cluster[0]

    async def both_registered() -> bool:
        return len(await node_ids(entry)) == 2

    await until(both_registered, 10, "two nodes registered")
    await asyncio.sleep(3 * HEARTBEAT_S)  # heartbeats past start-up, whose CPU weighs placement
    out = tmp_path / "out.json"
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "sfu",
            "loadtest",
            "--url",
            entry.url,
            "--secret",
            TEST_SECRET,
            "--rooms",
            "4",
            "--ramp",
            "2",
            "--duration",
            "7",
            "--decode",
            "none",
            "--no-progress",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    per_node = result["rooms_per_node"]
    assert set(per_node) == {"lt-node-a", "lt-node-b"}, per_node
    assert sum(per_node.values()) == 4
    assert sorted(result["rooms"]["node_of"]) == sorted(result["rooms"]["ids"])
    assert "rooms per node" in done.stdout and "lt-node-b" in done.stdout
    # the rooms on lt-node-b were joined through lt-node-a (relayed), and media flowed in all
    joins = result["joins"]
    assert (joins["succeeded"], joins["failed"]) == (8, 0), joins["failed_by_code"]
    video = [s for s in result["subscriptions"] if s["kind"] == "video"]
    assert len(video) == 8 and all(s["fps"] and s["fps"] > 20 for s in video), video
    assert result["rooms"]["left_behind"] == [] and result["rooms"]["deleted"] == 4
    status, listed = await call(cluster[1], "GET", "/rooms")
    assert status == 200 and listed["rooms"] == []
