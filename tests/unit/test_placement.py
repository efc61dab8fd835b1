"""Where a new room goes (sfu/cluster/placement.py), and the node token of internal hops."""

from __future__ import annotations

import dataclasses

from sfu.cluster.node_info import NodeInfo
from sfu.cluster.node_token import mint_node_token, verify_node_token
from sfu.cluster.placement import PORTS_PER_ROOM, can_take, choose_node

BASE = NodeInfo(
    node_id="a",
    internal_url="http://10.0.0.1:8080",
    ws_url=None,
    media_address="203.0.113.1",
    rooms=0,
    participants=0,
    free_ports=200,
    room_slots=100,
    cpu_load=0.0,
    draining=False,
    version="0.1.0",
    started_at="2026-12-04T00:00:00.000Z",
)


def node(node_id: str, **changes: object) -> NodeInfo:
    return dataclasses.replace(BASE, node_id=node_id, **changes)  # type: ignore[arg-type]


def test_the_least_loaded_node_takes_the_room() -> None:
    nodes = [node("a", rooms=3), node("b", rooms=1), node("c", rooms=2)]
    assert choose_node(nodes, {}) == nodes[1]


def test_rooms_placed_since_the_last_heartbeat_count() -> None:
    nodes = [node("a", rooms=1), node("b", rooms=1)]
    placed: dict[str, int] = {}
    chosen = []
    for _ in range(6):  # a burst before any heartbeat: the placed counts spread it
        target = choose_node(nodes, placed)
        assert target is not None
        chosen.append(target.node_id)
        placed[target.node_id] = placed.get(target.node_id, 0) + 1
    assert chosen.count("a") == chosen.count("b") == 3


def test_cpu_load_weighs_like_rooms() -> None:
    busy, idle = node("a", rooms=1, cpu_load=0.5), node("b", rooms=5, cpu_load=0.0)
    assert choose_node([busy, idle], {}) == idle  # 1 + 20 x 0.5 = 11 > 5
    assert choose_node([node("a", rooms=1, cpu_load=0.1), idle], {}).node_id == "a"  # type: ignore[union-attr]


def test_draining_full_or_portless_nodes_take_nothing() -> None:
    draining = node("a", draining=True)
    full = node("b", room_slots=0)
    no_ports = node("c", free_ports=PORTS_PER_ROOM - 1)
    assert choose_node([draining, full, no_ports], {}) is None
    assert not can_take(node("d", room_slots=2), placed=2)
    assert not can_take(node("e", free_ports=2 * PORTS_PER_ROOM), placed=2)
    assert can_take(node("f", free_ports=3 * PORTS_PER_ROOM), placed=2)


def test_ties_go_to_the_first_node_id_on_every_node() -> None:
    nodes = [node("b"), node("c"), node("a")]
    assert choose_node(nodes, {}).node_id == "a"  # type: ignore[union-attr]
    assert choose_node(list(reversed(nodes)), {}).node_id == "a"  # type: ignore[union-attr]


def test_node_info_round_trips_through_json() -> None:
    entry = node("x", rooms=4, cpu_load=0.25, ws_url="wss://sfu-a.cotept.com/ws")
    assert NodeInfo.from_json(entry.to_json()) == entry


SECRET = "cluster-unit-test-secret-0123456789"


def test_a_node_token_names_its_node_and_expires() -> None:
    assert verify_node_token(SECRET, mint_node_token(SECRET, "node-a")) == "node-a"
    assert (
        verify_node_token("another-secret-0123456789abcdef-xyz", mint_node_token(SECRET, "a"))
        is None
    )
    assert verify_node_token(SECRET, mint_node_token(SECRET, "a", now=1_000_000.0)) is None
    assert verify_node_token(SECRET, "not-a-token") is None
    assert verify_node_token(SECRET, "\udcff") is None  # a header that was not UTF-8


def test_a_service_or_participant_token_is_no_node_token() -> None:
    from sfu.api.tokens import mint_participant_token, mint_service_token

    assert verify_node_token(SECRET, mint_service_token(SECRET)) is None
    participant = mint_participant_token(SECRET, room_id="r", user_id="u", role="mentor")
    assert verify_node_token(SECRET, participant) is None
