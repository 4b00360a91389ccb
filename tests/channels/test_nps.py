"""NPS (issue #17, ``hub.nps``): with ``HUB_NPS_EVERY_DAYS``, a CSAT answer is
followed by "how likely are you to recommend us" (0-10) on the customer's
own channel (web chat buttons, an SMS reply number, e-mail links), at most
once per contact in N days; answered once, a second answer refused
politely; on the timeline and in the ``nps`` report."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.channels.email_support import email_hub, mail, smtp_send
from tests.channels.test_email_csat import LINK, surveyed
from tests.channels.test_sms_hub import apis, settings_for, text_in, texts  # noqa: F401 - fixtures
from tests.channels.test_webchat import WS
from tests.channels.test_webchat_support import hello, receive_until, running_hub
from tests.conftest import Hub, close_hub, start_hub, wait_for
from tests.console.conftest import OffsetClock
from tests.fakes.twilio_api import FakeTwilioApi

CSAT_SMS = "How did we do? Reply 1-5 (5 = great)."
NPS_SMS = "How likely are you to recommend us? Reply 0-10 (10 = extremely likely)."
THANKS = "Thanks for your feedback!"
ALREADY = "Thanks, we already have your rating."
DAY = 86400.0


async def survey_lines(hub: Hub, conversation_id: int) -> list[str]:
    page = await hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline")
    return [
        m["body"] for m in page["items"] if m["kind"] == "event" and m["meta"]["event"].split("-")[0] in ("csat", "nps")
    ]


async def nps_report(hub: Hub) -> dict[str, Any]:
    return await hub.api(
        "GET", "/api/v1/reports/nps", role="viewer", params={"from": "2026-01-01", "to": "2028-01-01", "bucket": "week"}
    )


async def resolve(hub: Hub, conversation_id: int) -> None:
    await hub.api("PATCH", f"/api/v1/conversations/{conversation_id}", json={"status": "resolved"})


@pytest.mark.asyncio
async def test_sms_asks_nps_after_the_rating_at_most_once_in_n_days(
    database_url: str, tmp_path: Path, apis: tuple[FakeTwilioApi, Any]
) -> None:
    twilio, _ = apis
    clock = OffsetClock()
    hub = await start_hub(settings_for(database_url, tmp_path, *apis, nps_every_days=30), clock=clock)
    try:
        question = await text_in(hub, "my parcel never came")
        conversation_id = question.conversation_id
        await resolve(hub, conversation_id)
        await wait_for(lambda: texts(twilio) == [CSAT_SMS])
        await text_in(hub, "4")
        # The thanks, then the NPS question, on the same number.
        await wait_for(lambda: texts(twilio)[1:] == [THANKS, NPS_SMS])
        # 10 is no CSAT rating, but the NPS question's answer; again, refused politely.
        await text_in(hub, " 10 ")
        await wait_for(lambda: texts(twilio)[3:] == [THANKS])
        again = await text_in(hub, "3")
        assert again.conversation_id == conversation_id
        await wait_for(lambda: texts(twilio)[4:] == [ALREADY])
        assert await survey_lines(hub, conversation_id) == [
            "Customer rated the conversation 4/5.",
            "Customer would recommend us 10/10 (promoter).",
        ]
        assert (await hub.api("GET", f"/api/v1/conversations/{conversation_id}"))["status"] == "resolved"

        # Ten days later, another resolve and rating: no NPS question (asked within 30 days).
        clock.advance(10 * DAY)
        await text_in(hub, "and where is my refund?")
        await resolve(hub, conversation_id)
        await wait_for(lambda: texts(twilio)[5:] == [CSAT_SMS])
        # 8 is no CSAT rating: a message like any other, which reopens the conversation.
        await text_in(hub, "8")
        assert (await hub.api("GET", f"/api/v1/conversations/{conversation_id}"))["status"] == "open"
        await resolve(hub, conversation_id)  # its survey is still open: no second one
        await text_in(hub, "5")
        await wait_for(lambda: texts(twilio)[6:] == [THANKS])
        # Thirty-one days after the first question: asked again.
        clock.advance(21 * DAY)
        later = await text_in(hub, "one more thing")
        await resolve(hub, later.conversation_id)
        await wait_for(lambda: texts(twilio)[7:] == [CSAT_SMS])
        await text_in(hub, "2")
        await wait_for(lambda: texts(twilio)[8:] == [THANKS, NPS_SMS])
        await text_in(hub, "6")
        await wait_for(lambda: texts(twilio)[10:] == [THANKS])

        report = await nps_report(hub)
        [everything] = [row for row in report["totals"] if row["channel"] == "all"]
        assert (everything["sent"], everything["answered"]) == (2, 2)
        assert (everything["promoters"], everything["passives"], everything["detractors"]) == (1, 0, 1)
        assert everything["nps"] == 0.0 and everything["rating_10"] == 1 and everything["rating_6"] == 1
        # The CSAT report counts CSAT surveys only.
        csat = await hub.api(
            "GET", "/api/v1/reports/csat", role="viewer", params={"from": "2026-01-01", "to": "2028-01-01"}
        )
        assert (csat["totals"][0]["sent"], csat["totals"][0]["average"]) == (3, 3.67)
    finally:
        await close_hub(hub)


@pytest.mark.asyncio
async def test_web_chat_shows_ten_point_buttons_after_the_rating(database_url: str, tmp_path: Path) -> None:
    async with running_hub(database_url, tmp_path, echo=False, nps_every_days=90) as hub:
        tab = await hub.client.ws_connect(WS)
        welcome, _ = await hello(tab)
        await tab.send_json({"type": "message", "client_id": "c1", "text": "where is my order?"})
        ack = await receive_until(tab, "ack")
        conversation_id = (await hub.api("GET", f"/api/v1/messages/{ack['message']['id']}"))["conversation_id"]
        await resolve(hub, conversation_id)
        csat = await receive_until(tab, "survey")
        assert (csat["low"], csat["high"]) == (1, 5)
        await tab.send_json({"type": "survey_answer", "survey_id": csat["survey_id"], "rating": 5})
        assert (await receive_until(tab, "survey_result"))["outcome"] == "recorded"

        question = await receive_until(tab, "message")
        nps = await receive_until(tab, "survey")
        assert "recommend us" in nps["question"] and nps["message_id"] == question["message"]["id"]
        assert (nps["low"], nps["high"]) == (0, 10) and nps["survey_id"] != csat["survey_id"]
        # Off its scale: refused, the socket stays open.
        await tab.send_json({"type": "survey_answer", "survey_id": nps["survey_id"], "rating": 11})
        assert (await receive_until(tab, "error"))["code"] == "invalid_input"
        await tab.send_json({"type": "survey_answer", "survey_id": nps["survey_id"], "rating": 0})
        assert (await receive_until(tab, "survey_result"))["outcome"] == "recorded"
        await tab.send_json({"type": "survey_answer", "survey_id": nps["survey_id"], "rating": 10})
        again = await receive_until(tab, "survey_result")
        assert (again["outcome"], again["text"]) == ("already-answered", ALREADY)
        assert await survey_lines(hub, conversation_id) == [
            "Customer rated the conversation 5/5.",
            "Customer would recommend us 0/10 (detractor).",
        ]

        # The history marks both surveys with their scales, for the widget's buttons.
        await tab.close()
        tab = await hub.client.ws_connect(WS)
        _, history = await hello(tab, token=welcome["token"])
        marked = [(m["survey_id"], m["survey_low"], m["survey_high"]) for m in history["messages"] if "survey_id" in m]
        assert marked == [(csat["survey_id"], 1, 5), (nps["survey_id"], 0, 10)]
        await tab.close()
        report = await nps_report(hub)
        assert report["totals"][0]["detractors"] == 1 and report["totals"][0]["nps"] == -100.0


@pytest.mark.asyncio
async def test_e_mail_sends_links_zero_to_ten_confirmed_by_the_page(database_url: str, tmp_path: Path) -> None:
    async with email_hub(database_url, tmp_path, nps_every_days=30) as running:
        hub = running.hub
        conversation_id, _, csat_links = await surveyed(running)
        assert [rating for _, rating in csat_links] == ["1", "2", "3", "4", "5"]
        # A scanner's GET asks nothing and records nothing: no NPS mail yet.
        assert (await hub.client.get(f"{csat_links[0][0]}3")).status == 200
        posted = await hub.client.post(csat_links[0][0].rstrip("/"), data={"rating": "3"})
        assert posted.status == 200 and "You rated us 3 out of 5." in await posted.text()

        [_, nps_mail] = await running.sink.wait_for(2)
        text = nps_mail.text()
        assert "recommend us" in text
        links = LINK.findall(text)
        assert [rating for _, rating in links] == [str(n) for n in range(11)]
        page = await hub.client.get(f"{links[9][0]}9")
        body = await page.text()
        assert page.status == 200 and "How likely are you to recommend us" in body
        assert re.findall(r'value="(\d+)" checked', body) == ["9"] and 'value="0"' in body and 'value="10"' in body
        posted = await hub.client.post(links[0][0].rstrip("/"), data={"rating": "9", "comment": "Fast"})
        assert posted.status == 200 and "You rated us 9 out of 10. Thanks for your comment!" in await posted.text()
        again = await hub.client.post(links[0][0].rstrip("/"), data={"rating": "2"})
        assert again.status == 200 and ALREADY in await again.text()
        assert await survey_lines(hub, conversation_id) == [
            "Customer rated the conversation 3/5.",
            "Customer would recommend us 9/10 (promoter): “Fast”",
        ]
        # One contact, one question in 30 days: a second resolve and rating asks no more.
        assert (await smtp_send(running.smtp_port, mail("And my refund?"))).data == 250
        conversations = await hub.api("GET", "/api/v1/conversations")
        for conversation in conversations["items"]:
            if conversation["status"] != "resolved":
                await resolve(hub, conversation["id"])
        mails = await running.sink.wait_for(3)
        third = LINK.findall(mails[2].text())
        assert [rating for _, rating in third] == ["1", "2", "3", "4", "5"]
        assert (await hub.client.post(third[0][0].rstrip("/"), data={"rating": "5"})).status == 200
        report = await nps_report(hub)
        assert (report["totals"][0]["sent"], report["totals"][0]["promoters"]) == (1, 1)
        assert len(running.sink.messages) == 3


@pytest.mark.asyncio
async def test_a_merged_contact_keeps_the_later_question(
    database_url: str, tmp_path: Path, apis: tuple[FakeTwilioApi, Any]
) -> None:
    twilio, _ = apis
    hub = await start_hub(settings_for(database_url, tmp_path, *apis, nps_every_days=30))
    try:
        asked = await text_in(hub, "my parcel never came")
        await resolve(hub, asked.conversation_id)
        await wait_for(lambda: texts(twilio) == [CSAT_SMS])
        await text_in(hub, "4")
        await wait_for(lambda: texts(twilio)[1:] == [THANKS, NPS_SMS])
        other_number = "+15005550123"
        never = await text_in(hub, "hello from my other phone", sender=other_number)
        # The contact never asked is merged with the one asked: as one person, asked within 30 days.
        asked_contact = (await hub.api("GET", f"/api/v1/conversations/{asked.conversation_id}"))["contact_id"]
        never_contact = (await hub.api("GET", f"/api/v1/conversations/{never.conversation_id}"))["contact_id"]
        await hub.api(
            "POST", f"/api/v1/contacts/{never_contact}/merge", role="agent", json={"source_id": asked_contact}
        )
        await resolve(hub, never.conversation_id)
        await wait_for(lambda: texts(twilio, other_number) == [CSAT_SMS])
        await text_in(hub, "5", sender=other_number)
        await wait_for(lambda: texts(twilio, other_number)[1:] == [THANKS])
        report = await nps_report(hub)
        assert report["totals"][0]["sent"] == 1
    finally:
        await close_hub(hub)
