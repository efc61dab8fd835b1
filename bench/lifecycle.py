"""`sfu lifecycle report` over a synthetic catalogue: sessions/s, objects/s and peak memory.

Run:
    python -m bench.lifecycle --sessions 10000 --moto-sessions 1000 \
        --json bench/results/lifecycle.json

The catalogue: `--sessions` sessions under `vod/sessions/`, `--objects` objects of 1 KiB each
(tiers spread over Standard, InfrequentAccess and Archive). On the local back-end one session
is written through LocalStore and copied to the others (the same files and sidecars the store
writes, without 200,000 fsyncs); on moto (in-process, mock_aws) every object is put. The report
is run as `sfu lifecycle report --json` runs it (`sfu.lifecycle.report.main`), timed without
tracing, then once more under tracemalloc for the peak of Python allocations; ru_maxrss is the
process's peak RSS so far. `sfu lifecycle run` is timed too when its module exists.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import io
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sfu.config.settings import Settings, load_settings
from sfu.lifecycle import report as lifecycle_report
from sfu.storage import LocalStore
from sfu.storage.base import Tier
from sfu.storage.local import META_DIR

OBJECT_BYTES = 1024
TIERS = (Tier.STANDARD, Tier.INFREQUENT_ACCESS, Tier.ARCHIVE)


def _names(objects: int) -> list[str]:
    return ["index.m3u8"] + [f"720p/seg-{i:05d}.ts" for i in range(objects - 1)]


async def _seed_local(root: Path, objects: int) -> None:
    store = LocalStore(root)
    for i, name in enumerate(_names(objects)):
        await store.put(
            f"vod/sessions/s-0000000/{name}",
            b"x" * OBJECT_BYTES,
            content_type="video/mp2t",
            tier=TIERS[i % 3],
        )
    await store.close()


def build_local(root: Path, sessions: int, objects: int) -> None:
    asyncio.run(_seed_local(root, objects))
    for base in (root / "vod" / "sessions", root / META_DIR / "vod" / "sessions"):
        seed = base / "s-0000000"
        for n in range(1, sessions):
            shutil.copytree(seed, base / f"s-{n:07d}")


def _args() -> argparse.Namespace:
    return argparse.Namespace(
        command="lifecycle", lifecycle_command="report", json=True, png=None, now=None
    )


def _time_report(settings: Settings) -> tuple[float, dict[str, Any]]:
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = lifecycle_report.main(_args(), settings)
    wall = time.perf_counter() - start
    assert code == 0, code
    result: dict[str, Any] = json.loads(out.getvalue())
    return wall, result


def measure(settings: Settings, sessions: int, objects: int, label: str) -> dict[str, Any]:
    wall, result = _time_report(settings)
    assert result["sessions"] == sessions, result["sessions"]
    assert result["total"]["objects"] == sessions * objects
    tracemalloc.start()
    _time_report(settings)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    row: dict[str, Any] = {
        "backend": label,
        "sessions": sessions,
        "objects": sessions * objects,
        "report_s": round(wall, 3),
        "sessions_per_s": round(sessions / wall),
        "objects_per_s": round(sessions * objects / wall),
        "tracemalloc_peak_mib": round(peak / 2**20, 1),
        "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(row), file=sys.stderr)
    return row


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_moto(work: Path, sessions: int, objects: int) -> dict[str, Any]:
    import boto3
    from moto import mock_aws

    with (
        _env(
            AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
        ),
        mock_aws(),
    ):
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="bench")
        body = b"x" * OBJECT_BYTES
        classes: list[dict[str, Any]] = [{"StorageClass": t.s3_storage_class} for t in TIERS]
        start = time.perf_counter()
        for n in range(sessions):
            for i, name in enumerate(_names(objects)):
                client.put_object(
                    Bucket="bench",
                    Key=f"vod/sessions/s-{n:07d}/{name}",
                    Body=body,
                    **classes[i % 3],
                )
        print(
            f"moto: {sessions * objects} puts in {time.perf_counter() - start:.1f} s",
            file=sys.stderr,
        )
        settings = load_settings(data_dir=work / "moto-data", storage_url="s3://bench")
        return measure(settings, sessions, objects, "moto (in-process)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--objects", type=int, default=20, help="objects per session")
    parser.add_argument("--moto-sessions", type=int, default=1_000, help="0: skip moto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-lifecycle-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        build_local(work / "objects", args.sessions, args.objects)
        print(f"local catalogue built in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        settings = load_settings(
            data_dir=work / "data", storage_url=(work / "objects").resolve().as_uri()
        )
        rows.append(measure(settings, args.sessions, args.objects, "local"))
        if args.moto_sessions:
            rows.append(run_moto(work, args.moto_sessions, args.objects))
    has_run = importlib.util.find_spec("sfu.lifecycle.run_command") is not None
    result = {
        "command": " ".join(["python -m bench.lifecycle", *sys.argv[1:]]),
        "object_bytes": OBJECT_BYTES,
        "objects_per_session": args.objects,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "report": rows,
        "run": "not timed: sfu.lifecycle.run_command is not in this tree"
        if not has_run
        else "not timed by this version of the bench",
    }
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
