"""Client → SFU WebSocket messages (docs/api.md §3) and the edge's error-code tables (§7)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.api.error_mapping import HTTP_STATUS, WS_CLOSE, http_status, ws_close_code
from sfu.api.messages import (
    MAX_MESSAGE_BYTES,
    Candidate,
    Leave,
    Ping,
    PublishOffer,
    RequestKeyframe,
    SubscribeAnswer,
    parse_message,
)
from sfu.core import errors
from sfu.core.errors import InvalidMessage, MessageTooLarge, SfuError, UnknownType

SDP = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
CANDIDATE_LINE = "candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host"


def _raw(body: Any) -> str:
    return json.dumps(body)


def _code(raw: str | bytes) -> str:
    with pytest.raises(SfuError) as caught:
        parse_message(raw)
    return caught.value.code


# --- every message type of the contract -----------------------------------------------------


def test_publish_offer() -> None:
    message = parse_message(
        _raw({"type": "publish_offer", "sdp": SDP, "sources": {"t1": "camera", "t2": "screen"}})
    )
    assert message == PublishOffer(sdp=SDP, sources={"t1": "camera", "t2": "screen"})


def test_publish_offer_all_sources_and_none() -> None:
    sources = {"a": "camera", "b": "microphone", "c": "screen"}
    assert parse_message(_raw({"type": "publish_offer", "sdp": SDP, "sources": sources})) == (
        PublishOffer(sdp=SDP, sources=sources)
    )
    assert parse_message(_raw({"type": "publish_offer", "sdp": SDP})) == PublishOffer(
        sdp=SDP, sources={}
    )


def test_subscribe_answer() -> None:
    assert parse_message(_raw({"type": "subscribe_answer", "sdp": SDP})) == SubscribeAnswer(SDP)


@pytest.mark.parametrize("target", ["publisher", "subscriber"])
def test_candidate(target: str) -> None:
    init = {"candidate": CANDIDATE_LINE, "sdpMid": "0", "sdpMLineIndex": 0}
    message = parse_message(_raw({"type": "candidate", "target": target, "candidate": init}))
    assert message == Candidate(target=target, candidate=init)


def test_candidate_with_only_mid_or_only_index() -> None:
    for init in (
        {"candidate": CANDIDATE_LINE, "sdpMid": "1"},
        {"candidate": CANDIDATE_LINE, "sdpMLineIndex": 2},
    ):
        message = parse_message(
            _raw({"type": "candidate", "target": "publisher", "candidate": init})
        )
        assert message == Candidate(target="publisher", candidate=init)


def test_end_of_candidates() -> None:
    message = parse_message(_raw({"type": "candidate", "target": "subscriber", "candidate": None}))
    assert message == Candidate(target="subscriber", candidate=None)
    # Browsers signal end-of-candidates with an empty candidate string too.
    empty = {"candidate": "", "sdpMid": None, "sdpMLineIndex": None}
    message = parse_message(_raw({"type": "candidate", "target": "publisher", "candidate": empty}))
    assert message == Candidate(target="publisher", candidate=empty)


def test_request_keyframe() -> None:
    assert parse_message(_raw({"type": "request_keyframe", "track_id": "t1"})) == (
        RequestKeyframe("t1")
    )


def test_ping_and_leave() -> None:
    assert parse_message('{"type": "ping"}') == Ping()
    assert parse_message(b'{"type": "leave"}') == Leave()


# --- refusals: invalid_message, unknown_type, message_too_large -----------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "{",
        "not json",
        "{'type': 'ping'}",
        b"\xff\xfe",
        "null",
        "[]",
        '["ping"]',
        '"ping"',
        "42",
        "{}",
        '{"type": null}',
        '{"type": 7}',
        '{"type": ["ping"]}',
    ],
)
def test_malformed_or_untyped(raw: str | bytes) -> None:
    assert _code(raw) == "invalid_message"


@pytest.mark.parametrize(
    "body",
    [
        {"type": "publish_offer"},
        {"type": "publish_offer", "sdp": ""},
        {"type": "publish_offer", "sdp": 5},
        {"type": "publish_offer", "sdp": SDP, "sources": []},
        {"type": "publish_offer", "sdp": SDP, "sources": "camera"},
        {"type": "publish_offer", "sdp": SDP, "sources": {"t1": "webcam"}},
        {"type": "publish_offer", "sdp": SDP, "sources": {"t1": None}},
        {"type": "publish_offer", "sdp": SDP, "sources": {"t1": ["camera"]}},
        {"type": "publish_offer", "sdp": SDP, "sources": {"": "camera"}},
        {"type": "publish_offer", "sdp": SDP, "sources": {"x" * 257: "camera"}},
        {"type": "publish_offer", "sdp": SDP, "sources": {f"t{i}": "camera" for i in range(17)}},
        {"type": "subscribe_answer"},
        {"type": "subscribe_answer", "sdp": {"sdp": SDP}},
        {"type": "request_keyframe"},
        {"type": "request_keyframe", "track_id": 1},
        {"type": "request_keyframe", "track_id": ""},
        {"type": "request_keyframe", "track_id": "t" * 257},
        {"type": "candidate", "candidate": None},
        {"type": "candidate", "target": "both", "candidate": None},
        {"type": "candidate", "target": "publisher"},
        {"type": "candidate", "target": "publisher", "candidate": CANDIDATE_LINE},
        {"type": "candidate", "target": "publisher", "candidate": [CANDIDATE_LINE]},
        {"type": "candidate", "target": "publisher", "candidate": {"candidate": CANDIDATE_LINE}},
        {
            "type": "candidate",
            "target": "publisher",
            "candidate": {"candidate": CANDIDATE_LINE, "sdpMid": None, "sdpMLineIndex": None},
        },
        {
            "type": "candidate",
            "target": "publisher",
            "candidate": {"candidate": 5, "sdpMid": "0"},
        },
        {
            "type": "candidate",
            "target": "publisher",
            "candidate": {"candidate": CANDIDATE_LINE, "sdpMid": 0},
        },
        {
            "type": "candidate",
            "target": "publisher",
            "candidate": {"candidate": CANDIDATE_LINE, "sdpMLineIndex": "0"},
        },
        {
            "type": "candidate",
            "target": "publisher",
            "candidate": {"candidate": CANDIDATE_LINE, "sdpMLineIndex": True},
        },
        {
            "type": "candidate",
            "target": "publisher",
            "candidate": {"candidate": "c" * 1025, "sdpMid": "0"},
        },
    ],
)
def test_missing_or_ill_typed_field(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_message(_raw(body))
    assert caught.value.code == "invalid_message"
    assert not isinstance(caught.value, UnknownType)


@pytest.mark.parametrize("kind", ["publish", "PING", "subscribe_offer", "joined", "", "x" * 500])
def test_unknown_type(kind: str) -> None:
    with pytest.raises(UnknownType) as caught:
        parse_message(_raw({"type": kind}))
    assert caught.value.code == "unknown_type"
    assert len(caught.value.message) < 200


def test_exactly_64_kib_is_accepted_one_more_byte_is_not() -> None:
    head = '{"type": "publish_offer", "sdp": "'
    tail = '"}'
    fill = MAX_MESSAGE_BYTES - len(head) - len(tail)
    at_limit = head + "v" * fill + tail
    assert len(at_limit.encode()) == 64 * 1024
    message = parse_message(at_limit)
    assert isinstance(message, PublishOffer)
    assert len(message.sdp) == fill
    assert _code(head + "v" * (fill + 1) + tail) == "message_too_large"
    assert _code((head + "v" * (fill + 1) + tail).encode()) == "message_too_large"


def test_too_large_counts_utf8_bytes_not_characters() -> None:
    """The contract's limit is 64 KiB: a text frame of 30 000 '€' is 90 000 bytes on the wire."""
    raw = json.dumps({"type": "ping", "pad": "€" * 30_000}, ensure_ascii=False)
    assert len(raw) < MAX_MESSAGE_BYTES < len(raw.encode())
    with pytest.raises(MessageTooLarge) as caught:
        parse_message(raw)
    assert caught.value.code == "message_too_large"


def test_too_large_is_checked_before_parsing() -> None:
    assert _code("x" * (MAX_MESSAGE_BYTES + 1)) == "message_too_large"


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_deeply_nested_json_is_an_invalid_message(opener: str) -> None:
    """Small enough to be read, deep enough to exhaust Python's recursion limit in json."""
    raw = opener * (MAX_MESSAGE_BYTES // len(opener) - 1)
    assert _code(raw) == "invalid_message"


# --- never anything but an SfuError ---------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_types = st.sampled_from(
    ["publish_offer", "subscribe_answer", "candidate", "request_keyframe", "ping", "leave", "x"]
)
_fields = st.fixed_dictionaries(
    {"type": _types},
    optional={
        "sdp": _json,
        "sources": _json | st.dictionaries(st.text(max_size=5), _json, max_size=3),
        "target": st.sampled_from(["publisher", "subscriber"]) | _json,
        "candidate": _json
        | st.fixed_dictionaries(
            {},
            optional={"candidate": _json, "sdpMid": _json, "sdpMLineIndex": _json},
        ),
        "track_id": _json,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_arbitrary_text_only_raises_sfu_errors(raw: str | bytes) -> None:
    try:
        parse_message(raw)
    except SfuError as exc:
        assert exc.code in {"invalid_message", "unknown_type"}


@settings(max_examples=200, deadline=None)
@given(st.one_of(_json, _fields))
def test_arbitrary_json_only_raises_sfu_errors(body: Any) -> None:
    try:
        parse_message(json.dumps(body))
    except SfuError as exc:
        assert exc.code in {"invalid_message", "unknown_type"}


# --- the edge: error code → WebSocket close code and HTTP status ----------------------------

CLOSE_CODES = {
    errors.Unauthorized: 4401,
    errors.Forbidden: 4403,
    errors.RoomNotFound: 4404,
    errors.Replaced: 4409,
    errors.MessageTooLarge: 4413,
    errors.RateLimited: 4429,
    errors.NoCapacity: 4503,
    errors.Draining: 4503,
    errors.RoomFull: 4503,
}


@pytest.mark.parametrize(("error", "close"), CLOSE_CODES.items())
def test_ws_close_code_of_contract(error: type[SfuError], close: int) -> None:
    assert ws_close_code(error("x").code) == close


def test_ws_close_codes_by_name() -> None:
    assert {
        code: ws_close_code(code)
        for code in (
            "unauthorized",
            "forbidden",
            "room_not_found",
            "replaced",
            "message_too_large",
            "rate_limited",
            "no_capacity",
            "draining",
            "room_full",
        )
    } == {
        "unauthorized": 4401,
        "forbidden": 4403,
        "room_not_found": 4404,
        "replaced": 4409,
        "message_too_large": 4413,
        "rate_limited": 4429,
        "no_capacity": 4503,
        "draining": 4503,
        "room_full": 4503,
    }


@pytest.mark.parametrize(
    "code", ["invalid_message", "unknown_type", "out_of_order", "invalid_sdp", "track_not_found"]
)
def test_message_level_errors_do_not_close_with_a_contract_code(code: str) -> None:
    """These get an `error` message and the socket stays open: no 44xx/45xx close code."""
    assert not 4000 <= ws_close_code(code) < 5000


def test_unknown_code_closes_with_internal_error() -> None:
    assert ws_close_code("no_such_code") == 1011


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidRequest, 400),
        (errors.Unauthorized, 401),
        (errors.Forbidden, 403),
        (errors.RoomNotFound, 404),
        (errors.ParticipantNotFound, 404),
        (errors.RoomExists, 409),
        (errors.NoCapacity, 503),
        (errors.Draining, 503),
    ],
)
def test_http_status_of_contract(error: type[SfuError], status: int) -> None:
    assert http_status(error("x").code) == status


def test_unknown_code_is_http_500() -> None:
    assert http_status("internal_error") == 500
    assert http_status("no_such_code") == 500


def test_error_subclasses_keep_their_family() -> None:
    assert errors.Draining("x").code == "draining"
    assert isinstance(errors.Draining("x"), errors.NoCapacity)
    assert errors.UnknownType("x").code == "unknown_type"
    assert errors.RoomFull("x").code == "room_full"
    assert SfuError("boom").to_body() == {"error": {"code": "internal_error", "message": "boom"}}


def _error_classes() -> list[type[SfuError]]:
    found: list[type[SfuError]] = []
    todo: list[type[SfuError]] = [SfuError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_mapped_code_has_its_error_class() -> None:
    """Each code the edge maps to an HTTP status or a close code is raised as a class of
    sfu/core/errors.py (no error is built from a bare code string)."""
    codes = {cls.code for cls in _error_classes()}
    assert set(HTTP_STATUS) <= codes, set(HTTP_STATUS) - codes
    assert set(WS_CLOSE) <= codes, set(WS_CLOSE) - codes
