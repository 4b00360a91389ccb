"""After an erasure nothing of the customer remains: not in any table, not in
the Slack cards and threads the hub posted, not in Rasa's tracker, not in the log.

A customer talks to the bot (a Rasa stand-in that keeps a tracker), asks for
a person, the ticket's card goes up in the fake Slack with their messages in
its thread, and an agent replies. The contact is erased through the API:
the Slack card and the hub's thread messages are deleted through the durable
Slack queue, the tracker is emptied through the bot queue, every table is
scanned for their name, address and words, and so is the INFO log.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.storage.schema import metadata
from tests.channels.test_slack import slack_settings
from tests.conftest import start_hub, wait_for
from tests.fakes.rasa import FakeRasa
from tests.fakes.slack_api import FakeSlackApi

NAME, ADDRESS = "Zebulon Quist", "zq-visitor-4411"
WORDS = ("my parcel with the walnut clock never came", "please get me a person about the walnut clock")


@pytest.mark.asyncio
async def test_erasure_leaves_nothing_in_tables_slack_rasa_or_logs(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rasa, slack = FakeRasa(), await FakeSlackApi().start()
    await rasa.start()
    settings = slack_settings(
        database_url, tmp_path, slack, bot="rasa", rasa_url=rasa.url, rasa_timeout=0.5, rasa_ready_wait=1.0
    )
    hub = await start_hub(settings, knowledge_base=None)
    try:
        first = await hub.inbound({"from": ADDRESS, "name": NAME, "text": WORDS[0], "id": "z1"})
        message = await hub.api("GET", f"/api/v1/messages/{first['received'][0]['message_id']}")
        cid, contact = message["conversation_id"], message["contact_id"]
        await hub.inbound({"from": ADDRESS, "text": WORDS[1], "id": "z2"})  # "person": the bot hands off

        async def card() -> dict | None:
            items = (await hub.api("GET", "/api/v1/tickets"))["items"]
            return items[0] if items and items[0]["slack_ts"] else None

        ticket = await wait_for(card)
        await hub.inbound({"from": ADDRESS, "text": "hello? still waiting on the walnut clock", "id": "z3"})
        await hub.api(
            "POST", f"/api/v1/conversations/{cid}/messages", role="agent", json={"text": "Hi Zebulon"}, expect=201
        )

        def in_slack() -> list[str]:
            texts = [f"{m.get('text')} {m.get('blocks')}" for m in slack.messages.values()]
            return [t for t in texts if any(n in t for n in (NAME, "Zebulon", "walnut clock"))]

        await wait_for(lambda: len(in_slack()) >= 3)  # the card and the mirrored thread messages
        assert any("walnut clock" in t for t in rasa.trackers[str(cid)])

        result = await hub.api("DELETE", f"/api/v1/contacts/{contact}")
        assert result["deleted"]["slack_cards"] == 1 and result["deleted"]["bot_trackers"] == 1

        await wait_for(lambda: not in_slack(), timeout=20)
        assert (ticket["slack_channel"], ticket["slack_ts"]) not in slack.messages
        await wait_for(lambda: str(cid) in rasa.forgotten, timeout=20)
        assert rasa.trackers[str(cid)] == []

        needles = (NAME, "Zebulon", ADDRESS, "walnut clock")

        def scan(conn: sa.Connection) -> list[str]:
            hits = []
            for table in metadata.sorted_tables:
                for row in conn.execute(sa.select(table)):
                    text = " ".join(str(v) for v in row)
                    hits += [f"{table.name}: {n}" for n in needles if n in text]
            return hits

        assert await hub.db.read(scan) == []
        logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
        assert not [line for line in logged if any(n in line for n in needles)]
    finally:
        await hub.client.close()
        await rasa.stop()
        await slack.close()
