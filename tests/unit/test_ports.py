"""PortAllocator: which port is handed out, skipping, exhaustion, release and gauges."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from sfu.core.errors import NoCapacity
from sfu.ice.ports import PortAllocator, PortsExhausted, candidate_ports

LOCALHOST = "127.0.0.1"


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Sockets a test opens; closed at the end whatever happens."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def _port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def _gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


# --- the pure choice of ports ---------------------------------------------------------------


def test_candidate_ports_start_at_min_without_cursor() -> None:
    assert list(candidate_ports(10, 14, None, set())) == [10, 11, 12, 13, 14]


def test_candidate_ports_start_after_cursor_and_wrap() -> None:
    assert list(candidate_ports(10, 14, 12, set())) == [13, 14, 10, 11, 12]
    assert list(candidate_ports(10, 14, 14, set())) == [10, 11, 12, 13, 14]


def test_candidate_ports_skip_taken() -> None:
    assert list(candidate_ports(10, 14, 11, {13, 10})) == [12, 14, 11]
    assert list(candidate_ports(10, 12, None, {10, 11, 12})) == []


def test_candidate_ports_single_port_range() -> None:
    assert list(candidate_ports(7, 7, 7, set())) == [7]


# --- binding --------------------------------------------------------------------------------


def test_binds_in_order_from_the_bottom_of_the_range(sockets: list[socket.socket]) -> None:
    allocator = PortAllocator(41000, 41004)
    for _ in range(3):
        sockets.append(allocator.bind_udp(LOCALHOST))
    assert [_port(s) for s in sockets] == [41000, 41001, 41002]
    for sock in sockets:
        assert sock.getsockname()[0] == LOCALHOST
        assert sock.type == socket.SOCK_DGRAM
        assert sock.family == socket.AF_INET
        assert not sock.getblocking()
    assert allocator.in_use == 3
    assert allocator.is_bound(LOCALHOST, 41001)


def test_round_robin_does_not_reuse_a_just_released_port(sockets: list[socket.socket]) -> None:
    allocator = PortAllocator(41010, 41012)
    first = allocator.bind_udp(LOCALHOST)
    assert _port(first) == 41010
    first.close()
    allocator.release(LOCALHOST, 41010)

    second = allocator.bind_udp(LOCALHOST)
    sockets.append(second)
    assert _port(second) == 41011
    third = allocator.bind_udp(LOCALHOST)
    sockets.append(third)
    assert _port(third) == 41012
    # The range wraps around to the released port.
    fourth = allocator.bind_udp(LOCALHOST)
    sockets.append(fourth)
    assert _port(fourth) == 41010


def test_skips_a_port_held_by_another_socket(sockets: list[socket.socket]) -> None:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(blocker)
    blocker.bind((LOCALHOST, 41021))

    allocator = PortAllocator(41020, 41024)
    for _ in range(3):
        sockets.append(allocator.bind_udp(LOCALHOST))
    assert [_port(s) for s in sockets[1:]] == [41020, 41022, 41023]
    assert not allocator.is_bound(LOCALHOST, 41021)


def test_exhaustion_raises_no_capacity(sockets: list[socket.socket]) -> None:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(blocker)
    blocker.bind((LOCALHOST, 41031))

    allocator = PortAllocator(41030, 41032)
    sockets.append(allocator.bind_udp(LOCALHOST))
    sockets.append(allocator.bind_udp(LOCALHOST))
    with pytest.raises(PortsExhausted) as caught:
        allocator.bind_udp(LOCALHOST)
    assert isinstance(caught.value, NoCapacity)
    assert caught.value.code == "no_capacity"
    assert "41030-41032" in caught.value.message
    assert allocator.in_use == 2

    # A released port can be bound again.
    released = _port(sockets[1])
    sockets[1].close()
    allocator.release(LOCALHOST, released)
    sockets.append(allocator.bind_udp(LOCALHOST))
    assert _port(sockets[-1]) == 41030


def test_an_address_that_is_not_local_raises_os_error() -> None:
    allocator = PortAllocator(41040, 41042)
    with pytest.raises(OSError):
        allocator.bind_udp("192.0.2.1")  # TEST-NET-1, never a local address
    assert allocator.in_use == 0


def test_release_is_idempotent(sockets: list[socket.socket]) -> None:
    allocator = PortAllocator(41050, 41053)
    sockets.append(allocator.bind_udp(LOCALHOST))
    sockets.append(allocator.bind_udp(LOCALHOST))
    assert allocator.in_use == 2

    allocator.release(LOCALHOST, 41050)
    allocator.release(LOCALHOST, 41050)
    assert allocator.in_use == 1
    allocator.release("10.9.8.7", 41051)  # never bound on that address
    allocator.release(LOCALHOST, 40000)  # outside the range
    assert allocator.in_use == 1
    assert allocator.is_bound(LOCALHOST, 41051)


def test_addresses_are_tracked_separately(sockets: list[socket.socket]) -> None:
    allocator = PortAllocator(41060, 41062)
    sockets.append(allocator.bind_udp("127.0.0.1"))
    sockets.append(allocator.bind_udp("127.0.0.2"))
    assert allocator.in_use == 2
    allocator.release("127.0.0.2", _port(sockets[1]))
    assert allocator.in_use == 1
    assert allocator.is_bound("127.0.0.1", _port(sockets[0]))


def test_ipv6_socket(sockets: list[socket.socket]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    allocator = PortAllocator(41070, 41072)
    try:
        sock = allocator.bind_udp("::1")
    except OSError as exc:
        pytest.skip(f"cannot bind ::1: {exc}")
    sockets.append(sock)
    assert sock.family == socket.AF_INET6
    assert 41070 <= _port(sock) <= 41072
    allocator.release("0:0::1", _port(sock))  # any spelling of the address
    assert allocator.in_use == 0


def test_gauges_track_every_change(sockets: list[socket.socket]) -> None:
    allocator = PortAllocator(41080, 41083)
    assert _gauge("sfu_media_ports_in_use") == 0
    assert _gauge("sfu_media_ports_free") == 4

    sockets.append(allocator.bind_udp(LOCALHOST))
    sockets.append(allocator.bind_udp(LOCALHOST))
    assert (allocator.capacity, allocator.in_use, allocator.free) == (4, 2, 2)
    assert _gauge("sfu_media_ports_in_use") == 2
    assert _gauge("sfu_media_ports_free") == 2

    allocator.release(LOCALHOST, 41080)
    assert _gauge("sfu_media_ports_in_use") == 1
    assert _gauge("sfu_media_ports_free") == 3


@pytest.mark.parametrize(("low", "high"), [(41010, 41009), (0, 10), (65535, 65536)])
def test_bad_range_is_refused(low: int, high: int) -> None:
    with pytest.raises(ValueError):
        PortAllocator(low, high)
