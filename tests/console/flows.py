"""Driving the console's forms from an aiohttp test client, as a browser would."""

from __future__ import annotations

import re
from typing import Any

import pyotp
import sqlalchemy as sa

from hub import keys
from hub.console import sessions
from hub.storage.schema import audit_log, console_sessions, users
from tests.console.conftest import ConsoleHub, email_of


def form_token(html: str) -> str:
    """The token of the page's first form, or of its ``csrf-token`` meta tag (scripts' token)."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'<meta name="csrf-token" content="([^"]+)"', html
    )
    assert found, html
    return found.group(1)


def secure(hub: ConsoleHub) -> bool:
    return hub.app[keys.SETTINGS].public_url.startswith("https:")


async def get_form(client: Any, path: str, headers: dict[str, str]) -> str:
    """The form's token (and, under an https public URL, the pre-session cookie the
    test client keeps from plain http, put back in ``headers``)."""
    page = await client.get(path, allow_redirects=False)
    assert page.status in (200, 410), (page.status, path)
    html = await page.text()
    if sessions.LOGIN_COOKIE in page.cookies and page.cookies[sessions.LOGIN_COOKIE]["secure"]:
        headers["Cookie"] = f"{sessions.LOGIN_COOKIE}={page.cookies[sessions.LOGIN_COOKIE].value}"
    return form_token(html)


async def login(
    hub: ConsoleHub,
    role: str | None = None,
    *,
    email: str | None = None,
    password: str | None = None,
    next_path: str | None = None,
    client: Any = None,
    **headers: str,
) -> Any:
    client = client or hub.client
    token = await get_form(client, "/console/login", headers)
    data = {
        "email": email or email_of(role or "agent"),
        "password": password if password is not None else hub.passwords[role or "agent"],
        "csrf_token": token,
    }
    if next_path is not None:
        data["next"] = next_path
    return await client.post("/console/login", data=data, allow_redirects=False, headers=headers)


async def post_form(
    hub: ConsoleHub, path: str, data: dict[str, str], *, client: Any = None, page: str | None = None
) -> Any:
    """POST ``data`` with the CSRF token read from ``page`` (default: the account page)."""
    client = client or hub.client
    html = await (await client.get(page or "/console/account")).text()
    return await client.post(path, data={**data, "csrf_token": form_token(html)}, allow_redirects=False)


def session_cookie(response: Any) -> Any:
    return response.cookies.get(sessions.SESSION_COOKIE) or response.cookies.get(sessions.SECURE_SESSION_COOKIE)


async def session_rows(hub: ConsoleHub) -> list[Any]:
    return await hub.db.read(
        lambda conn: list(conn.execute(sa.select(console_sessions).order_by(console_sessions.c.id)))
    )


async def audit_actions(hub: ConsoleHub, prefix: str = "console.") -> list[tuple[str, str, dict[str, Any]]]:
    return await hub.db.read(
        lambda conn: [
            (r.action, r.via, r.details)
            for r in conn.execute(
                sa.select(audit_log).where(audit_log.c.action.startswith(prefix)).order_by(audit_log.c.id)
            )
        ]
    )


async def user_row(hub: ConsoleHub, role: str) -> Any:
    return await hub.db.read(lambda conn: conn.execute(sa.select(users).where(users.c.email == email_of(role))).one())


def code_at(secret: str, when: Any, offset: int = 0) -> str:
    return pyotp.TOTP(secret).at(when, counter_offset=offset)
