"""IngestLedger: how many lines of each access log `ingest-logs` has already counted.

A CronJob that ingests a log folder every night sees yesterday's files again, a CDN appends to
the file of the hour, a log rotator gzips a file that was ingested while plain: none of these
may count a play twice. A log is known by its **identity**, a digest of its first record line
(decoded text, so the gzip and the plain copy of a file are the same log; comment lines
starting with `#`, as CloudFront's and W3C headers, and blank lines are passed over), and the
ledger keeps, per identity, how many lines from the top were counted. The next ingest of the
same log skips those lines and goes on from there; `--again` counts it from the top.

A line is counted once it is complete: the last line of a gzip stream cut short (a file still
being written) is held back for the next run, which reads it whole.

Kept in Redis (`REDIS_URL`, hash `sfu:analytics:ingested`, identity -> lines) or, without
Redis, in `<data_dir>/analytics/ingested.json` (written to a temporary file, then renamed).
Saved only after the plays were recorded; each identity only moves forward, so two runs
writing at once keep the larger count. Two runs over the *same* new lines at the same moment
would both count them: run one ingest at a time (the CronJob's `concurrencyPolicy: Forbid`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from sfu.analytics.store import redis_client

if TYPE_CHECKING:
    from sfu.config.settings import Settings

logger = logging.getLogger(__name__)

LEDGER_KEY = "sfu:analytics:ingested"
LEDGER_FILE = "ingested.json"


def log_identity(first_record: str) -> str:
    """The identity of a log from its first record line (without its line ending)."""
    return hashlib.sha256(first_record.rstrip("\r\n").encode()).hexdigest()[:32]


def is_record(line: str) -> bool:
    """Whether a line can name a log: not blank, not a `#` header or comment."""
    text = line.strip()
    return bool(text) and not text.startswith("#")


class IngestLedger:
    """Lines counted per log, in Redis when `REDIS_URL` is set, else in the data folder."""

    def __init__(self, settings: Settings) -> None:
        self.redis_url = settings.redis_url
        self.path = settings.data_dir / "analytics" / LEDGER_FILE

    async def load(self) -> dict[str, int]:
        if self.redis_url:
            async with redis_client(self.redis_url) as client:
                raw = await client.hgetall(LEDGER_KEY)
            return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        return _read(self.path)

    async def save(self, counted: Mapping[str, int], *, replace: bool = False) -> None:
        """Record the counts. An identity's count never goes down (see the module), unless
        `replace` (`--again`: these logs were counted anew from their first line)."""
        if not counted:
            return
        if self.redis_url:
            async with redis_client(self.redis_url) as client, client.pipeline(False) as pipe:
                for identity, lines in counted.items():
                    if replace:
                        pipe.hset(LEDGER_KEY, identity, lines)
                    else:
                        pipe.eval(_RAISE, 1, LEDGER_KEY, identity, lines)
                await pipe.execute()
            return
        merged = _read(self.path)
        for identity, lines in counted.items():
            merged[identity] = lines if replace else max(merged.get(identity, 0), lines)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(LEDGER_FILE + ".tmp")
        temporary.write_text(json.dumps(merged, sort_keys=True), encoding="utf-8")
        os.replace(temporary, self.path)


# KEYS: the ledger hash. ARGV: identity, lines. The count only moves forward.
_RAISE = """
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > old then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 0
"""


def _read(path: Path) -> dict[str, int]:
    try:
        raw = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        # A ledger is rewritten whole and renamed, so this is damage from outside: say so, and
        # refuse to guess (counting everything again would double every play).
        raise ValueError(
            f"{path} is not a JSON ledger ({exc}); move it aside to count anew"
        ) from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path} is not a JSON ledger (not an object)")
    return {str(k): int(v) for k, v in raw.items()}
