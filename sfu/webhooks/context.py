"""aiohttp glue: the webhook sender as a cleanup_ctx resource of the app.

Registered before the media context, so it is torn down after it: the `room_finished`
events the media context emits while closing rooms are still queued and flushed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from sfu.app.keys import EVENTS, SETTINGS
from sfu.config.settings import DEV_JWT_SECRET
from sfu.webhooks.sender import WebhookSender, redact_url

logger = logging.getLogger(__name__)

WEBHOOKS = web.AppKey("webhooks", WebhookSender)
"""The running sender, when `webhook_url` is set."""


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if not settings.webhooks.url:
        yield
        return
    sender = WebhookSender.from_settings(settings)
    if settings.jwt_secret == DEV_JWT_SECRET:
        logger.warning("webhooks are signed with the development secret; set SFU_JWT_SECRET")
    await sender.start()
    app[WEBHOOKS] = sender
    app[EVENTS].add(sender)
    logger.info(
        "webhooks to %s (queue %d, %d attempts, %.1fs timeout)",
        redact_url(settings.webhooks.url),
        settings.webhooks.queue_size,
        settings.webhooks.max_attempts,
        settings.webhooks.timeout_s,
    )
    yield
    await sender.close()
