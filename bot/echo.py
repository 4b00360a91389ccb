"""A fake bot for tests, demos and benchmarks: it answers "Echo: <message>".

It listens for ``MessageReceived`` on the bus and replies through the hub's
service, like the real bot client does, so the reply takes the real path:
stored, queued in the outbox, delivered by the conversation's channel.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Collection
from typing import Any, Protocol

from aiohttp import web

from hub import keys
from hub.events import MessageReceived
from hub.models import AuthorKind

log = logging.getLogger(__name__)

PREFIX = "Echo: "


class Replier(Protocol):
    """What the echo bot needs of the hub's ``ConversationService``."""

    async def reply(
        self,
        conversation_id: int,
        text: str,
        *,
        author_kind: AuthorKind,
        idempotency_key: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> object: ...


class EchoBot:
    def __init__(self, service: Replier, *, channels: Collection[str] | None = None) -> None:
        self.service = service
        self.channels = set(channels) if channels is not None else None
        self.replied = 0

    async def on_message(self, event: MessageReceived) -> None:
        if self.channels is not None and event.channel not in self.channels:
            return
        if not event.answerable:  # a keyword or machine-written mail, as the real bot's jobs
            return
        await self.service.reply(
            event.conversation_id,
            f"{PREFIX}{event.body}",
            author_kind=AuthorKind.BOT,
            # One reply per inbound message, even if the event is delivered twice.
            idempotency_key=f"echo:{event.message_id}",
            meta={"author_kind": AuthorKind.BOT.value},
        )
        self.replied += 1


# The running EchoBot (tests read its ``replied`` count).
ECHO_BOT = web.AppKey("echo_bot", EchoBot)


def install_echo_bot(app: web.Application, *, channels: Collection[str] | None = None) -> None:
    """Subscribe an ``EchoBot`` while the app runs (call before the app starts)."""

    async def echo_bot_ctx(app: web.Application) -> AsyncIterator[None]:
        bot = EchoBot(app[keys.SERVICE], channels=channels)
        app[ECHO_BOT] = bot
        # here: the instance that stored the message answers it, once in a cluster.
        unsubscribe = app[keys.BUS].subscribe(MessageReceived, bot.on_message, here=True)
        try:
            yield
        finally:
            unsubscribe()

    app.cleanup_ctx.append(echo_bot_ctx)
