"""The second factor: enrolment, the code step at sign-in, replay, drift, recovery codes, HUB_REQUIRE_MFA."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
import sqlalchemy as sa

from hub.console import sessions
from hub.storage.schema import user_recovery_codes
from tests.console.conftest import ConsoleHub
from tests.console.flows import (
    audit_actions,
    code_at,
    form_token,
    login,
    post_form,
    session_cookie,
    session_rows,
    user_row,
)

pytestmark = pytest.mark.asyncio
ENROL = sessions.ENROL_PATH


async def enrol(hub: ConsoleHub, role: str = "agent") -> tuple[str, list[str]]:
    """Sign in with the password, enrol TOTP; returns the secret and the recovery codes."""
    assert (await login(hub, role)).status == 303
    page = await hub.client.get(ENROL)
    assert page.status == 200
    html = await page.text()
    assert 'src="data:image/svg+xml' in html  # the QR code, drawn by the hub
    found = re.search(r'<code id="totp-secret">([A-Z2-7 ]+)</code>', html)
    assert found, html
    secret = found.group(1).replace(" ", "")
    # Reloading keeps the same key (the person may have scanned it already).
    assert secret in (await (await hub.client.get(ENROL)).text()).replace(" ", "")

    wrong = await post_form(hub, ENROL + "/enable", {"code": "000000"}, page=ENROL)
    assert wrong.status == 400
    assert (await user_row(hub, role)).totp_enabled_at is None

    done = await post_form(hub, ENROL + "/enable", {"code": code_at(secret, hub.clock.now())}, page=ENROL)
    assert done.status == 200
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", await done.text())
    assert len(codes) == 10 and len(set(codes)) == 10
    row = await user_row(hub, role)
    assert row.totp_enabled_at is not None and row.totp_secret == secret
    stored = await hub.db.read(lambda conn: [r.code_hash for r in conn.execute(sa.select(user_recovery_codes))])
    assert len(stored) == 10 and not set(codes) & set(stored)  # hashed
    return secret, codes


async def sign_out(hub: ConsoleHub) -> None:
    response = await post_form(hub, "/console/logout", {}, page="/console/account")
    assert response.status == 303


async def code_step(hub: ConsoleHub, code: str, *, next_path: str | None = None) -> Any:
    page = await hub.client.get(sessions.MFA_PATH, allow_redirects=False)
    assert page.status == 200
    data = {"code": code, "csrf_token": form_token(await page.text())}
    if next_path:
        data["next"] = next_path
    return await hub.client.post(sessions.MFA_PATH, data=data, allow_redirects=False)


async def test_enrol_then_sign_in_with_a_code_that_works_once(console_hub: ConsoleHub) -> None:
    hub = console_hub
    secret, _ = await enrol(hub)
    await sign_out(hub)

    response = await login(hub, "agent", next_path="/console/account")
    assert response.status == 303
    assert response.headers["Location"] == "/console/login/mfa?next=/console/account"
    half = session_cookie(response).value
    [row] = await session_rows(hub)
    assert row.stage == "mfa"
    # Half-way is not signed in: pages send you to the code step, writes are refused.
    account = await hub.client.get("/console/account", allow_redirects=False)
    assert account.status == 303 and account.headers["Location"].startswith("/console/login/mfa")
    refused = await hub.client.post(
        "/console/account/password", data={"csrf_token": sessions.token_for(half)}, allow_redirects=False
    )
    assert refused.status == 401

    wrong = await code_step(hub, "123456")
    assert wrong.status == 401
    assert "not right" in await wrong.text()

    # The step the enrolment used is spent: the next step's code signs in.
    hub.clock.advance(30)
    code = code_at(secret, hub.clock.now())
    done = await code_step(hub, code, next_path="/console/account")
    assert done.status == 303 and done.headers["Location"] == "/console/account"
    full = session_cookie(done).value
    assert full != half  # a new id once the second factor is done
    [row] = await session_rows(hub)
    assert row.stage == "full" and row.session_hash == sessions.hash_id(full)
    assert (await hub.client.get("/console/account")).status == 200

    # The same code again, still within its 30 seconds: refused (replay).
    await sign_out(hub)
    assert (await login(hub, "agent")).status == 303
    replay = await code_step(hub, code)
    assert replay.status == 401
    # ...and so is the previous step's code, though drift would allow it.
    older = await code_step(hub, code_at(secret, hub.clock.now(), -1))
    assert older.status == 401
    # The next step's (a phone a little ahead) is fine.
    ahead = await code_step(hub, code_at(secret, hub.clock.now(), +1))
    assert ahead.status == 303

    actions = [(a, d.get("factor"), d.get("reason")) for a, _, d in await audit_actions(hub)]
    assert ("console.mfa_enable", None, None) in actions
    assert actions.count(("console.sign_in_failed", None, "code")) == 3
    assert ("console.sign_in", "totp", None) in actions


async def test_codes_outside_the_drift_window_are_refused(console_hub: ConsoleHub) -> None:
    hub = console_hub
    secret, _ = await enrol(hub)
    await sign_out(hub)
    hub.clock.advance(300)
    assert (await login(hub, "agent")).status == 303
    for offset in (-3, -2, 2, 3):
        assert (await code_step(hub, code_at(secret, hub.clock.now(), offset))).status == 401
    assert (await code_step(hub, code_at(secret, hub.clock.now(), -1))).status == 303


async def test_a_recovery_code_works_once(console_hub: ConsoleHub) -> None:
    hub = console_hub
    _, codes = await enrol(hub)
    await sign_out(hub)
    assert (await login(hub, "agent")).status == 303
    assert (await code_step(hub, codes[3].upper().replace("-", " "))).status == 303  # typed loosely
    await sign_out(hub)
    assert (await login(hub, "agent")).status == 303
    assert (await code_step(hub, codes[3])).status == 401
    assert (await code_step(hub, codes[4])).status == 303
    page = await (await hub.client.get("/console/account")).text()
    assert "8 recovery codes left" in page
    actions = [d.get("factor") for a, _, d in await audit_actions(hub) if a == "console.sign_in"]
    assert actions.count("recovery_code") == 2


async def test_turning_the_second_factor_off_needs_a_code(console_hub: ConsoleHub) -> None:
    hub = console_hub
    secret, _ = await enrol(hub)
    wrong = await post_form(hub, ENROL + "/disable", {"code": "999999"}, page=ENROL)
    assert wrong.status == 400
    assert (await user_row(hub, "agent")).totp_enabled_at is not None
    hub.clock.advance(30)
    off = await post_form(hub, ENROL + "/disable", {"code": code_at(secret, hub.clock.now())}, page=ENROL)
    assert off.status == 303
    row = await user_row(hub, "agent")
    assert row.totp_enabled_at is None and row.totp_secret is None
    assert (
        await hub.db.read(
            lambda conn: conn.execute(sa.select(sa.func.count()).select_from(user_recovery_codes)).scalar_one()
        )
        == 0
    )
    await sign_out(hub)
    response = await login(hub, "agent")
    assert response.headers["Location"] == "/console"  # no code step any more


async def test_new_recovery_codes_replace_the_old_ones(console_hub: ConsoleHub) -> None:
    hub = console_hub
    secret, old = await enrol(hub)
    hub.clock.advance(30)
    fresh = await post_form(hub, ENROL + "/recovery-codes", {"code": code_at(secret, hub.clock.now())}, page=ENROL)
    assert fresh.status == 200
    new = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", await fresh.text())
    assert len(new) == 10 and not set(new) & set(old)
    await sign_out(hub)
    assert (await login(hub, "agent")).status == 303
    assert (await code_step(hub, old[0])).status == 401
    assert (await code_step(hub, new[0])).status == 303


async def test_enabling_the_second_factor_ends_the_other_sessions(console_hub: ConsoleHub) -> None:
    from tests.console.helpers import signed_in_cookies

    hub = console_hub
    await signed_in_cookies(hub.app, "agent@example.test")  # another browser
    await enrol(hub)
    [row] = await session_rows(hub)
    assert row.session_hash == sessions.hash_id(
        hub.client.session.cookie_jar.filter_cookies(hub.client.make_url("/"))[sessions.SESSION_COOKIE].value
    )


async def test_an_admin_without_a_second_factor_is_kept_out_when_it_is_required(start_console_hub: Any) -> None:
    hub = await start_console_hub(require_mfa=True)
    response = await login(hub, "admin")
    assert response.status == 303
    cookie = session_cookie(response).value
    for path in ("/console", "/console/account", "/console/supervisor"):
        page = await hub.client.get(path, allow_redirects=False)
        assert page.status == 303, path
        assert page.headers["Location"] == ENROL
    token = sessions.token_for(cookie)
    for path in ("/console/account/password", "/console/account/sessions/end-all", ENROL + "/disable"):
        refused = await hub.client.post(path, data={"csrf_token": token}, allow_redirects=False)
        assert refused.status == 403, path
    page = await hub.client.get(ENROL)
    assert page.status == 200
    html = await page.text()
    assert "Admins must use a second factor" in html
    secret = re.search(r'<code id="totp-secret">([A-Z2-7 ]+)</code>', html).group(1).replace(" ", "")
    enabled = await post_form(hub, ENROL + "/enable", {"code": code_at(secret, hub.clock.now())}, page=ENROL)
    assert enabled.status == 200
    assert (await hub.client.get("/console/account", allow_redirects=False)).status == 200
    # Admins cannot turn it off while it is required.
    hub.clock.advance(30)
    off = await post_form(hub, ENROL + "/disable", {"code": code_at(secret, hub.clock.now())}, page=ENROL)
    assert off.status == 403

    # Agents may go without.
    await sign_out(hub)
    agent = await login(hub, "agent")
    assert agent.headers["Location"] == "/console"
    assert (await hub.client.get("/console/account", allow_redirects=False)).status == 200


async def test_the_same_code_racing_twice_wins_once(console_hub: ConsoleHub) -> None:
    """Two requests with one code at the same moment (two hub instances on
    PostgreSQL): the conditional update lets exactly one through."""
    from hub.console import totp

    hub = console_hub
    secret, codes = await enrol(hub)
    user_id = (await user_row(hub, "agent")).id
    hub.clock.advance(30)
    now = hub.clock.now()
    code = code_at(secret, now)
    results = await asyncio.gather(*(hub.db.write(totp.use_code, user_id, code, now=now) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    spent = await asyncio.gather(*(hub.db.write(totp.use_recovery_code, user_id, codes[0], now=now) for _ in range(8)))
    assert sorted(spent) == [False] * 7 + [True]
