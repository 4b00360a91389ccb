"""Canned replies in the console: listed on the conversation page, rendered for
that conversation and agent, and put into the reply box (never sent by themselves)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import artifacts, browser  # noqa: F401  (fixtures)
from tests.console.conftest import ConsoleHub, StartConsoleHub, email_of
from tests.console.helpers import playwright_cookies, signed_in_cookies
from tests.console.test_conversation import console_as, customer_writes

pytestmark = pytest.mark.asyncio

BODY = "Hi {{ contact.first_name|default('there', true) }}, {{ agent.first_name }} here about conversation {{ conversation.id }}."


async def with_reply(ch: ConsoleHub) -> int:
    await ch.hub.api(
        "POST",
        "/api/v1/canned-replies",
        json={"name": "greeting", "title": "Greeting", "body": BODY},
        expect=201,
    )
    conversation_id = await customer_writes(ch, "canned-1", "Hello, my parcel is late", name="Ada Lovelace")
    return conversation_id


async def test_the_page_lists_them_and_renders_one_for_the_conversation(start_console_hub: StartConsoleHub) -> None:
    ch = await start_console_hub()
    conversation_id = await with_reply(ch)
    async with console_as(ch, "agent") as agent:
        page = await agent.page(conversation_id)
        assert 'data-name="greeting"' in page and "Greeting" in page
        rendered = await agent.session.get(f"{ch.base_url}/console/conversations/{conversation_id}/canned/greeting")
        assert rendered.status == 200
        assert await rendered.json() == {
            "name": "greeting",
            "title": "Greeting",
            "text": f"Hi Ada, Agent here about conversation {conversation_id}.",
        }
        missing = await agent.session.get(
            f"{ch.base_url}/console/conversations/{conversation_id}/canned/nope", headers={"Accept": "application/json"}
        )
        assert missing.status == 404
        # Rendering sends nothing: the timeline holds only the customer's message.
        timeline = await ch.hub.api("GET", f"/api/v1/conversations/{conversation_id}/timeline")
        assert [m["direction"] for m in timeline["items"] if m["kind"] == "message"] == ["inbound"]
    async with console_as(ch, "viewer") as viewer:
        page = await viewer.page(conversation_id)
        assert "canned-insert" not in page
        refused = await viewer.session.get(
            f"{ch.base_url}/console/conversations/{conversation_id}/canned/greeting",
            headers={"Accept": "application/json"},
        )
        assert refused.status == 403


async def test_insert_puts_the_rendered_reply_in_the_reply_box(
    browser: Any,
    start_console_hub: StartConsoleHub,
    artifacts: Path,
) -> None:
    ch = await start_console_hub()
    conversation_id = await with_reply(ch)
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    await context.add_cookies(playwright_cookies(await signed_in_cookies(ch.app, email_of("agent")), ch.base_url))
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{ch.base_url}/console/conversations/{conversation_id}")
    await page.locator("[data-ready]").first.wait_for(state="attached", timeout=15000)
    await page.locator("#reply-text").fill("Thanks for waiting.")
    await page.locator("#canned summary").click()
    await page.get_by_role("button", name="Insert Greeting").click()
    expected = f"Thanks for waiting. Hi Ada, Agent here about conversation {conversation_id}."
    await page.wait_for_function(
        "expected => document.getElementById('reply-text').value === expected", arg=expected, timeout=15000
    )
    assert errors == []
    await context.close()
