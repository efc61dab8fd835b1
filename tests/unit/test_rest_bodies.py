"""POST /rooms bodies: anything JSON gives room options or invalid_request (docs/api.md §2.1)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.api.rest import MAX_METADATA_BYTES, decode_body, parse_room_options
from sfu.core.errors import InvalidRequest

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = ["record", "max_participants", "empty_timeout_s", "metadata", "unknown", "room_id"]


@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=5))
def test_any_body_is_options_or_invalid_request(body: dict[str, Any]) -> None:
    try:
        options = parse_room_options(body, "r1", 300)
    except InvalidRequest as exc:
        assert exc.code == "invalid_request"
        assert exc.message
        return
    assert isinstance(options.record, bool)
    assert type(options.max_participants) is int
    assert type(options.empty_timeout_s) is int
    assert 2 <= options.max_participants <= 16
    assert 1 <= options.empty_timeout_s <= 86400
    assert isinstance(options.metadata, dict)
    assert len(json.dumps(options.metadata, separators=(",", ":")).encode()) <= MAX_METADATA_BYTES


def test_defaults_and_bounds() -> None:
    options = parse_room_options({}, "r1", 300)
    assert (options.record, options.max_participants, options.empty_timeout_s) == (True, 4, 300)
    assert options.metadata == {}
    body: dict[str, Any]
    for body in (
        {"max_participants": 1},
        {"max_participants": 4.5},
        {"max_participants": 16.000001},
        {"empty_timeout_s": float("inf")},
        {"empty_timeout_s": float("nan")},
        {"max_participants": 17},
        {"max_participants": True},
        {"record": "yes"},
        {"empty_timeout_s": 0},
        {"metadata": []},
        {"metadata": {"x": "y" * MAX_METADATA_BYTES}},
        {"colour": "blue"},
    ):
        with pytest.raises(InvalidRequest):
            parse_room_options(body, "r1", 300)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"[" * 15_000 + b"]" * 15_000, "nested deeper than the decoder can go"),
        (b'{"metadata": {"x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}}", "deep inside metadata"),
        (b'{"metadata": {"x": NaN}}', "NaN"),
        (b'{"metadata": {"x": -Infinity}}', "-Infinity"),
        (b'{"max_participants": 1e400}', "a number that is infinite as a double"),
        (b'{"metadata": {"x": ' + b"9" * 5_000 + b"}}", "an integer of 5000 digits"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"a": 1', "truncated"),
        (b"[]", "not an object"),
    ],
)
def test_bodies_that_are_not_json_objects_are_invalid_requests(raw: bytes, why: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_body(raw)
    assert caught.value.code == "invalid_request", why


def test_decoded_body() -> None:
    assert decode_body(b"") == {} == decode_body(b" \r\n")
    assert decode_body(b'{"metadata": {"x": 1.5, "y": [1, "a", null]}}') == {
        "metadata": {"x": 1.5, "y": [1, "a", None]}
    }


def test_integral_numbers_are_integers() -> None:
    """JSON (and JSON Schema's `integer`) does not tell 4 from 4.0; the room object says 4."""
    options = parse_room_options({"max_participants": 4.0, "empty_timeout_s": 1e3}, "r1", 300)
    assert (options.max_participants, options.empty_timeout_s) == (4, 1000)
    assert type(options.max_participants) is int and type(options.empty_timeout_s) is int
