"""Signing in from tests: a real session row for a user, or the real form in a browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from hub import auth, keys
from hub.console import sessions
from hub.console.sessions import Stage


async def signed_in_cookies(app: web.Application, email: str) -> dict[str, str]:
    """Open a real console session for ``email`` (second factor done) and return
    its cookie, for ``TestClient.session.cookie_jar.update_cookies`` or a
    Playwright context (``context.add_cookies``: see ``playwright_cookies``)."""
    db = app[keys.DATABASE]
    settings = app[keys.SETTINGS]
    user = await db.read(auth.find_user, email)
    session_id = await db.write(
        sessions.open_session,
        user.id,
        stage=Stage.FULL,
        now=app[keys.CLOCK].now(),
        idle=sessions.idle_timeout(settings),
        lifetime=sessions.lifetime(settings),
        ip="127.0.0.1",
        user_agent="tests",
    )
    return {sessions.session_cookie_name(settings): session_id}


def playwright_cookies(cookies: dict[str, str], base_url: str) -> list[dict[str, Any]]:
    """``signed_in_cookies``' result in the shape ``BrowserContext.add_cookies`` takes."""
    return [
        {"name": name, "value": value, "url": base_url, "httpOnly": True, "sameSite": "Lax"}
        for name, value in cookies.items()
    ]


async def sign_in_page(page: Any, base_url: str, email: str, password: str) -> None:
    """Sign in through the real form in a Playwright ``page``; returns once
    the browser has left the sign-in page (at /console, or the code step)."""
    await page.goto(f"{base_url.rstrip('/')}/console/login")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(password)
    async with page.expect_navigation():
        await page.get_by_role("button", name="Sign in").click()
    if "/console/login" in page.url and "/console/login/mfa" not in page.url:
        raise AssertionError(f"sign-in as {email} failed: still on {page.url}")


AXE = Path(__file__).with_name("vendor") / "axe.min.js"  # axe-core 4.14.1, vendored with its licence


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
