"""Access-log lines of a CDN or of object storage, read into one `Request` shape.

Three shapes are accepted (docs/analytics.md has examples):

* combined / common log format (nginx, Apache, most CDNs' raw logs), optionally followed by a
  cache status: a last field `HIT`, `"MISS"` or `cache=HIT` (nginx `$upstream_cache_status`);
* one JSON object a line with a time, a path or URL, a status and optionally a method, a client
  address and a cache status, under any of the usual names (`_FIELDS`);
* OCI Object Storage read-access logs as the Logging service exports them: the same JSON with
  the request under `data` (`requestAction`, `objectName` or `requestResourcePath`,
  `statusCode`, `clientIpAddress`, `startTime`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

MASTER_RE = re.compile(
    r"(?:^|/)vod/sessions/(?P<id>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})/master\.m3u8$"
)

_COMBINED = re.compile(
    r'^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<target>\S+)[^"]*" '
    r'(?P<status>\d{3}) \S+(?: "[^"]*" "[^"]*")?(?P<rest>.*)$'
)
_CACHE_WORDS = {"HIT", "MISS", "EXPIRED", "STALE", "UPDATING", "REVALIDATED", "BYPASS", "DYNAMIC"}
_HITS = {"HIT", "STALE", "UPDATING", "REVALIDATED"}
_FIELDS = {
    "time": ("startTime", "time", "timestamp", "@timestamp", "date", "ts", "request_time"),
    "path": (
        "uri",
        "path",
        "url",
        "request_uri",
        "request_url",
        "objectName",
        "requestResourcePath",
    ),
    "method": ("method", "request_method", "http_method", "requestAction"),
    "status": ("status", "status_code", "statusCode", "http_status"),
    "client": ("client", "client_ip", "clientIpAddress", "remote_addr", "remote_ip", "ip"),
    "cache": ("cache", "cache_status", "cacheStatus", "x_cache", "upstream_cache_status"),
}


class Unparsed(ValueError):
    """A line in none of the accepted shapes; the message is the reason counted."""


@dataclass(frozen=True, slots=True)
class Request:
    at: float
    method: str
    path: str
    """URL path (no query), percent-decoded."""
    status: int
    client: str | None
    cache: str | None
    """Upper-cased cache status, when the line carries one."""

    @property
    def session_id(self) -> str | None:
        """The session whose master playlist this asks for; None for anything else."""
        found = MASTER_RE.search(self.path)
        return found["id"] if found else None

    @property
    def cache_hit(self) -> bool:
        return self.cache is not None and (
            self.cache in _HITS or self.cache.startswith("HIT") or "_HIT" in self.cache
        )


def parse_line(line: str) -> Request:
    line = line.strip()
    if not line:
        raise Unparsed("empty")
    if line.startswith("{"):
        return _parse_json(line)
    found = _COMBINED.match(line)
    if found is None:
        raise Unparsed("unrecognised")
    try:
        at = datetime.strptime(found["time"], "%d/%b/%Y:%H:%M:%S %z").timestamp()
    except ValueError:
        raise Unparsed("bad time") from None
    return Request(
        at,
        found["method"],
        _path(found["target"]),
        int(found["status"]),
        found["client"],
        _trailing_cache(found["rest"]),
    )


def _trailing_cache(rest: str) -> str | None:
    words = rest.split()
    if not words:
        return None
    last = words[-1].strip('"')
    if last.lower().startswith("cache="):
        last = last[len("cache=") :]
    last = last.upper()
    return last if last in _CACHE_WORDS or last.startswith("TCP_") else None


def _path(target: str) -> str:
    return unquote(urlsplit(target).path)


def _first(record: dict[str, Any], field: str) -> Any:
    for name in _FIELDS[field]:
        value = record.get(name)
        if value not in (None, ""):
            return value
    return None


def _parse_json(line: str) -> Request:
    try:
        record = json.loads(line)
    except ValueError:
        raise Unparsed("bad json") from None
    if not isinstance(record, dict):
        raise Unparsed("bad json")
    data = record.get("data")
    if isinstance(data, dict):  # OCI Logging: the request is under "data"
        record = {**record, **data}
    path, status, when = _first(record, "path"), _first(record, "status"), _first(record, "time")
    if path is None or status is None or when is None:
        raise Unparsed("missing field")
    try:
        status_code = int(status)
    except (TypeError, ValueError):
        raise Unparsed("bad status") from None
    method = str(_first(record, "method") or "GET").upper()
    client, cache = _first(record, "client"), _first(record, "cache")
    return Request(
        _timestamp(when),
        method,
        _path(str(path)),
        status_code,
        None if client is None else str(client),
        None if cache is None else str(cache).upper(),
    )


def _timestamp(value: Any) -> float:
    if isinstance(value, bool):
        raise Unparsed("bad time")
    if isinstance(value, int | float):
        return float(value) / 1000.0 if value > 1e11 else float(value)  # milliseconds
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise Unparsed("bad time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
