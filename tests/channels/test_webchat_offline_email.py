"""The web chat's promise kept: an agent's reply to a visitor who left goes
to their e-mail address too, and their e-mail answer lands in the chat's
conversation. E-mail here is the fake channel standing in for it (the real
e-mail channel's own tests send over SMTP)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from channels.fake import FakeChannel, FakeRecorder
from channels.webchat import WebchatChannel
from hub.messages import InboundMessage
from tests.channels.test_webchat_support import webchat_settings
from tests.conftest import close_hub, start_hub, wait_for


class EmailStandIn(FakeChannel):
    name: ClassVar[str] = "email"
    threads_by_reference: ClassVar[bool] = True


@pytest.mark.asyncio
async def test_a_reply_to_a_visitor_who_left_goes_by_email_and_their_answer_comes_back(
    database_url: str, tmp_path: Path
) -> None:
    settings = webchat_settings(
        database_url, tmp_path, channels="webchat", webchat_page_url="https://shop.example/help"
    )
    mailbox = FakeRecorder()
    hub = await start_hub(
        settings, channels={"webchat": WebchatChannel.from_settings(settings), "email": EmailStandIn(settings, mailbox)}
    )
    try:
        # A visitor asked, left their address in the chat (unverified), and closed the tab.
        asked = await hub.service.ingest(
            InboundMessage(
                channel="webchat",
                sender="visitor-gone",
                text="Can someone call me back about my refund?",
                contact_hints={"email": "Ada@Example.test"},
            )
        )
        cid = asked.conversation.id
        await hub.api(
            "POST", f"/api/v1/conversations/{cid}/messages", role="agent", json={"text": "Refund sent!"}, expect=201
        )
        await wait_for(lambda: len(mailbox.sent) == 1)
        [copy] = mailbox.sent
        assert copy.to == "ada@example.test" and copy.conversation_id == cid
        assert copy.text.startswith("Refund sent!") and "https://shop.example/help" in copy.text
        # A bot's answer is not e-mailed (the visitor sees it when they come back).
        from hub.models import AuthorKind

        await hub.service.reply(cid, "Anything else?", author_kind=AuthorKind.BOT)
        # Their e-mail answer (the reply token names the conversation) joins the chat's conversation.
        answer = await hub.service.ingest(
            InboundMessage(
                channel="email",
                sender="ada@example.test",
                text="Thank you!",
                external_id="<thanks@mail.example>",
                conversation_hint=cid,
            )
        )
        assert answer.conversation.id == cid
        # Answering the copy proved the address: it is now the chat contact's, verified.
        contact = await hub.api("GET", f"/api/v1/contacts/{asked.message.contact_id}")
        assert contact["email"] == "ada@example.test" and answer.message.contact_id == contact["id"]
        # Someone else writing with the token is not filed there.
        stranger = await hub.service.ingest(
            InboundMessage(channel="email", sender="eve@example.test", text="me too", conversation_hint=cid)
        )
        assert stranger.conversation.id != cid
        assert len(mailbox.sent) == 1
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_a_visitor_without_an_address_gets_no_email(database_url: str, tmp_path: Path) -> None:
    settings = webchat_settings(database_url, tmp_path, channels="webchat")
    mailbox = FakeRecorder()
    hub = await start_hub(
        settings, channels={"webchat": WebchatChannel.from_settings(settings), "email": EmailStandIn(settings, mailbox)}
    )
    try:
        asked = await hub.service.ingest(InboundMessage(channel="webchat", sender="visitor-anon", text="hello?"))
        reply = await hub.api(
            "POST",
            f"/api/v1/conversations/{asked.conversation.id}/messages",
            role="agent",
            json={"text": "Hi!"},
            expect=201,
        )
        await wait_for(lambda: _sent(hub, reply["id"]))
        assert mailbox.sent == []
    finally:
        await close_hub(hub)


async def _sent(hub, message_id: int) -> bool:  # type: ignore[no-untyped-def]
    return (await hub.api("GET", f"/api/v1/messages/{message_id}"))["delivery_status"] == "sent"
