"""The widget's resume point in headless chromium: after a reconnect it reads the history on from where its last history ended, a page at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hub.models import AuthorKind
from tests.browser.test_widget import TIMEOUT, bubbles, open_demo
from tests.channels.test_webchat_support import running_hub

pytestmark = [pytest.mark.browser, pytest.mark.asyncio]

MISSED = 205  # more than one history frame holds (HISTORY_MAX, 200)


async def test_a_reconnect_pages_through_everything_missed_once(
    browser: Any, database_url: str, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    async with running_hub(database_url, tmp_path) as hub:
        page = await browser.new_page(bypass_csp=True)  # polls with wait_for_function
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        await open_demo(page, hub)
        await page.evaluate("window.ServicehubWidget.open()")
        message = page.get_by_role("textbox", name="Message")
        await message.fill("hello")
        await message.press("Enter")
        await expect(bubbles(page, "Echo: hello")).to_have_count(1, timeout=TIMEOUT)
        await page.wait_for_function("window.ServicehubWidget.isConnected()")

        conversation = (await hub.api("GET", "/api/v1/conversations", params={"channel": "webchat"}))["items"][0]

        # The visitor's connection goes; the team writes more than a history page meanwhile.
        server = hub.client.server
        runner, port = server.runner, server.port
        for site in list(runner.sites):
            await site.stop()
        await hub.channel("webchat").close_all(1012, b"restarting")
        await page.wait_for_function("!window.ServicehubWidget.isConnected()")
        for number in range(MISSED):
            await hub.service.reply(conversation["id"], f"Update {number:03d}", author_kind=AuthorKind.AGENT)

        await web.TCPSite(runner, "127.0.0.1", port).start()
        await expect(bubbles(page, f"Update {MISSED - 1:03d}")).to_have_count(1, timeout=20_000)
        shown = await page.locator(".log .msg:not(.msg--greeting):not(.typing) .bubble").all_text_contents()
        assert shown == ["hello", "Echo: hello"] + [f"Update {n:03d}" for n in range(MISSED)]
        assert errors == []
        await page.close()
