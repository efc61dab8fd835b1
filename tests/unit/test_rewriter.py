"""RtpRewriter: fixed offsets, gaps kept, retransmissions, wrap-around, payload-type map."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.media.rewriter import SEQ_MOD, TS_MOD, RtpRewriter, seq_newer

seqs = st.integers(0, SEQ_MOD - 1)
stamps = st.integers(0, TS_MOD - 1)


def test_first_packet_maps_to_the_chosen_start() -> None:
    rw = RtpRewriter(first_seq=1000, first_timestamp=5_000_000)
    assert not rw.started
    assert rw.rewrite(40_000, 123_456) == (1000, 5_000_000)
    assert rw.started
    assert rw.seq_offset == (1000 - 40_000) % SEQ_MOD == 26_536
    assert rw.ts_offset == 5_000_000 - 123_456


def test_following_packets_keep_their_distance() -> None:
    rw = RtpRewriter(first_seq=10, first_timestamp=90_000)
    assert rw.rewrite(500, 3000) == (10, 90_000)
    assert rw.rewrite(501, 3000) == (11, 90_000)
    assert rw.rewrite(502, 6000) == (12, 93_000)
    assert rw.highest_out_seq == 12
    assert rw.last_out_timestamp == 93_000


def test_gap_upstream_is_a_gap_downstream() -> None:
    rw = RtpRewriter(first_seq=100, first_timestamp=0)
    rw.rewrite(7, 0)
    assert rw.rewrite(8, 0)[0] == 101
    # 9, 10 and 11 lost upstream: the subscriber sees 102..104 missing and NACKs them.
    assert rw.rewrite(12, 9000)[0] == 105
    assert rw.highest_out_seq == 105


def test_retransmission_lands_on_the_missing_number() -> None:
    rw = RtpRewriter(first_seq=100, first_timestamp=1_000)
    rw.rewrite(7, 0)
    rw.rewrite(12, 9000)
    assert rw.rewrite(10, 6000) == (103, 7_000)
    # A late packet does not move the "highest" mark nor the timestamp used for reports.
    assert rw.highest_out_seq == 105
    assert rw.last_out_timestamp == 10_000
    # Retransmitted twice: same number both times.
    assert rw.rewrite(10, 6000) == (103, 7_000)


def test_sequence_wraps_at_2_16() -> None:
    rw = RtpRewriter(first_seq=65_534, first_timestamp=0)
    out = [rw.rewrite(s, 0)[0] for s in (20, 21, 22, 23)]
    assert out == [65_534, 65_535, 0, 1]
    assert rw.highest_out_seq == 1


def test_input_wrap_is_followed() -> None:
    rw = RtpRewriter(first_seq=300, first_timestamp=0)
    out = [rw.rewrite(s, 0)[0] for s in (65_534, 65_535, 0, 1)]
    assert out == [300, 301, 302, 303]
    assert rw.highest_out_seq == 303


def test_timestamp_wraps_at_2_32() -> None:
    rw = RtpRewriter(first_seq=0, first_timestamp=TS_MOD - 3000)
    assert rw.rewrite(0, 10)[1] == TS_MOD - 3000
    assert rw.rewrite(1, 3010)[1] == 0
    assert rw.rewrite(2, 6010)[1] == 3000
    assert rw.last_out_timestamp == 3000
    assert rw.to_subscriber_timestamp(9010) == 6000
    # Upstream wrapping too.
    rw = RtpRewriter(first_seq=0, first_timestamp=50)
    rw.rewrite(0, TS_MOD - 10)
    assert rw.rewrite(1, 20)[1] == 80


def test_payload_type_map() -> None:
    rw = RtpRewriter(first_seq=0, first_timestamp=0, payload_types={96: 97, 102: 99})
    assert rw.map_payload_type(96) == 97
    assert rw.map_payload_type(102) == 99
    assert rw.map_payload_type(97) is None


@pytest.mark.parametrize(
    ("a", "b", "newer"),
    [
        (1, 0, True),
        (0, 1, False),
        (5, 5, False),
        (0, 65_535, True),
        (65_535, 0, False),
        (0x7FFF, 0, True),
        (0x8000, 0, False),
    ],
)
def test_seq_newer(a: int, b: int, newer: bool) -> None:
    assert seq_newer(a, b) is newer


@given(seqs, stamps, seqs, stamps, st.lists(st.tuples(seqs, stamps), max_size=50))
def test_mapping_is_a_fixed_shift(
    first_seq: int, first_ts: int, in_seq: int, in_ts: int, later: list[tuple[int, int]]
) -> None:
    """Every packet is shifted by the same offsets: differences (gaps) are kept modulo 2^16 and
    2^32, and the result is always in range."""
    rw = RtpRewriter(first_seq=first_seq, first_timestamp=first_ts)
    assert rw.rewrite(in_seq, in_ts) == (first_seq, first_ts)
    for seq, ts in later:
        out_seq, out_ts = rw.rewrite(seq, ts)
        assert 0 <= out_seq < SEQ_MOD
        assert 0 <= out_ts < TS_MOD
        assert (out_seq - first_seq) % SEQ_MOD == (seq - in_seq) % SEQ_MOD
        assert (out_ts - first_ts) % TS_MOD == (ts - in_ts) % TS_MOD


@settings(max_examples=25)
@given(seqs, seqs)
def test_sequence_mapping_is_a_bijection(first_seq: int, in_seq: int) -> None:
    rw = RtpRewriter(first_seq=first_seq, first_timestamp=0)
    rw.rewrite(in_seq, 0)
    image = {(s + rw.seq_offset) % SEQ_MOD for s in range(SEQ_MOD)}
    assert len(image) == SEQ_MOD
    # and rewrite() agrees with that shift on a few samples, including repeats
    for s in (in_seq, (in_seq + 1) % SEQ_MOD, (in_seq - 1) % SEQ_MOD, in_seq):
        assert rw.rewrite(s, 0)[0] == (s + rw.seq_offset) % SEQ_MOD


@given(seqs, st.lists(st.integers(1, 0x7FFF), min_size=1, max_size=30))
def test_highest_follows_forward_steps_across_wraps(first_seq: int, steps: list[int]) -> None:
    rw = RtpRewriter(first_seq=first_seq, first_timestamp=0)
    seq = 12_345
    rw.rewrite(seq, 0)
    expected = first_seq
    for step in steps:
        seq = (seq + step) % SEQ_MOD
        expected = (expected + step) % SEQ_MOD
        assert rw.rewrite(seq, step)[0] == expected
        assert rw.highest_out_seq == expected
        # a retransmission of an older packet leaves the mark where it is
        rw.rewrite((seq - 1) % SEQ_MOD, 0)
        assert rw.highest_out_seq == expected
