"""Admission control on media ports: a join is refused at once (4503) when the ports its peer
connections will need are not left, instead of failing later during negotiation. With the
shared media port (SFU_RTC_UDP_PORT) connections take no port of their own: `capacity` is
None and ports refuse nothing (rooms are bounded by SFU_MAX_ROOMS and the CPU)."""

from __future__ import annotations

from dataclasses import dataclass

from sfu.core.errors import NoCapacity

UNBOUNDED_FREE = 1 << 20
"""What `free` reports without a capacity: more than any room could need."""


@dataclass(slots=True)
class PortBudget:
    capacity: int | None
    sockets_per_connection: int = 1
    reserved: int = 0

    @property
    def free(self) -> int:
        if self.capacity is None:
            return UNBOUNDED_FREE
        return max(0, self.capacity - self.reserved)

    def needed(self, role: str) -> int:
        connections = 1 if role == "observer" else 2
        return connections * self.sockets_per_connection

    def reserve(self, role: str) -> int:
        need = self.needed(role)
        if self.capacity is not None and self.reserved + need > self.capacity:
            raise NoCapacity(
                f"no media ports left for a {role}: {self.reserved} of {self.capacity} reserved"
            )
        self.reserved += need
        return need

    def release(self, amount: int) -> None:
        self.reserved = max(0, self.reserved - amount)
