"""The widget's CSAT buttons in headless chromium (issue #17): the survey
after a resolve, a click rates, the optional comment follows, a second
rating is refused politely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_widget import TIMEOUT, bubbles, open_demo, watch
from tests.channels.test_webchat_support import running_hub
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.asyncio]


async def chat_and_resolve(page: Any, hub: Any) -> dict[str, Any]:
    """Ask in the demo page's widget, wait for the answer, resolve; the conversation."""
    from playwright.async_api import expect

    await open_demo(page, hub)
    await page.get_by_role("button", name="Open chat").click()
    message = page.get_by_role("textbox", name="Message")
    await expect(message).to_be_focused(timeout=TIMEOUT)
    await message.fill("Do you ship to Norway?")
    await message.press("Enter")
    await expect(bubbles(page, "Echo: Do you ship to Norway?")).to_have_count(1, timeout=TIMEOUT)
    [conversation] = (await hub.api("GET", "/api/v1/conversations", params={"channel": "webchat"}))["items"]
    await hub.api("PATCH", f"/api/v1/conversations/{conversation['id']}", json={"status": "resolved"})
    return dict(conversation)


async def test_rating_buttons_then_a_comment(browser: Any, database_url: str, tmp_path: Path, artifacts: Path) -> None:
    from playwright.async_api import expect

    async with running_hub(database_url, tmp_path, webchat_title="Northwind support") as hub:
        page = await browser.new_page(viewport={"width": 1280, "height": 820}, bypass_csp=True)
        errors = watch(page)
        conversation = await chat_and_resolve(page, hub)
        survey = page.get_by_role("group", name="Rate this conversation")
        await expect(survey).to_be_visible(timeout=TIMEOUT)
        await survey.get_by_role("button", name="Rate 4 out of 5").click()
        await expect(survey.get_by_role("status")).to_have_text("Thanks for your feedback!", timeout=TIMEOUT)
        await expect(survey.get_by_role("button", name="Rate 5 out of 5")).to_be_disabled()

        await survey.get_by_label("Add a comment (optional)").fill("Quick answer, thanks")
        await survey.get_by_role("button", name="Send").click()

        async def commented() -> bool:
            page_ = await hub.api("GET", f"/api/v1/conversations/{conversation['id']}/timeline")
            return any(m["meta"].get("event") == "csat-commented" for m in page_["items"] if m["kind"] == "event")

        await wait_for(commented)
        await page.wait_for_timeout(300)
        await page.screenshot(path=str(artifacts / "widget-csat.png"))
        assert errors == []


async def test_nps_buttons_zero_to_ten_after_the_rating(
    browser: Any, database_url: str, tmp_path: Path, artifacts: Path
) -> None:
    from playwright.async_api import expect

    async with running_hub(database_url, tmp_path, webchat_title="Northwind support", nps_every_days=90) as hub:
        page = await browser.new_page(viewport={"width": 375, "height": 740}, bypass_csp=True)
        errors = watch(page)
        conversation = await chat_and_resolve(page, hub)
        await (
            page.get_by_role("group", name="Rate this conversation")
            .get_by_role("button", name="Rate 5 out of 5")
            .click()
        )

        nps = page.get_by_role("group", name="How likely are you to recommend us")
        await expect(nps).to_be_visible(timeout=TIMEOUT)
        buttons = nps.get_by_role("button", name="out of 10")
        await expect(buttons).to_have_count(11)
        await nps.get_by_role("button", name="Rate 9 out of 10").click()
        await expect(nps.get_by_role("status")).to_have_text("Thanks for your feedback!", timeout=TIMEOUT)
        await expect(nps.get_by_role("button", name="Rate 0 out of 10")).to_be_disabled()
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the NPS buttons push the page sideways ({width} px)"
        await page.screenshot(path=str(artifacts / "widget-nps.png"))
        page_ = await hub.api("GET", f"/api/v1/conversations/{conversation['id']}/timeline")
        rated = [m["body"] for m in page_["items"] if m["kind"] == "event" and m["meta"].get("event") == "nps-rated"]
        assert rated == ["Customer would recommend us 9/10 (promoter)."]
        assert errors == []
