"""The knowledge base inside the hub: APIs, rate limit, portal mount, votes in the DB.

Uses the deterministic HashingEmbedder; search quality with the real model
is tested in tests/knowledge_base.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from knowledge_base import SAMPLE_DIR, HashingEmbedder, KnowledgeBase
from tests.conftest import Hub, make_settings, start_hub


@pytest_asyncio.fixture
async def kb_hub(database_url: str, tmp_path: Path) -> AsyncIterator[Hub]:
    settings = make_settings(
        database_url, tmp_path, kb_enabled=True, kb_seed_dir=SAMPLE_DIR, kb_search_rate_limit="5/minute"
    )
    kb = KnowledgeBase(data_dir=tmp_path / "kb", embedder=HashingEmbedder())
    hub = await start_hub(settings, knowledge_base=kb)
    try:
        yield hub
    finally:
        await hub.client.close()


@pytest.mark.asyncio
async def test_search_is_public_and_rate_limited(kb_hub: Hub) -> None:
    response = await kb_hub.client.get("/api/v1/kb/search", params={"q": "how do I get a refund", "k": "3"})
    body = await response.json()
    assert response.status == 200, body
    assert 0.0 <= body["confidence"] <= 1.0 and 1 <= len(body["hits"]) <= 3
    assert all(h["url"].startswith("/help/") for h in body["hits"])
    missing = await kb_hub.client.get("/api/v1/kb/search")
    assert missing.status == 400 and "'q' is required" in (await missing.json())["error"]["message"]
    statuses = [(await kb_hub.client.get("/api/v1/kb/search", params={"q": "refund"})).status for _ in range(5)]
    assert statuses.count(429) >= 1
    limited = await kb_hub.client.get("/api/v1/kb/search", params={"q": "refund"})
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1


@pytest.mark.asyncio
async def test_search_corrects_misspelt_words_and_says_how(kb_hub: Hub) -> None:
    response = await kb_hub.client.get("/api/v1/kb/search", params={"q": "how do I get a refnud"})
    body = await response.json()
    assert response.status == 200, body
    assert body["query"] == "how do I get a refnud"
    assert body["corrected"] == "how do I get a refund"
    spelt = await (await kb_hub.client.get("/api/v1/kb/search", params={"q": "how do I get a refund"})).json()
    assert spelt["corrected"] is None
    assert [h["article_id"] for h in spelt["hits"]] == [h["article_id"] for h in body["hits"]]


@pytest.mark.asyncio
async def test_article_crud_through_the_api(kb_hub: Hub) -> None:
    listed = await kb_hub.api("GET", "/api/v1/kb/articles", role="viewer")
    assert len(listed["items"]) >= 20
    article = {
        "title": "Gift wrapping",
        "body_markdown": "## Options\n\nWe wrap gifts in recycled paper for 3 EUR.",
        "tags": ["orders"],
    }
    await kb_hub.api("PUT", "/api/v1/kb/articles/gift-wrapping", role="agent", json=article, expect=403)
    created = await kb_hub.api("PUT", "/api/v1/kb/articles/gift-wrapping", json=article, expect=201)
    assert created["title"] == "Gift wrapping"
    hits = await (await kb_hub.client.get("/api/v1/kb/search", params={"q": "gift wrapping recycled paper"})).json()
    assert hits["hits"][0]["article_id"] == "gift-wrapping"
    replaced = await kb_hub.api(
        "PUT", "/api/v1/kb/articles/gift-wrapping", json={**article, "title": "Gift wrap"}, expect=200
    )
    assert replaced["title"] == "Gift wrap"
    bad = await kb_hub.api("PUT", "/api/v1/kb/articles/Bad%20Id!", json=article, expect=400)
    assert bad["error"]["code"] == "invalid_input"
    await kb_hub.api("DELETE", "/api/v1/kb/articles/gift-wrapping")
    await kb_hub.api("GET", "/api/v1/kb/articles/gift-wrapping", expect=404)
    audit = await kb_hub.api("GET", "/api/v1/audit")
    assert {"kb.article.put", "kb.article.delete"} <= {e["action"] for e in audit["items"]}


@pytest.mark.asyncio
async def test_portal_is_mounted_and_votes_land_in_the_database(kb_hub: Hub) -> None:
    import re

    import sqlalchemy as sa

    from hub.storage.schema import kb_votes

    home = await kb_hub.client.get("/help")
    assert home.status == 200 and "Help" in await home.text()
    articles = await kb_hub.api("GET", "/api/v1/kb/articles", role="viewer")
    article_id = articles["items"][0]["id"]
    page = await kb_hub.client.get(f"/help/articles/{article_id}")
    html = await page.text()
    assert page.status == 200
    form = re.search(r'<form[^>]*action="([^"]*vote[^"]*)"[^>]*>(.*?)</form>', html, re.S)
    assert form, "vote form missing"
    fields = dict(re.findall(r'name="([^"]+)"\s+value="([^"]*)"', form.group(2)))
    fields["helpful"] = "yes"
    voted = await kb_hub.client.post(
        form.group(1), data=fields, allow_redirects=False, headers={"Origin": str(kb_hub.client.make_url(""))}
    )
    assert voted.status in (200, 303), await voted.text()
    rows = await kb_hub.db.read(lambda c: c.execute(sa.select(kb_votes)).all())
    assert [(r.article_id, r.helpful) for r in rows] == [(article_id, True)]


@pytest.mark.asyncio
async def test_topics_name_the_categories_largest_first_and_refuse_bad_collections(kb_hub: Hub) -> None:
    response = await kb_hub.client.get("/api/v1/kb/topics")
    body = await response.json()
    assert response.status == 200, body
    names = [topic["name"] for topic in body["topics"]]
    sizes = [topic["articles"] for topic in body["topics"] if topic["name"]]
    assert names and sizes == sorted(sizes, reverse=True)
    assert sum(topic["articles"] for topic in body["topics"]) == len(
        (await kb_hub.api("GET", "/api/v1/kb/articles"))["items"]
    )
    assert all(len(topic["titles"]) == topic["articles"] for topic in body["topics"])
    bad = await kb_hub.client.get("/api/v1/kb/topics", params={"collection": "../etc"})
    assert bad.status == 400
    assert (await (await kb_hub.client.get("/api/v1/kb/topics", params={"collection": "empty"})).json())["topics"] == []


@pytest.mark.asyncio
async def test_portal_search_shares_the_search_limit(kb_hub: Hub) -> None:
    for _ in range(3):
        assert (await kb_hub.client.get("/api/v1/kb/search", params={"q": "refund"})).status == 200
    for _ in range(2):
        assert (await kb_hub.client.get("/help/search", params={"q": "refund"})).status == 200
    # The sixth search of the minute (limit 5/minute), whichever door it uses.
    limited = await kb_hub.client.get("/help/search", params={"q": "refund"})
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
    assert "Too many requests" in await limited.text()
    assert (await kb_hub.client.get("/api/v1/kb/search", params={"q": "refund"})).status == 429


@pytest.mark.asyncio
async def test_fresh_cookies_do_not_buy_more_votes(kb_hub: Hub) -> None:
    import re

    import sqlalchemy as sa

    from hub.storage.schema import kb_votes

    article_id = (await kb_hub.api("GET", "/api/v1/kb/articles", role="viewer"))["items"][0]["id"]
    statuses = []
    for _ in range(5):
        kb_hub.client.session.cookie_jar.clear()  # a new voter cookie and form token each time
        html = await (await kb_hub.client.get(f"/help/articles/{article_id}")).text()
        form = re.search(r'<form[^>]*action="([^"]*vote[^"]*)"[^>]*>(.*?)</form>', html, re.S)
        assert form
        fields = {**dict(re.findall(r'name="([^"]+)"\s+value="([^"]*)"', form.group(2))), "helpful": "no"}
        voted = await kb_hub.client.post(
            form.group(1), data=fields, allow_redirects=False, headers={"Origin": str(kb_hub.client.make_url(""))}
        )
        statuses.append(voted.status)
        if voted.status == 429:
            assert int(voted.headers["Retry-After"]) >= 1
    assert statuses == [303, 303, 429, 429, 429]
    rows = await kb_hub.db.read(lambda c: c.execute(sa.select(kb_votes)).all())
    assert len(rows) == 2  # one IP: a vote and a change of mind a day, whatever the cookie


@pytest.mark.asyncio
async def test_the_hub_warms_the_help_centres_it_has_at_start_up(database_url: str, tmp_path: Path) -> None:
    from hub.kb.setup import build_knowledge_base

    assert build_knowledge_base(make_settings(database_url, tmp_path, kb_enabled=True)).warm is True
    assert build_knowledge_base(make_settings(database_url, tmp_path, kb_enabled=True, kb_warm=False)).warm is False
    embedder = HashingEmbedder()
    async with KnowledgeBase(data_dir=tmp_path / "kb", embedder=embedder) as written:
        await written.ingest_dir(SAMPLE_DIR)
    kb = KnowledgeBase(data_dir=tmp_path / "kb", embedder=embedder, warm=True)
    hub = await start_hub(make_settings(database_url, tmp_path, kb_enabled=True), knowledge_base=kb)
    try:
        assert "default" in kb._warming  # started by the hub, not by a search
        await kb.warmed()
        index = kb._indexes["default"]
        assert index.texts and set(index.sentences) == set(index.texts)  # every article's, before any search
    finally:
        await hub.client.close()
