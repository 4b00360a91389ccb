"""Caches each instance keeps in memory follow changes made through another
instance (hub/versions.py): two hubs on one database, as two ``hub serve``
behind a load balancer would be.

The knowledge base's two instances share a real Chroma server and the
articles folder, as a multi-instance deployment must; each has its own
keyword (BM25) index in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from knowledge_base import HashingEmbedder, KnowledgeBase
from tests.conftest import Hub, close_hub, make_settings, start_hub, wait_for
from tests.knowledge_base.test_kb_chroma_server import chroma_url  # noqa: F401 (a fixture)


@pytest_asyncio.fixture
async def two_hubs(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Hub, Hub]]:
    hubs = []
    try:
        for name in ("a", "b"):
            settings = make_settings(database_url, tmp_path / name, kb_search_rate_limit="1000/minute")
            hubs.append(await start_hub(settings, knowledge_base=None))
        yield hubs[0], hubs[1]
    finally:
        for running in hubs:
            await close_hub(running)


@pytest_asyncio.fixture
async def two_kb_hubs(database_url: str, tmp_path: Path, chroma_url: str) -> AsyncIterator[tuple[Hub, Hub]]:
    hubs = []
    try:
        for name in ("a", "b"):
            settings = make_settings(database_url, tmp_path / name, kb_enabled=True, kb_search_rate_limit="1000/minute")
            kb = KnowledgeBase(
                data_dir=tmp_path / name / "kb",
                chroma_url=chroma_url,
                articles_dir=tmp_path / "articles",
                embedder=HashingEmbedder(),
            )
            hubs.append(await start_hub(settings, knowledge_base=kb))
        yield hubs[0], hubs[1]
    finally:
        for running in hubs:
            await close_hub(running)


async def top_article(hub: Hub, query: str) -> str | None:
    response = await hub.client.get("/api/v1/kb/search", params={"q": query})
    body = await response.json()
    assert response.status == 200, body
    return body["hits"][0]["article_id"] if body["hits"] else None


RETURNS = {"title": "Returns", "body_markdown": "## How to return\n\nSend the parcel back within 30 days."}
GIFTS = {"title": "Gift wrapping", "body_markdown": "## Options\n\nWe wrap gifts in recycled paper for 3 EUR."}


@pytest.mark.asyncio
async def test_an_article_written_through_one_instance_is_searched_on_the_other(
    two_kb_hubs: tuple[Hub, Hub],
) -> None:
    a, b = two_kb_hubs
    await a.api("PUT", "/api/v1/kb/articles/returns", json=RETURNS, expect=201)
    assert await wait_for(lambda: top_article(b, "return the parcel"), timeout=10) == "returns"
    # B's keyword index is built now; A adds an article and then edits it.
    await a.api("PUT", "/api/v1/kb/articles/gift-wrapping", json=GIFTS, expect=201)
    assert await wait_for(lambda: _is(top_article(b, "gift wrapping recycled paper"), "gift-wrapping"), timeout=10)
    edited = {**GIFTS, "body_markdown": "## Options\n\nWe wrap gifts in linen cloth for 5 EUR."}
    await a.api("PUT", "/api/v1/kb/articles/gift-wrapping", json=edited)
    found = await wait_for(lambda: _search_text(b, "gifts linen cloth", "linen"), timeout=10)
    assert "recycled" not in found
    # And a deletion through B is seen by A.
    await b.api("DELETE", "/api/v1/kb/articles/gift-wrapping")
    assert await wait_for(lambda: _is(top_article(a, "gift wrapping linen"), "returns", None), timeout=10)


async def _is(result: object, *wanted: object) -> bool:
    return await result in wanted  # type: ignore[misc]


async def _search_text(hub: Hub, query: str, needle: str) -> str:
    response = await hub.client.get("/api/v1/kb/search", params={"q": query})
    body = await response.json()
    texts = " ".join(hit["text"] for hit in body["hits"] if hit["article_id"] == "gift-wrapping")
    return texts if needle in texts else ""


@pytest.mark.asyncio
async def test_a_routing_rule_added_through_one_instance_routes_on_the_other(two_hubs: tuple[Hub, Hub]) -> None:
    a, b = two_hubs
    assert (await b.tickets.policy()).rules == ()  # B has the rules cached now
    rule = {"kind": "keyword", "params": {"words": ["chargeback"]}, "priority": "urgent"}
    created = await a.api("POST", "/api/v1/routing/rules", json=rule, expect=201)

    async def b_has(ids: set[int]) -> bool:
        return {r.id for r in (await b.tickets.policy()).rules} == ids

    await wait_for(lambda: b_has({created["id"]}), timeout=5)
    # A message on B with the word is handed off as urgent by the rule.
    received = await b.inbound({"from": "ada", "text": "I will file a chargeback", "id": "m1"})
    message = await b.api("GET", f"/api/v1/messages/{received['received'][0]['message_id']}")

    async def ticket_of(conversation_id: int) -> dict | None:
        items = (await b.api("GET", "/api/v1/tickets"))["items"]
        return next((t for t in items if t["conversation_id"] == conversation_id), None)

    ticket = await wait_for(lambda: ticket_of(message["conversation_id"]), timeout=5)
    assert ticket["priority"] == "urgent" and ticket["source"] == "rule"
    # Deleted through B: A stops applying it.
    await a.tickets.policy()
    await b.api("DELETE", f"/api/v1/routing/rules/{created['id']}")
    await wait_for(lambda: _a_has_none(a), timeout=5)


async def _a_has_none(a: Hub) -> bool:
    return (await a.tickets.policy()).rules == ()


@pytest.mark.asyncio
async def test_an_automation_rule_changed_through_one_instance_runs_on_the_other(two_hubs: tuple[Hub, Hub]) -> None:
    """The rules are matched in every inbound message's transaction from a
    cache: B must pick up A's new rule, and stop running it once A deletes it."""
    a, b = two_hubs
    sent = 0

    async def b_runs_it() -> bool:
        # A new message each look (a new event); did B queue a run of the rule for it?
        nonlocal sent
        sent += 1
        received = await b.inbound({"from": "grace", "text": f"chargeback number {sent}", "id": f"cb-{sent}"})
        key = f"message:{received['received'][0]['message_id']}"
        runs = (await a.api("GET", f"/api/v1/automation/rules/{rule_id}/runs"))["items"]
        return any(run["event_key"] == key for run in runs)

    await b.inbound({"from": "grace", "text": "a chargeback before any rule", "id": "cb-0"})  # B caches no rules
    rule = {"name": "chargebacks", "when": "message_received", "if": {"text_contains": ["chargeback"]}}
    rule_id = (await a.api("POST", "/api/v1/automation/rules", json={**rule, "then": [{"add_tag": "cb"}]}, expect=201))[
        "id"
    ]
    await wait_for(b_runs_it, timeout=10, interval=0.2)
    await a.api("PATCH", f"/api/v1/automation/rules/{rule_id}", json={"enabled": False})
    await wait_for(lambda: _not(b_runs_it()), timeout=10, interval=0.2)


async def _not(result: object) -> bool:
    return not await result  # type: ignore[misc]
