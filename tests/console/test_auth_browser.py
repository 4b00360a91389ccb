"""Signing in, the second factor and the account page in headless chromium: under the
real policy (no violation logged), keyboard help on "?", CSRF header on scripts' requests,
axe-core (no serious or critical violation) and screenshots at desktop and phone size."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import artifacts, browser  # noqa: F401  (fixtures, used by name)
from tests.console.conftest import ConsoleHub, StartConsoleHub, email_of
from tests.console.flows import code_at
from tests.console.helpers import axe_violations, sign_in_page

pytestmark = [pytest.mark.browser, pytest.mark.asyncio]

TIMEOUT = 10_000
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}


# Chromium logs the 401 of a refused password as an error of its own; that one is expected.
EXPECTED = "Failed to load resource: the server responded with a status of 401"


def watch(page: Any) -> list[str]:
    """Errors the page logs (a CSP violation is one) and uncaught exceptions."""
    problems: list[str] = []
    page.on(
        "console",
        lambda message: (
            problems.append(message.text) if message.type == "error" and not message.text.startswith(EXPECTED) else None
        ),
    )
    page.on("pageerror", lambda err: problems.append(str(err)))
    return problems


async def enrol_in_browser(page: Any, ch: ConsoleHub) -> tuple[str, list[str]]:
    from playwright.async_api import expect

    await page.goto(ch.base_url + "/console/account")
    await page.get_by_role("link", name="Set up an authenticator app").click()
    qr = page.get_by_role("img", name=re.compile("QR code"))
    await expect(qr).to_be_visible(timeout=TIMEOUT)
    # The data: URI loaded under the policy (img-src 'self' data:).
    assert await qr.evaluate("img => img.complete && img.naturalWidth > 0")
    secret = (await page.locator("#totp-secret").inner_text()).replace(" ", "")
    await page.get_by_label("Six-digit code from the app").fill(code_at(secret, ch.clock.now()))
    await page.get_by_role("button", name="Turn on").click()
    await expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible(timeout=TIMEOUT)
    codes = [c.strip() for c in await page.locator("#recovery-codes code").all_inner_texts()]
    return secret, codes


async def test_sign_in_second_factor_and_account_under_the_real_policy(
    browser: Any, start_console_hub: StartConsoleHub, artifacts: Path
) -> None:
    from playwright.async_api import expect

    ch = await start_console_hub()
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    problems = watch(page)

    # Straight to a page: sent to sign in, then back.
    await page.goto(ch.base_url + "/console/account")
    assert "/console/login?next=/console/account" in page.url
    await page.get_by_label("E-mail").fill(email_of("agent"))
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("not right", timeout=TIMEOUT)
    await page.get_by_label("Password").fill(ch.passwords["agent"])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Your account")).to_be_visible(timeout=TIMEOUT)

    # The session cookie is out of scripts' reach.
    [cookie] = [c for c in await context.cookies() if c["name"] == "sh_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert "sh_console=" not in await page.evaluate("document.cookie")

    # console.js: "?" lists the shortcuts; Escape closes the dialog.
    await page.locator("body").press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    await expect(dialog).to_be_visible(timeout=TIMEOUT)
    await expect(dialog).to_contain_text("Show this list of shortcuts")
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden(timeout=TIMEOUT)

    # console.js: a script's POST carries the page's token (a GET needs none).
    seen: dict[str, str | None] = {}

    async def capture(route: Any) -> None:
        seen[route.request.method] = route.request.headers.get("x-csrf-token")
        await route.fulfill(status=204)

    await page.route("**/console/probe", capture)
    token = await page.get_attribute('meta[name="csrf-token"]', "content")
    assert token
    assert await page.evaluate("fetch('/console/probe', {method: 'POST', body: 'x'}).then(r => r.status)") == 204
    assert await page.evaluate("fetch(new Request('/console/probe')).then(r => r.status)") == 204
    assert seen == {"POST": token, "GET": None}

    secret, codes = await enrol_in_browser(page, ch)
    assert len(codes) == 10
    await page.get_by_role("button", name="Sign out").first.click()
    await expect(page.get_by_role("heading", name="Sign in to the console")).to_be_visible(timeout=TIMEOUT)

    # Password, then the code (the enrolment's step is spent: the next one).
    ch.clock.advance(30)
    await sign_in_page(page, ch.base_url, email_of("agent"), ch.passwords["agent"])
    assert "/console/login/mfa" in page.url
    await page.get_by_role("textbox", name="Code").fill(code_at(secret, ch.clock.now()))
    await page.get_by_role("button", name="Continue").click()
    await page.wait_for_url(re.compile(r"/console$"), timeout=TIMEOUT)
    await page.goto(ch.base_url + "/console/account")
    await expect(page.get_by_text("10 recovery codes left")).to_be_visible(timeout=TIMEOUT)
    assert not problems, problems
    await context.close()


async def test_the_sign_in_pages_have_no_serious_accessibility_violations(
    browser: Any, start_console_hub: StartConsoleHub, artifacts: Path
) -> None:
    ch = await start_console_hub()
    found: dict[str, Any] = {}
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        # bypass_csp: axe is injected as an inline script, which the console's policy forbids.
        context = await browser.new_context(viewport=viewport, bypass_csp=True)
        page = await context.new_page()
        role = "agent" if size == "desktop" else "viewer"
        await page.goto(ch.base_url + "/console/login")
        found[f"{size} login"] = await axe_violations(page)
        await page.screenshot(path=str(artifacts / f"console-login-{size}.png"), full_page=True)
        await sign_in_page(page, ch.base_url, email_of(role), ch.passwords[role])
        for name, path in (("account", "/console/account"), ("account-mfa", "/console/account/mfa")):
            await page.goto(ch.base_url + path)
            found[f"{size} {name}"] = await axe_violations(page)
            assert await page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], (size, name)
            await page.screenshot(path=str(artifacts / f"console-{name}-{size}.png"), full_page=True)
        await enrol_in_browser(page, ch)
        found[f"{size} recovery codes"] = await axe_violations(page)
        await page.screenshot(path=str(artifacts / f"console-recovery-codes-{size}.png"), full_page=True)
        await page.get_by_role("button", name="Sign out").first.click()
        ch.clock.advance(30)
        await sign_in_page(page, ch.base_url, email_of(role), ch.passwords[role])
        found[f"{size} code step"] = await axe_violations(page)
        await page.screenshot(path=str(artifacts / f"console-login-mfa-{size}.png"), full_page=True)
        await page.get_by_role("textbox", name="Code").fill("000000")
        await page.get_by_role("button", name="Continue").click()
        found[f"{size} code step, wrong code"] = await axe_violations(page)
        await context.close()
    assert all(not v for v in found.values()), json.dumps(found, indent=1)
