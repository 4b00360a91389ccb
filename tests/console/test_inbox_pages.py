"""The inbox pages through the real app: who may see them, views and
filters from the query string, "Load more" and the live rows fragment."""

from __future__ import annotations

import re

import pytest
from aiohttp import ClientSession

from hub.console.inbox import PAGE_SIZE
from tests.console.conftest import ConsoleHub
from tests.console.helpers import signed_in_cookies


async def signed_in(console: ConsoleHub, role: str) -> ClientSession:
    session = ClientSession(base_url=console.base_url)
    session.cookie_jar.update_cookies(await signed_in_cookies(console.app, f"{role}@example.test"))
    return session


def conversation_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-conversation-id="(\d+)"', html)]


@pytest.mark.asyncio
async def test_not_signed_in_goes_to_the_sign_in_page(console_hub: ConsoleHub) -> None:
    async with ClientSession(base_url=console_hub.base_url) as anonymous:
        for path in ("/console", "/console/inbox/page", "/console/inbox/rows?ids=1", "/console/events"):
            response = await anonymous.get(path, allow_redirects=False)
            assert response.status == 303, path
            assert response.headers["Location"].startswith("/console/login"), path


@pytest.mark.asyncio
async def test_a_viewer_reads_the_inbox_and_finds_no_write_control(console_hub: ConsoleHub) -> None:
    hub = console_hub.hub
    await hub.inbound(
        {
            "from": "ada@example.com",
            "name": "Ada <b>Lovelace</b>",
            "text": "<script>alert(1)</script> my walnut clock",
            "id": "p1",
        }
    )
    async with await signed_in(console_hub, "viewer") as viewer:
        response = await viewer.get("/console")
        html = await response.text()
        assert response.status == 200
        assert 'aria-current="page">All open<' in html  # a viewer's default view
        assert len(conversation_ids(html)) == 1
        assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "Ada &lt;b&gt;Lovelace&lt;/b&gt;" in html
        assert 'method="post"' not in html.replace('method="post" action="/console/logout"', "")
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]


@pytest.mark.asyncio
async def test_views_filters_search_and_load_more(console_hub: ConsoleHub) -> None:
    hub = console_hub.hub
    for n in range(PAGE_SIZE + 5):
        await hub.inbound({"from": f"c{n}@example.com", "text": f"message number {n} about parcels", "id": f"m{n}"})
    await hub.inbound({"from": "zed@example.com", "text": "where is my walnut clock", "id": "w1"})
    async with await signed_in(console_hub, "agent") as agent:
        html = await (await agent.get("/console")).text()
        assert 'aria-current="page">Mine<' in html  # an agent's default view
        assert conversation_ids(html) == []
        html = await (await agent.get("/console?view=open")).text()
        first = conversation_ids(html)
        assert len(first) == PAGE_SIZE and first == sorted(first, reverse=True)
        cursor = re.search(r'data-cursor="([^"]+)"', html)
        assert cursor is not None
        more = await agent.get("/console/inbox/page", params={"view": "open", "cursor": cursor.group(1)})
        rest = conversation_ids(await more.text())
        assert "X-Next-Cursor" not in more.headers
        assert len(rest) == 6 and not set(rest) & set(first)
        found = conversation_ids(await (await agent.get("/console", params={"view": "open", "q": "walnut clo"})).text())
        assert len(found) == 1 and found[0] == max(first + rest)
        for hostile in ('"', "AND OR (", "*", "'):*", "NEAR(", "\\"):
            response = await agent.get("/console", params={"view": "open", "q": hostile})
            assert response.status == 200, hostile
        assert conversation_ids(await (await agent.get("/console?view=open&channel=sms")).text()) == []
        assert len(conversation_ids(await (await agent.get("/console?view=open&channel=fake")).text())) == PAGE_SIZE
        # A view is a URL: unknown values are refused with a reason, not ignored.
        for query in ("view=everything", "priority=critical", "status=gone", "cursor=xyz", "team=a%20b"):
            response = await agent.get(f"/console?{query}", headers={"Accept": "text/html"})
            assert response.status == 400, query
        # The live fragment: only the rows the view still shows.
        last = max(first + rest)
        rows = await (await agent.get(f"/console/inbox/rows?view=open&ids={last},{first[-1]},999999")).text()
        assert conversation_ids(rows) == [last, first[-1]]
        rows = await (await agent.get(f"/console/inbox/rows?view=resolved&ids={last}")).text()
        assert conversation_ids(rows) == []
        assert (await agent.get("/console/inbox/rows?ids=1,x")).status == 400
        assert (await agent.get("/console/inbox/rows?ids=" + ",".join(map(str, range(1, 102))))).status == 400
