"""The conversation page's channel-specific parts: an SMS conversation's
segments and opt-outs (the real SMS channel against the fake Twilio API), a
reply's own subject, and the knowledge-base search that feeds the reply box."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from hub import segments
from knowledge_base import SAMPLE_DIR, HashingEmbedder, KnowledgeBase
from tests.channels.test_sms import CUSTOMER, post_signed, sms_settings
from tests.conftest import close_hub, make_settings, start_hub, wait_for
from tests.console.conftest import PASSWORDS, ConsoleHub, OffsetClock, StartConsoleHub
from tests.console.test_conversation import console_as, customer_writes
from tests.fakes.twilio_api import FakeTwilioApi, inbound_params

pytestmark = pytest.mark.asyncio


@asynccontextmanager
async def running(settings: Any, **app_kwargs: Any) -> AsyncIterator[ConsoleHub]:
    """A console hub with settings or app arguments ``start_console_hub`` does not take (a knowledge base)."""
    clock = OffsetClock()
    hub = await start_hub(settings, clock=clock, **app_kwargs)
    try:
        yield ConsoleHub(hub, dict(PASSWORDS), clock)
    finally:
        await close_hub(hub)


def limits_of(page: str) -> dict[str, Any]:
    found = re.search(r'data-limits="([^"]*)"', page)
    assert found is not None
    return dict(json.loads(html.unescape(found.group(1))))


async def test_an_sms_conversation_shows_segments_and_opt_outs(database_url: str, tmp_path: Path) -> None:
    twilio = await FakeTwilioApi().start()
    try:
        settings = sms_settings(
            tmp_path, database_url, channels="sms", twilio_api_url=twilio.base_url, sms_max_segments=3
        )
        async with running(settings) as ch:
            response = await post_signed(ch.hub, inbound_params(sender=CUSTOMER, body="Is my order shipped?"))
            assert response.status == 200
            conversation = await wait_for(lambda: ch.hub.service.conversation_for("sms", CUSTOMER))
            async with console_as(ch, "agent") as agent:
                page = await agent.page(conversation.id)
                limits = limits_of(page)
                # The page counts with the hub's own alphabet and sizes (hub.segments).
                assert limits["sms"]["max_segments"] == 3
                assert set(limits["sms"]["gsm7"]) == segments.GSM7_BASIC
                assert set(limits["sms"]["extension"]) == segments.GSM7_EXTENSION
                assert limits["sms"]["single"] == [160, 70] and limits["sms"]["concatenated"] == [153, 67]
                assert "0 segments · 160 characters left" in page
                reply = "Yes! " + "Your parcel left our warehouse this morning. " * 4
                await agent.act(conversation.id, "reply", {"text": reply})
                timeline = await agent.page(conversation.id, "/timeline?after=bTow")
                assert f"{segments.segment_count(reply)} segments" in timeline
                # The customer texts STOP: the profile shows the opt-out as the API does.
                await post_signed(ch.hub, inbound_params(sender=CUSTOMER, body="STOP"))
                contact = await ch.hub.api("GET", f"/api/v1/contacts/{conversation.contact_id}")
                assert contact["opt_outs"] and contact["opt_outs"][0]["channel"] == "sms"
                panel = await agent.page(conversation.id, "/panel")
                assert f"Opted out of sms ({CUSTOMER}): STOP" in panel
                assert "No opt-outs." not in panel
    finally:
        await twilio.close()


async def test_a_reply_can_carry_its_own_subject(start_console_hub: StartConsoleHub) -> None:
    ch = await start_console_hub()
    conversation_id = await customer_writes(ch, "subj-1", "Invoice question")
    async with console_as(ch, "agent") as agent:
        await agent.act(conversation_id, "reply", {"text": "Here it is.", "subject": "Your invoice 2026-11"})
    sent = ch.hub.channel("fake").recorder.sent
    await wait_for(lambda: any(m.text == "Here it is." for m in sent))
    assert next(m for m in sent if m.text == "Here it is.").subject == "Your invoice 2026-11"


async def test_the_knowledge_base_search_gives_absolute_article_links(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        database_url, tmp_path, kb_enabled=True, kb_seed_dir=SAMPLE_DIR, public_url="https://help.example.test"
    )
    kb = KnowledgeBase(data_dir=tmp_path / "kb", embedder=HashingEmbedder())
    async with running(settings, knowledge_base=kb) as ch:
        conversation_id = await customer_writes(ch, "kb-1", "How do I return an item?")
        async with console_as(ch, "agent") as agent:
            page = await agent.page(conversation_id)
            assert 'id="kb-query"' in page
            async with agent.session.get(f"{ch.base_url}/console/kb/search", params={"q": "return an item"}) as found:
                assert found.status == 200
                hits = await found.text()
            links = re.findall(r'data-url="([^"]+)"', hits)
            assert links and all(link.startswith("https://help.example.test/help/") for link in links)
            async with agent.session.get(f"{ch.base_url}/console/kb/search", params={"q": " "}) as found:
                assert found.status == 200 and "data-url" not in await found.text()  # nothing asked, nothing shown
        async with console_as(ch, "viewer") as viewer:
            async with viewer.session.get(f"{ch.base_url}/console/kb/search", params={"q": "return"}) as found:
                assert found.status == 403
            assert 'id="kb-query"' not in await viewer.page(conversation_id)


async def test_an_email_conversation_offers_the_replys_subject(start_console_hub: StartConsoleHub) -> None:
    import sqlalchemy as sa

    from hub.messages import InboundMessage
    from hub.storage.schema import outbox

    ch = await start_console_hub()
    stored = await ch.hub.service.ingest(
        InboundMessage(channel="email", sender="ada@example.com", text="Where is my invoice?", subject="Invoice 42")
    )
    conversation_id = stored.conversation.id
    async with console_as(ch, "agent") as agent:
        page = await agent.page(conversation_id)
        assert re.search(r'<input type="text" name="subject" id="reply-subject" value="Re: Invoice 42"', page)
        await agent.act(conversation_id, "reply", {"text": "Attached.", "subject": "Re: Invoice 42 (corrected)"})
    payloads = await ch.db.read(lambda conn: [r.payload for r in conn.execute(sa.select(outbox.c.payload))])
    assert [p["subject"] for p in payloads if p["text"] == "Attached."] == ["Re: Invoice 42 (corrected)"]
    # Other channels have no subject line.
    chat = await customer_writes(ch, "no-subject", "hi")
    async with console_as(ch, "agent") as agent:
        assert 'name="subject"' not in await agent.page(chat)
