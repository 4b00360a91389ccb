"""Console sessions: sign in and out through the real form, the cookie, CSRF, ``next``, the headers."""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa

from hub import keys
from hub.console import sessions
from hub.console.render import CONTENT_SECURITY_POLICY
from hub.storage.schema import audit_log
from tests.console.conftest import ConsoleHub, email_of
from tests.console.flows import form_token, login, session_cookie, session_rows
from tests.console.helpers import signed_in_cookies

pytestmark = pytest.mark.asyncio


async def test_sign_in_opens_a_new_session_and_sign_out_ends_it(console_hub: ConsoleHub) -> None:
    # An id planted before sign-in (fixation) must not become the session.
    planted = "attacker-chosen-session-id-0123456789abcdef"
    console_hub.client.session.cookie_jar.update_cookies({sessions.SESSION_COOKIE: planted})
    page = await console_hub.client.get("/console/login")
    assert page.status == 200
    pre_login = page.cookies[sessions.LOGIN_COOKIE].value

    response = await login(console_hub, "agent")
    assert response.status == 303
    assert response.headers["Location"] == "/console"
    new_cookie = session_cookie(response)
    assert new_cookie is not None
    assert new_cookie.value not in (planted, pre_login)
    [row] = await session_rows(console_hub)
    # Only the id's hash is stored.
    assert row.session_hash == sessions.hash_id(new_cookie.value)
    assert row.stage == "full"
    assert row.user_agent

    token = sessions.token_for(new_cookie.value)
    out = await console_hub.client.post("/console/logout", data={"csrf_token": token}, allow_redirects=False)
    assert out.status == 303
    assert out.headers["Location"] == "/console/login"
    assert await session_rows(console_hub) == []
    actions = await console_hub.db.read(
        lambda conn: [(r.action, r.via) for r in conn.execute(sa.select(audit_log).order_by(audit_log.c.id))]
    )
    assert actions == [("console.sign_in", "console"), ("console.sign_out", "console")]


async def test_the_cookie_flags(console_hub: ConsoleHub, start_console_hub: Any) -> None:
    response = await login(console_hub, "viewer")
    header = next(h for h in response.headers.getall("Set-Cookie") if h.startswith(sessions.SESSION_COOKIE + "="))
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Path=/;" in header or header.endswith("Path=/")
    assert "Secure" not in header  # http public URL: a Secure cookie would never come back

    secure = await start_console_hub(public_url="https://support.example.com")
    response = await login(secure, "viewer", Origin="https://support.example.com")
    assert response.status == 303
    header = next(h for h in response.headers.getall("Set-Cookie") if h.startswith(sessions.SECURE_SESSION_COOKIE))
    assert "Secure" in header
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header


async def test_a_wrong_password_is_refused_and_audited(console_hub: ConsoleHub) -> None:
    response = await login(console_hub, "agent", password="not-the-password")
    assert response.status == 401
    assert "not right" in await response.text()
    assert session_cookie(response) is None
    assert await session_rows(console_hub) == []
    unknown = await console_hub.client.get("/console/login")
    response = await console_hub.client.post(
        "/console/login",
        data={
            "email": "nobody@example.test",
            "password": "whatever-it-is",
            "csrf_token": form_token(await unknown.text()),
        },
    )
    assert response.status == 401
    failures = await console_hub.db.read(
        lambda conn: [
            (r.action, r.via, r.details["reason"])
            for r in conn.execute(sa.select(audit_log).where(audit_log.c.action == "console.sign_in_failed"))
        ]
    )
    assert failures == [
        ("console.sign_in_failed", "console", "password"),
        ("console.sign_in_failed", "console", "unknown_account"),
    ]


async def test_the_sign_in_form_needs_its_own_token(console_hub: ConsoleHub) -> None:
    await console_hub.client.get("/console/login")  # the pre-session cookie
    data = {"email": email_of("admin"), "password": console_hub.passwords["admin"]}
    for token in (None, "x" * 43):
        sent = dict(data, csrf_token=token) if token else data
        response = await console_hub.client.post("/console/login", data=sent, allow_redirects=False)
        assert response.status == 403
    assert await session_rows(console_hub) == []


async def test_state_changes_need_the_sessions_token_and_our_origin(console_hub: ConsoleHub) -> None:
    cookies = await signed_in_cookies(console_hub.app, email_of("agent"))
    console_hub.client.session.cookie_jar.update_cookies(cookies)
    token = sessions.token_for(next(iter(cookies.values())))
    other = sessions.token_for("another-session-id-that-is-long-enough")
    for headers, data in (
        ({}, {}),
        ({"X-CSRF-Token": other}, {}),
        ({}, {"csrf_token": other}),
        ({"X-CSRF-Token": token, "Origin": "https://evil.example"}, {}),
        ({"X-CSRF-Token": token, "Origin": "null"}, {}),
        ({"Referer": "https://evil.example/page"}, {"csrf_token": token}),
    ):
        response = await console_hub.client.post("/console/logout", headers=headers, data=data, allow_redirects=False)
        assert response.status == 403, (headers, data)
    assert len(await session_rows(console_hub)) == 1  # nothing was done

    origin = console_hub.base_url
    response = await console_hub.client.post(
        "/console/logout", headers={"X-CSRF-Token": token, "Origin": origin}, allow_redirects=False
    )
    assert response.status == 303
    assert await session_rows(console_hub) == []


async def test_a_forged_form_gets_an_html_page_and_a_script_json(console_hub: ConsoleHub) -> None:
    cookies = await signed_in_cookies(console_hub.app, email_of("agent"))
    console_hub.client.session.cookie_jar.update_cookies(cookies)
    page = await console_hub.client.post("/console/logout", headers={"Accept": "text/html"}, allow_redirects=False)
    assert page.status == 403
    assert page.content_type == "text/html"
    assert "security token" in await page.text()
    script = await console_hub.client.post("/console/logout", headers={"Accept": "*/*"}, allow_redirects=False)
    assert script.status == 403
    assert (await script.json())["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/console/account?tab=mfa", "/console/account?tab=mfa"),
        ("/console", "/console"),
        ("https://evil.example/console", "/console"),
        ("//evil.example/console", "/console"),
        ("/\\evil.example", "/console"),
        ("\\\\evil.example", "/console"),
        ("/consolex", "/console"),
        ("/api/v1/users", "/console"),
        ("javascript:alert(1)", "/console"),
        ("/console/\r\nSet-Cookie: x=1", "/console"),
        ("", "/console"),
    ],
)
async def test_next_never_leaves_the_console(console_hub: ConsoleHub, given: str, expected: str) -> None:
    response = await login(console_hub, "agent", next_path=given)
    assert response.status == 303
    assert response.headers["Location"] == expected


async def test_every_console_response_carries_the_policy(console_hub: ConsoleHub) -> None:
    for path in ("/console/login", "/console/no-such-page"):
        response = await console_hub.client.get(path)
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["Cache-Control"] == "no-store"
    page = await console_hub.client.get("/console/login")
    html = await page.text()
    # No inline script, handler or style: the policy would block them.
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert not re.search(r"\son[a-z]+=", html)
    assert "style=" not in html and "<style" not in html
    css = re.search(r'href="(/console/static/console\.css\?v=\w+)"', html)
    assert css
    static = await console_hub.client.get(css.group(1))
    assert static.status == 200
    assert "immutable" in static.headers["Cache-Control"]
    # The API keeps its own headers.
    api = await console_hub.client.get("/api/v1/users", headers=console_hub.hub.auth("admin"))
    assert api.status == 200
    assert "X-Frame-Options" not in api.headers


async def test_an_expired_or_idle_session_signs_nobody_in(console_hub: ConsoleHub) -> None:
    from datetime import timedelta

    app = console_hub.app
    settings = app[keys.SETTINGS]
    cookies = await signed_in_cookies(app, email_of("agent"))
    session_hash = sessions.hash_id(next(iter(cookies.values())))
    now = app[keys.CLOCK].now()
    found = await console_hub.db.read(sessions.load_session, session_hash, now)
    assert found is not None and found.user.email == email_of("agent")
    idle = timedelta(minutes=settings.console_session_idle_minutes)
    assert await console_hub.db.read(sessions.load_session, session_hash, now + idle + timedelta(seconds=1)) is None
    # Activity pushes the idle deadline, never the absolute one.
    later = now + idle - timedelta(minutes=1)
    await console_hub.db.write(sessions.touch_session, found, now=later, idle=idle)
    assert await console_hub.db.read(sessions.load_session, session_hash, later + idle - timedelta(minutes=1))
    end = found.expires_at
    assert await console_hub.db.read(sessions.load_session, session_hash, end) is None


async def test_idle_and_absolute_expiry_through_the_pages(console_hub: ConsoleHub) -> None:
    hub = console_hub
    settings = hub.app[keys.SETTINGS]
    idle = settings.console_session_idle_minutes * 60
    assert (await login(hub, "agent")).status == 303
    # Active just often enough: the idle deadline moves on each time...
    for _ in range(3):
        hub.clock.advance(idle - 120)
        assert (await hub.client.get("/console/account", allow_redirects=False)).status == 200
    # ...but not past the absolute one.
    hub.clock.advance(settings.console_session_max_hours * 3600)
    gone = await hub.client.get("/console/account", allow_redirects=False)
    assert gone.status == 303 and gone.headers["Location"].startswith("/console/login")

    assert (await login(hub, "agent")).status == 303
    hub.clock.advance(idle + 1)
    idle_out = await hub.client.get("/console/account", allow_redirects=False)
    assert idle_out.status == 303 and idle_out.headers["Location"].startswith("/console/login")
    # Expired rows are cleared at the next sign-in.
    assert (await login(hub, "viewer")).status == 303
    assert len(await session_rows(hub)) == 1
