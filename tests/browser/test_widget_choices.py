"""The widget's suggested answers in headless chromium: the bot's clarifying
question ("is it about A, B or C?") shows a button per article title; a
click sends that title as the visitor's message, once; a reload shows the
question from the history with its buttons again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.models import AuthorKind
from tests.browser.test_widget import TIMEOUT, bubbles, conversation_bodies, open_demo, watch
from tests.channels.test_webchat_support import running_hub
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.asyncio]

QUESTION = 'Is your question about "Refunds" or "Shipping options and delivery times"?'
OFFERED = [
    {"title": "Refunds", "article_id": "refunds"},
    {"title": "Shipping options and delivery times", "article_id": "shipping"},
]


async def test_a_clarifying_questions_titles_are_buttons_that_answer_it(
    browser: Any, database_url: str, tmp_path: Path, artifacts: Path
) -> None:
    from playwright.async_api import expect

    async with running_hub(database_url, tmp_path, echo=False, webchat_title="Northwind support") as hub:
        page = await browser.new_page(viewport={"width": 375, "height": 740}, bypass_csp=True)
        errors = watch(page)
        await open_demo(page, hub)
        await page.get_by_role("button", name="Open chat").click()
        message = page.get_by_role("textbox", name="Message")
        await message.fill("the money thing")
        await message.press("Enter")
        await expect(bubbles(page, "the money thing")).to_have_count(1, timeout=TIMEOUT)

        async def conversations() -> list[dict[str, Any]]:
            return list((await hub.api("GET", "/api/v1/conversations", params={"channel": "webchat"}))["items"])

        await wait_for(conversations)  # the bubble shows before the hub has stored the message
        [conversation] = await conversations()
        # The bot's clarifying question, as the bot bridge stores it (its decision in the meta).
        await hub.service.reply(
            conversation["id"],
            QUESTION,
            author_kind=AuthorKind.BOT,
            meta={"decision": {"action": "clarify", "confidence": 0.4, "offered": OFFERED}},
        )
        choices = page.get_by_role("group", name="Suggested answers")
        await expect(choices.get_by_role("button")).to_have_text(
            ["Refunds", "Shipping options and delivery times"], timeout=TIMEOUT
        )
        await page.screenshot(path=str(artifacts / "widget-choices.png"))

        await choices.get_by_role("button", name="Refunds").click()
        await expect(bubbles(page, "Refunds")).to_have_count(2, timeout=TIMEOUT)  # the title and the question's
        await expect(choices.get_by_role("button", name="Shipping options and delivery times")).to_be_disabled()

        async def answered() -> bool:  # the bubble shows before the hub has stored the message
            return (await conversation_bodies(hub))[-1] == "Refunds"

        await wait_for(answered)

        # From the history after a reload: the question keeps its buttons.
        await page.reload()
        await page.wait_for_function("window.ServicehubWidget && window.ServicehubWidget._loaded")
        await page.get_by_role("button", name="Open chat").click()
        await expect(page.get_by_role("group", name="Suggested answers").get_by_role("button")).to_have_count(
            2, timeout=TIMEOUT
        )
        assert await conversation_bodies(hub) == ["the money thing", QUESTION, "Refunds"]
        assert errors == []
