"""Signing in: roles, rate limiting (in memory and shared through Redis), rehashing, timing, the API untouched."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Literal

import pytest
import sqlalchemy as sa
from aiohttp import web
from argon2 import PasswordHasher
from yarl import URL

from hub import auth
from hub.console import passwords, sessions
from hub.models import Role
from hub.storage.schema import users
from tests.console.conftest import ConsoleHub, email_of
from tests.console.flows import audit_actions, login, session_rows
from tests.console.helpers import signed_in_cookies

pytestmark = pytest.mark.asyncio


async def agents_only(request: web.Request) -> web.Response:
    user = await sessions.require_user(request, Role.AGENT)
    return web.json_response({"email": user.email})


@pytest.fixture
def with_test_page(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hubs started in this test also serve /console/test/agents-only (GET, POST)."""
    import hub.app

    original = hub.app.setup_console

    def setup(app: web.Application) -> None:
        original(app)
        app.router.add_get("/console/test/agents-only", agents_only)
        app.router.add_post("/console/test/agents-only", agents_only)

    monkeypatch.setattr(hub.app, "setup_console", setup)


async def test_require_user_sends_people_to_sign_in_and_checks_roles(
    with_test_page: None, start_console_hub: Any
) -> None:
    hub = await start_console_hub()
    client = hub.client
    page = await client.get("/console/test/agents-only?tab=2", allow_redirects=False)
    assert page.status == 303
    location = URL(page.headers["Location"])
    assert location.path == "/console/login" and location.query["next"] == "/console/test/agents-only?tab=2"
    assert (await client.post("/console/test/agents-only", allow_redirects=False)).status == 401
    assert (await client.head("/console/test/agents-only", allow_redirects=False)).status == 303

    # Signing in comes back to the page asked for.
    back = await login(hub, "agent", next_path="/console/test/agents-only?tab=2")
    assert back.headers["Location"] == "/console/test/agents-only?tab=2"
    assert (await (await client.get("/console/test/agents-only")).json()) == {"email": email_of("agent")}

    for role, status in (("viewer", 403), ("admin", 200)):
        cookies = await signed_in_cookies(hub.app, email_of(role))
        client.session.cookie_jar.clear()
        client.session.cookie_jar.update_cookies(cookies)
        assert (await client.get("/console/test/agents-only")).status == status
        token = sessions.token_for(next(iter(cookies.values())))
        posted = await client.post("/console/test/agents-only", headers={"X-CSRF-Token": token})
        assert posted.status == status
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies(await signed_in_cookies(hub.app, email_of("viewer")))
    viewer_page = await client.get("/console/test/agents-only", headers={"Accept": "text/html"})
    assert viewer_page.status == 403 and viewer_page.content_type == "text/html"
    assert "needs the agent role" in await viewer_page.text()


async def test_wrong_passwords_are_rate_limited_per_account(start_console_hub: Any) -> None:
    window = 8.0
    hub = await start_console_hub(console_login_rate_limit="3/8seconds", console_login_ip_rate_limit="100/15minutes")
    for _ in range(3):
        assert (await login(hub, "agent", password="wrong-password-0")).status == 401
    last_failure = time.monotonic()
    limited = await login(hub, "agent", password="wrong-password-0", Accept="text/html")
    assert limited.status == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= window
    assert "Too many attempts" in await limited.text()
    # While limited, the right password is refused too...
    right = await login(hub, "agent")
    assert right.status == 429
    assert await session_rows(hub) == []
    # ...another account is not...
    assert (await login(hub, "viewer")).status == 303
    # ...and once the failures are out of the window, the right one works again.
    await asyncio.sleep(max(0.0, last_failure + window + 0.5 - time.monotonic()))
    hub.client.session.cookie_jar.clear()  # the viewer's session
    assert (await login(hub, "agent")).status == 303


async def test_wrong_passwords_are_rate_limited_per_address(start_console_hub: Any) -> None:
    hub = await start_console_hub(console_login_rate_limit="100/15minutes", console_login_ip_rate_limit="4/15minutes")
    for role in ("agent", "viewer", "admin", "agent"):
        assert (await login(hub, role, password="wrong-password-1")).status == 401
    assert (await login(hub, "viewer")).status == 429
    assert (await login(hub, email="someone-else@example.test", password="x" * 12)).status == 429


async def test_the_limit_is_shared_through_redis(start_console_hub: Any) -> None:
    redis = "redis://127.0.0.1:6379/0"
    try:
        import redis.asyncio as redis_client

        probe = redis_client.Redis.from_url(redis, socket_timeout=2)
        await probe.ping()
        await probe.aclose()
    except Exception:
        pytest.skip("no Redis at 127.0.0.1:6379")
    overrides = {
        "redis_url": redis,
        "console_login_rate_limit": "2/15minutes",
        # Keys live on in the shared Redis between runs: the address rule stays out of the way.
        "console_login_ip_rate_limit": "100000/15minutes",
    }
    first = await start_console_hub(**overrides)
    second = await start_console_hub(**overrides)
    email = f"redis-{uuid.uuid4().hex[:10]}@example.test"
    password = "a-fresh-password-9"
    user = await first.db.write(lambda conn: auth.create_user(conn, name="Redis", email=email, role="agent"))
    await first.db.write(
        passwords.set_password_hash, user.id, await passwords.hash_password(password), now=first.clock.now()
    )
    for running in (first, second):
        assert (await login(running, email=email, password="wrong-password-2")).status == 401
    # Two failures across two instances: both refuse the right password now.
    assert (await login(second, email=email, password=password)).status == 429
    assert (await login(first, email=email, password=password)).status == 429


async def test_failed_and_successful_sign_ins_are_audited(console_hub: ConsoleHub) -> None:
    await login(console_hub, "agent", password="wrong-password-3")
    await login(console_hub, "agent")
    entries = await audit_actions(console_hub)
    assert [(action, via) for action, via, _ in entries] == [
        ("console.sign_in_failed", "console"),
        ("console.sign_in", "console"),
    ]
    assert all("wrong-password" not in str(details) for _, _, details in entries)
    api = await console_hub.hub.api("GET", "/api/v1/audit", params={"via": "console"})
    assert [item["action"] for item in api["items"]] == ["console.sign_in", "console.sign_in_failed"]


async def test_a_hash_with_old_parameters_is_replaced_at_sign_in(console_hub: ConsoleHub) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    agent = await console_hub.db.read(auth.find_user, email_of("agent"))
    await console_hub.db.write(
        passwords.set_password_hash, agent.id, weak.hash(console_hub.passwords["agent"]), now=console_hub.clock.now()
    )
    assert (await login(console_hub, "agent")).status == 303
    stored = await console_hub.db.read(
        lambda conn: conn.execute(sa.select(users.c.password_hash).where(users.c.id == agent.id)).scalar_one()
    )
    assert stored.startswith("$argon2id$") and "m=65536" in stored and "t=3" in stored
    assert not passwords.hasher().check_needs_rehash(stored)


async def test_an_unknown_email_costs_what_a_wrong_password_does(console_hub: ConsoleHub) -> None:
    """Timing must not tell which accounts exist: both paths run exactly one
    argon2 verification against a hash of the same parameters (a structural
    check; how long one takes is measured by the benchmarks, not here)."""

    class Counting(PasswordHasher):
        def __init__(self) -> None:
            super().__init__()
            self.verified: list[str] = []

        def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
            self.verified.append(hash if isinstance(hash, str) else hash.decode())
            return super().verify(hash, password)

    counting = Counting()
    before = passwords.hasher()
    passwords.use_hasher(counting)
    try:
        assert (await login(console_hub, email=email_of("viewer"), password="wrong-password-4")).status == 401
        assert (await login(console_hub, email="nobody-here@example.test", password="wrong-password-4")).status == 401
    finally:
        passwords.use_hasher(before)
    known, unknown = counting.verified
    assert known != unknown  # the viewer's own hash, then the dummy one
    # Same algorithm and cost: neither would be rehashed under the hasher in use.
    assert not counting.check_needs_rehash(known) and not counting.check_needs_rehash(unknown)
    assert known.split("$")[1:4] == unknown.split("$")[1:4]  # argon2id, version, m/t/p


async def test_passwords_shorter_than_ten_characters_are_refused() -> None:
    from hub.errors import InvalidInput

    with pytest.raises(InvalidInput):
        await passwords.hash_password("short-pw1")
    assert (await passwords.hash_password("long-enough")).startswith("$argon2id$")


async def test_api_tokens_work_as_before_and_a_console_cookie_is_no_api_key(console_hub: ConsoleHub) -> None:
    hub = console_hub
    assert (await hub.client.get("/api/v1/users", headers=hub.hub.auth("admin"))).status == 200
    hub.client.session.cookie_jar.update_cookies(await signed_in_cookies(hub.app, email_of("admin")))
    assert (await hub.client.get("/api/v1/users")).status == 401
