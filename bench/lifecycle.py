"""`sfu lifecycle run` and `report` over a synthetic catalogue: sessions/s, objects/s, peak RSS.

Run:
    python -m bench.lifecycle --sessions 10000 --moto-sessions 1000 \
        --json bench/results/lifecycle.json

The catalogue: `--sessions` published sessions under `vod/sessions/`, each of `--objects`
objects of 1 KiB (master.m3u8, metadata.json with `ended_at`, an index playlist and
segments), all in Standard. On the local back-end one session is written through LocalStore
and copied to the others (the same files and sidecars the store writes, without 200,000
fsyncs at build time); on moto's standalone S3 server (the one the tests use, over HTTP on
loopback) every object is put.

Each step is the real command in a child process (`python -m sfu lifecycle ...`, settings
from `SFU_*` as the CronJob has them), so its wall time and its peak RSS (`wait4`'s
ru_maxrss) are its own:

1. `report --json` over the catalogue;
2. `run --now <published + 31 days>`: every object moves Standard -> InfrequentAccess (one
   tier change, so one sidecar write or one S3 copy, per object, audited);
3. `run` again at the same date: nothing to do, the cost of going through the catalogue;
4. `report --json` once more, checking that every object is now InfrequentAccess.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sfu.storage import LocalStore
from sfu.storage.local import META_DIR
from sfu.testing.moto import moto_server

OBJECT_BYTES = 1024
PUBLISHED = datetime(2026, 1, 1, 12, tzinfo=UTC)
BUCKET = "bench"
SEED = "s-0000000"


def _objects(session_id: str, objects: int) -> list[tuple[str, bytes, str]]:
    """A published session's keys, bodies and content types."""
    meta = {
        "session_id": session_id,
        "ended_at": PUBLISHED.isoformat(),
        "participants": [
            {"user_id": "mentor-1", "role": "mentor"},
            {"user_id": f"mentee-{session_id}", "role": "mentee"},
        ],
    }
    prefix = f"vod/sessions/{session_id}/"
    found = [
        (prefix + "master.m3u8", b"#EXTM3U\n720p/index.m3u8\n", "application/vnd.apple.mpegurl"),
        (prefix + "metadata.json", json.dumps(meta).encode(), "application/json"),
        (prefix + "720p/index.m3u8", b"#EXTM3U\n", "application/vnd.apple.mpegurl"),
    ]
    body = b"x" * OBJECT_BYTES
    found += [(prefix + f"720p/{i:05d}.ts", body, "video/mp2t") for i in range(objects - 3)]
    return found


async def _seed_local(root: Path, objects: int) -> None:
    store = LocalStore(root)
    for key, body, content_type in _objects(SEED, objects):
        await store.put(key, body, content_type=content_type)
    await store.close()


def build_local(root: Path, sessions: int, objects: int) -> None:
    asyncio.run(_seed_local(root, objects))
    for base in (root / "vod" / "sessions", root / META_DIR / "vod" / "sessions"):
        for n in range(1, sessions):
            shutil.copytree(base / SEED, base / f"s-{n:07d}")


def build_moto(endpoint: str, sessions: int, objects: int) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)

    def put_session(n: int) -> None:
        for key, body, content_type in _objects(f"s-{n:07d}", objects):
            client.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType=content_type)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put_session, range(sessions)))


def step(env: dict[str, str], *argv: str) -> tuple[float, float, str]:
    """One `sfu lifecycle` command in a child process: wall seconds, peak RSS MiB, stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", "sfu", "lifecycle", *argv], stdout=out, stderr=err, env=env
        )
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            tail = err.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"sfu lifecycle {' '.join(argv)}: exit {child.returncode}: {tail}")
        return wall, usage.ru_maxrss / 1024, out.read().decode()


def measure(label: str, env: dict[str, str], sessions: int, objects: int) -> list[dict[str, Any]]:
    total = sessions * objects
    moved_at = (PUBLISHED + timedelta(days=31)).isoformat()
    rows: list[dict[str, Any]] = []

    def row(name: str, wall: float, rss: float, **checked: Any) -> None:
        rows.append(
            {
                "backend": label,
                "step": name,
                "sessions": sessions,
                "objects": total,
                "wall_s": round(wall, 2),
                "sessions_per_s": round(sessions / wall),
                "objects_per_s": round(total / wall),
                "peak_rss_mib": round(rss, 1),
                **checked,
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)

    wall, rss, out = step(env, "report", "--json")
    report = json.loads(out)
    assert report["sessions"] == sessions and report["total"]["objects"] == total, report
    row("report", wall, rss)
    for name in ("run (moves every object)", "run again (nothing to do)"):
        wall, rss, out = step(env, "run", "--json", "--no-progress", "--now", moved_at)
        summary = json.loads(out)
        assert summary["sessions"] == sessions and not summary["errors"], summary
        row(name, wall, rss, changed=summary["changed"], skipped=summary["skipped"])
    assert rows[1]["changed"] == total and rows[2]["changed"] == 0, rows
    wall, rss, out = step(env, "report", "--json")
    tiers = json.loads(out)["tiers"]
    moved = next(t for t in tiers if t["tier"] == "InfrequentAccess")["objects"]
    assert moved == total, tiers
    row("report after the run", wall, rss)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--objects", type=int, default=20, help="objects per session (>= 4)")
    parser.add_argument("--moto-sessions", type=int, default=1_000, help="0: skip moto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.objects < 4:
        parser.error("--objects must be at least 4")
    rows: list[dict[str, Any]] = []
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SFU_", "REDIS_URL"))}
    with tempfile.TemporaryDirectory(prefix="bench-lifecycle-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        build_local(work / "objects", args.sessions, args.objects)
        print(f"local catalogue built in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        env = {
            **base,
            "SFU_DATA_DIR": str(work / "data"),
            "SFU_STORAGE_URL": (work / "objects").resolve().as_uri(),
        }
        rows += measure("local", env, args.sessions, args.objects)
        if args.moto_sessions:
            with moto_server() as endpoint:
                start = time.perf_counter()
                build_moto(endpoint, args.moto_sessions, args.objects)
                print(f"moto catalogue put in {time.perf_counter() - start:.1f} s", file=sys.stderr)
                env = {
                    **base,
                    "SFU_DATA_DIR": str(work / "moto-data"),
                    "SFU_STORAGE_URL": f"s3://{BUCKET}",
                    "SFU_S3_ENDPOINT": endpoint,
                    "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1",
                }
                rows += measure("moto server", env, args.moto_sessions, args.objects)
    result = {
        "command": " ".join(["python -m bench.lifecycle", *sys.argv[1:]]),
        "object_bytes": OBJECT_BYTES,
        "objects_per_session": args.objects,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rows": rows,
    }
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
