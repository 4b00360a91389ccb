"""A handoff promises only what the team can keep (hub/bot/promise.py):
on duty, a reply shortly; away, when the team is back (business hours, in
its time zone) and that the reply comes by email too, or a request for the
address. The pure choice with a fixed time, then through the bot bridge of a
real hub whose duty roster and clock the test moves."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hub.bot.bridge import FALLBACK_HANDOFF_TEXT
from hub.bot.promise import ASK_EMAIL, AWAY, ON_DUTY, handoff_promise, mask_email
from hub.conversations.contacts import typed_email
from hub.events import Clock
from hub.tickets.sla import BusinessHours
from tests.conftest import Hub, make_settings, start_hub, wait_for
from tests.fakes.rasa import FakeRasa

PARIS = ZoneInfo("Europe/Paris")
PARIS_OFFICE = BusinessHours.parse("mon-fri 09:00-17:00", "Europe/Paris")


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)


def away(now: datetime, hours: BusinessHours | None = PARIS_OFFICE, channel: str = "fake", email: str | None = None):
    return handoff_promise(on_duty=False, now=now, hours=hours, channel=channel, email=email)


# --- the pure choice ----------------------------------------------------------------


def test_on_duty_the_team_replies_shortly_whatever_the_hours() -> None:
    for now in (paris(2026, 11, 27, 18, 0), paris(2026, 11, 25, 10, 0)):
        promise = handoff_promise(on_duty=True, now=now, hours=PARIS_OFFICE, channel="webchat", email=None)
        assert promise.text == ON_DUTY == "A member of our team will reply here shortly."
        assert promise.on_duty and promise.back_at is None and not promise.asks_email


def test_friday_evening_says_monday_morning_in_the_teams_zone() -> None:
    promise = away(paris(2026, 11, 27, 18, 0))  # a Friday
    assert promise.text == "Our team is away right now and back Monday at 09:00 (Europe/Paris). We'll reply here."
    assert promise.back_at == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert "shortly" not in promise.text


def test_the_day_is_counted_in_the_teams_zone_not_utc() -> None:
    # Saturday 23:30 UTC is already Sunday 00:30 in Paris: Monday is "tomorrow" there.
    assert "back tomorrow at 09:00 (Europe/Paris)" in away(datetime(2026, 11, 28, 23, 30, tzinfo=UTC)).text
    # A team in Tokyo opens on Monday 09:00 JST, which is still Sunday in UTC.
    tokyo = BusinessHours.parse("mon-fri 09:00-18:00", "Asia/Tokyo")
    promise = away(datetime(2026, 11, 29, 20, 0, tzinfo=UTC), tokyo)  # Monday 05:00 in Tokyo
    assert "back today at 09:00 (Asia/Tokyo)" in promise.text
    assert promise.back_at == datetime(2026, 11, 30, 0, 0, tzinfo=UTC)


def test_before_opening_lunch_breaks_and_weekends() -> None:
    split = BusinessHours.parse("mon-fri 09:00-12:00,13:00-17:00; sat 10:00-14:00", "Europe/Paris")
    assert "back today at 07:00" not in away(paris(2026, 11, 24, 7, 0), split).text
    assert "back today at 09:00 (Europe/Paris)" in away(paris(2026, 11, 24, 7, 0), split).text
    assert "back today at 13:00 (Europe/Paris)" in away(paris(2026, 11, 24, 12, 30), split).text
    assert "back tomorrow at 10:00 (Europe/Paris)" in away(paris(2026, 11, 27, 17, 0), split).text  # Saturday
    assert "back Monday at 09:00 (Europe/Paris)" in away(paris(2026, 11, 28, 14, 0), split).text


def test_across_a_dst_change_the_opening_stays_at_nine_local() -> None:
    promise = away(paris(2026, 10, 23, 18, 0))  # Friday; summer time ends on Sunday 25 October
    assert "back Monday at 09:00 (Europe/Paris)" in promise.text
    assert promise.back_at == datetime(2026, 10, 26, 8, 0, tzinfo=UTC)  # UTC+1 again


def test_holidays_push_the_opening_and_far_ones_name_the_date() -> None:
    christmas = BusinessHours.parse("mon-fri 09:00-17:00", "Europe/Paris", "2026-12-25")
    assert "back Monday at 09:00" in away(paris(2026, 12, 24, 18, 0), christmas).text
    closed = ",".join(f"2026-12-{day:02d}" for day in range(21, 32))
    winter = BusinessHours.parse("mon-fri 09:00-17:00", "Europe/Paris", closed)
    assert "back Friday 1 January at 09:00 (Europe/Paris)" in away(paris(2026, 12, 18, 18, 0), winter).text


def test_without_hours_or_inside_them_with_nobody_on_duty_no_time_is_promised() -> None:
    for now, hours in ((paris(2026, 11, 27, 18, 0), None), (paris(2026, 11, 25, 10, 0), PARIS_OFFICE)):
        promise = away(now, hours)
        assert promise.text == f"{AWAY} We'll reply here."
        assert "as soon as someone is available" in promise.text and promise.back_at is None


def test_the_reply_path_depends_on_the_channel_and_the_known_address() -> None:
    friday = paris(2026, 11, 27, 18, 0)
    # Web chat, no address: the visitor may leave, so ask for one.
    chat = away(friday, channel="webchat")
    assert chat.asks_email and chat.text.endswith(ASK_EMAIL)
    # An address is known: say which, masked, on any channel.
    for channel in ("webchat", "sms", "fake"):
        known = away(friday, channel=channel, email="ada.lovelace@example.com")
        assert known.text.endswith("We'll reply here and by email to a***@example.com.") and not known.asks_email
        assert "ada.lovelace" not in known.text and known.email == "a***@example.com"
    # SMS without an address never talks about email.
    sms = away(friday, channel="sms")
    assert "email" not in sms.text.lower() and sms.text.endswith("We'll reply here by text message.")
    # An email conversation is answered by email anyway.
    assert away(friday, channel="email", email="ada@example.com").text.endswith("We'll reply to this email.")


def test_masking_and_typed_addresses() -> None:
    assert mask_email("Ada@Example.com") == "A***@Example.com"
    assert mask_email("not-an-address") == "***"
    assert typed_email("  Ada@Example.com ") == "ada@example.com"
    assert typed_email("<ada@example.com>.") == "ada@example.com"
    assert typed_email("my email is ada@example.com") is None  # a sentence is not a contact detail
    assert typed_email("ada@localhost") is None
    assert typed_email("a@b.c, d@e.f") is None


# --- through the bridge of a real hub -------------------------------------------------


class FixedClock(Clock):
    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at


async def _say(hub: Hub, sender: str, text: str, ext: str) -> dict[str, Any]:
    r = await hub.inbound({"from": sender, "text": text, "id": ext})
    return dict(await hub.api("GET", f"/api/v1/messages/{r['received'][0]['message_id']}"))


async def _bot_messages(hub: Hub, cid: int) -> list[dict[str, Any]]:
    page = await hub.api("GET", f"/api/v1/conversations/{cid}/timeline", params={"limit": 200})
    return [m for m in page["items"] if m["author_kind"] == "bot"]


async def _handed_off(hub: Hub, cid: int, count: int) -> list[dict[str, Any]] | None:
    conversation = await hub.api("GET", f"/api/v1/conversations/{cid}")
    handoffs = [m for m in await _bot_messages(hub, cid) if m["meta"].get("handoff")]
    return handoffs if conversation["handler"] == "human" and len(handoffs) >= count else None


@pytest.mark.asyncio
async def test_the_stored_handoff_message_follows_duty_hours_and_the_known_address(
    database_url: str, tmp_path: Path, rasa: FakeRasa
) -> None:
    settings = make_settings(
        database_url,
        tmp_path,
        bot="rasa",
        rasa_url=rasa.url,
        rasa_timeout=0.5,
        rasa_ready_wait=1.0,
        webchat_agents_online="auto",  # the duty roster decides
        sla_business_hours="mon-fri 09:00-17:00",
        sla_timezone="Europe/Paris",
    )
    clock = FixedClock(paris(2026, 11, 28, 11, 0))  # a Saturday
    hub = await start_hub(settings, knowledge_base=None, clock=clock)
    try:
        # Nobody on duty on a Saturday: no "shortly"; back on Monday, in Paris time.
        first = await _say(hub, "night-owl", "your site is down and I'm losing money", "p1")
        cid = first["conversation_id"]
        [handoff] = await wait_for(lambda: _handed_off(hub, cid, 1))
        assert handoff["body"] == (
            "I'm passing you to our team right away. "
            "Our team is away right now and back Monday at 09:00 (Europe/Paris). We'll reply here."
        )
        assert handoff["meta"]["promise"] == {
            "on_duty": False,
            "back_at": "2026-11-30T08:00:00+00:00",
            "asks_email": False,
            "email": None,
        }

        # The customer leaves an address in the conversation: kept on the
        # contact, unverified, and not made an identity (it proves nothing).
        await _say(hub, "night-owl", "Night.Owl@Example.com", "p2")
        contact = await hub.api("GET", f"/api/v1/contacts/{first['contact_id']}")
        assert contact["attributes"]["email_unverified"] == "night.owl@example.com"
        assert contact["email"] is None

        # An agent comes on duty: the next handoff promises a reply shortly.
        await hub.api("POST", "/api/v1/agents/me/duty", role="agent", json={"on_duty": True})
        await hub.api("PATCH", f"/api/v1/conversations/{cid}", role="agent", json={"status": "resolved"})
        await wait_for(lambda: str(cid) in rasa.resumed)
        await wait_for(lambda: _conversation_is(hub, cid, "bot"))
        await _say(hub, "night-owl", "I want to talk to a person", "p3")
        handoffs = await wait_for(lambda: _handed_off(hub, cid, 2))
        assert handoffs[-1]["body"] == f"I'm passing you to our team. {ON_DUTY}"
        assert handoffs[-1]["meta"]["promise"]["on_duty"] is True

        # Off duty again: the address the customer left is where the reply goes too.
        await hub.api("POST", "/api/v1/agents/me/duty", role="agent", json={"on_duty": False})
        await hub.api("PATCH", f"/api/v1/conversations/{cid}", role="agent", json={"status": "resolved"})
        await wait_for(lambda: rasa.resumed.count(str(cid)) == 2)
        await wait_for(lambda: _conversation_is(hub, cid, "bot"))
        await _say(hub, "night-owl", "a human please", "p4")
        handoffs = await wait_for(lambda: _handed_off(hub, cid, 3))
        assert handoffs[-1]["body"].endswith(
            "back Monday at 09:00 (Europe/Paris). We'll reply here and by email to n***@example.com."
        )
        assert "shortly" not in handoffs[-1]["body"]
    finally:
        await hub.client.close()


async def _conversation_is(hub: Hub, cid: int, handler: str) -> bool:
    return bool((await hub.api("GET", f"/api/v1/conversations/{cid}"))["handler"] == handler)


@pytest.mark.asyncio
async def test_the_fallback_handoff_promises_the_same(sqlite_url: str, tmp_path: Path, rasa: FakeRasa) -> None:
    rasa.down = True
    settings = make_settings(
        sqlite_url,
        tmp_path,
        bot="rasa",
        rasa_url=rasa.url,
        rasa_timeout=0.5,
        rasa_ready_wait=1.0,
        webchat_agents_online="false",  # nobody, and no business hours
    )
    hub = await start_hub(settings, knowledge_base=None)
    try:
        msg = await _say(hub, "nobody-home", "Can you help me?", "f1")
        [handoff] = await wait_for(lambda: _handed_off(hub, msg["conversation_id"], 1), timeout=10)
        assert handoff["body"] == f"{FALLBACK_HANDOFF_TEXT} {AWAY} We'll reply here."
        assert handoff["meta"]["fallback"] is True and handoff["meta"]["promise"]["on_duty"] is False
    finally:
        await hub.client.close()


@pytest.mark.asyncio
async def test_in_the_web_chat_away_the_bot_asks_for_the_address_and_keeps_the_answer(
    database_url: str, tmp_path: Path, rasa: FakeRasa
) -> None:
    from tests.channels.test_webchat_support import hello, receive_until, stop_hub, webchat_settings

    settings = webchat_settings(
        database_url,
        tmp_path,
        bot="rasa",
        rasa_url=rasa.url,
        rasa_timeout=0.5,
        rasa_ready_wait=1.0,
        webchat_agents_online="auto",  # nobody is on duty
    )
    hub = await start_hub(settings, knowledge_base=None)
    try:
        ws = await hub.client.ws_connect("/channels/webchat/ws")
        await hello(ws)
        await ws.send_json({"type": "message", "client_id": "w1", "text": "I want to talk to a person"})
        ack = await receive_until(ws, "ack")
        first = await hub.api("GET", f"/api/v1/messages/{ack['message']['id']}")
        cid, contact_id = first["conversation_id"], first["contact_id"]
        handoff = await receive_until(ws, "message")
        assert handoff["message"]["text"] == f"I'm passing you to our team. {AWAY} {ASK_EMAIL}"
        # The widget switches to away mode; the frame adds no second note to read.
        assert await receive_until(ws, "offline") == {"type": "offline"}

        await ws.send_json({"type": "message", "client_id": "w2", "text": "visitor@example.org"})
        await receive_until(ws, "ack")
        contact = await hub.api("GET", f"/api/v1/contacts/{contact_id}")
        assert contact["attributes"]["email_unverified"] == "visitor@example.org" and contact["email"] is None
        [stored] = await _handed_off(hub, cid, 1) or []
        assert stored["meta"]["promise"]["asks_email"] is True
        await ws.close()
    finally:
        await stop_hub(hub)
