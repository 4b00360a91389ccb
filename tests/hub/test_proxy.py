"""Behind a reverse proxy (hub/proxy.py): the client is taken from forwarding
headers only when the TCP peer is in HUB_TRUSTED_PROXIES.

Every test runs a real hub on loopback, so the peer is 127.0.0.1; what the
hub decided the client is shows in the rate limiter's keys (the public KB
search, limited per client address) and in a small route the test adds that
echoes ``request.remote``, ``scheme`` and ``host`` as a handler sees them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hub.app import create_app
from knowledge_base import SAMPLE_DIR, HashingEmbedder, KnowledgeBase
from tests.conftest import close_hub, free_port, make_settings, start_hub
from tests.fakes.twilio_api import ACCOUNT_SID, AUTH_TOKEN, inbound_params, sign_twilio

Start = Callable[..., Awaitable[TestClient]]


async def whoami(request: web.Request) -> web.Response:
    return web.json_response({"remote": request.remote, "scheme": request.scheme, "host": request.host})


@pytest_asyncio.fixture
async def start(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Start]:
    clients: list[TestClient] = []

    async def started(**overrides: Any) -> TestClient:
        app = create_app(make_settings(sqlite_url, tmp_path, **overrides), knowledge_base=None)
        app.router.add_get("/test/whoami", whoami)
        client = TestClient(TestServer(app, host="127.0.0.1", port=0))
        await client.start_server()
        clients.append(client)
        return client

    yield started
    for client in clients:
        await client.close()


async def seen(client: TestClient, headers: dict[str, str] | list[tuple[str, str]]) -> dict[str, str]:
    response = await client.get("/test/whoami", headers=headers)
    body = await response.json()
    assert response.status == 200, body
    return body  # type: ignore[no-any-return]


# --- the per-client limit ------------------------------------------------------------------


async def kb_search_statuses(client: TestClient, forwarded_for: str, times: int) -> list[int]:
    statuses = []
    for _ in range(times):
        response = await client.get(
            "/api/v1/kb/search", params={"q": "refund"}, headers={"X-Forwarded-For": forwarded_for}
        )
        statuses.append(response.status)
    return statuses


@pytest.mark.asyncio
@pytest.mark.parametrize("trusted", ["127.0.0.1", ""], ids=["behind-trusted-proxy", "no-setting"])
async def test_the_kb_search_limit_is_per_forwarded_client_only_behind_a_trusted_proxy(
    database_url: str, tmp_path: Path, trusted: str
) -> None:
    settings = make_settings(
        database_url,
        tmp_path,
        kb_enabled=True,
        kb_seed_dir=SAMPLE_DIR,
        kb_search_rate_limit="3/minute",
        trusted_proxies=trusted,
    )
    hub = await start_hub(settings, knowledge_base=KnowledgeBase(data_dir=tmp_path / "kb", embedder=HashingEmbedder()))
    try:
        first = await kb_search_statuses(hub.client, "203.0.113.5", 4)
        second = await kb_search_statuses(hub.client, "203.0.113.6", 2)
        # The portal's search shares the limit, keyed on the same client.
        portal = [
            (await hub.client.get("/help/search", params={"q": "refund"}, headers={"X-Forwarded-For": ip})).status
            for ip in ("203.0.113.5", "203.0.113.7")
        ]
    finally:
        await close_hub(hub)
    assert first == [200, 200, 200, 429]
    if trusted:
        assert second == [200, 200]  # another customer behind the same proxy has their own limit
        assert portal == [429, 200]
    else:
        assert second == [429, 429]  # headers ignored: everyone is the peer, 127.0.0.1
        assert portal == [429, 429]


# --- whom the hub believes -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_without_the_setting_forwarding_headers_are_ignored(start: Start) -> None:
    client = await start()
    headers = {"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.test"}
    assert await seen(client, headers) == {
        "remote": "127.0.0.1",
        "scheme": "http",
        "host": client.server.host + f":{client.server.port}",
    }
    # Even malformed ones: nobody reads them.
    assert (await seen(client, {"X-Forwarded-For": "not an address", "Forwarded": 'for="'}))["remote"] == "127.0.0.1"


@pytest.mark.asyncio
async def test_an_untrusted_peer_cannot_spoof_its_address(start: Start) -> None:
    client = await start(trusted_proxies="10.0.0.0/8, 192.168.1.1")
    body = await seen(
        client, {"X-Forwarded-For": "10.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "x.test"}
    )
    assert body["remote"] == "127.0.0.1" and body["scheme"] == "http" and body["host"] != "x.test"
    assert (await seen(client, {"X-Forwarded-For": "garbage"}))["remote"] == "127.0.0.1"


@pytest.mark.asyncio
async def test_the_chain_is_walked_from_the_right_skipping_trusted_hops(start: Start) -> None:
    client = await start(trusted_proxies="127.0.0.1,10.0.0.0/8")
    # The leftmost entry is whatever the client wrote; 10.1.2.3 is our inner proxy.
    spoofed = await seen(client, {"X-Forwarded-For": "1.2.3.4, 198.51.100.7, 10.1.2.3"})
    assert spoofed["remote"] == "198.51.100.7"
    # Several header lines are one list, in order.
    lines = await seen(client, [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "198.51.100.8, 10.0.0.9")])
    assert lines["remote"] == "198.51.100.8"
    # Every hop trusted: the leftmost is the client (an internal caller).
    assert (await seen(client, {"X-Forwarded-For": "10.0.0.1, 10.0.0.2"}))["remote"] == "10.0.0.1"
    # IPv6, IPv4-mapped IPv6 and an address with a port.
    assert (await seen(client, {"X-Forwarded-For": "2001:db8::5"}))["remote"] == "2001:db8::5"
    assert (await seen(client, {"X-Forwarded-For": "::ffff:198.51.100.9"}))["remote"] == "198.51.100.9"
    assert (await seen(client, {"X-Forwarded-For": "198.51.100.10:5123"}))["remote"] == "198.51.100.10"
    # No header from the proxy itself (a health check): the proxy is the client.
    assert (await seen(client, {}))["remote"] == "127.0.0.1"


@pytest.mark.asyncio
async def test_scheme_and_host_come_from_the_nearest_trusted_proxy(start: Start) -> None:
    client = await start(trusted_proxies="127.0.0.1")
    body = await seen(
        client, {"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "help.example.com"}
    )
    assert body == {"remote": "203.0.113.5", "scheme": "https", "host": "help.example.com"}
    # A client's own value comes first; the proxy appended what it saw.
    appended = await seen(client, {"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "ftp, HTTPS"})
    assert appended["scheme"] == "https"


@pytest.mark.asyncio
async def test_rfc_7239_forwarded_when_the_proxy_writes_it(start: Start) -> None:
    client = await start(trusted_proxies="127.0.0.1, 2001:db8::/32", trusted_proxy_headers="forwarded")
    header = 'for=1.2.3.4;proto=http, for=192.0.2.60;proto=https;host=help.example.com, for="[2001:db8::1]:4711"'
    body = await seen(client, {"Forwarded": header})
    assert body == {"remote": "192.0.2.60", "scheme": "https", "host": "help.example.com"}
    # In this mode X-Forwarded-For is the client's own and is not read.
    assert (await seen(client, {"X-Forwarded-For": "203.0.113.5"}))["remote"] == "127.0.0.1"
    assert (await seen(client, {"Forwarded": 'for="198.51.100.1";by=127.0.0.1'}))["remote"] == "198.51.100.1"


@pytest.mark.parametrize(
    ("style", "headers", "reason"),
    [
        ("x-forwarded", {"X-Forwarded-For": "198.51.100.7, not-an-address"}, "X-Forwarded-For"),
        ("x-forwarded", {"X-Forwarded-For": "198.51.100.7,,10.0.0.1"}, "X-Forwarded-For"),
        ("x-forwarded", {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "gopher"}, "X-Forwarded-Proto"),
        ("x-forwarded", {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Host": "a b/c"}, "X-Forwarded-Host"),
        ("forwarded", {"Forwarded": 'for="198.51.100.7'}, "Forwarded"),
        ("forwarded", {"Forwarded": "proto=https"}, "Forwarded"),
        ("forwarded", {"Forwarded": "for=unknown"}, "Forwarded"),
        ("forwarded", {"Forwarded": "for=198.51.100.7;proto=ftp"}, "Forwarded"),
        ("forwarded", {"Forwarded": "for 198.51.100.7"}, "Forwarded"),
    ],
)
@pytest.mark.asyncio
async def test_a_trusted_proxys_malformed_header_is_a_400_naming_it(
    start: Start, style: str, headers: dict[str, str], reason: str
) -> None:
    client = await start(trusted_proxies="127.0.0.1", trusted_proxy_headers=style)
    for path in ("/test/whoami", "/api/v1/kb/search?q=x"):
        response = await client.get(path, headers=headers)
        body = await response.json()
        assert response.status == 400, body
        assert body["error"]["code"] == "invalid_input" and reason in body["error"]["message"]


def test_a_bad_trusted_proxies_setting_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not-a-network"):
        make_settings("sqlite://", tmp_path, trusted_proxies="127.0.0.1, not-a-network")


# --- Twilio's signature sees the URL Twilio called ---------------------------------------------


@pytest.mark.parametrize("trusted", ["127.0.0.1", "10.0.0.0/8"], ids=["trusted", "untrusted-peer"])
@pytest.mark.asyncio
async def test_twilio_signs_the_url_a_trusted_proxy_says_it_called(start: Start, trusted: str) -> None:
    client = await start(
        channels="sms",
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_from="+15005550006",
        public_url="https://support.example.test",
        twilio_api_url=f"http://127.0.0.1:{free_port()}",
        trusted_proxies=trusted,
    )
    params = inbound_params(sender="+15551230001", body="hello", message_sid="SM" + "1" * 32)
    path = "/channels/sms/twilio"
    # Twilio was configured with a second name for the hub; the proxy says so.
    headers = {
        **sign_twilio("https://other-name.example.test" + path, params, AUTH_TOKEN),
        "X-Forwarded-For": "54.172.60.1",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "other-name.example.test",
    }
    response = await client.post(path, data=params, headers=headers)
    assert response.status == (200 if trusted == "127.0.0.1" else 403)
    # HUB_PUBLIC_URL's URL always works.
    params["MessageSid"] = "SM" + "2" * 32
    response = await client.post(
        path, data=params, headers=sign_twilio("https://support.example.test" + path, params, AUTH_TOKEN)
    )
    assert response.status == 200
    # A URL nobody forwarded is refused, trusted proxy or not.
    params["MessageSid"] = "SM" + "3" * 32
    forged = {**sign_twilio("https://third.example.test" + path, params, AUTH_TOKEN), "X-Forwarded-Host": "x.test"}
    assert (await client.post(path, data=params, headers=forged)).status == 403
