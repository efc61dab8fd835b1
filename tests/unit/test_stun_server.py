"""StunResponder and SourceRateLimiter, without sockets: what gets an answer, what it says,
what is dropped, and the rate, size and memory bounds (fake clock throughout)."""

from __future__ import annotations

import binascii
import gc
import ipaddress
import os
import struct
import sys
import tracemalloc
from pathlib import Path
from typing import TypedDict

import pytest
from aioice import stun
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from sfu.config.settings import load_settings
from sfu.core.token_bucket import TokenBucket
from sfu.ice.source_limiter import RateConfig, SourceRateLimiter, source_key
from sfu.ice.stun_server import (
    MAX_REPLY_GROWTH,
    MAX_REQUEST_SIZE,
    StunResponder,
    ice_servers,
)

CLIENT = ("192.0.2.1", 32853)
CLIENT6 = ("2001:db8:1234:5678:11:2233:4455:6677", 32853)
COOKIE = 0x2112A442
TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")  # RFC 5769's transaction id

# RFC 5769 section 2.1: a Binding request with SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
# MESSAGE-INTEGRITY and FINGERPRINT: an ICE connectivity check.
RFC5769_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae"
    "802200105354554e207465737420636c69656e74"
    "002400046e0001ff"
    "80290008932ff9b151263b36"
    "000600096576746a3a68367659202020"
    "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"
    "80280004e57a3bcf"
)


def lenient() -> StunResponder:
    """A responder whose limits no test of the protocol reaches."""
    return StunResponder(SourceRateLimiter(RateConfig(1e9, 1e9, 1e9), now=0.0))


def counter(result: str) -> float:
    value = REGISTRY.get_sample_value("sfu_stun_requests_total", {"result": result})
    return value or 0.0


def header(length: int, type_: int = 0x0001, cookie: int = COOKIE, tid: bytes = TID) -> bytes:
    return struct.pack("!HHI12s", type_, length, cookie, tid)


def attribute(type_: int, value: bytes) -> bytes:
    return struct.pack("!HH", type_, len(value)) + value + bytes(-len(value) % 4)


def message(*attributes: bytes, type_: int = 0x0001, fingerprint: bool = False) -> bytes:
    body = b"".join(attributes)
    if fingerprint:
        partial = header(len(body) + 8, type_) + body
        crc = binascii.crc32(partial) ^ 0x5354554E
        body += attribute(0x8028, struct.pack("!I", crc))
    return header(len(body), type_) + body


def decode_reply(reply: bytes) -> dict[int, bytes]:
    """RFC 8489 by hand: a success response with our transaction id, its attributes by type,
    and a FINGERPRINT (last) that checks out."""
    type_, length, cookie, tid = struct.unpack("!HHI12s", reply[:20])
    assert (type_, cookie, tid) == (0x0101, COOKIE, TID)
    assert length == len(reply) - 20
    attributes: dict[int, bytes] = {}
    pos = 20
    order = []
    while pos < len(reply):
        attr_type, attr_len = struct.unpack("!HH", reply[pos : pos + 4])
        attributes[attr_type] = reply[pos + 4 : pos + 4 + attr_len]
        order.append((attr_type, pos))
        pos += 4 + attr_len + (-attr_len % 4)
    assert pos == len(reply)
    last_type, last_pos = order[-1]
    assert last_type == 0x8028
    (crc,) = struct.unpack("!I", attributes[0x8028])
    assert crc == binascii.crc32(reply[:last_pos]) ^ 0x5354554E
    return attributes


def xor_mapped(value: bytes) -> tuple[str, int]:
    family = value[1]
    port = struct.unpack("!H", value[2:4])[0] ^ (COOKIE >> 16)
    pad = struct.pack("!I", COOKIE) + TID
    raw = bytes(b ^ p for b, p in zip(value[4:], pad, strict=False))
    assert family == (1 if len(raw) == 4 else 2)
    return str(ipaddress.ip_address(raw)), port


# --- answers --------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [CLIENT, CLIENT6, ("127.0.0.1", 1), ("::1", 65535)])
@pytest.mark.parametrize("with_fingerprint", [False, True])
def test_answers_an_aioice_binding_request(source: tuple[str, int], with_fingerprint: bool) -> None:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    if with_fingerprint:
        request.add_fingerprint()
    reply = lenient().handle(bytes(request), source, now=0.0)
    assert reply is not None
    response = stun.parse_message(reply)  # checks FINGERPRINT too
    assert response.message_method == stun.Method.BINDING
    assert response.message_class == stun.Class.RESPONSE
    assert response.transaction_id == request.transaction_id
    assert response.attributes["XOR-MAPPED-ADDRESS"] == source
    assert "FINGERPRINT" in response.attributes
    assert "MESSAGE-INTEGRITY" not in response.attributes


def test_answers_a_hand_built_request_with_rfc5769_xor_mapped_address_bytes() -> None:
    """RFC 5769 sections 2.2 and 2.3 give the XOR-MAPPED-ADDRESS bytes for these sources."""
    responder = lenient()
    reply = responder.handle(header(0), CLIENT, now=0.0)
    assert reply is not None
    attributes = decode_reply(reply)
    assert attributes[0x0020] == bytes.fromhex("0001a147e112a643")
    assert xor_mapped(attributes[0x0020]) == CLIENT

    reply6 = responder.handle(message(fingerprint=True), CLIENT6, now=0.0)
    assert reply6 is not None
    attributes = decode_reply(reply6)
    assert attributes[0x0020] == bytes.fromhex("0002a1470113a9faa5d3f179bc25f4b5bed2b9d9")
    assert xor_mapped(attributes[0x0020]) == CLIENT6


def test_ipv4_mapped_source_is_answered_as_ipv4_and_scope_is_dropped() -> None:
    responder = lenient()
    reply = responder.handle(header(0), ("::ffff:192.0.2.1", 32853), now=0.0)
    assert reply is not None and xor_mapped(decode_reply(reply)[0x0020]) == CLIENT
    reply = responder.handle(header(0), ("fe80::1%eth0", 5000), now=0.0)
    assert reply is not None and xor_mapped(decode_reply(reply)[0x0020]) == ("fe80::1", 5000)


def test_comprehension_optional_attributes_are_fine() -> None:
    request = message(
        attribute(0x8022, b"some client"),  # SOFTWARE
        attribute(0xC001, b"\x01\x02\x03"),  # unknown, comprehension-optional
        fingerprint=True,
    )
    assert lenient().handle(request, CLIENT, now=0.0) is not None


def test_software_is_sent_when_configured_and_bounded() -> None:
    limiter = SourceRateLimiter(RateConfig(), now=0.0)
    reply = StunResponder(limiter, software="cotept-sfu").handle(header(0), CLIENT, now=0.0)
    assert reply is not None
    assert decode_reply(reply)[0x8022] == b"cotept-sfu"
    with pytest.raises(ValueError, match="SOFTWARE"):
        StunResponder(limiter, software="x" * 29)


def test_answer_counted() -> None:
    before = counter("answered")
    lenient().handle(header(0), CLIENT, now=0.0)
    assert counter("answered") == before + 1


# --- ignored --------------------------------------------------------------------------------


def _with_fingerprint_then(extra: bytes) -> bytes:
    good = message(fingerprint=True)
    body = good[20:] + extra
    return header(len(body)) + body


IGNORED = {
    "empty": b"",
    "short": header(0)[:19],
    "rtp": bytes([0x80, 0x60]) + bytes(30),
    "dtls": bytes([22, 0xFE, 0xFD]) + bytes(40),
    "rfc3489 (no cookie)": header(0, cookie=0),
    "bad cookie": header(0, cookie=COOKIE ^ 1),
    "top bits set": header(0, type_=0xC001),
    "success response": header(0, type_=0x0101),
    "error response": header(0, type_=0x0111),
    "indication": header(0, type_=0x0011),
    "allocate request": header(0, type_=0x0003),
    "unknown method": header(0, type_=0x0002),
    "declared too long": header(8),
    "declared too short": header(0) + attribute(0x8022, b"abcd"),
    "length not multiple of 4": header(2) + b"ab",
    "attribute overruns": header(8) + struct.pack("!HH", 0x8022, 8) + b"abcd",
    "bad fingerprint": message(attribute(0x8028, b"\0\0\0\0")),
    "fingerprint not last": _with_fingerprint_then(attribute(0x8022, b"late")),
    "fingerprint of wrong length": message(attribute(0x8028, b"\0" * 8)),
    "message-integrity": message(attribute(0x0008, bytes(20)), fingerprint=True),
    "message-integrity-sha256": message(attribute(0x001C, bytes(32))),
    "username": message(attribute(0x0006, b"user:frag")),
    "ice-controlling": message(attribute(0x802A, bytes(8))),
    "ice-controlled": message(attribute(0x8029, bytes(8))),
    "change-request (rfc 5780)": message(attribute(0x0003, bytes(4))),
    "unknown comprehension-required": message(attribute(0x7FFF, b"x")),
    "software not utf-8": message(attribute(0x8022, b"\xff\xfe")),
    "rfc 5769 connectivity check": RFC5769_REQUEST,
    "oversized": message(attribute(0x8022, bytes(MAX_REQUEST_SIZE))),
}


@pytest.mark.parametrize("data", IGNORED.values(), ids=IGNORED.keys())
def test_ignored_silently_and_counted(data: bytes) -> None:
    before = counter("ignored")
    assert lenient().handle(data, CLIENT, now=0.0) is None
    assert counter("ignored") == before + 1


def test_rfc5769_request_is_a_well_formed_message() -> None:
    """The connectivity check above is refused for what it is, not for being malformed."""
    parsed = stun.parse_message(RFC5769_REQUEST)
    assert "MESSAGE-INTEGRITY" in parsed.attributes
    assert "USERNAME" in parsed.attributes
    aioice_mi = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    aioice_mi.add_message_integrity(b"key")
    assert lenient().handle(bytes(aioice_mi), CLIENT, now=0.0) is None


# --- fuzz -----------------------------------------------------------------------------------


def _oracle_valid(data: bytes) -> bool:
    """Independent of the responder's code: aioice parses it as a Binding request with no
    authentication or ICE attributes."""
    try:
        parsed = stun.parse_message(data)
    except (ValueError, struct.error):
        return False
    return (
        parsed.message_method == stun.Method.BINDING
        and parsed.message_class == stun.Class.REQUEST
        and not {"USERNAME", "MESSAGE-INTEGRITY", "ICE-CONTROLLED", "ICE-CONTROLLING"}
        & set(parsed.attributes)
    )


def _check(data: bytes, source: tuple[str, int]) -> bytes | None:
    reply = lenient().handle(data, source, now=0.0)
    if reply is not None:
        assert _oracle_valid(data)
        assert len(reply) <= len(data) + MAX_REPLY_GROWTH
        response = stun.parse_message(reply)
        assert response.message_class == stun.Class.RESPONSE
        assert response.transaction_id == data[8:20]
    return reply


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    _check(data, CLIENT)


_ATTRIBUTE_TYPES = [*stun.ATTRIBUTES_BY_TYPE, 0x0000, 0x7FFF, 0x8000, 0xFFFF]
_attributes = st.lists(
    st.tuples(st.sampled_from(_ATTRIBUTE_TYPES), st.binary(max_size=24)).map(
        lambda pair: attribute(*pair)
    ),
    max_size=4,
)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(
    _attributes,
    st.sampled_from([0x0001, 0x0001, 0x0101, 0x0011, 0x0003]),
    st.booleans(),
    st.binary(max_size=6),
    st.sampled_from([CLIENT, CLIENT6]),
)
def test_stun_shaped_junk_never_raises_and_only_valid_requests_are_answered(
    attrs: list[bytes], type_: int, fingerprint: bool, tail: bytes, source: tuple[str, int]
) -> None:
    data = message(*attrs, type_=type_, fingerprint=fingerprint)
    _check(data, source)
    if tail:  # a damaged length
        _check(data + tail, source)
        _check(header(len(data) - 20 + len(tail), type_) + data[20:], source)


@settings(max_examples=300)
@given(
    st.one_of(st.none(), st.text(max_size=28).filter(lambda s: len(s.encode()) <= 28)),
    st.booleans(),
    st.sampled_from([CLIENT, CLIENT6]),
)
def test_every_valid_request_is_answered(
    software: str | None, fingerprint: bool, source: tuple[str, int]
) -> None:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    if software is not None:
        request.attributes["SOFTWARE"] = software
    if fingerprint:
        request.add_fingerprint()
    assert _check(bytes(request), source) is not None


def test_reply_growth_bound_is_met_at_worst() -> None:
    """The worst case: the smallest request, an IPv6 source, the longest SOFTWARE."""
    limiter = SourceRateLimiter(RateConfig(), now=0.0)
    responder = StunResponder(limiter, software="s" * 28)
    reply = responder.handle(header(0), CLIENT6, now=0.0)
    assert reply is not None
    assert len(reply) == 20 + MAX_REPLY_GROWTH
    assert len(reply) / 20 <= 4.2


# --- rate limits ----------------------------------------------------------------------------


def test_per_ip_burst_then_refusal_then_refill() -> None:
    config = RateConfig(rate_per_source=20, burst_per_source=40, rate_total=10_000)
    responder = StunResponder(SourceRateLimiter(config, now=100.0))
    before = counter("rate_limited")
    answered = [responder.handle(header(0), CLIENT, now=100.0) is not None for _ in range(50)]
    assert answered == [True] * 40 + [False] * 10
    assert counter("rate_limited") == before + 10
    # another source is not affected
    assert responder.handle(header(0), ("192.0.2.2", 1), now=100.0) is not None
    # 20/s: one more token after 50 ms, not before
    assert responder.handle(header(0), CLIENT, now=100.04) is None
    assert responder.handle(header(0), CLIENT, now=100.051) is not None
    assert responder.handle(header(0), CLIENT, now=100.052) is None
    # after long enough, the full burst again, and never more
    answered = [responder.handle(header(0), CLIENT, now=200.0) is not None for _ in range(50)]
    assert answered.count(True) == 40


def test_junk_spends_no_tokens() -> None:
    config = RateConfig(rate_per_source=1, burst_per_source=2, rate_total=2)
    responder = StunResponder(SourceRateLimiter(config, now=0.0))
    for _ in range(100):
        assert responder.handle(b"\x80" * 40, CLIENT, now=0.0) is None
        assert responder.handle(header(0, type_=0x0101), CLIENT, now=0.0) is None
    assert responder.handle(header(0), CLIENT, now=0.0) is not None
    assert responder.handle(header(0), CLIENT, now=0.0) is not None
    assert responder.handle(header(0), CLIENT, now=0.0) is None


def test_ipv6_sources_are_limited_per_64() -> None:
    config = RateConfig(rate_per_source=1, burst_per_source=2, rate_total=1000)
    responder = StunResponder(SourceRateLimiter(config, now=0.0))
    results = [
        responder.handle(header(0), (f"2001:db8:0:1::{i:x}", 9), now=0.0) is not None
        for i in range(1, 5)
    ]
    assert results == [True, True, False, False]
    assert responder.handle(header(0), ("2001:db8:0:2::1", 9), now=0.0) is not None
    assert source_key("2001:db8:0:1:aaaa::1") == "2001:db8:0:1::/64"
    assert source_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert source_key("10.0.0.1") == "10.0.0.1"


def test_global_cap_whatever_the_sources() -> None:
    config = RateConfig(rate_per_source=20, burst_per_source=40, rate_total=100)
    responder = StunResponder(SourceRateLimiter(config, now=0.0))
    sources = [(str(ipaddress.IPv4Address(0x0A000000 + i)), 5000) for i in range(300)]
    answered = sum(responder.handle(header(0), s, now=0.0) is not None for s in sources)
    assert answered == 100
    answered = sum(responder.handle(header(0), s, now=0.5) is not None for s in sources)
    assert answered == 50
    answered = sum(responder.handle(header(0), s, now=10.0) is not None for s in sources)
    assert answered == 100


def test_table_is_bounded_under_a_spoofed_flood() -> None:
    limiter = SourceRateLimiter(RateConfig(max_sources=10_000), now=0.0)
    addresses = [str(ipaddress.IPv4Address(0x0B000000 + i)) for i in range(100_000)]
    v6 = [f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::1" for i in range(20_000)]
    gc.collect()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for now, address in enumerate([*addresses, *v6]):
            limiter.allow(address, now=now * 1e-6)
            assert len(limiter) <= 10_000
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(limiter) == 10_000
    # ~10k buckets and keys: a few MB at most; 120k would be several times that
    assert end - start < 4_000_000, end - start
    assert peak - start < 5_000_000, peak - start
    # the most recent sources are the ones kept
    assert limiter.allow(v6[-1], now=1.0)
    assert sys.getsizeof(TokenBucket(1, 1, 0)) < 100  # slots, no __dict__


def test_least_recently_seen_source_is_evicted() -> None:
    config = RateConfig(rate_per_source=1, burst_per_source=1, rate_total=1e6, max_sources=2)
    limiter = SourceRateLimiter(config, now=0.0)
    assert limiter.allow("10.0.0.1", 0.0)
    assert limiter.allow("10.0.0.2", 0.0)
    assert not limiter.allow("10.0.0.1", 0.0)  # seen again: most recent, and empty
    assert limiter.allow("10.0.0.3", 0.0)  # evicts 10.0.0.2, not 10.0.0.1
    assert not limiter.allow("10.0.0.1", 0.0)
    assert limiter.allow("10.0.0.2", 0.0)  # forgotten, so a fresh bucket


def test_clock_going_backwards_refills_nothing() -> None:
    bucket = TokenBucket(rate=10, burst=1, now=5.0)
    assert bucket.take(5.0)
    assert not bucket.take(4.0)
    assert not bucket.take(5.05)
    assert bucket.take(5.11)


class RateFields(TypedDict, total=False):
    """The fields of RateConfig."""

    rate_per_source: float
    burst_per_source: float
    rate_total: float
    max_sources: int


@pytest.mark.parametrize(
    "config",
    [
        {"rate_per_source": 0},
        {"burst_per_source": -1},
        {"rate_total": 0},
        {"max_sources": 0},
    ],
)
def test_rate_config_refuses_nonsense(config: RateFields) -> None:
    with pytest.raises(ValueError):
        RateConfig(**config)


# --- settings and ice_servers ---------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings from defaults only: no SFU_* variables, no config/sfu.toml."""
    for name in list(os.environ):
        if name.startswith("SFU_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_responder_from_settings_uses_the_stun_limits(clean_env: None) -> None:
    settings = load_settings(stun_rate_per_ip=1, stun_burst_per_ip=3, stun_rate_total=50)
    responder = StunResponder.from_settings(settings.stun, now=0.0)
    assert [responder.handle(header(0), CLIENT, 0.0) is not None for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    assert responder.limiter.config.max_sources == settings.stun.max_sources == 10_000


def test_ice_servers_advertise_the_public_host(clean_env: None) -> None:
    assert ice_servers(load_settings().stun) == [{"urls": ["stun:sfu.cotept.com:3478"]}]
    assert ice_servers(load_settings(stun_host="203.0.113.5", stun_port=3479).stun) == [
        {"urls": ["stun:203.0.113.5:3479"]}
    ]
    assert ice_servers(load_settings(stun_host="2001:db8::5").stun) == [
        {"urls": ["stun:[2001:db8::5]:3478"]}
    ]
    assert ice_servers(load_settings(stun_enabled=False).stun) == []


def test_stun_bind_must_be_an_address(clean_env: None) -> None:
    with pytest.raises(ValueError):
        load_settings(stun_bind="not-an-address")
    assert load_settings(stun_bind="::").stun.bind == "::"
