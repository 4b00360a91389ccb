"""The inbox in headless chromium: an agent signs in, a web chat visitor (a
second browser context, on the widget) starts a conversation, and it appears
in the agent's inbox live, without a reload; keyboard and phone width too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.storage.schema import users
from tests.browser.conftest import artifacts, browser  # noqa: F401  (fixtures)
from tests.channels.test_webchat_support import running_hub
from tests.console.conftest import PASSWORDS, set_passwords
from tests.console.helpers import sign_in_page
from tests.console.test_inbox_queries import add_conversation, add_ticket

pytestmark = [pytest.mark.browser, pytest.mark.asyncio]

TIMEOUT = 10_000  # ms


def watch(page: Any) -> list[str]:
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(f"pageerror: {err}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return problems


def queue_for_screenshots(conn: Any, now: datetime) -> None:
    agent_id = conn.execute(sa.select(users.c.id).where(users.c.email == "agent@example.test")).scalar_one()
    urgent = add_conversation(
        conn,
        at=now - timedelta(minutes=3),
        texts=("The card reader at our shop is down, customers waiting!",),
        channel="sms",
        priority="urgent",
        handler="human",
        name=None,
        address=("phone", "+447700900123"),
    )
    add_ticket(conn, urgent, created_at=now - timedelta(minutes=20), first_response_due=now - timedelta(minutes=5))
    close = add_conversation(
        conn,
        at=now - timedelta(minutes=12),
        texts=("Invoice 2291 was charged twice", "Checking that for you now."),
        channel="email",
        priority="high",
        handler="human",
        assignee_id=agent_id,
        name="Grace Hopper",
    )
    add_ticket(
        conn,
        close,
        team="billing",
        created_at=now - timedelta(minutes=50),
        first_response_due=now + timedelta(minutes=8),
    )
    calm = add_conversation(
        conn,
        at=now - timedelta(hours=2),
        texts=("Can I change my delivery address?",),
        channel="webchat",
        handler="human",
        assignee_id=agent_id,
        name="Alan Turing",
    )
    add_ticket(conn, calm, created_at=now - timedelta(hours=2), first_response_due=now + timedelta(hours=2))
    add_conversation(conn, at=now - timedelta(days=1), texts=("Thanks, all sorted!",), status="pending", name=None,
                     address=("email", "katherine.johnson@example.org"))  # fmt: skip


async def test_a_new_web_chat_conversation_appears_live_in_the_inbox(
    browser: Any, database_url: str, tmp_path: Path, artifacts: Path
) -> None:
    from playwright.async_api import expect

    async with running_hub(database_url, tmp_path, webchat_title="Northwind support") as hub:
        await set_passwords(hub.app)
        base = f"http://127.0.0.1:{hub.client.server.port}"
        agent_context = await browser.new_context(viewport={"width": 1280, "height": 800})
        visitor_context = await browser.new_context(viewport={"width": 420, "height": 800})
        try:
            agent = await agent_context.new_page()
            problems = watch(agent)
            await sign_in_page(agent, base, "agent@example.test", PASSWORDS["agent"])
            await agent.goto(f"{base}/console?view=open")
            inbox = agent.locator("#inbox")
            await expect(inbox).to_have_attribute("data-live", "on", timeout=TIMEOUT)
            await expect(agent.locator(".inbox-row")).to_have_count(0)
            await expect(agent.get_by_text("No conversations here.")).to_be_visible()
            # A marker that a reload would wipe.
            await agent.evaluate("document.body.dataset.stayed = 'yes'")

            visitor = await visitor_context.new_page()
            await visitor.goto(f"{base}/demo")
            await visitor.get_by_role("button", name="Open chat").click()
            message = visitor.get_by_role("textbox", name="Message")
            await expect(message).to_be_focused(timeout=TIMEOUT)
            await message.fill("Hello, my walnut clock <b>arrived</b> broken")
            await message.press("Enter")

            row = agent.locator(".inbox-row", has_text="walnut clock")
            await expect(row).to_have_count(1, timeout=5_000)
            assert await agent.evaluate("document.body.dataset.stayed") == "yes"  # no reload
            await expect(row.locator(".badge-channel")).to_have_text("webchat")
            await expect(row.locator(".inbox-preview")).to_contain_text("<b>arrived</b>")  # text, not markup
            await expect(agent.get_by_text("No conversations here.")).to_be_hidden()
            await expect(agent.locator("#inbox-status-line")).to_have_text("1 new conversation")
            # The echo bot answers: the same row is updated in place, not doubled.
            await expect(row.locator(".inbox-preview")).to_contain_text("Echo:", timeout=TIMEOUT)
            await expect(agent.locator(".inbox-row")).to_have_count(1)

            # More of a queue for the screenshots: urgent, breached, close, assigned.
            await hub.db.write(queue_for_screenshots, datetime.now(UTC))
            await agent.reload()
            await expect(agent.locator(".inbox-row")).to_have_count(5)
            await expect(agent.locator(".sla-breached .inbox-sla")).to_contain_text("breached")
            await expect(agent.locator(".sla-close .inbox-sla")).to_contain_text("left")
            await agent.screenshot(path=str(artifacts / "inbox-desktop.png"), full_page=True)
            await agent.set_viewport_size({"width": 375, "height": 740})
            overflow = await agent.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the inbox scrolls sideways at 375 px by {overflow} px"
            await agent.screenshot(path=str(artifacts / "inbox-phone.png"), full_page=True)
            await agent.set_viewport_size({"width": 1280, "height": 800})

            # Keyboard: / focuses the search, j selects the first row, Enter opens it.
            await agent.locator("body").click(position={"x": 5, "y": 5})
            await agent.keyboard.press("/")
            await expect(agent.get_by_label("Search messages")).to_be_focused()
            await agent.keyboard.press("Escape")
            await agent.locator("h1, main").first.focus()
            await agent.keyboard.press("j")
            await expect(row.locator(".inbox-link")).to_be_focused()
            await expect(row).to_have_class("inbox-row priority-normal is-selected")
            conversation_id = await row.get_attribute("data-conversation-id")
            async with agent.expect_navigation():
                await agent.keyboard.press("Enter")
            assert agent.url.endswith(f"/console/conversations/{conversation_id}")
            # Nothing failed on the inbox: no script error, no CSP report, no
            # failed request but the conversation page (another module's) and
            # the browser's own favicon probe.
            expected = (f"/console/conversations/{conversation_id}", "/favicon.ico")
            failed = [p for p in problems if p[:3].isdigit() and not p.endswith(expected)]
            errors = [p for p in problems if not p[:3].isdigit() and "Failed to load resource" not in p]
            assert not failed and not errors, problems
        finally:
            await agent_context.close()
            await visitor_context.close()


async def test_the_inbox_has_no_serious_accessibility_violations(
    browser: Any, database_url: str, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    from tests.console.helpers import axe_violations, playwright_cookies, signed_in_cookies

    async with running_hub(database_url, tmp_path) as hub:
        await hub.db.write(queue_for_screenshots, datetime.now(UTC))
        base = f"http://127.0.0.1:{hub.client.server.port}"
        found: dict[str, Any] = {}
        for size, viewport in (("desktop", {"width": 1280, "height": 800}), ("phone", {"width": 375, "height": 740})):
            # bypass_csp: axe is injected as an inline script, which the console's policy forbids.
            context = await browser.new_context(viewport=viewport, bypass_csp=True)
            try:
                cookies = await signed_in_cookies(hub.app, "agent@example.test")
                await context.add_cookies(playwright_cookies(cookies, base))
                page = await context.new_page()
                for view in ("open", "mine"):
                    await page.goto(f"{base}/console?view={view}")
                    await expect(page.locator("#inbox")).to_have_attribute("data-live", "on", timeout=TIMEOUT)
                    found[f"{size} {view}"] = await axe_violations(page)
            finally:
                await context.close()
        assert not any(found.values()), found
