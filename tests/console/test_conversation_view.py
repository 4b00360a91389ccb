"""What the console's conversation page reads (hub.console.conversation_view),
and the typing indicator it sends, over every storage backend."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from hub.console import conversation_view as view
from hub.console.inbox import SlaPolicy
from hub.models import AuthorKind, Direction, Message, MessageKind
from hub.storage.schema import messages
from hub.tickets.model import Ticket, TicketStatus
from tests.conftest import Hub, wait_for

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def ticket(**values: Any) -> Ticket:
    base = {
        "id": 1,
        "conversation_id": 1,
        "contact_id": 1,
        "status": TicketStatus.OPEN,
        "priority": "normal",
        "assignee_id": None,
        "team": "support",
        "source": "bot",
        "reason": "",
        "summary": "",
        "kb_hits": [],
        "created_at": NOW - timedelta(hours=1),
        "updated_at": NOW,
        "resolved_at": None,
        "first_response_at": None,
        "first_response_due": NOW + timedelta(hours=1),
        "resolution_due": NOW + timedelta(hours=8),
        "sla_paused_at": None,
        "first_response_breached_at": None,
        "resolution_breached_at": None,
        "escalations": 0,
        "snoozed_until": None,
        "slack_channel": None,
        "slack_ts": None,
    }
    base.update(values)
    return Ticket(**base)


SLA = SlaPolicy(policies={})  # no policy: the window is the ticket's own (opened -> due)


def test_sla_clock_is_red_when_breached_amber_when_close() -> None:
    # Two hours allowed for the first response, one left: fine.
    clock = view.sla_clock(ticket(), NOW, SLA)
    assert (clock.level, clock.left, clock.label) == ("ok", timedelta(hours=1), "1 h 00 min left")
    # A fifth of the window left (15 of 75 minutes, where the SLA warning goes out at 80 %): amber;
    # a little more is still fine.
    assert view.sla_clock(ticket(first_response_due=NOW + timedelta(minutes=15)), NOW, SLA).level == "close"
    assert view.sla_clock(ticket(first_response_due=NOW + timedelta(minutes=17)), NOW, SLA).level == "ok"
    # The share follows HUB_SLA_WARN_AT: warned at half the window, amber from then on.
    half = SlaPolicy(policies={}, close_share=0.5)
    assert view.sla_clock(ticket(first_response_due=NOW + timedelta(minutes=17)), NOW, half).level == "close"
    # Past the deadline: red, with how long ago.
    late = view.sla_clock(ticket(first_response_due=NOW - timedelta(minutes=3)), NOW, SLA)
    assert (late.level, late.label) == ("breached", "breached 3 min ago")
    # Escalated (breach recorded, deadline moved by a priority change): still red.
    escalated = ticket(
        first_response_breached_at=NOW - timedelta(minutes=1), first_response_due=NOW + timedelta(hours=1)
    )
    assert view.sla_clock(escalated, NOW, SLA).level == "breached"
    # Answered in time: the resolution deadline counts now; the first breach no longer does.
    answered = ticket(
        first_response_at=NOW - timedelta(minutes=30),
        first_response_breached_at=NOW - timedelta(minutes=40),
        resolution_due=NOW + timedelta(hours=6),
    )
    assert view.sla_clock(answered, NOW, SLA).level == "ok"
    # Waiting on the customer: paused; resolved or no ticket: no clock.
    assert view.sla_clock(ticket(sla_paused_at=NOW), NOW, SLA).level == "paused"
    assert view.sla_clock(ticket(status=TicketStatus.RESOLVED), NOW, SLA).level == "none"
    assert view.sla_clock(None, NOW, SLA).label == "no SLA"


def bot_reply(meta: dict[str, Any]) -> Message:
    return Message(
        id=5,
        conversation_id=1,
        contact_id=1,
        channel="webchat",
        direction=Direction.OUTBOUND,
        kind=MessageKind.MESSAGE,
        author_kind=AuthorKind.BOT,
        author_id=None,
        body="Returns are free within 30 days.",
        attachments=[],
        external_id=None,
        delivery_status="sent",  # type: ignore[arg-type]
        meta=meta,
        created_at=NOW,
    )


HITS = [
    {"article_id": "shipping", "title": "Shipping times", "url": "/help/default/shipping#eu"},
    {"article_id": "returns", "title": "Returns and refunds", "url": "/help/default/returns"},
]


def test_a_bot_answer_shows_the_article_its_decision_cited() -> None:
    cited, _ = view.citation(
        bot_reply({"kb_hits": HITS, "decision": {"action": "answer", "article_id": "returns", "confidence": 0.81}})
    )
    assert cited == view.Citation("Returns and refunds", "/help/default/returns", "answer", 0.81)
    # The hub's own fallback answer quotes its best hit.
    cited, _ = view.citation(bot_reply({"kb_hits": HITS, "fallback": True, "confidence": 0.7}))
    assert cited is not None and (cited.title, cited.action) == ("Shipping times", "fallback")
    # A clarifying question cites nothing; it names what it asked about.
    cited, asked = view.citation(
        bot_reply({"kb_hits": HITS, "decision": {"action": "clarify", "article_ids": ["shipping", "returns"]}})
    )
    assert cited is None and asked == ["Shipping times", "Returns and refunds"]
    # A URL that is not a link of ours or the web's is not made a link.
    cited, _ = view.citation(
        bot_reply({"kb_hits": [{**HITS[0], "url": "javascript:alert(1)"}], "decision": {"article_id": "shipping"}})
    )
    assert cited is not None and cited.url is None
    # Agents' messages cite nothing.
    assert view.citation(replace(bot_reply({"kb_hits": HITS}), author_kind=AuthorKind.AGENT)) == (None, [])


async def inbound(hub: Hub, sender: str, text: str, **extra: Any) -> int:
    received = await hub.inbound({"from": sender, "text": text, "id": f"{sender}-{time.time_ns()}", **extra})
    return int(received["received"][0]["message_id"])


async def load(hub: Hub, conversation_id: int, **kwargs: Any) -> view.ConversationView:
    return await hub.db.read(
        lambda conn: view.load(
            conn, conversation_id, now=NOW, sla=SLA, default_team="support", default_capacity=5, **kwargs
        )
    )


@pytest.mark.asyncio
async def test_the_page_reads_the_whole_timeline_profile_ticket_and_agents(hub: Hub) -> None:
    first = await hub.service.get_message(await inbound(hub, "ada-1", "Where is my parcel?", name="Ada"))
    conversation_id = first.conversation_id
    me = await hub.api("GET", "/api/v1/me", role="agent")
    await hub.service.reply(
        conversation_id, "Shipping takes 3 days.", author_kind=AuthorKind.BOT, meta={"kb_hits": HITS, "fallback": True}
    )
    await hub.api("POST", f"/api/v1/conversations/{conversation_id}/handoff", role="agent", expect=201)
    await hub.api(
        "POST", f"/api/v1/conversations/{conversation_id}/notes", role="agent", json={"text": "VIP"}, expect=201
    )
    await hub.api(
        "POST", f"/api/v1/conversations/{conversation_id}/messages", role="agent", json={"text": "On it!"}, expect=201
    )
    await hub.api(
        "PATCH", f"/api/v1/contacts/{first.contact_id}", json={"tags": ["vip"], "attributes": {"plan": "pro"}}
    )

    ticket_id = (await hub.api("GET", "/api/v1/tickets"))["items"][0]["id"]
    await hub.api("POST", f"/api/v1/tickets/{ticket_id}/assign", role="agent", json={"assignee_id": me["id"]})

    found = await load(hub, conversation_id)
    assert found.conversation.id == conversation_id and found.contact.name == "Ada"
    assert found.assignee == "Agent User"
    # "Assignee changed to 7" says who.
    assert "Assigned to Agent User" in [e.shown for e in found.timeline.entries if e.side == "event"]
    assert [(i.channel, i.address) for i in found.identities] == [("fake", "ada-1")]
    assert found.contact.tags == ["vip"] and found.contact.attributes["plan"] == "pro"
    assert found.ticket is not None and found.ticket.status == TicketStatus.OPEN
    assert found.sla.level in ("ok", "close", "breached")
    assert {a.name for a in found.agents} >= {"Agent User", "Admin User"}
    sides = [(e.side, e.author) for e in found.timeline.entries]
    assert sides[0] == ("customer", "Ada")
    assert ("team", "Bot") in sides and ("note", "Agent User") in sides and ("team", "Agent User") in sides
    assert any(side == "event" for side, _ in sides)  # ticket opened, handler changed
    bot = next(e for e in found.timeline.entries if e.author == "Bot")
    assert bot.citation is not None and bot.citation.title == "Shipping times"
    note = next(e for e in found.timeline.entries if e.side == "note")
    assert note.message.author_id == me["id"] and note.message.direction == Direction.INTERNAL
    assert found.timeline.prev_cursor is None and found.timeline.next_cursor is not None


@pytest.mark.asyncio
async def test_the_timeline_spans_the_contacts_channels_and_pages_back(hub: Hub) -> None:
    # Two conversations of one contact (a merge makes them one person): both on the timeline.
    a = await hub.service.get_message(await inbound(hub, "ch-a", "first conversation"))
    b = await hub.service.get_message(await inbound(hub, "ch-b", "second conversation"))
    await hub.service.merge_contacts(b.contact_id, a.contact_id)
    for n in range(view.TIMELINE_PAGE + 5):
        await hub.service.add_note(a.conversation_id, f"note {n}", author_id=None)
    found = await load(hub, b.conversation_id)
    assert len(found.timeline.entries) == view.TIMELINE_PAGE
    assert found.timeline.entries[-1].message.body == f"note {view.TIMELINE_PAGE + 4}"  # newest at the bottom
    assert found.timeline.prev_cursor is not None
    contact = found.contact
    older = await hub.db.read(lambda conn: view.timeline_page(conn, contact, before=found.timeline.prev_cursor))
    bodies = [e.message.body for e in older.entries]
    assert bodies[:2] == ["first conversation", "second conversation"] and older.prev_cursor is None
    shown = {e.id for e in found.timeline.entries} | {e.id for e in older.entries}
    everything = await hub.db.read(
        lambda conn: {r.id for r in conn.execute(sa.select(messages.c.id).where(messages.c.contact_id == contact.id))}
    )
    assert shown == everything and len(everything) > view.TIMELINE_PAGE + 7  # notes, messages, the merge's event
    assert {e.message.conversation_id for e in found.timeline.entries + older.entries} == {
        a.conversation_id,
        b.conversation_id,
    }
    # Polling after the newest entry finds what came since, and only that.
    await inbound(hub, "ch-b", "third")
    newer = await hub.db.read(lambda conn: view.timeline_page(conn, contact, after=found.timeline.next_cursor))
    assert [e.message.body for e in newer.entries] == ["third"]


class TypingChat:
    """A stand-in for the web chat's ``push_typing`` (hub.messages.PushesTyping)."""

    def __init__(self) -> None:
        self.pushed: list[tuple[str, bool, str]] = []

    async def push_typing(self, visitor_id: str, active: bool, *, author: str = "agent") -> bool:
        self.pushed.append((visitor_id, active, author))
        return True


@pytest.mark.asyncio
async def test_typing_reaches_a_chat_at_most_every_two_seconds(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.conversations import service as service_module

    message = await hub.service.get_message(await inbound(hub, "typist", "hello"))
    # The fake channel cannot show typing: nothing is pushed, nothing fails.
    assert await hub.service.show_typing(message.conversation_id, True) is False
    chat = TypingChat()
    monkeypatch.setitem(hub.service.channels, "fake", chat)
    clock = [1000.0]
    monkeypatch.setattr(service_module.time, "monotonic", lambda: clock[0])
    assert await hub.service.show_typing(message.conversation_id, True) is True
    clock[0] += 0.5
    assert await hub.service.show_typing(message.conversation_id, True) is False  # throttled
    clock[0] += service_module.TYPING_INTERVAL
    assert await hub.service.show_typing(message.conversation_id, True) is True
    assert await hub.service.show_typing(message.conversation_id, False) is True  # a stop always goes
    assert await hub.service.show_typing(message.conversation_id, False) is False  # nothing left to hide
    assert chat.pushed == [("typist", True, "agent"), ("typist", True, "agent"), ("typist", False, "agent")]


@pytest.mark.asyncio
async def test_typing_reaches_a_chat_held_by_another_instance(hub: Hub) -> None:
    """Two hub instances on one Redis: the console's request lands on one, the
    visitor's socket is held by the other."""
    import uuid

    from hub.bus import RedisBus
    from hub.conversations.service import HubService
    from tests.hub.test_bus import REDIS_URL, _redis_available

    if not await _redis_available():
        pytest.skip(f"no Redis at {REDIS_URL}")
    message = await hub.service.get_message(await inbound(hub, "far-away", "hello"))
    channel = f"servicehub:test-typing:{uuid.uuid4().hex}"
    here_bus, there_bus = RedisBus(REDIS_URL, channel), RedisBus(REDIS_URL, channel)
    await here_bus.start()
    await there_bus.start()
    try:
        here_chat, there_chat = TypingChat(), TypingChat()
        here = HubService(hub.db, here_bus, {"fake": here_chat}, hub.service.metrics)
        HubService(hub.db, there_bus, {"fake": there_chat}, hub.service.metrics)
        assert await here.show_typing(message.conversation_id, True) is True
        await wait_for(lambda: there_chat.pushed == [("far-away", True, "agent")])
        assert here_chat.pushed == [("far-away", True, "agent")]  # each instance pushes to what it holds
    finally:
        await here_bus.close()
        await there_bus.close()
