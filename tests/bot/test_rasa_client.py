"""``RasaClient.parse`` against the real Rasa: its reading of a text, and a clear error when refused."""

from __future__ import annotations

import pytest

from bot.client import RasaClient, Unavailable
from tests.bot.conftest import RasaStack


@pytest.mark.rasa
@pytest.mark.asyncio
async def test_parse_reads_a_text_with_the_served_model_and_touches_no_conversation(rasa_stack: RasaStack) -> None:
    # Not a timing test: a first parse on a loaded machine (the chaos suite beside it) took over 5 s.
    client = RasaClient(rasa_stack.rasa_url, token=rasa_stack.token, timeout=60.0)
    try:
        parsed = await client.parse("someone stole my card and is spending on it right now")
        again = await client.parse("someone stole my card and is spending on it right now")
    finally:
        await client.close()
    assert parsed["text"] == "someone stole my card and is spending on it right now"
    assert parsed["intent"]["name"] == "urgent_issue"
    assert parsed["intent_ranking"][0]["name"] == "urgent_issue" and len(parsed["intent_ranking"]) > 1
    assert again["intent"] == parsed["intent"]  # the same model, the same reading
    assert not [e for e in rasa_stack.tracker("default")["events"] if e.get("event") == "user"]


@pytest.mark.rasa
@pytest.mark.asyncio
async def test_parse_with_a_wrong_token_raises_unavailable(rasa_stack: RasaStack) -> None:
    client = RasaClient(rasa_stack.rasa_url, token="not-the-token")
    try:
        with pytest.raises(Unavailable, match="HTTP 401"):
            await client.parse("hello")
    finally:
        await client.close()
