"""The console's conversation page over HTTP: what each role sees, every
action through the services the API and Slack use (audited ``via=console``),
CSRF and role refusals, customer markup shown as text, and the same truth as
the Slack desk (the fake Slack Web API of tests/fakes)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from hub.console import sessions
from hub.storage.schema import audit_log
from tests.channels.test_slack import AGENT_SLACK, SECRET, send_signed, thread_event
from tests.conftest import FAKE_SECRET, wait_for
from tests.console.conftest import ConsoleHub, StartConsoleHub, email_of
from tests.console.helpers import signed_in_cookies
from tests.fakes.slack_api import FakeSlackApi, block_action_body

ACTIONS = ("reply", "note", "claim", "assign", "resolve", "reopen", "priority", "snooze", "typing")
ADMIN_ACTIONS = ("merge", "export", "erase")


class Console:
    """One signed-in browser, as plain HTTP: its cookie and its CSRF token."""

    def __init__(self, ch: ConsoleHub, session: aiohttp.ClientSession, token: str) -> None:
        self.ch = ch
        self.session = session
        self.token = token

    async def page(self, conversation_id: int, suffix: str = "", expect: int = 200) -> str:
        async with self.session.get(f"{self.ch.base_url}/console/conversations/{conversation_id}{suffix}") as response:
            text = await response.text()
            assert response.status == expect, (response.status, text[:500])
            return text

    async def post(
        self, conversation_id: int, action: str, form: dict[str, str] | None = None, *, csrf: bool = True
    ) -> aiohttp.ClientResponse:
        headers = {"Accept": "application/json"}
        if csrf:
            headers["X-CSRF-Token"] = self.token
        response = await self.session.post(
            f"{self.ch.base_url}/console/conversations/{conversation_id}/{action}",
            data=form or {},
            headers=headers,
            allow_redirects=False,
        )
        await response.read()
        return response

    async def act(self, conversation_id: int, action: str, form: dict[str, str] | None = None) -> Any:
        response = await self.post(conversation_id, action, form)
        body = await response.read()
        assert response.status == 200, (action, response.status, body[:300])
        return json.loads(body)


@asynccontextmanager
async def console_as(ch: ConsoleHub, role: str) -> AsyncIterator[Console]:
    cookies = await signed_in_cookies(ch.app, email_of(role))
    [session_id] = cookies.values()
    async with aiohttp.ClientSession(cookies=cookies) as session:
        yield Console(ch, session, sessions.token_for(session_id))


async def customer_writes(ch: ConsoleHub, sender: str, text: str, **extra: Any) -> int:
    received = await ch.hub.inbound({"from": sender, "text": text, "id": f"{sender}-{time.time_ns()}", **extra})
    message = await ch.hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")
    return int(message["conversation_id"])


async def audit_rows(ch: ConsoleHub) -> list[Any]:
    return await ch.db.read(lambda conn: list(conn.execute(sa.select(audit_log).order_by(audit_log.c.id))))


def forms(html: str) -> list[str]:
    return re.findall(r'data-action="([a-z]+)"', html)


@pytest.mark.asyncio
async def test_each_action_goes_through_the_hubs_services_and_is_audited_as_console(
    start_console_hub: StartConsoleHub,
) -> None:
    ch = await start_console_hub()
    hub = ch.hub
    conversation_id = await customer_writes(ch, "ada-1", "My parcel never arrived", name="Ada")
    me = await hub.api("GET", "/api/v1/me", role="agent")
    async with console_as(ch, "agent") as agent:
        html = await agent.page(conversation_id)
        assert "My parcel never arrived" in html and "Ada" in html
        assert set(forms(html)) >= {"reply", "note", "claim", "resolve", "priority"}
        assert not set(forms(html)) & set(ADMIN_ACTIONS)  # an agent is no admin

        # Take over a conversation the bot had: a ticket opened by the agent, claimed.
        await agent.act(conversation_id, "claim")
        [ticket] = (await hub.api("GET", "/api/v1/tickets"))["items"]
        assert ticket["assignee_id"] == me["id"] and ticket["source"] == "agent"
        conversation = await hub.api("GET", f"/api/v1/conversations/{conversation_id}")
        assert conversation["handler"] == "human" and conversation["assignee_id"] == me["id"]

        # A reply goes out on the customer's channel; a note never does.
        sent = hub.channel("fake").recorder.sent
        replied = await agent.act(
            conversation_id, "reply", {"text": "Sorry Ada, a new one is on its way.", "key": "k1"}
        )
        await agent.act(conversation_id, "reply", {"text": "Sorry Ada, a new one is on its way.", "key": "k1"})
        await wait_for(lambda: any(m.text == "Sorry Ada, a new one is on its way." for m in sent))

        # The page re-reads an entry whose delivery moved on (no full reload).
        async def entry_sent() -> bool:
            entry = await agent.page(conversation_id, f"/timeline?ids={replied['message_id']}")
            return entry.count('class="entry ') == 1 and "delivery--queued" not in entry

        await wait_for(entry_sent)
        async with agent.session.get(f"{ch.base_url}/console/conversations/{conversation_id}/timeline?ids=1,x") as bad:
            assert bad.status == 400
        await agent.act(conversation_id, "note", {"text": "Carrier lost it; refund if it happens again"})
        timeline = await agent.page(conversation_id, "/timeline?after=bTow")
        assert "Carrier lost it" in timeline and "internal note" in timeline
        assert timeline.count("Sorry Ada, a new one is on its way.") == 1  # the retried POST sent once
        assert [m.text for m in sent].count("Sorry Ada, a new one is on its way.") == 1
        assert not any("Carrier" in m.text for m in sent)
        ticket = await hub.api("GET", f"/api/v1/tickets/{ticket['id']}")
        assert ticket["first_response_at"] is not None  # the SLA saw the agent's reply

        await agent.act(conversation_id, "priority", {"priority": "high"})
        await agent.act(conversation_id, "snooze", {"minutes": "30"})
        ticket = await hub.api("GET", f"/api/v1/tickets/{ticket['id']}")
        assert ticket["priority"] == "high" and ticket["snoozed_until"] is not None
        await agent.act(conversation_id, "assign", {"assignee_id": "none"})
        assert (await hub.api("GET", f"/api/v1/tickets/{ticket['id']}"))["assignee_id"] is None
        await agent.act(conversation_id, "assign", {"assignee_id": str(me["id"])})
        await agent.act(conversation_id, "resolve")
        ticket = await hub.api("GET", f"/api/v1/tickets/{ticket['id']}")
        conversation = await hub.api("GET", f"/api/v1/conversations/{conversation_id}")
        assert ticket["status"] == "resolved" and conversation["status"] == "resolved"
        html = await agent.page(conversation_id)
        assert "reopen" in forms(html) and "resolve" not in forms(html)
        await agent.act(conversation_id, "reopen")
        assert (await hub.api("GET", f"/api/v1/conversations/{conversation_id}"))["status"] == "open"

        # Without the page's script, a plain form post (the token in a field) goes back to the page.
        async with agent.session.post(
            f"{ch.base_url}/console/conversations/{conversation_id}/note",
            data={"text": "Posted without JavaScript", "csrf_token": agent.token},
            headers={"Accept": "text/html"},
            allow_redirects=False,
        ) as plain:
            assert plain.status == 303 and plain.headers["Location"] == f"/console/conversations/{conversation_id}"
        assert "Posted without JavaScript" in await agent.page(conversation_id)

        # Invalid input is a 400 that says why; nothing is recorded for it.
        response = await agent.post(conversation_id, "priority", {"priority": "whenever"})
        assert response.status == 400
        response = await agent.post(conversation_id, "reply", {"text": "   "})
        assert response.status == 400

    rows = [(r.user_id, r.via, r.action) for r in await audit_rows(ch) if r.via == "console"]
    assert rows == [
        (me["id"], "console", action)
        for action in (
            "ticket.handoff",
            "ticket.claim",
            "conversation.reply",
            "conversation.note",
            "ticket.priority",
            "ticket.snooze",
            "ticket.assign",
            "ticket.assign",
            "ticket.resolve",
            "conversation.update",
            "conversation.note",
        )
    ]


@pytest.mark.asyncio
async def test_a_viewer_reads_everything_but_every_write_is_refused(start_console_hub: StartConsoleHub) -> None:
    ch = await start_console_hub()
    conversation_id = await customer_writes(ch, "bob-1", "Can I change my address?", name="Bob")
    await ch.hub.api(
        "POST", f"/api/v1/conversations/{conversation_id}/notes", role="agent", json={"text": "hmm"}, expect=201
    )
    before = len(await audit_rows(ch))
    async with console_as(ch, "viewer") as viewer:
        html = await viewer.page(conversation_id)
        assert "Can I change my address?" in html and "hmm" in html and "Contact" in html
        # No write control is rendered at all.
        assert forms(html) == [] and "<textarea" not in html and "<select" not in html
        assert "Claim" not in html and "Send reply" not in html
        panel = await viewer.page(conversation_id, "/panel")
        assert forms(panel) == [] and "<button" not in panel
        # The server refuses their writes, with or without a CSRF token.
        for action in (*ACTIONS, *ADMIN_ACTIONS):
            with_token = await viewer.post(conversation_id, action, {"text": "x", "priority": "low", "confirm": "1"})
            without = await viewer.post(conversation_id, action, {"text": "x"}, csrf=False)
            assert (with_token.status, without.status) == (403, 403), action
    async with console_as(ch, "agent") as agent:
        # An agent's forged write without the token is refused too; admin actions need an admin.
        assert (await agent.post(conversation_id, "note", {"text": "forged"}, csrf=False)).status == 403
        for action in ADMIN_ACTIONS:
            assert (await agent.post(conversation_id, action, {"source_id": "1", "confirm": "1"})).status == 403
    assert len(await audit_rows(ch)) == before
    assert ch.hub.channel("fake").recorder.sent == []
    page = await ch.hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline")
    assert [m["body"] for m in page["items"] if m["kind"] != "event"] == ["Can I change my address?", "hmm"]


@pytest.mark.asyncio
async def test_customer_markup_is_shown_as_text(start_console_hub: StartConsoleHub) -> None:
    ch = await start_console_hub()
    payload = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    conversation_id = await customer_writes(ch, "mallory", payload, name='<b onmouseover="x()">M</b>')
    async with console_as(ch, "agent") as agent:
        for html in (await agent.page(conversation_id), await agent.page(conversation_id, "/timeline?after=bTow")):
            assert "<img src=x" not in html and "<script>alert" not in html and "<b onmouseover" not in html
            assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in html


@pytest.mark.asyncio
async def test_admin_exports_merges_and_erases_the_contact(start_console_hub: StartConsoleHub) -> None:
    ch = await start_console_hub()
    hub = ch.hub
    conversation_id = await customer_writes(ch, "eve-1", "hello", name="Eve")
    other = await customer_writes(ch, "eve-2", "hello again from my phone")
    contact_id = (await hub.api("GET", f"/api/v1/conversations/{conversation_id}"))["contact_id"]
    other_contact = (await hub.api("GET", f"/api/v1/conversations/{other}"))["contact_id"]
    async with console_as(ch, "admin") as admin:
        html = await admin.page(conversation_id)
        assert set(forms(html)) >= set(ADMIN_ACTIONS)
        response = await admin.post(conversation_id, "export")
        assert response.status == 200
        assert response.headers["Content-Disposition"] == f'attachment; filename="contact-{contact_id}.json"'
        exported = json.loads(await response.read())
        from_api = await hub.api("GET", f"/api/v1/contacts/{contact_id}/export")
        assert exported["contact"] == from_api["contact"] and exported["messages"] == from_api["messages"]

        await admin.act(conversation_id, "merge", {"source_id": f"#{other_contact}"})
        await hub.api("GET", f"/api/v1/contacts/{other_contact}", expect=404)
        html = await admin.page(conversation_id)
        assert "hello again from my phone" in html and "eve-2" in html  # their timeline and identity moved over

        response = await admin.post(conversation_id, "erase", {"confirm": str(contact_id + 1000)})
        assert response.status == 400  # the confirmation must name the contact
        await hub.api("GET", f"/api/v1/contacts/{contact_id}")
        done = await admin.act(conversation_id, "erase", {"confirm": str(contact_id)})
        assert done["erased"] == contact_id and done["location"] == "/console"
        await hub.api("GET", f"/api/v1/contacts/{contact_id}", expect=404)
        await admin.page(conversation_id, expect=404)
    actions = [(r.via, r.action) for r in await audit_rows(ch) if r.via == "console"]
    assert actions == [("console", "contact.export"), ("console", "contact.merge"), ("console", "contact.erase")]


# --- the same truth as Slack ---------------------------------------------------------------


def slack_overrides(api: FakeSlackApi) -> dict[str, Any]:
    return {
        "channels": "fake,slack",
        "fake_secret": FAKE_SECRET,
        "slack_bot_token": "xoxb-test-token",
        "slack_signing_secret": SECRET,
        "slack_api_url": api.base_url,
        "slack_default_channel": "CSUPPORT",
        "slack_urgent_channel": "CURGENT",
        "slack_jobs_base_delay": 0.05,
        "slack_jobs_max_delay": 0.2,
        "slack_jobs_poll_interval": 0.05,
    }


async def card_of(ch: ConsoleHub, ticket_id: int) -> dict[str, Any]:
    async def posted() -> dict[str, Any] | None:
        ticket = await ch.hub.api("GET", f"/api/v1/tickets/{ticket_id}")
        return ticket if ticket["slack_ts"] else None

    return await wait_for(posted)


def normalised(api: FakeSlackApi, ticket: dict[str, Any]) -> str:
    """The card as Slack shows it now, without what differs between two tickets."""
    stored = api.messages[(ticket["slack_channel"], ticket["slack_ts"])]
    text = json.dumps(stored["blocks"])
    tid = ticket["id"]
    text = (
        text.replace(f"#{tid}", "#T")
        .replace(f'"{tid}', '"T')
        .replace(f"{tid}:", "T:")
        .replace(f"ticket:{tid}", "ticket:T")
    )
    cid = ticket["conversation_id"]
    text = text.replace(f"conversations/{cid}", "conversations/C").replace(f"Conversation {cid} ", "Conversation C ")
    return re.sub(r"<!date\^\d+\^[^>]*>", "<date>", text)


@pytest.mark.asyncio
async def test_console_and_slack_actions_leave_the_same_card_and_thread(start_console_hub: StartConsoleHub) -> None:
    api = await FakeSlackApi().start()
    try:
        ch = await start_console_hub(**slack_overrides(api))
        hub = ch.hub
        me = await hub.api("GET", "/api/v1/me", role="agent")
        await hub.api("PATCH", f"/api/v1/agents/{me['id']}", json={"slack_user_id": AGENT_SLACK})
        # Two customers with the same story; nobody on duty, so both tickets wait in the queue.
        tickets = []
        for sender in ("twin-a", "twin-b"):
            conversation_id = await customer_writes(ch, sender, "The app crashes on start", name="Twin")
            ticket = await hub.tickets.open(conversation_id, priority="high", reason="bot gave up", source="bot")
            tickets.append(await card_of(ch, ticket.id))
        by_console, by_slack = tickets
        assert normalised(api, by_console) == normalised(api, by_slack)

        async def press(ticket: dict[str, Any], action_id: str) -> None:
            body = block_action_body(
                user=AGENT_SLACK,
                channel=ticket["slack_channel"],
                message_ts=ticket["slack_ts"],
                action_id=action_id,
                value=str(ticket["id"]),
            )
            assert (await send_signed(hub, body, content_type="application/x-www-form-urlencoded")).status == 200

        async def settled(field: str, value: Any) -> None:
            for ticket in (by_console, by_slack):
                await wait_for(lambda t=ticket: _field_is(ch, t["id"], field, value))
            await wait_for(lambda: _cards_settled(hub))

        async with console_as(ch, "agent") as agent:
            # Claim: the card names the agent, the same way from either door.
            await agent.act(by_console["conversation_id"], "claim")
            await press(by_slack, "ticket_claim")
            await settled("assignee_id", me["id"])
            assert f"<@{AGENT_SLACK}>" in normalised(api, by_console)
            assert normalised(api, by_console) == normalised(api, by_slack)

            # Reply: the console's goes into the card's thread; Slack's thread reply reaches the console.
            await agent.act(by_console["conversation_id"], "reply", {"text": "We are on it."})
            await wait_for(
                lambda: any(
                    c.args.get("thread_ts") == by_console["slack_ts"] and "We are on it." in str(c.args.get("text"))
                    for c in api.of("chat.postMessage")
                )
            )
            await thread_event(hub, by_slack, "We are on it.")
            sent = hub.channel("fake").recorder.sent
            await wait_for(lambda: [m.text for m in sent].count("We are on it.") == 2)
            assert [m.to for m in sent if m.text == "We are on it."] == ["twin-a", "twin-b"]
            timeline = await agent.page(by_slack["conversation_id"], "/timeline?after=bTow")
            assert "We are on it." in timeline and "Agent User" in timeline
            await wait_for(lambda: _cards_settled(hub))
            assert normalised(api, by_console) == normalised(api, by_slack)

            # Resolve: both cards say so, identically.
            await agent.act(by_console["conversation_id"], "resolve")
            await press(by_slack, "ticket_resolve")
            await settled("status", "resolved")
            assert "resolved" in normalised(api, by_console).lower()
            assert normalised(api, by_console) == normalised(api, by_slack)
        doors = {(r.via, r.action) for r in await audit_rows(ch) if r.action in ("ticket.claim", "ticket.resolve")}
        assert doors == {
            ("console", "ticket.claim"),
            ("slack", "ticket.claim"),
            ("console", "ticket.resolve"),
            ("slack", "ticket.resolve"),
        }
    finally:
        await api.close()


async def _field_is(ch: ConsoleHub, ticket_id: int, field: str, value: Any) -> bool:
    return (await ch.hub.api("GET", f"/api/v1/tickets/{ticket_id}"))[field] == value


async def _cards_settled(hub: Any) -> bool:
    """Every Slack job done (the cards show the latest state)."""
    jobs = await hub.api("GET", "/api/v1/jobs", params={"queue": "slack"})
    return all(job["status"] in ("done", "dead") for job in jobs["items"])


def test_snooze_until_a_local_time_is_minutes_from_now() -> None:
    from datetime import UTC, datetime

    from hub.console.conversation import snooze_minutes
    from hub.errors import InvalidInput

    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    # 14:30 in Berlin (UTC+1: getTimezoneOffset() is -60) is 13:30 UTC: 90 minutes away.
    assert snooze_minutes({"until": "2026-11-29T14:30", "tz_offset": "-60"}, now) == 90
    # 09:00 in New York (UTC-5: +300) is 14:00 UTC.
    assert snooze_minutes({"until": "2026-11-29T09:00", "tz_offset": "300"}, now) == 120
    assert snooze_minutes({"minutes": "30"}, now) == 30
    for form in (
        {"until": "2026-11-29T11:00", "tz_offset": "0"},  # the past
        {"until": "2027-01-29T11:00", "tz_offset": "0"},  # beyond 30 days
        {"until": "tomorrow"},
        {},
    ):
        with pytest.raises(InvalidInput):
            snooze_minutes(form, now)


@pytest.mark.asyncio
async def test_a_bot_answer_shows_the_article_it_cited(start_console_hub: StartConsoleHub) -> None:
    from hub.models import AuthorKind

    ch = await start_console_hub()
    conversation_id = await customer_writes(ch, "cite-1", "How long does shipping take?")
    hits = [
        {"article_id": "shipping", "title": "Shipping times", "url": "/help/default/shipping#eu", "score": 0.9},
        {"article_id": "returns", "title": "Returns", "url": "/help/default/returns", "score": 0.4},
    ]
    decision = {"action": "answer", "article_id": "shipping", "confidence": 0.87}
    await ch.hub.service.reply(
        conversation_id,
        "Three to five days. Read more: https://example.test/help/default/shipping#eu",
        author_kind=AuthorKind.BOT,
        meta={"kb_hits": hits, "decision": decision},
    )
    async with console_as(ch, "viewer") as viewer:
        html = await viewer.page(conversation_id)
    cited = re.search(r'<p class="entry-cite">(.*?)</p>', html, re.S)
    assert cited is not None
    assert '<a href="/help/default/shipping#eu" target="_blank" rel="noopener">Shipping times</a>' in cited.group(1)
    assert "confidence 0.87" in cited.group(1) and "Returns" not in cited.group(1)
