"""CSAT in the Slack desk (issue #17): the customer's rating, given after the
resolve, is mirrored into the ticket's thread and shown on its card."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from hub import keys
from hub.storage.schema import csat_surveys
from tests.channels.test_slack import (  # noqa: F401 - fixtures
    block_text,
    bot_handoff,
    customer_conversation,
    posted_card,
    slack_api,
    slack_hub,
)
from tests.conftest import Hub, wait_for
from tests.fakes.slack_api import FakeSlackApi


@pytest.mark.asyncio
async def test_the_rating_reaches_the_thread_and_the_card(slack_hub: Hub, slack_api: FakeSlackApi) -> None:
    conversation_id = await customer_conversation(slack_hub, sender="csat-slack")
    ticket = await posted_card(slack_hub, slack_api, (await bot_handoff(slack_hub, conversation_id))["id"])
    await slack_hub.api("POST", f"/api/v1/tickets/{ticket['id']}/resolve", role="agent")
    survey_id = await slack_hub.db.read(
        lambda conn: conn.execute(
            sa.select(csat_surveys.c.id).where(csat_surveys.c.ticket_id == ticket["id"])
        ).scalar_one()
    )
    await slack_hub.app[keys.CSAT].answer(survey_id, 5, "Lovely")

    await wait_for(
        lambda: any(
            c.args.get("thread_ts") == ticket["slack_ts"] and "rated the conversation 5/5" in c.args.get("text", "")
            for c in slack_api.of("chat.postMessage")
        )
    )
    await wait_for(
        lambda: any(
            "*CSAT*" in block_text(c.args.get("blocks", [])) and "5/5" in block_text(c.args.get("blocks", []))
            for c in slack_api.of("chat.update")
        )
    )
