"""MuxTable: routing by ufrag, then by remote address; moves, caps and removal."""

from __future__ import annotations

import pytest

from sfu.ice.mux_table import MuxTable, UfragTaken

A1 = ("198.51.100.1", 5000)
A2 = ("198.51.100.1", 5001)


def test_route_by_ufrag_then_address() -> None:
    table: MuxTable[str] = MuxTable()
    table.add("ufrag-a", "a")
    table.add("ufrag-b", "b")
    assert table.by_ufrag("ufrag-a") == "a" and table.by_ufrag("nope") is None
    assert table.route(A1) is None
    assert table.bind(A1, "a", move=False)
    assert table.route(A1) == "a" and table.addresses("a") == [A1]
    assert (len(table), table.bound) == (2, 1)
    with pytest.raises(UfragTaken):
        table.add("ufrag-a", "c")
    with pytest.raises(ValueError):
        table.add("", "c")


def test_only_a_checked_request_moves_an_address() -> None:
    table: MuxTable[str] = MuxTable()
    table.add("ua", "a")
    table.add("ub", "b")
    table.bind(A1, "a", move=True)
    # b sending STUN to a's peer (a candidate naming someone else's address) takes nothing
    assert not table.bind(A1, "b", move=False)
    assert table.route(A1) == "a"
    # a request to b from that address, integrity checked, does (a client port reused)
    assert table.bind(A1, "b", move=True)
    assert table.route(A1) == "b" and table.addresses("a") == []


def test_addresses_per_connection_are_capped_oldest_first() -> None:
    table: MuxTable[str] = MuxTable(max_addresses=2)
    table.add("ua", "a")
    table.bind(A1, "a", move=True)
    table.bind(A2, "a", move=True)
    table.bind(("203.0.113.9", 7), "a", move=True)  # an address change, a third address
    assert table.route(A1) is None and table.route(A2) == "a"
    assert table.bound == 2


def test_remove_forgets_everything_and_twice_is_harmless() -> None:
    table: MuxTable[str] = MuxTable()
    table.add("ua", "a")
    table.bind(A1, "a", move=True)
    table.remove("a")
    table.remove("a")
    assert table.route(A1) is None and table.by_ufrag("ua") is None and len(table) == 0
    assert not table.bind(A1, "a", move=True)  # closed: nothing binds to it
    table.add("ua", "a2")  # the ufrag is free again
    assert table.by_ufrag("ua") == "a2"
