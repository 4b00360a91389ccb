"""A team brings its own knowledge base: the real hub, the real Rasa, a help centre of another domain.

The hub starts on the sample shop's knowledge base with the model `make
rasa-model` trains for it. The articles are then replaced, at run time, by a
small bike-sharing help centre: the hub notices, retrains the NLU on what the
new help centre answers in the background (the old model serving meanwhile),
swaps it into Rasa live, and the bot answers the new domain's questions and
names the new domain's categories when it has no answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.rasa import model
from hub.keys import KNOWLEDGE_BASE
from tests.conftest import Hub, wait_for

from .conftest import start_rasa_hub

pytestmark = [pytest.mark.rasa, pytest.mark.asyncio(loop_scope="module")]

BIKESHARE = Path(__file__).resolve().parent.parent / "fixtures" / "kb" / "bikeshare"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub(rasa_model: model.ModelInfo, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Hub]:
    running = await start_rasa_hub(
        rasa_model, tmp_path_factory.mktemp("hub-kb-swap"), rasa_timeout=10.0, bot_adapt=True, bot_adapt_interval=0.5
    )
    try:
        yield running
    finally:
        await running.client.close()


async def _model(hub: Hub) -> dict:
    return await hub.api("GET", "/api/v1/bot/model", role="viewer")


async def _bot_replies(hub: Hub, conversation_id: int, after_id: int) -> list[dict]:
    page = await hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline", params={"limit": 200})
    return [m for m in page["items"] if m["author_kind"] == "bot" and m["id"] > after_id]


async def _ask(hub: Hub, sender: str, text: str) -> list[dict]:
    received = await hub.inbound({"from": sender, "text": text})
    message = await hub.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")
    return await wait_for(lambda: _bot_replies(hub, message["conversation_id"], message["id"]), timeout=60)


async def test_the_bot_follows_a_knowledge_base_swapped_at_run_time(hub: Hub) -> None:
    # The model trained for the sample knowledge base is in step: nothing to train.
    first = await wait_for(lambda: _up_to_date(hub), timeout=60)
    assert first["adapting"] is True and first["serving"] == first["wanted"] and first["training"] is False
    serving_before = first["serving"]

    kb = hub.app[KNOWLEDGE_BASE]
    report = await kb.ingest_dir(BIKESHARE, "default", delete_missing=True)
    assert sorted(report.added) == ["e-bike-battery", "report-a-damaged-bike", "ride-prices", "unlock-a-bike"]

    # Retrained in the background on the new help centre's titles and headings, then swapped in live.
    after = await wait_for(lambda: _retrained(hub, serving_before), timeout=300, interval=1.0)
    assert after["up_to_date"] and after["last_training_seconds"] > 0 and after["kb_examples"] >= 8

    [answer, *_] = await _ask(hub, "rider-1", "how do i get a bike out of the dock with my phone")
    assert answer["meta"]["decision"]["action"] == "answer"
    assert answer["meta"]["decision"]["article_id"] == "unlock-a-bike"
    assert "/help/articles/unlock-a-bike" in answer["body"]

    [answer, *_] = await _ask(hub, "rider-2", "how much is a day pass")
    assert answer["meta"]["decision"]["article_id"] == "ride-prices"
    assert "€9" in answer["body"]  # the quoted table row, not the intro

    [reply, *_] = await _ask(hub, "rider-3", "can you write me a poem about the sea")
    assert reply["meta"]["decision"]["action"] == "topics"
    # What it can help with, from the new knowledge base's own categories; nothing of the shop's.
    assert "Riding" in reply["body"] and "Prices and payment" in reply["body"]
    assert "order" not in reply["body"].lower() and "delivery" not in reply["body"].lower()


async def _up_to_date(hub: Hub) -> dict | None:
    state = await _model(hub)
    return state if state.get("up_to_date") else None


async def _retrained(hub: Hub, before: str) -> dict | None:
    state = await _model(hub)
    return state if state.get("up_to_date") and state["serving"] != before else None
