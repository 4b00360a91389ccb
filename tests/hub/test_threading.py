"""The hub's side of e-mail: threading by references, machine-written mail,
attachments and channel state.

A reply is filed in the conversation of the message it answers (one the hub
received or sent), but never silently in someone else's; the channel's
vouched conversation is the fallback. What a machine wrote gets no automatic
answer. A channel that threads by reference gets the conversation's ids with
every send. Attachments are stored once, served to agents, and go with an
erasure. Driven through the fake channel, made to behave like e-mail.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_asyncio
import sqlalchemy as sa

from channels.fake import FakeChannel, FakeRecorder
from hub.errors import TooLarge
from hub.messages import InboundMessage, OutboundMessage, SendResult
from hub.storage.schema import bot_jobs, message_attachments
from tests.conftest import Hub, close_hub, make_settings, start_hub, wait_for


class MailLikeChannel(FakeChannel):
    """Threads by reference; every send gets a Message-ID-like provider id."""

    threads_by_reference: ClassVar[bool] = True

    async def send(self, message: OutboundMessage) -> SendResult:
        await super().send(message)
        sent_id = f"<{message.idempotency_key}@hub.example.test>"
        return SendResult(provider_id=sent_id, provider_ids=(sent_id,))


@pytest_asyncio.fixture
async def mail_hub(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Hub, FakeRecorder]]:
    settings = make_settings(database_url, tmp_path, attachment_max_bytes=1000)
    recorder = FakeRecorder()
    hub = await start_hub(settings, channels={"fake": MailLikeChannel(settings, recorder)})
    try:
        yield hub, recorder
    finally:
        await close_hub(hub)


def mail(sender: str, text: str, message_id: str, **fields: Any) -> InboundMessage:
    # Like the e-mail channel: a new mail starts a thread of its own (its Message-ID is the thread key).
    fields.setdefault("thread_key", message_id)
    return InboundMessage(channel="fake", sender=sender, text=text, external_id=message_id, **fields)


async def events_of(hub: Hub, conversation_id: int) -> list[dict[str, Any]]:
    page = await hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline", params={"limit": 200})
    return [item for item in page["items"] if item["kind"] == "event"]


@pytest.mark.asyncio
async def test_a_reply_joins_the_conversation_of_the_message_it_answers(mail_hub: tuple[Hub, FakeRecorder]) -> None:
    hub, recorder = mail_hub
    first = await hub.service.ingest(mail("ada@example.test", "My order is late", "<m1@mail.example>"))
    other = await hub.service.ingest(mail("ada@example.test", "A different question", "<m2@mail.example>"))
    assert other.conversation.id != first.conversation.id  # a new mail is a new conversation
    # Answering the first mail (In-Reply-To), though her latest conversation is the other one.
    answer = await hub.service.ingest(
        mail("ada@example.test", "Any news?", "<m3@mail.example>", references=("<m1@mail.example>",))
    )
    assert answer.conversation.id == first.conversation.id

    # Answering what the hub sent: the reply's id is one the hub recorded with the send.
    reply = await hub.api(
        "POST",
        f"/api/v1/conversations/{other.conversation.id}/messages",
        role="agent",
        json={"text": "Here is the answer."},
        expect=201,
    )
    await wait_for(lambda: len(recorder.sent) == 1)
    await wait_for(lambda: _status(hub, reply["id"], "sent"))
    sent_id = f"<{recorder.sent[0].idempotency_key}@hub.example.test>"
    thanks = await hub.service.ingest(
        mail("ada@example.test", "Thanks!", "<m4@mail.example>", references=(sent_id, "<m2@mail.example>"))
    )
    assert thanks.conversation.id == other.conversation.id


async def _status(hub: Hub, message_id: int, wanted: str) -> bool:
    return (await hub.api("GET", f"/api/v1/messages/{message_id}"))["delivery_status"] == wanted


@pytest.mark.asyncio
async def test_someone_elses_thread_is_never_joined_silently(mail_hub: tuple[Hub, FakeRecorder]) -> None:
    hub, _ = mail_hub
    first = await hub.service.ingest(mail("ada@example.test", "My order is late", "<n1@mail.example>"))
    stranger = await hub.service.ingest(
        mail("eve@example.test", "Re: my order", "<n2@mail.example>", references=("<n1@mail.example>",))
    )
    assert stranger.conversation.id != first.conversation.id
    assert stranger.message.contact_id != first.message.contact_id
    [note] = [e for e in await events_of(hub, stranger.conversation.id) if e["meta"].get("event") == "thread_mismatch"]
    assert note["meta"]["conversation_id"] == first.conversation.id and "merge" in note["body"]
    # Nothing was added to Ada's conversation.
    page = await hub.api("GET", f"/api/v1/conversations/{first.conversation.id}/timeline", params={"limit": 50})
    assert [m["body"] for m in page["items"] if m["kind"] == "message"] == ["My order is late"]


@pytest.mark.asyncio
async def test_the_channels_vouched_conversation_is_the_fallback(mail_hub: tuple[Hub, FakeRecorder]) -> None:
    hub, _ = mail_hub
    first = await hub.service.ingest(mail("ada@example.test", "Hello", "<h1@mail.example>"))
    # References the hub never saw (another mail client's thread), but a reply address with a valid token.
    hinted = await hub.service.ingest(
        mail(
            "ada@example.test",
            "Following up",
            "<h2@mail.example>",
            references=("<unknown@elsewhere>",),
            conversation_hint=first.conversation.id,
        )
    )
    assert hinted.conversation.id == first.conversation.id


@pytest.mark.asyncio
async def test_machine_written_mail_gets_no_automatic_answer(database_url: str, tmp_path: Path) -> None:
    hub = await start_hub(make_settings(database_url, tmp_path))
    try:
        hub.service.bot_enabled = True  # as when a bot is attached: customers' messages get bot jobs
        await hub.service.ingest(
            InboundMessage(channel="fake", sender="ooo@example.test", text="I am out", automated=True)
        )
        count = await hub.db.read(lambda c: c.execute(sa.select(sa.func.count()).select_from(bot_jobs)).scalar())
        assert count == 0
        await hub.service.ingest(InboundMessage(channel="fake", sender="ooo@example.test", text="a real question"))
        count = await hub.db.read(lambda c: c.execute(sa.select(sa.func.count()).select_from(bot_jobs)).scalar())
        assert count == 1
    finally:
        hub.service.bot_enabled = False
        await close_hub(hub)


@pytest.mark.asyncio
async def test_sends_carry_the_conversations_references_newest_first(mail_hub: tuple[Hub, FakeRecorder]) -> None:
    hub, recorder = mail_hub
    first = await hub.service.ingest(mail("ada@example.test", "One", "<r1@mail.example>"))
    cid = first.conversation.id
    await hub.api("POST", f"/api/v1/conversations/{cid}/messages", role="agent", json={"text": "Two"}, expect=201)
    await wait_for(lambda: len(recorder.sent) == 1)
    await hub.service.ingest(mail("ada@example.test", "Three", "<r3@mail.example>", references=("<r1@mail.example>",)))
    await hub.service.reply(cid, "Four", author_kind=__import__("hub.models", fromlist=["AuthorKind"]).AuthorKind.BOT)
    await wait_for(lambda: len(recorder.sent) == 2)
    two, four = recorder.sent
    assert two.references == ("<r1@mail.example>",) and not two.automated
    sent_two = f"<{two.idempotency_key}@hub.example.test>"
    assert four.references == ("<r3@mail.example>", sent_two, "<r1@mail.example>") and four.automated


@pytest.mark.asyncio
async def test_attachments_are_kept_once_served_to_agents_and_erased_with_their_messages(
    mail_hub: tuple[Hub, FakeRecorder], tmp_path: Path
) -> None:
    hub, _ = mail_hub
    data = b"%PDF-1.4 invoice 10442"
    meta = await hub.service.store_attachment(data, filename="invoice.pdf", content_type="application/pdf; name=x")
    again = await hub.service.store_attachment(data, filename="copy.pdf", content_type="application/pdf")
    digest = hashlib.sha256(data).hexdigest()
    assert (
        meta["id"] == again["id"] == digest and meta["content_type"] == "application/pdf" and meta["size"] == len(data)
    )
    stored = await hub.service.ingest(
        mail("ada@example.test", "Invoice attached", "<a1@mail.example>", attachments=(meta,))
    )
    response = await hub.client.get(f"/api/v1/attachments/{digest}", headers=hub.auth("viewer"))
    assert response.status == 200 and await response.read() == data
    assert response.headers["Content-Type"] == "application/pdf"
    assert (
        response.headers["Content-Disposition"] == "attachment"
        and "sandbox" in response.headers["Content-Security-Policy"]
    )
    assert (await hub.client.get(f"/api/v1/attachments/{digest}")).status == 401
    assert (await hub.client.get(f"/api/v1/attachments/{'0' * 64}", headers=hub.auth("viewer"))).status == 404
    assert (await hub.client.get("/api/v1/attachments/..%2F..%2Fetc", headers=hub.auth("viewer"))).status == 404
    with pytest.raises(TooLarge):
        await hub.service.store_attachment(b"x" * 1001, filename=None, content_type="text/plain")

    # An unheld file survives a sweep within its grace period, and goes after it.
    loose = await hub.service.store_attachment(b"never attached", filename=None, content_type="text/plain")
    store = hub.service.attachments
    assert store is not None
    assert await store.sweep() == 0 and store.path_of(loose["id"]).exists()
    assert await store.sweep(grace=timedelta(0)) == 1 and not store.path_of(loose["id"]).exists()
    assert store.path_of(digest).exists()  # held by a message

    await hub.api("DELETE", f"/api/v1/contacts/{stored.message.contact_id}")
    assert not store.path_of(digest).exists()
    links = await hub.db.read(lambda c: c.execute(sa.select(sa.func.count()).select_from(message_attachments)).scalar())
    assert links == 0
    assert (await hub.client.get(f"/api/v1/attachments/{digest}", headers=hub.auth("viewer"))).status == 404


@pytest.mark.asyncio
async def test_channel_state_is_kept_per_channel_and_key(mail_hub: tuple[Hub, FakeRecorder]) -> None:
    hub, _ = mail_hub
    assert await hub.service.channel_state("email", "INBOX:uidvalidity") is None
    await hub.service.set_channel_state("email", "INBOX:uidvalidity", "1700000000")
    await hub.service.set_channel_state("email", "INBOX:uidvalidity", "1700000001")
    await hub.service.set_channel_state("sms", "INBOX:uidvalidity", "other")
    assert await hub.service.channel_state("email", "INBOX:uidvalidity") == "1700000001"
