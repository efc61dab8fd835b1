"""Where a new room goes: pure, so it is tested without Redis.

Every live node that is not draining, has a room slot left and media ports for one more 1:1
room (`PORTS_PER_ROOM`) is a candidate; the room goes to the candidate with the lowest score

    score = rooms + placed + CPU_WEIGHT * cpu_load

where `rooms` is what the node reported at its last heartbeat, `placed` the rooms any node has
placed on it since (counted in the directory for two heartbeats, so a burst of creations
spreads over the nodes before their heartbeats catch up), and `cpu_load` the CPU cores the
node's process used over its last heartbeat interval (one core ≈ `CPU_WEIGHT` rooms). Ties go
to the node that sorts first by id, so the choice is the same on every node."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sfu.cluster.node_info import NodeInfo

PORTS_PER_ROOM = 4
"""A 1:1 room: two participants, a publisher and a subscriber connection each."""
CPU_WEIGHT = 20.0


def score(node: NodeInfo, placed: int) -> float:
    return node.rooms + placed + CPU_WEIGHT * node.cpu_load


def can_take(node: NodeInfo, placed: int) -> bool:
    return (
        not node.draining
        and node.room_slots - placed > 0
        and node.free_ports - placed * PORTS_PER_ROOM >= PORTS_PER_ROOM
    )


def choose_node(nodes: Iterable[NodeInfo], placed: Mapping[str, int]) -> NodeInfo | None:
    """The node a new room goes to, or None when no node can take one."""
    candidates = [n for n in nodes if can_take(n, placed.get(n.node_id, 0))]
    if not candidates:
        return None
    return min(candidates, key=lambda n: (score(n, placed.get(n.node_id, 0)), n.node_id))
