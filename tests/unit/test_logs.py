"""JSON log lines carry the room, participant and track ids of the record."""

from __future__ import annotations

import json
import logging

from sfu.logs import JsonFormatter
from sfu.rooms.participant import ParticipantLog


def test_participant_log_lines_carry_ids_as_fields() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    base = logging.getLogger("test.sfu.logs")
    base.handlers[:] = [Keep()]
    base.setLevel(logging.INFO)
    base.propagate = False
    log = ParticipantLog(base, {"room_id": "r1", "participant_id": "PA_1"})
    log.info("published %s", "t1", extra={"track_id": "t1"})
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["room_id"] == "r1"
    assert line["participant_id"] == "PA_1"
    assert line["track_id"] == "t1"
    assert line["level"] == "info"
    assert line["msg"].endswith("published t1")
    assert line["ts"].endswith("Z")


def test_exceptions_are_one_line_of_json() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, None)
        import sys

        record.exc_info = sys.exc_info()
    text = JsonFormatter().format(record)
    assert "\n" not in text
    assert "ValueError: boom" in json.loads(text)["exc"]
