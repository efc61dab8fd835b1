"""The lifecycle's audit trail: one line per object changed, on the `sfu.lifecycle.audit`
logger, e.g. `tier session=s1 key=vod/sessions/s1/master.m3u8 from=Standard
to=InfrequentAccess` or `delete session=s1 key=... from=Archive to=deleted`. The fields are
also given as log record extras (`action`, `session_id`, `key`, `from_tier`, `to_tier`), which the
JSON log format prints."""

from __future__ import annotations

import logging

audit = logging.getLogger("sfu.lifecycle.audit")


def audit_change(session_id: str, key: str, from_tier: str, to_tier: str) -> None:
    action = "delete" if to_tier == "deleted" else "tier"
    audit.info(
        "%s session=%s key=%s from=%s to=%s",
        action,
        session_id,
        key,
        from_tier,
        to_tier,
        extra={
            "action": f"lifecycle.{action}",
            "session_id": session_id,
            "key": key,
            "from_tier": from_tier,
            "to_tier": to_tier,
        },
    )


def audit_orphan(kind: str, target: str) -> None:
    """One line per orphan deleted by `sfu lifecycle orphans --apply`."""
    audit.info(
        "orphan-delete kind=%s target=%s",
        kind,
        target,
        extra={"action": "lifecycle.orphan_delete", "kind": kind, "target": target},
    )
