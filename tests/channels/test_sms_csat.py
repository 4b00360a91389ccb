"""CSAT by SMS (issue #17): "Reply 1-5"; a bare digit while the survey is open
is the answer (thanked by text, not handed to the bot, not a reopening); a
second digit is refused politely; anything else is a message as before."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from hub.storage.schema import bot_jobs, csat_surveys
from tests.channels.test_sms_hub import apis, hub, text_in, texts  # noqa: F401 - fixtures
from tests.conftest import Hub, wait_for
from tests.fakes.twilio_api import FakeTwilioApi


async def bot_job_of(hub: Hub, message_id: int) -> bool:
    return await hub.db.read(
        lambda conn: (
            conn.execute(sa.select(bot_jobs.c.id).where(bot_jobs.c.message_id == message_id)).first() is not None
        )
    )


@pytest.mark.asyncio
async def test_a_reply_digit_is_the_rating_once_and_never_the_bots(hub: Hub, apis: tuple[FakeTwilioApi, Any]) -> None:
    twilio, _ = apis
    hub.service.attach_bot(lambda: None)  # bot jobs are written for bot-handled conversations
    question = await text_in(hub, "my parcel never came")
    conversation_id = question.conversation_id
    await hub.api("PATCH", f"/api/v1/conversations/{conversation_id}", json={"status": "resolved"})
    await wait_for(lambda: texts(twilio) == ["How did we do? Reply 1-5 (5 = great)."])

    rating = await text_in(hub, " 4 ")
    assert rating.conversation_id == conversation_id and not await bot_job_of(hub, rating.id)
    await wait_for(lambda: texts(twilio)[-1:] == ["Thanks for your feedback!"])
    conversation = await hub.api("GET", f"/api/v1/conversations/{conversation_id}")
    assert conversation["status"] == "resolved"  # a rating is no reopening
    stored = await hub.db.read(
        lambda conn: conn.execute(
            sa.select(csat_surveys.c.rating).where(csat_surveys.c.conversation_id == conversation_id)
        ).all()
    )
    assert [r.rating for r in stored] == [4]

    again = await text_in(hub, "1")
    assert not await bot_job_of(hub, again.id)
    await wait_for(lambda: texts(twilio)[-1:] == ["Thanks, we already have your rating."])

    # Not a bare digit 1-5: a message like any other (it reopens, the bot gets it).
    other = await text_in(hub, "5 stars, but one more question")
    assert await bot_job_of(hub, other.id)
    conversation = await hub.api("GET", f"/api/v1/conversations/{conversation_id}")
    assert conversation["status"] == "open"
