"""The chat widget in headless chromium, against a real hub on loopback with the echo bot."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.channels.test_webchat_support import running_hub
from tests.conftest import Hub

pytestmark = [pytest.mark.browser, pytest.mark.asyncio]

TIMEOUT = 10_000  # ms, for Playwright expectations


def watch(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    return errors


async def open_demo(page: Any, hub: Hub) -> None:
    await page.goto(f"http://127.0.0.1:{hub.client.server.port}/demo")
    await page.wait_for_function("window.ServicehubWidget && window.ServicehubWidget._loaded")


def bubbles(page: Any, text: str) -> Any:
    # Playwright's CSS engine pierces open shadow roots.
    return page.locator(".log .bubble", has_text=text)


async def conversation_bodies(hub: Hub) -> list[str]:
    conversations = await hub.api("GET", "/api/v1/conversations", params={"channel": "webchat"})
    [conversation] = conversations["items"]
    page = await hub.api("GET", f"/api/v1/conversations/{conversation['id']}/timeline")
    return [m["body"] for m in page["items"] if m["kind"] == "message"]


async def test_chat_reply_history_and_reconnect_without_loss_or_duplicates(
    browser: Any, database_url: str, tmp_path: Path, artifacts: Path
) -> None:
    from playwright.async_api import expect

    async with running_hub(database_url, tmp_path, webchat_title="Northwind support") as hub:
        # bypass_csp: the tests' own polling (wait_for_function) evaluates
        # strings, which /demo's policy forbids; the page itself runs under
        # the policy in test_the_demo_works_under_its_content_security_policy.
        page = await browser.new_page(viewport={"width": 1280, "height": 820}, bypass_csp=True)
        errors = watch(page)
        frames: list[str] = []  # what the widget said, for the failure message
        page.on(
            "websocket",
            lambda ws: (
                ws.on("framesent", lambda payload: frames.append(f"> {payload}")),
                ws.on("framereceived", lambda payload: frames.append(f"< {payload}"[:300])),
                ws.on("close", lambda _: frames.append("closed")),
            ),
        )
        await open_demo(page, hub)
        launcher = page.get_by_role("button", name="Open chat")
        await launcher.click()
        panel = page.get_by_role("dialog", name="Chat with Northwind Outfitters")
        await expect(panel).to_be_visible(timeout=TIMEOUT)
        # Opening moves focus to the composer a moment later (a timer): wait
        # for it, or it can land in the middle of filling the form below and
        # take the typed name with it (seen on loaded CI runs).
        await expect(page.get_by_role("textbox", name="Message")).to_be_focused(timeout=TIMEOUT)

        # The pre-chat card (optional): name and email.
        await page.get_by_label("Your name").fill("Ada Lovelace")
        await page.get_by_label("Your email").fill("ada@example.com")
        await page.get_by_role("button", name="Save").click()
        await expect(page.locator(".card-text", has_text="ada@example.com")).to_be_visible(timeout=TIMEOUT)

        message = page.get_by_role("textbox", name="Message")
        await expect(message).to_be_focused()
        await message.fill("Do you ship to Norway? <b>fast</b> <img src=x onerror=alert(1)>")
        await message.press("Enter")
        reply = bubbles(page, "Echo: Do you ship to Norway?")
        await expect(reply).to_have_count(1, timeout=TIMEOUT)
        # Markup in messages is shown as text, never parsed.
        await expect(reply).to_have_text("Echo: Do you ship to Norway? <b>fast</b> <img src=x onerror=alert(1)>")
        assert await page.locator(".log b, .log img").count() == 0
        await page.wait_for_timeout(300)  # let the entry animations finish
        await page.screenshot(path=str(artifacts / "widget-open.png"))

        await message.fill("And do you have the Ridgeline tent in green?")
        await page.get_by_role("button", name="Send message").click()
        await expect(bubbles(page, "Echo: And do you have the Ridgeline tent in green?")).to_have_count(
            1, timeout=TIMEOUT
        )

        conversations = (await hub.api("GET", "/api/v1/conversations", params={"channel": "webchat"}))["items"]
        contact = await hub.api("GET", f"/api/v1/contacts/{conversations[0]['contact_id']}")
        seen = {"conversations": conversations, "contact": contact, "frames": frames}
        assert len(conversations) == 1, seen
        assert contact["name"] == "Ada Lovelace", seen
        assert contact["attributes"]["email_unverified"] == "ada@example.com", seen

        # Reload: the stored token brings the whole conversation back, once.
        await page.reload()
        await page.wait_for_function("window.ServicehubWidget && window.ServicehubWidget._loaded")
        await page.evaluate("window.ServicehubWidget.open()")
        await expect(bubbles(page, "Echo: Do you ship to Norway?")).to_have_count(1, timeout=TIMEOUT)
        await expect(page.locator(".log .msg--customer")).to_have_count(2)
        await expect(page.locator(".log .msg--team:not(.msg--greeting):not(.typing)")).to_have_count(2)
        await page.wait_for_function("window.ServicehubWidget.isConnected()")

        # The server goes away: stop listening and drop every open socket.
        server = hub.client.server
        runner, port = server.runner, server.port
        for site in list(runner.sites):
            await site.stop()
        channel = hub.channel("webchat")
        await channel.close_all(1012, b"restarting")
        await page.wait_for_function("!window.ServicehubWidget.isConnected()")

        await message.fill("Typed while the hub was down")
        await message.press("Enter")
        pending = page.locator(".log .msg--pending", has_text="Typed while the hub was down")
        await expect(pending).to_have_count(1)
        await asyncio.sleep(1.0)  # a few reconnect attempts fail meanwhile
        assert "Typed while the hub was down" not in await conversation_bodies(hub)

        await web.TCPSite(runner, "127.0.0.1", port).start()
        await expect(bubbles(page, "Echo: Typed while the hub was down")).to_have_count(1, timeout=20_000)
        await expect(pending).to_have_count(0)
        await expect(bubbles(page, "Typed while the hub was down")).to_have_count(2)  # the message and its echo
        bodies = await conversation_bodies(hub)
        assert bodies.count("Typed while the hub was down") == 1
        assert bodies.count("Echo: Typed while the hub was down") == 1
        assert len(bodies) == 6
        # Every message on screen exactly once, in the stored order.
        shown = await page.locator(".log .msg:not(.msg--greeting):not(.typing) .bubble").all_text_contents()
        assert shown == bodies
        assert errors == []
        await page.close()


async def test_phone_keyboard_isolation_and_offline_mode(
    browser: Any, database_url: str, tmp_path: Path, artifacts: Path
) -> None:
    from playwright.async_api import expect

    async with running_hub(database_url, tmp_path, webchat_agents_online="false") as hub:
        context = await browser.new_context(
            viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, bypass_csp=True
        )
        page = await context.new_page()
        errors = watch(page)
        await open_demo(page, hub)

        launcher = page.get_by_role("button", name="Open chat")
        # The shop's CSS uppercases its buttons; the widget is not touched by it.
        assert await page.locator("button.cta").first.evaluate("b => getComputedStyle(b).textTransform") == "uppercase"
        assert await launcher.evaluate("b => getComputedStyle(b).textTransform") == "none"
        assert await launcher.evaluate("b => getComputedStyle(b).borderRadius") == "50%"

        # Keyboard: Enter opens, focus lands in the composer, Escape closes and returns focus.
        await launcher.focus()
        await page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog")
        await expect(dialog).to_be_visible(timeout=TIMEOUT)
        await expect(page.get_by_role("textbox", name="Message")).to_be_focused()
        assert await page.locator(".launcher").get_attribute("aria-expanded") == "true"
        await dialog.evaluate("panel => Promise.all(panel.getAnimations().map(a => a.finished))")
        box = await dialog.bounding_box()
        assert box is not None and abs(box["width"] - 390) < 2 and abs(box["height"] - 844) < 2  # full screen

        # Nobody on duty: the header says so once, and the card asks for an email
        # (when the team is back is the handoff message's to say, not a second note).
        await expect(page.locator(".subtitle")).to_have_text("We're away right now", timeout=TIMEOUT)
        await expect(page.locator(".card-title")).to_have_text("Get our reply by email")
        await page.screenshot(path=str(artifacts / "widget-phone-offline.png"))

        await page.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()
        assert await page.evaluate("document.activeElement.tagName") == "SERVICEHUB-WIDGET"
        assert (
            await page.evaluate("document.querySelector('servicehub-widget').shadowRoot.activeElement.className")
            == "launcher"
        )

        # The portal's "Chat with us" button uses the public API.
        await page.get_by_role("button", name="Chat with us").click()
        await expect(dialog).to_be_visible()
        assert errors == []
        await context.close()


async def test_reply_while_closed_shows_unread_badge(browser: Any, database_url: str, tmp_path: Path) -> None:
    from playwright.async_api import expect

    async with running_hub(database_url, tmp_path) as hub:
        page = await browser.new_page(bypass_csp=True)  # polls with wait_for_function
        await open_demo(page, hub)
        await page.evaluate("window.ServicehubWidget.open()")
        message = page.get_by_role("textbox", name="Message")
        await message.fill("hello")
        await message.press("Enter")
        await expect(bubbles(page, "Echo: hello")).to_have_count(1, timeout=TIMEOUT)
        await page.get_by_role("button", name="Close chat").click()

        conversation = (await hub.api("GET", "/api/v1/conversations", params={"channel": "webchat"}))["items"][0]
        await hub.api(
            "POST",
            f"/api/v1/conversations/{conversation['id']}/messages",
            role="agent",
            json={"text": "Your parcel left our warehouse today."},
            expect=201,
        )
        launcher = page.get_by_role("button", name="Open chat, 1 unread")
        await expect(launcher).to_be_visible(timeout=TIMEOUT)
        await launcher.click()
        await expect(bubbles(page, "Your parcel left our warehouse today.")).to_have_count(1)
        await expect(page.get_by_role("button", name="Close chat")).to_be_visible()
        await expect(page.locator(".badge")).to_be_hidden()
        await page.close()


async def test_a_late_welcome_never_wipes_the_pre_chat_form(browser: Any, database_url: str, tmp_path: Path) -> None:
    """A welcome (first connect, or any reconnect) re-applies the widget's
    config; it must not rebuild the pre-chat form under a visitor's fingers.
    Seen on a loaded CI machine: the name typed before the first welcome
    arrived was lost and the contact was stored without it."""
    from playwright.async_api import expect

    async with running_hub(database_url, tmp_path) as hub:
        page = await browser.new_page(bypass_csp=True)  # polls with wait_for_function
        errors = watch(page)
        await open_demo(page, hub)
        await page.get_by_role("button", name="Open chat").click()
        # Connected (the hub knows the socket, so it can drop it below), and
        # the composer has taken the focus that opening gives it.
        await page.wait_for_function("window.ServicehubWidget._welcomes >= 1", timeout=TIMEOUT)
        await expect(page.get_by_role("textbox", name="Message")).to_be_focused(timeout=TIMEOUT)
        name = page.get_by_label("Your name")
        await name.fill("Grace Hopper")
        await name.focus()
        # Force a welcome now: the hub drops the socket, the widget reconnects.
        await hub.channel("webchat").close_all(1012, b"restarting")
        await page.wait_for_function("window.ServicehubWidget._welcomes >= 2", timeout=TIMEOUT)
        await expect(page.get_by_label("Your name")).to_have_value("Grace Hopper", timeout=TIMEOUT)
        await expect(page.get_by_label("Your name")).to_be_focused()
        await page.get_by_label("Your email").fill("grace@example.com")
        await page.get_by_role("button", name="Save").click()
        message = page.get_by_role("textbox", name="Message")
        await message.fill("Hello")
        await message.press("Enter")
        await expect(bubbles(page, "Echo: Hello")).to_have_count(1, timeout=TIMEOUT)
        [conversation] = (await hub.api("GET", "/api/v1/conversations", params={"channel": "webchat"}))["items"]
        contact = await hub.api("GET", f"/api/v1/contacts/{conversation['contact_id']}")
        assert contact["name"] == "Grace Hopper"
        assert contact["attributes"]["email_unverified"] == "grace@example.com"
        assert errors == []


async def test_the_demo_works_under_its_content_security_policy(browser: Any, sqlite_url: str, tmp_path: Path) -> None:
    """/demo's policy (scripts from the hub only, the page's one inline
    handler by hash) leaves the shop's button, the widget and its socket
    working, and the browser reports no violation."""
    from playwright.async_api import expect

    async with running_hub(sqlite_url, tmp_path) as hub:
        page = await browser.new_page()
        errors = watch(page)
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        await page.goto(f"http://127.0.0.1:{hub.client.server.port}/demo")
        # The shop's own "Chat with us" button: an inline onclick, allowed by its hash.
        await page.get_by_role("button", name="Chat with us").click()
        message = page.get_by_role("textbox", name="Message")
        await expect(message).to_be_visible(timeout=TIMEOUT)
        await message.fill("Hello")
        await message.press("Enter")
        await expect(bubbles(page, "Echo: Hello")).to_have_count(1, timeout=TIMEOUT)
        assert not [line for line in console if "Content Security Policy" in line], console
        assert errors == []
