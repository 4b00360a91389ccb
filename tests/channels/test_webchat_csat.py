"""CSAT on web chat (issue #17): the survey frame after the resolve, the
rating (and comment) as a ``survey_answer`` frame, a second one refused politely."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.channels.test_webchat import WS
from tests.channels.test_webchat_support import hello, receive_until, running_hub


@pytest.mark.asyncio
async def test_rating_buttons_answer_once_with_a_comment(database_url: str, tmp_path: Path) -> None:
    async with running_hub(database_url, tmp_path, echo=False) as hub:
        tab = await hub.client.ws_connect(WS)
        welcome, _ = await hello(tab)
        await tab.send_json({"type": "message", "client_id": "c1", "text": "where is my order?"})
        ack = await receive_until(tab, "ack")
        stored = await hub.api("GET", f"/api/v1/messages/{ack['message']['id']}")
        conversation_id = stored["conversation_id"]
        ticket = await hub.api(
            "POST", f"/api/v1/conversations/{conversation_id}/handoff", role="agent", json={}, expect=201
        )
        await hub.api("POST", f"/api/v1/tickets/{ticket['id']}/resolve", role="agent")

        question = await receive_until(tab, "message")
        survey = await receive_until(tab, "survey")
        assert survey["question"] == question["message"]["text"] and "1 (poor) to 5 (great)" in survey["question"]
        assert survey["message_id"] == question["message"]["id"]
        survey_id = survey["survey_id"]

        # Validated like every frame; the socket stays open.
        await tab.send_json({"type": "survey_answer", "survey_id": survey_id, "rating": 9})
        assert (await receive_until(tab, "error"))["code"] == "invalid_input"
        await tab.send_json({"type": "survey_answer", "survey_id": "x", "rating": 3})
        assert (await receive_until(tab, "error"))["code"] == "invalid_frame"
        await tab.send_json({"type": "survey_answer", "survey_id": survey_id + 1000, "rating": 3})
        assert (await receive_until(tab, "error"))["code"] == "forbidden"

        await tab.send_json({"type": "survey_answer", "survey_id": survey_id, "rating": 5})
        result = await receive_until(tab, "survey_result")
        assert result["outcome"] == "recorded" and result["survey_id"] == survey_id
        await tab.send_json({"type": "survey_answer", "survey_id": survey_id, "comment": "Very helpful"})
        assert (await receive_until(tab, "survey_result"))["outcome"] == "recorded"
        await tab.send_json({"type": "survey_answer", "survey_id": survey_id, "rating": 1})
        again = await receive_until(tab, "survey_result")
        assert again == {
            "type": "survey_result",
            "survey_id": survey_id,
            "outcome": "already-answered",
            "text": "Thanks, we already have your rating.",
        }

        page = await hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline")
        rated = [m["body"] for m in page["items"] if m["kind"] == "event" and m["meta"]["event"].startswith("csat-")]
        assert rated == [
            "Customer rated the conversation 5/5.",
            "Customer's comment on their 5/5 rating: “Very helpful”",
        ]

        # On resume the history marks the survey message, so the widget can show the buttons again.
        await tab.close()
        tab = await hub.client.ws_connect(WS)
        _, history = await hello(tab, token=welcome["token"])
        marked = [m for m in history["messages"] if "survey_id" in m]
        assert [m["survey_id"] for m in marked] == [survey_id]
        await tab.close()
