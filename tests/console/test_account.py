"""The account page: change the password, see and end sessions, sign out everywhere."""

from __future__ import annotations

import pytest
from aiohttp import ClientSession

from hub.console import sessions
from tests.console.conftest import ConsoleHub, email_of
from tests.console.flows import audit_actions, login, post_form, session_cookie, session_rows
from tests.console.helpers import signed_in_cookies

pytestmark = pytest.mark.asyncio


async def test_the_page_lists_this_browser_and_the_others(console_hub: ConsoleHub) -> None:
    hub = console_hub
    await signed_in_cookies(hub.app, email_of("agent"))  # a second browser ("tests")
    await signed_in_cookies(hub.app, email_of("viewer"))  # someone else's
    assert (await login(hub, "agent", **{"User-Agent": "Firefox/140 on the test bench"})).status == 303
    page = await hub.client.get("/console/account")
    assert page.status == 200
    html = await page.text()
    assert "Firefox/140 on the test bench" in html and "(this browser)" in html
    assert html.count('/end"') == 2  # two sessions of the agent, none of the viewer's
    assert email_of("viewer") not in html


async def test_changing_the_password_needs_the_current_one_and_ends_other_sessions(console_hub: ConsoleHub) -> None:
    hub = console_hub
    other = await signed_in_cookies(hub.app, email_of("agent"))
    assert (await login(hub, "agent")).status == 303

    wrong = await post_form(
        hub,
        "/console/account/password",
        {
            "current_password": "not-it-at-all",
            "new_password": "brand-new-pass-1",
            "confirm_password": "brand-new-pass-1",
        },
    )
    assert wrong.status == 400 and "current password is not right" in await wrong.text()
    short = await post_form(
        hub,
        "/console/account/password",
        {"current_password": hub.passwords["agent"], "new_password": "short", "confirm_password": "short"},
    )
    assert short.status == 400 and "at least 10 characters" in await short.text()
    mismatch = await post_form(
        hub,
        "/console/account/password",
        {
            "current_password": hub.passwords["agent"],
            "new_password": "brand-new-pass-1",
            "confirm_password": "brand-new-pass-2",
        },
    )
    assert mismatch.status == 400
    assert len(await session_rows(hub)) == 2

    done = await post_form(
        hub,
        "/console/account/password",
        {
            "current_password": hub.passwords["agent"],
            "new_password": "brand-new-pass-1",
            "confirm_password": "brand-new-pass-1",
        },
    )
    assert done.status == 303 and done.headers["Location"] == "/console/account?done=password"
    new_id = session_cookie(done).value
    [row] = await session_rows(hub)  # the other browser is signed out; this one has a new id
    assert row.session_hash == sessions.hash_id(new_id)
    assert row.session_hash != sessions.hash_id(next(iter(other.values())))
    assert (await hub.client.get("/console/account")).status == 200

    hub.client.session.cookie_jar.clear()
    assert (await login(hub, "agent")).status == 401
    assert (await login(hub, "agent", password="brand-new-pass-1")).status == 303
    assert ("console.password_change", "console", {"sessions_ended": 1}) in await audit_actions(hub)


async def test_sign_out_everywhere_ends_every_session_of_the_user(console_hub: ConsoleHub) -> None:
    hub = console_hub
    elsewhere = await signed_in_cookies(hub.app, email_of("agent"))
    viewer = await signed_in_cookies(hub.app, email_of("viewer"))
    assert (await login(hub, "agent")).status == 303
    async with ClientSession(cookies=elsewhere) as browser:
        assert (await browser.get(f"{hub.base_url}/console/account", allow_redirects=False)).status == 200

        done = await post_form(hub, "/console/account/sessions/end-all", {})
        assert done.status == 303 and done.headers["Location"] == "/console/login"
        # The other browser is signed out at its next request.
        gone = await browser.get(f"{hub.base_url}/console/account", allow_redirects=False)
        assert gone.status == 303 and gone.headers["Location"].startswith("/console/login")
    assert (await hub.client.get("/console/account", allow_redirects=False)).status == 303
    rows = await session_rows(hub)
    assert [r.session_hash for r in rows] == [sessions.hash_id(next(iter(viewer.values())))]
    assert ("console.sign_out_everywhere", "console", {"sessions_ended": 2}) in await audit_actions(hub)


async def test_ending_one_session_and_not_someone_elses(console_hub: ConsoleHub) -> None:
    hub = console_hub
    await signed_in_cookies(hub.app, email_of("agent"))
    await signed_in_cookies(hub.app, email_of("viewer"))
    assert (await login(hub, "agent")).status == 303
    rows = await session_rows(hub)
    agent_other, viewer_row = rows[0], rows[1]
    not_mine = await post_form(hub, f"/console/account/sessions/{viewer_row.id}/end", {})
    assert not_mine.status == 404
    mine = await post_form(hub, f"/console/account/sessions/{agent_other.id}/end", {})
    assert mine.status == 303
    assert [r.id for r in await session_rows(hub)] == [viewer_row.id, rows[2].id]
