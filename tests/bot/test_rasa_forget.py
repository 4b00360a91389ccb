"""An erased customer's words leave the real Rasa's tracker (``RasaClient.forget``)."""

from __future__ import annotations

import pytest

from bot.client import RasaClient
from tests.bot.conftest import RasaStack


@pytest.mark.rasa
@pytest.mark.asyncio
async def test_forget_empties_the_tracker_of_a_real_rasa(rasa_stack: RasaStack) -> None:
    sender = "forget-me-5521"
    rasa_stack.send(sender, "my walnut clock parcel never arrived")
    before = rasa_stack.tracker(sender)
    assert any(e.get("text") == "my walnut clock parcel never arrived" for e in before["events"])
    client = RasaClient(rasa_stack.rasa_url, token=rasa_stack.token, timeout=60.0)  # not a timing test
    try:
        await client.forget(sender)
    finally:
        await client.close()
    after = rasa_stack.tracker(sender)
    assert "walnut" not in str(after)
    assert not [e for e in after["events"] if e.get("event") == "user"]
