"""What the desk uses of the Slack channel, and direct answers to one person."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from hub.errors import ChannelSendError

log = logging.getLogger(__name__)


class SlackTransport(Protocol):
    """What the desk uses of ``channels.slack.SlackChannel``: the Web API,
    the bot's own user id, and the hand-over of agent payloads to the desk."""

    bot_user_id: str | None

    def attach(self, handler: Any) -> None: ...

    async def call(self, method: str, *, http_get: bool = False, **kwargs: Any) -> dict[str, Any]: ...

    async def whoami(self) -> str | None: ...


async def post_ephemeral(transport: SlackTransport, channel: str, user: str, text: str) -> None:
    # Answers to one person: direct, not queued (nobody else would see them).
    try:
        await transport.call("chat.postEphemeral", channel=channel, user=user, text=text)
    except ChannelSendError as err:
        log.warning("ephemeral to %s failed: %s", user, err.message)
