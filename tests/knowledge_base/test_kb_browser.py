"""A person with a browser: home, search, article, vote, chat button - in headless Chromium."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

from knowledge_base import KnowledgeBase
from knowledge_base.portal import InMemoryVoteStore, create_portal_app

from .conftest import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian chromium (make chromium)"),
]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Stands in for the hub's chat widget: records that the portal asked it to open.
FAKE_WIDGET_JS = "window.ServicehubWidget = { open: function () { window.widgetOpened = true; } };"


@pytest_asyncio.fixture
async def portal_url(sample_kb: KnowledgeBase) -> AsyncIterator[tuple[str, InMemoryVoteStore]]:
    votes = InMemoryVoteStore()
    app = web.Application()

    async def widget(request: web.Request) -> web.Response:
        return web.Response(text=FAKE_WIDGET_JS, content_type="application/javascript")

    async def demo(request: web.Request) -> web.Response:
        return web.Response(text="<h1>Demo chat page</h1>", content_type="text/html")

    app.router.add_get("/widget.js", widget)
    app.router.add_get("/demo", demo)
    app.add_subapp("/help", create_portal_app(sample_kb, votes, site_name="Northwind Outfitters"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", votes
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_search_read_and_vote_in_a_real_browser(portal_url: tuple[str, InMemoryVoteStore]) -> None:
    from playwright.async_api import async_playwright

    base, votes = portal_url
    dialogs: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone
            page.on("dialog", lambda dialog: dialogs.append(dialog.message))

            await page.goto(f"{base}/help")
            assert await page.title() == "Help Centre · Northwind Outfitters"
            assert await page.locator("h1").inner_text() == "How can we help?"

            await page.fill("#q", "how long until I get my money back after returning something")
            await page.press("#q", "Enter")
            await page.wait_for_url("**/help/search?q=*")
            results = page.locator("ol.results > li")
            assert await results.count() >= 3
            first_link = results.first.locator("h2 a")
            href = await first_link.get_attribute("href")
            assert href is not None and href.startswith("/help/articles/")

            await first_link.click()
            await page.wait_for_url(f"**{href.split('#')[0]}*")
            assert await page.locator("article h1").is_visible()
            if "#" in href:
                anchor = href.split("#", 1)[1]
                assert await page.evaluate("(id) => document.getElementById(id) !== null", anchor)
            article_id = href.split("/articles/")[1].split("#")[0]

            await page.get_by_role("button", name="Yes").click()
            await page.wait_for_url("**?feedback=thanks#feedback")
            assert await page.get_by_text("Thanks for your feedback!").is_visible()
            assert await page.get_by_text("1 out of 1 found this helpful").is_visible()
            assert await votes.tally("default", article_id) == (1, 0)

            # The chat button opens the widget instead of leaving the page.
            await page.get_by_role("link", name="Chat with us").click()
            assert await page.evaluate("window.widgetOpened === true")
            assert "/help/articles/" in page.url

            # A hostile query is shown as text and runs nothing.
            await page.goto(
                f"{base}/help/search?q=%3Cscript%3Ealert(1)%3C/script%3E%3Cimg%20src=x%20onerror=alert(2)%3E"
            )
            assert "<script>alert(1)</script>" in await page.locator("h1").inner_text()
            await page.wait_for_timeout(200)
            assert dialogs == []

            # Without JavaScript the same button is a link to the demo chat page.
            context = await browser.new_context(java_script_enabled=False)
            plain = await context.new_page()
            await plain.goto(f"{base}/help/articles/contact-us")
            await plain.get_by_role("link", name="Chat with us").click()
            await plain.wait_for_url(f"{base}/demo")
            assert await plain.locator("h1").inner_text() == "Demo chat page"
            await context.close()
        finally:
            await browser.close()
