"""The VOD job queue's protocol and data, shared by its two implementations (local_queue.py:
`LocalJobQueue`, redis_queue.py: `RedisJobQueue`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

DEFAULT_MAX_ATTEMPTS = 3

JobState = Literal["queued", "done", "dead"]
"""What a queue remembers of a session: a job pending or claimed (`queued`), acked
(`done`: its VOD is published), or given up (`dead`)."""


@dataclass(frozen=True, slots=True)
class Job:
    session_id: str
    job_id: str
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class DeadJob:
    """A dead letter: a job that failed `attempts` times, the last time for `reason`."""

    session_id: str
    job_id: str
    attempts: int
    reason: str
    failed_at: str  # RFC 3339

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "job_id": self.job_id,
            "attempts": self.attempts,
            "reason": self.reason,
            "failed_at": self.failed_at,
        }


class JobQueue(Protocol):
    max_attempts: int

    async def enqueue(self, session_id: str) -> None:
        """Queue the session unless a job for it is already pending or claimed."""
        ...

    async def claim(self, consumer: str, *, block_s: float) -> Job | None:
        """Take the next pending job, waiting at most `block_s`; None if there is none."""
        ...

    async def ack(self, job: Job) -> None:
        """The job is done (its VOD is published): remove it, remembering the session done."""
        ...

    async def fail(self, job: Job, reason: str) -> bool:
        """The attempt failed: back to pending, or dead after max_attempts. True if dead."""
        ...

    async def heartbeat(self, job: Job, consumer: str) -> None:
        """The claim is still alive (resets its idle time)."""
        ...

    async def reclaim(self, consumer: str, *, idle_s: float) -> list[Job]:
        """Take over jobs claimed by any consumer that has been silent for `idle_s`."""
        ...

    async def pending_count(self) -> int:
        """Jobs not done yet: pending or claimed."""
        ...

    async def state(self, session_id: str) -> JobState | None:
        """What the queue knows of the session (a queued job first); None: nothing."""
        ...

    async def list_dead(self) -> list[DeadJob]:
        """The dead letters, oldest first, one per session (its latest)."""
        ...

    async def requeue(self, session_id: str) -> bool:
        """Move the session's dead job back to pending with its attempts reset; False if the
        session has no dead job."""
        ...

    async def close(self) -> None: ...


def safe_name(session_id: str) -> str:
    """The session's job file name; refuses ids that could leave the queue's folders."""
    if not session_id or "/" in session_id or "\\" in session_id or session_id.startswith("."):
        raise ValueError(f"bad session id {session_id!r}")
    return f"{session_id}.json"
