"""One-time sign-in links: once, within 24 hours, with a new session id, then a password without the old one."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from hub import auth, keys
from hub.console import links, sessions
from tests.console.conftest import ConsoleHub, email_of
from tests.console.flows import audit_actions, get_form, login, post_form, session_cookie, session_rows

pytestmark = pytest.mark.asyncio


async def new_person(hub: ConsoleHub, email: str = "new.agent@example.test") -> int:
    user = await hub.db.write(lambda conn: auth.create_user(conn, name="New Agent", email=email, role="agent"))
    return int(user.id)


async def make_link(hub: ConsoleHub, user_id: int) -> str:
    hours = hub.app[keys.SETTINGS].console_link_hours
    return await hub.db.write(links.create_link, user_id, now=hub.clock.now(), valid_for=timedelta(hours=hours))


async def follow(hub: ConsoleHub, token: str) -> Any:
    headers: dict[str, str] = {}
    csrf = await get_form(hub.client, f"/console/link/{token}", headers)
    return await hub.client.post(
        f"/console/link/{token}", data={"csrf_token": csrf}, headers=headers, allow_redirects=False
    )


async def test_a_link_signs_in_once_and_lets_the_person_set_a_password(console_hub: ConsoleHub) -> None:
    hub = console_hub
    user_id = await new_person(hub)
    token = await make_link(hub, user_id)
    # Looking at the link (a chat's preview does) spends nothing.
    for _ in range(2):
        page = await hub.client.get(f"/console/link/{token}")
        assert page.status == 200 and "new.agent@example.test" in await page.text()
    assert (await hub.client.post(f"/console/link/{token}", allow_redirects=False)).status == 403  # no form token

    planted = "planted-session-id-0123456789abcdefghijk"
    hub.client.session.cookie_jar.update_cookies({sessions.SESSION_COOKIE: planted})
    signed_in = await follow(hub, token)
    assert signed_in.status == 303 and signed_in.headers["Location"] == "/console/account"
    assert session_cookie(signed_in).value != planted
    [row] = await session_rows(hub)
    assert row.stage == "full+link"

    account = await (await hub.client.get("/console/account")).text()
    assert "Set your password" in account and "current_password" not in account
    done = await post_form(
        hub, "/console/account/password", {"new_password": "my-own-password-1", "confirm_password": "my-own-password-1"}
    )
    assert done.status == 303
    [row] = await session_rows(hub)
    assert row.stage == "full"  # from now on, a change needs the current password
    assert "current_password" in await (await hub.client.get("/console/account")).text()

    # Used once: a second click, even from a fresh browser, is refused.
    hub.client.session.cookie_jar.clear()
    again = await hub.client.get(f"/console/link/{token}")
    assert again.status == 410
    assert (await follow(hub, token)).status == 410
    assert (await login(hub, email="new.agent@example.test", password="my-own-password-1")).status == 303
    actions = [
        (action, details.get("factor"), details.get("reason")) for action, _, details in await audit_actions(hub)
    ]
    assert ("console.sign_in", "link", None) in actions
    assert ("console.sign_in_failed", None, "link") in actions


async def test_a_link_expires_after_a_day(console_hub: ConsoleHub) -> None:
    hub = console_hub
    token = await make_link(hub, await new_person(hub))
    hub.clock.advance(24 * 3600 - 60)
    assert (await hub.client.get(f"/console/link/{token}")).status == 200
    hub.clock.advance(61)
    assert (await hub.client.get(f"/console/link/{token}")).status == 410
    assert (await follow(hub, token)).status == 410
    assert await session_rows(hub) == []


async def test_only_the_last_link_works_and_unknown_ones_do_not(console_hub: ConsoleHub) -> None:
    hub = console_hub
    user_id = await new_person(hub)
    first = await make_link(hub, user_id)
    second = await make_link(hub, user_id)
    assert (await follow(hub, first)).status == 410
    assert (await follow(hub, "x" * 43)).status == 410
    assert (await hub.client.get("/console/link/" + "y" * 300)).status == 410
    assert (await follow(hub, second)).status == 303


async def test_a_link_does_not_skip_the_second_factor(console_hub: ConsoleHub) -> None:
    from tests.console.flows import code_at
    from tests.console.test_mfa import code_step, enrol, sign_out

    hub = console_hub
    secret, _ = await enrol(hub, "agent")
    await sign_out(hub)
    agent = await hub.db.read(auth.find_user, email_of("agent"))
    response = await follow(hub, await make_link(hub, agent.id))
    assert response.status == 303 and response.headers["Location"].startswith(sessions.MFA_PATH)
    assert (await hub.client.get("/console/account", allow_redirects=False)).status == 303
    hub.clock.advance(30)
    done = await code_step(hub, code_at(secret, hub.clock.now()), next_path="/console/account")
    assert done.status == 303
    [row] = await session_rows(hub)
    assert row.stage == "full+link"
    assert "current_password" not in await (await hub.client.get("/console/account")).text()


async def test_two_clicks_at_once_sign_in_once(console_hub: ConsoleHub) -> None:
    hub = console_hub
    token = await make_link(hub, await new_person(hub))
    now = hub.clock.now()
    used = await asyncio.gather(*(hub.db.write(links.use_link, token, now=now) for _ in range(6)))
    assert sum(found is not None for found in used) == 1
