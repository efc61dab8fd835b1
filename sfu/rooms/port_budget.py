"""Admission control on media ports: a join is refused at once (4503) when the ports its peer
connections will need are not left, instead of failing later during negotiation."""

from __future__ import annotations

from dataclasses import dataclass

from sfu.core.errors import NoCapacity


@dataclass(slots=True)
class PortBudget:
    capacity: int
    sockets_per_connection: int = 1
    reserved: int = 0

    def needed(self, role: str) -> int:
        connections = 1 if role == "observer" else 2
        return connections * self.sockets_per_connection

    def reserve(self, role: str) -> int:
        need = self.needed(role)
        if self.reserved + need > self.capacity:
            raise NoCapacity(
                f"no media ports left for a {role}: {self.reserved} of {self.capacity} reserved"
            )
        self.reserved += need
        return need

    def release(self, amount: int) -> None:
        self.reserved = max(0, self.reserved - amount)
