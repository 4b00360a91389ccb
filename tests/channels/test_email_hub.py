"""E-mail through the whole hub, with the hub's own ``ChannelHost``.

These need the hub side of issue #15, built on main alongside this channel:

- ``HubService.store_attachment`` (every mail keeps its original through it:
  until it exists, the SMTP server answers 451 and nothing is stored, so
  every test here fails at its first mail) and ``GET /api/v1/attachments/{id}``;
- threading at ingest by ``InboundMessage.references`` and
  ``conversation_hint``, with a header match from another sender opening a
  new conversation;
- the outbox filling ``OutboundMessage.references`` (newest first) for a
  channel with ``threads_by_reference``, and ``automated`` for bot replies;
- ``InboundMessage.automated``: stored, never answered by the bot.

Same helpers as ``test_email.py`` (``email_hub(...)``).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier
from typing import Any

import pytest

from hub.attachments import AttachmentStore
from tests.channels.email_support import (
    CUSTOMER,
    EmailHub,
    email_hub,
    fixture_mail,
    mail,
    smtp_send,
    timeline,
)
from tests.conftest import wait_for


@pytest.mark.asyncio
async def test_the_original_is_kept_by_the_hub_and_served_to_agents(database_url: str, tmp_path: Path) -> None:
    async with email_hub(database_url, tmp_path) as running:
        raw = fixture_mail("gmail-reply.eml")
        assert (await smtp_send(running.smtp_port, raw, mail_from="ada.lovelace@gmail.example")).data == 250
        [message] = await timeline(running.hub, "ada.lovelace@gmail.example")
        [original] = [a for a in message.attachments if a["kind"] == "original"]
        response = await running.hub.client.get(
            f"/api/v1/attachments/{original['id']}", headers=running.hub.auth("agent")
        )
        assert response.status == 200
        assert b"Your order #1234 left our warehouse today." in await response.read()


@pytest.mark.asyncio
async def test_the_hubs_reply_continues_the_customers_thread(database_url: str, tmp_path: Path) -> None:
    async with email_hub(database_url, tmp_path) as running:
        raw = mail("Where is my parcel?", message_id="<q1@customer.example.org>")
        assert (await smtp_send(running.smtp_port, raw)).data == 250
        [question] = await timeline(running.hub)
        await running.hub.api(
            "POST",
            f"/api/v1/conversations/{question.conversation_id}/messages",
            role="agent",
            json={"text": "It left today."},
            expect=201,
        )
        [sent] = await running.sink.wait_for(1)
        assert sent.message["In-Reply-To"] == "<q1@customer.example.org>"
        assert "<q1@customer.example.org>" in str(sent.message["References"])


@pytest.mark.asyncio
async def test_a_reply_joins_its_conversation_by_references_or_token(database_url: str, tmp_path: Path) -> None:
    # With no reopen window, a customer's new mail after a resolution opens a new conversation:
    # only threading can bring a late reply back to the old one.
    async with email_hub(database_url, tmp_path, reopen_window_hours=0) as running:
        assert (
            await smtp_send(running.smtp_port, mail("First question", message_id="<f1@customer.example.org>"))
        ).data == 250
        [first] = await timeline(running.hub)
        await running.hub.api(
            "POST",
            f"/api/v1/conversations/{first.conversation_id}/messages",
            role="agent",
            json={"text": "Answer"},
            expect=201,
        )
        [sent] = await running.sink.wait_for(1)
        await running.hub.api(
            "PATCH", f"/api/v1/conversations/{first.conversation_id}", role="agent", json={"status": "resolved"}
        )
        new_topic = mail("Another topic", message_id="<n1@customer.example.org>")
        assert (await smtp_send(running.smtp_port, new_topic)).data == 250
        late = mail(
            "About your answer",
            message_id="<l1@customer.example.org>",
            headers={"In-Reply-To": sent.message["Message-ID"]},
        )
        assert (await smtp_send(running.smtp_port, late)).data == 250
        reply_to = sent.message["Reply-To"].addresses[0].addr_spec
        by_token = mail("Only the address", to=reply_to, message_id="<t1@customer.example.org>")
        assert (await smtp_send(running.smtp_port, by_token, rcpt_to=(reply_to,))).data == 250
        conversations = {m.body: m.conversation_id for m in await _all_inbound(running)}
        assert conversations["About your answer"] == first.conversation_id
        assert conversations["Only the address"] == first.conversation_id
        assert conversations["Another topic"] != first.conversation_id


@pytest.mark.asyncio
async def test_a_header_match_from_another_sender_does_not_attach_silently(database_url: str, tmp_path: Path) -> None:
    async with email_hub(database_url, tmp_path) as running:
        assert (
            await smtp_send(running.smtp_port, mail("Question", message_id="<o1@customer.example.org>"))
        ).data == 250
        [first] = await timeline(running.hub)
        stranger = mail(
            "I read your thread",
            sender="mallory@elsewhere.example",
            message_id="<m1@elsewhere.example>",
            headers={"In-Reply-To": "<o1@customer.example.org>"},
        )
        assert (await smtp_send(running.smtp_port, stranger, mail_from="mallory@elsewhere.example")).data == 250
        [theirs] = await timeline(running.hub, "mallory@elsewhere.example")
        assert theirs.conversation_id != first.conversation_id


@pytest.mark.asyncio
async def test_the_bot_answers_a_customer_by_email_but_never_an_auto_reply(database_url: str, tmp_path: Path) -> None:
    async with email_hub(database_url, tmp_path, bot="echo") as running:
        assert (
            await smtp_send(running.smtp_port, mail("Hello bot", message_id="<h1@customer.example.org>"))
        ).data == 250
        [answer] = await running.sink.wait_for(1)
        assert answer.message["Auto-Submitted"] == "auto-replied"
        assert answer.message["In-Reply-To"] == "<h1@customer.example.org>"
        assert answer.rcpt_tos == (CUSTOMER,)
        ooo = fixture_mail("out-of-office.eml")
        assert (await smtp_send(running.smtp_port, ooo, mail_from="eve@contoso.example")).data == 250
        await wait_for(lambda: timeline(running.hub, "eve@contoso.example"))
        await asyncio.sleep(1.0)  # time for a (wrong) bot turn and its send
        assert [m.rcpt_tos for m in running.sink.messages] == [(CUSTOMER,)]


async def _all_inbound(running: EmailHub) -> list[Any]:
    hub = running.hub
    found: list[Any] = []
    for conversation in await hub.service.list_conversations():
        found.extend(m for m in await hub.service.history(conversation.id) if m.direction.value == "inbound")
    return found


@pytest.mark.asyncio
async def test_an_erased_customers_mail_read_again_is_not_taken_back(database_url: str, tmp_path: Path) -> None:
    """A mailbox re-scanned (IMAP after a UIDVALIDITY change) or a sender's
    retry delivers the same mail again after its sender was erased."""
    async with email_hub(database_url, tmp_path) as running:
        raw = mail("Please forget me afterwards", message_id="<gdpr1@customer.example.org>")
        assert (await smtp_send(running.smtp_port, raw)).data == 250
        [message] = await timeline(running.hub)
        await running.hub.api("DELETE", f"/api/v1/contacts/{message.contact_id}")
        assert (await smtp_send(running.smtp_port, raw)).data == 250
        assert await timeline(running.hub) == []
        # A new mail of theirs is a new start, as after any erasure.
        fresh = mail("Hello again", message_id="<gdpr2@customer.example.org>")
        assert (await smtp_send(running.smtp_port, fresh)).data == 250
        assert [m.body for m in await timeline(running.hub)] == ["Hello again"]


@pytest.mark.asyncio
async def test_the_same_verified_address_in_chat_and_by_mail_is_one_contact(database_url: str, tmp_path: Path) -> None:
    from hub.messages import InboundMessage

    async with email_hub(database_url, tmp_path, channels="email,webchat", webchat_secrets="chat-secret") as running:
        chatted = await running.hub.service.ingest(
            InboundMessage(
                channel="webchat",
                sender="visitor-verified",
                text="Hi from the chat",
                contact_hints={"email": CUSTOMER.upper()},
                hints_verified=True,  # the host site signed its user (identity verification)
            )
        )
        assert (
            await smtp_send(running.smtp_port, mail("And by mail", message_id="<both1@customer.example.org>"))
        ).data == 250
        [mailed] = await timeline(running.hub)
        assert mailed.contact_id == chatted.message.contact_id


def test_the_same_bytes_stored_at_once_are_kept_once_without_error(tmp_path: Path) -> None:
    # A mail delivered again while its first delivery is being stored: both write the same
    # content-addressed file at once (the resilience suite's rare SMTP 451 was this).
    data = b"x" * 4_000_000
    path = tmp_path / "ab" / "abcdef"
    start = Barrier(8)

    def write() -> None:
        start.wait()
        AttachmentStore._write(path, data)

    for _ in range(5):
        with ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(write) for _ in range(8)]:
                future.result()  # raises what the write raised
        assert path.read_bytes() == data
        assert [p.name for p in path.parent.iterdir()] == ["abcdef"]  # no partial file left behind
        path.unlink()
