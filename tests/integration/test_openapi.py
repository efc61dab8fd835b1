"""docs/openapi.yaml against real SFU processes: a valid OpenAPI 3.1 document whose paths are
the app's routes, real responses that match it, and schemathesis' fuzz of every operation;
and the error table of docs/api.md §7 against the edge's tables."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from schemathesis import Case
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
    use_after_free,
)

from sfu.api.error_mapping import HTTP_STATUS, WS_CLOSE, http_status, ws_close_code
from sfu.app.factory import create_app
from sfu.config.settings import load_settings
from sfu.testing.process import TEST_SECRET, SfuProcess, make_sfu

DOCS = Path(__file__).resolve().parents[2] / "docs"
OPENAPI = DOCS / "openapi.yaml"
DOC: dict[str, Any] = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
DOC_URI = "urn:cotept-sfu:openapi"
REGISTRY: Registry[Any] = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(DOC))
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
NOT_REST = ("/ws", "/demo", "/static")
"""Routes of the app that are not REST operations; the document's description names them."""

CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,  # schema-invalid requests are refused with a 4xx
    unsupported_method,  # a method the document does not name: 405 with Allow
]
STATEFUL_CHECKS = [*CHECKS, use_after_free, ensure_resource_availability]
FUZZ_EXAMPLES = 50
schema = schemathesis.openapi.from_path(OPENAPI)


# --- reading the document -------------------------------------------------------------------


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _at(parts: tuple[str, ...]) -> Any:
    node: Any = DOC
    for part in parts:
        node = node[part]
    return node


def _resolve(parts: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The object at `parts`, following `$ref`s; with where it really is."""
    node = _at(parts)
    while "$ref" in node:
        ref = node["$ref"].removeprefix("#/")
        parts = tuple(p.replace("~1", "/").replace("~0", "~") for p in ref.split("/"))
        node = _at(parts)
    return parts, node


def _validate(value: Any, where: tuple[str, ...]) -> None:
    pointer = "/" + "/".join(_escape(p) for p in where)
    validator = Draft202012Validator(
        {"$ref": f"{DOC_URI}#{pointer}"},
        registry=REGISTRY,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    validator.validate(value)


def documented(path: str, method: str, status: int, content_type: str, body: bytes) -> Any:
    """Asserts that a real answer is one the document describes; returns its parsed body."""
    responses = DOC["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} answered {status}, not documented"
    where, response = _resolve(("paths", path, method.lower(), "responses", str(status)))
    content = response.get("content")
    if not content:
        assert body == b"", f"{method} {path} {status} has a body it does not document"
        return None
    assert content_type in content, f"{method} {path} {status}: {content_type} not documented"
    if content_type != "application/json":
        return body.decode()
    value = json.loads(body)
    _validate(value, (*where, "content", content_type, "schema"))
    return value


async def check(response: aiohttp.ClientResponse, path: str) -> Any:
    body = await response.read()
    method = response.method
    return documented(path, method, response.status, response.content_type, body)


def error_code(body: Any) -> str:
    assert isinstance(body, dict)
    return str(body["error"]["code"])


# --- the document itself ------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"].startswith("3.1.")
    validate_spec(DOC)  # picks the 3.1 validator from the "openapi" field; resolves every $ref
    results = list(schema.get_all_operations())
    assert len([result for result in results if isinstance(result, Ok)]) == len(results) == 9


def test_the_documents_operations_are_the_apps_routes() -> None:
    """Every route of the app is an operation of the document and the other way round, but
    for the non-REST routes its description names, and HEAD (answered wherever GET is)."""
    app = create_app(load_settings(jwt_secret=TEST_SECRET))
    routes: set[tuple[str, str]] = set()
    for route in app.router.routes():
        assert route.resource is not None
        routes.add((route.method, route.resource.canonical))
    heads = {path for method, path in routes if method == "HEAD"}
    assert heads == {path for method, path in routes if method == "GET"}
    for method, path in routes:
        if path in NOT_REST and method != "HEAD":
            assert f"`{method} {path}" in DOC["info"]["description"], path
    rest = {(m, p) for m, p in routes if m != "HEAD" and p not in NOT_REST}
    operations = {
        (method.upper(), path)
        for path, item in DOC["paths"].items()
        for method in item
        if method in METHODS
    }
    assert rest == operations


def _documented_error_codes() -> Iterator[tuple[str, int, str]]:
    """(operation, status, code) for every error code an operation's responses name."""
    for path, item in DOC["paths"].items():
        for method in (m for m in item if m in METHODS):
            for status in item[method]["responses"]:
                where, response = _resolve(("paths", path, method, "responses", status))
                media = response.get("content", {}).get("application/json")
                if media is None or int(status) < 400:
                    continue
                _, body = _resolve((*where, "content", "application/json", "schema"))
                (codes,) = [
                    part["properties"]["error"]["properties"]["code"]["enum"]
                    for part in body["allOf"]
                    if "properties" in part
                ]
                for code in codes:
                    yield f"{method.upper()} {path}", int(status), code


def test_documented_error_codes_have_the_edges_statuses() -> None:
    every = set(DOC["components"]["schemas"]["ErrorCode"]["enum"])
    named: set[str] = set()
    for operation, status, code in _documented_error_codes():
        assert http_status(code) == status, (operation, code)
        assert code in every, (operation, code)
        named.add(code)
    # not_found and method_not_allowed answer paths and methods that are not operations
    assert every == named | {"not_found", "method_not_allowed"}
    assert every == set(HTTP_STATUS) - {"message_too_large"}  # WebSocket only (docs/api.md §7)


def _error_table() -> dict[str, tuple[int | None, int | None]]:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    section = text.split("\n## 7. Errors\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", section, re.MULTILINE)
    assert rows, "no error table in docs/api.md §7"

    def number(cell: str) -> int | None:
        cell = cell.strip()
        return None if cell == "—" else int(cell)

    return {code: (number(http), number(close)) for code, http, close in rows}


def test_the_error_table_of_api_md_agrees_with_the_edge() -> None:
    table = _error_table()
    http = {code: status for code, (status, _) in table.items() if status is not None}
    close = {code: close for code, (_, close) in table.items() if close is not None}
    fallback = "internal_error"  # what an unknown code maps to
    assert http_status(fallback) == http.pop(fallback)
    assert ws_close_code(fallback) == close.pop(fallback)
    assert http == HTTP_STATUS
    assert close == WS_CLOSE


# --- real answers ---------------------------------------------------------------------------


async def raw_request(server: SfuProcess, head: bytes) -> tuple[int, str, bytes]:
    """One request written as given (headers no client library would send); the answer's
    status, media type and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(head)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    lines, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = lines.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, _, v in (h.partition(": ") for h in header_lines)}
    return int(status_line.split()[1]), headers.get("content-type", "").split(";")[0], body


async def join(
    http: aiohttp.ClientSession, server: SfuProcess, room_id: str, user: str
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    ws = await http.ws_connect(server.ws_url, params={"token": server.token(room_id, user)})
    joined = await asyncio.wait_for(ws.receive_json(), 10)
    assert joined["type"] == "joined", joined
    return ws, joined


async def test_real_answers_match_the_document(sfu: SfuProcess) -> None:
    service = sfu.service_headers()
    rooms, room, kick = (
        "/rooms",
        "/rooms/{room_id}",
        "/rooms/{room_id}/participants/{participant_id}",
    )
    async with aiohttp.ClientSession() as http:
        assert await check(await http.get(sfu.url + "/health"), "/health") == {"status": "ok"}
        assert await check(await http.get(sfu.url + "/ready"), "/ready") == {"status": "ready"}
        text = await check(await http.get(sfu.url + "/metrics"), "/metrics")
        assert "sfu_rooms" in text

        plain = await check(
            await http.post(
                sfu.url + rooms, json={"record": False, "metadata": {"a": [1]}}, headers=service
            ),
            rooms,
        )
        assert plain["recording"] is None and plain["metadata"] == {"a": [1]}
        recorded = await check(
            await http.post(sfu.url + rooms, json={"max_participants": 3.0}, headers=service),
            rooms,
        )
        assert recorded["recording"]["status"] == "recording"
        assert recorded["max_participants"] == 3
        again = await http.post(
            sfu.url + rooms, json={"room_id": plain["room_id"]}, headers=service
        )
        assert error_code(await check(again, rooms)) == "room_exists"
        for bad in (
            b"[]",
            b"{",
            b'{"colour": 1}',
            b'{"max_participants": 17}',
            b'{"metadata": {"x": NaN}}',
            b"[" * 15_000,
            b" " * 17_000,
        ):
            refused = await http.post(sfu.url + rooms, data=bad, headers=service)
            assert error_code(await check(refused, rooms)) == "invalid_request", bad[:20]

        assert error_code(await check(await http.get(sfu.url + rooms), rooms)) == "unauthorized"
        bad_token = {"Authorization": "Bearer not-a-jwt"}
        listed = await http.get(sfu.url + rooms, headers=bad_token)
        assert error_code(await check(listed, rooms)) == "unauthorized"
        participant = {"Authorization": "Bearer " + sfu.token(plain["room_id"], "u1")}
        listed = await http.get(sfu.url + rooms, headers=participant)
        assert error_code(await check(listed, rooms)) == "forbidden"
        status, media, body = await raw_request(
            sfu,
            b"GET /rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
            b"Connection: close\r\n\r\n",
        )
        assert error_code(documented(rooms, "GET", status, media, body)) == "unauthorized"

        ws, joined = await join(http, sfu, plain["room_id"], "alice")
        try:
            path = f"{sfu.url}/rooms/{plain['room_id']}"
            got = await check(await http.get(path, headers=service), room)
            (member,) = got["participants"]
            assert member["participant_id"] == joined["participant"]["participant_id"]
            listed = await check(await http.get(sfu.url + rooms, headers=service), rooms)
            assert plain["room_id"] in {r["room_id"] for r in listed["rooms"]}
            nobody = await http.delete(path + "/participants/PA_000000000000", headers=service)
            assert error_code(await check(nobody, kick)) == "participant_not_found"
            removed = await http.delete(
                f"{path}/participants/{member['participant_id']}", headers=service
            )
            assert await check(removed, kick) is None and removed.status == 204
            notice = await asyncio.wait_for(ws.receive_json(), 10)
            assert notice["error"]["code"] == "removed"
            closing = await asyncio.wait_for(ws.receive(), 10)
            assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1000)
        finally:
            await ws.close()

        for rid, recording in ((plain["room_id"], None), (recorded["room_id"], "queued")):
            deleted = await check(
                await http.delete(f"{sfu.url}/rooms/{rid}", headers=service), room
            )
            assert deleted["room_id"] == rid
            assert (deleted["recording"] or {}).get("status") == recording
        gone = f"{sfu.url}/rooms/{plain['room_id']}"
        for method in ("GET", "DELETE"):
            answer = await http.request(method, gone, headers=service)
            assert error_code(await check(answer, room)) == "room_not_found"
        answer = await http.delete(gone + "/participants/PA_1", headers=service)
        assert error_code(await check(answer, kick)) == "room_not_found"

        for method, path, code in (
            ("GET", "/nowhere", "not_found"),
            ("PUT", "/rooms", "method_not_allowed"),
        ):
            answer = await http.request(method, sfu.url + path, headers=service)
            assert answer.content_type == "application/json"
            body = await answer.json()
            _validate(body, ("components", "schemas", "Error"))
            assert error_code(body) == code and answer.status == http_status(code)


@pytest.fixture
def tight_sfu() -> Iterator[SfuProcess]:
    """One room at most, a small REST budget, and a drain that waits for its participant."""
    server = make_sfu(
        47440,
        47450,
        name="sfu-openapi-tight",
        SFU_MAX_ROOMS="1",
        SFU_REST_RATE_PER_IP="0.01",
        SFU_REST_BURST_PER_IP="6",
        SFU_DRAIN_TIMEOUT_S="30",
    )
    server.start()
    yield server
    server.stop()


async def test_refusals_of_a_full_and_draining_node_match_the_document(
    tight_sfu: SfuProcess,
) -> None:
    server, service = tight_sfu, tight_sfu.service_headers()
    async with aiohttp.ClientSession() as http:
        created = await check(await http.post(server.url + "/rooms", headers=service), "/rooms")
        full = await http.post(server.url + "/rooms", headers=service)
        assert error_code(await check(full, "/rooms")) == "no_capacity"
        ws, _ = await join(http, server, created["room_id"], "bob")
        try:
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)  # drains while bob is in his room
            for _ in range(50):
                ready = await http.get(server.url + "/ready")
                if ready.status == 503:
                    break
                await asyncio.sleep(0.1)
            assert error_code(await check(ready, "/ready")) == "draining"
            late = await http.post(server.url + "/rooms", headers=service)
            assert error_code(await check(late, "/rooms")) == "draining"
            answers = [await http.get(server.url + "/rooms", headers=service) for _ in range(4)]
            assert answers[-1].status == 429
            for answer in answers:
                await check(answer, "/rooms")
            assert error_code(await check(answers[-1], "/rooms")) == "rate_limited"
        finally:
            await ws.close()
    assert await asyncio.to_thread(server.proc.wait, 15) == 0


# --- the fuzz -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_sfu() -> Iterator[SfuProcess]:
    """Limits high enough that the fuzz is neither rate limited nor out of rooms."""
    server = make_sfu(
        47400,
        47420,
        name="sfu-openapi-fuzz",
        SFU_REST_RATE_PER_IP="1000000",
        SFU_REST_BURST_PER_IP="1000000",
        SFU_MAX_ROOMS="10000",
    )
    server.start()
    yield server
    server.stop()


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzz_every_operation(case: Case[Any], fuzz_sfu: SfuProcess) -> None:
    case.call_and_validate(
        base_url=fuzz_sfu.url, headers=fuzz_sfu.service_headers(), checks=CHECKS, timeout=10
    )


def close_every_room(server: SfuProcess) -> None:
    def call(method: str, path: str) -> Any:
        request = urllib.request.Request(
            server.url + path, method=method, headers=server.service_headers()
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    for room in call("GET", "/rooms")["rooms"]:
        call("DELETE", "/rooms/" + urllib.parse.quote(room["room_id"]))


def test_fuzz_linked_calls(fuzz_sfu: SfuProcess) -> None:
    """Sequences along the document's links: a room created, then got, deleted, got again."""
    base: Any = schema.as_state_machine()

    class Calls(base):  # type: ignore[misc]  # a class made by schemathesis at run time
        def setup(self) -> None:
            # Each scenario starts from no rooms: what hypothesis generates must not depend
            # on what earlier scenarios left (it replays scenarios and checks they draw alike).
            close_every_room(fuzz_sfu)

        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            return {"base_url": fuzz_sfu.url, "headers": fuzz_sfu.service_headers(), "timeout": 10}

        def validate_response(
            self,
            response: Response,
            case: Case[Any],
            additional_checks: list[CheckFunction] | None = None,
            **kwargs: Any,
        ) -> None:
            case.validate_response(
                response,
                checks=STATEFUL_CHECKS,
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )

    Calls.run(
        settings=settings(
            max_examples=25,
            stateful_step_count=6,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
