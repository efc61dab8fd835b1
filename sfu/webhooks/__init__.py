"""Signed webhooks to the backend (docs/api.md §5): room, participant and track events."""

from sfu.webhooks.context import WEBHOOKS, webhooks_ctx
from sfu.webhooks.payload import (
    SIGNATURE_HEADER,
    WebhookEvent,
    build_event,
    encode_body,
    new_event_id,
    sign,
    verify_signature,
)
from sfu.webhooks.policy import Backoff, Verdict, classify, parse_retry_after
from sfu.webhooks.queue import PendingEvents
from sfu.webhooks.sender import SenderStats, WebhookSender

__all__ = [
    "SIGNATURE_HEADER",
    "WEBHOOKS",
    "Backoff",
    "PendingEvents",
    "SenderStats",
    "Verdict",
    "WebhookEvent",
    "WebhookSender",
    "build_event",
    "classify",
    "encode_body",
    "new_event_id",
    "parse_retry_after",
    "sign",
    "verify_signature",
    "webhooks_ctx",
]
