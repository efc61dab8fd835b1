"""POST /rooms bodies: anything JSON gives room options or the contract's invalid_request."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.api.rest import MAX_METADATA_BYTES, parse_room_options
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
