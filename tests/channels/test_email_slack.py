"""E-mail to Slack and back, through the whole hub: an urgent mail's ticket
card goes to the urgent channel, the agent's thread reply arrives by e-mail
in the customer's thread, and the customer's answer lands back in the Slack
thread. Real SMTP both ways (the hub's server in, an SMTP sink out), the
fake Slack API for the desk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.channels.email_support import CUSTOMER, email_settings, mail, smtp_send, timeline
from tests.channels.test_slack import AGENT_SLACK, SECRET, make_agent, posted_card, thread_event
from tests.conftest import Hub, close_hub, start_hub, wait_for
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.smtp_sink import SmtpSink


@pytest_asyncio.fixture
async def stack(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Hub, SmtpSink, FakeSlackApi]]:
    sink, slack = await SmtpSink().start(), await FakeSlackApi().start()
    settings = email_settings(
        database_url,
        tmp_path,
        channels="email,slack",
        email_relay_port=sink.port,
        slack_bot_token="xoxb-test-token",
        slack_signing_secret=SECRET,
        slack_api_url=slack.base_url,
        slack_default_channel="CSUPPORT",
        slack_urgent_channel="CURGENT",
        slack_jobs_base_delay=0.05,
        slack_jobs_max_delay=0.2,
        slack_jobs_poll_interval=0.05,
    )
    hub = await start_hub(settings)
    try:
        yield hub, sink, slack
    finally:
        await close_hub(hub)
        await sink.close()
        await slack.close()


@pytest.mark.asyncio
async def test_urgent_mail_to_slack_and_the_agents_answer_back_by_mail(
    stack: tuple[Hub, SmtpSink, FakeSlackApi],
) -> None:
    hub, sink, slack = stack
    await make_agent(hub)
    smtp_port = int(hub.channel("email").smtp.port)
    raw = mail(
        "Our shop is down and we are losing sales!",
        subject="URGENT: checkout broken",
        message_id="<u1@customer.example.org>",
    )
    assert (await smtp_send(smtp_port, raw)).data == 250
    [question] = await timeline(hub)
    # What the bot's handoff does for an urgent message: one transaction opens the ticket.
    await hub.tickets.open(question.conversation_id, priority="urgent", reason="site down", source="bot")
    [ticket] = (await hub.api("GET", "/api/v1/tickets"))["items"]
    ticket = await posted_card(hub, slack, ticket["id"])
    assert ticket["slack_channel"] == "CURGENT"

    response = await thread_event(hub, ticket, "We are on it, the checkout is back in 10 minutes.", user=AGENT_SLACK)
    assert response.status == 200
    [answer] = await sink.wait_for(1)
    assert answer.rcpt_tos == (CUSTOMER,)
    assert answer.message["In-Reply-To"] == "<u1@customer.example.org>"
    assert answer.message["Subject"] == "Re: URGENT: checkout broken"
    assert "We are on it" in answer.message.get_body(("plain",)).get_content()

    reply = mail(
        "Thanks, it works again.",
        subject="Re: URGENT: checkout broken",
        message_id="<u2@customer.example.org>",
        headers={
            "In-Reply-To": answer.message["Message-ID"],
            "References": f"<u1@customer.example.org> {answer.message['Message-ID']}",
        },
    )
    assert (await smtp_send(smtp_port, reply)).data == 250

    def mirrored() -> bool:
        return any(
            "Thanks, it works again." in str(call.args.get("text", ""))
            and call.args.get("thread_ts") == ticket["slack_ts"]
            for call in slack.of("chat.postMessage")
        )

    await wait_for(mirrored)
    conversations = {m.conversation_id for m in await timeline(hub)}
    assert conversations == {question.conversation_id}
