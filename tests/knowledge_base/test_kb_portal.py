"""The help portal over HTTP (fake embedder): pages, escaping, votes, headers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html import unescape
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from knowledge_base import SAMPLE_DIR, KnowledgeBase
from knowledge_base.portal import InMemoryVoteStore, create_portal_app
from knowledge_base.portal.app import VOTER_COOKIE, highlight

from .conftest import write_article
from .test_kb_rendering import assert_inert

PAGE_TAGS = frozenset({"form", "svg"})  # the portal's own search and vote forms, the search icon
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest_asyncio.fixture
async def votes() -> InMemoryVoteStore:
    return InMemoryVoteStore()


async def start_client(kb: KnowledgeBase, votes: InMemoryVoteStore, **options: object) -> TestClient:
    app = web.Application()
    app.add_subapp("/help", create_portal_app(kb, votes, site_name="Northwind <Outfitters>", **options))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest_asyncio.fixture
async def client(kb: KnowledgeBase, votes: InMemoryVoteStore) -> AsyncIterator[TestClient]:
    await kb.ingest_dir(SAMPLE_DIR)
    client = await start_client(kb, votes)
    try:
        yield client
    finally:
        await client.close()


def vote_token(html: str) -> str:
    match = re.search(r'name="token" value="([0-9a-f]{64})"', html)
    assert match, "no vote form on the page"
    return match.group(1)


@pytest.mark.asyncio
async def test_home_lists_categories_and_articles(client: TestClient) -> None:
    for path in ("/help", "/help/"):
        response = await client.get(path)
        assert response.status == 200
        html = await response.text()
        assert "How can we help?" in html
        assert 'action="/help/search"' in html
        assert "Northwind &lt;Outfitters&gt;" in html  # the site name is escaped too
        for category in ("Orders &amp; Shipping", "Account &amp; Security", "Privacy &amp; Data"):
            assert category in html
        assert 'href="/help/articles/refunds"' in html


@pytest.mark.asyncio
async def test_category_page(client: TestClient) -> None:
    html = await (await client.get("/help/categories/returns-refunds")).text()
    assert "Returns &amp; Refunds" in html
    assert 'href="/help/articles/returns-and-exchanges"' in html
    assert (await client.get("/help/categories/nope")).status == 404


@pytest.mark.asyncio
async def test_search_page_lists_hits_with_links_to_sections(client: TestClient, kb: KnowledgeBase) -> None:
    response = await client.get("/help/search", params={"q": "reset my password"})
    assert response.status == 200
    html = await response.text()
    expected = (await kb.search("reset my password", k=10)).hits[0]
    assert f'href="{expected.url}"' in html
    assert expected.url.startswith("/help/articles/reset-your-password#")
    assert "<mark>password</mark>" in html.lower()


@pytest.mark.asyncio
async def test_search_page_corrects_a_misspelt_query_and_says_so(client: TestClient, kb: KnowledgeBase) -> None:
    html = await (await client.get("/help/search", params={"q": "reset my pasword"})).text()
    assert "Showing results for <q>reset my password</q>" in html
    expected = (await kb.search("reset my password", k=10)).hits[0]
    assert f'href="{expected.url}"' in html
    # The snippets mark the words searched, not the ones typed.
    assert "<mark>password</mark>" in html.lower()
    plain = await (await client.get("/help/search", params={"q": "reset my password"})).text()
    assert "Showing results for" not in plain


@pytest.mark.asyncio
async def test_search_page_without_query_shows_the_form(client: TestClient) -> None:
    html = await (await client.get("/help/search")).text()
    assert "Search the help centre" in html and '<ol class="results">' not in html


@pytest.mark.asyncio
async def test_search_page_rejects_overlong_queries(client: TestClient) -> None:
    response = await client.get("/help/search", params={"q": "refund " * 300})
    assert response.status == 400
    assert "longer than" in await response.text()


@pytest.mark.asyncio
async def test_query_cannot_inject_markup(client: TestClient) -> None:
    response = await client.get("/help/search", params={"q": XSS + " refund"})
    html = await response.text()
    assert response.status == 200
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    main = html.split('<main id="main">')[1].split("</main>")[0]
    assert_inert(main, allow=PAGE_TAGS)


def test_highlight_escapes_before_marking() -> None:
    marked = highlight("Use <b>refunds</b> & returns", "<b> refund")
    assert str(marked) == "Use &lt;b&gt;<mark>refunds</mark>&lt;/b&gt; &amp; returns"


@pytest.mark.asyncio
async def test_article_content_is_sanitised(kb: KnowledgeBase, votes: InMemoryVoteStore, tmp_path: Path) -> None:
    write_article(
        tmp_path / "src",
        "evil",
        'Evil <img src=x onerror="alert(1)"> title',
        f"Hello\n\n{XSS}\n\n[click](javascript:alert(1))\n\n<a href='javascript:alert(2)'>raw</a>\n\n## Safe heading\n\nText",
        tags=['<script>alert("tag")</script>'],
        category="<b onmouseover=alert(1)>Cat</b>",
    )
    await kb.ingest_dir(tmp_path / "src")
    client = await start_client(kb, votes)
    try:
        for path in ("/help/articles/evil", "/help", "/help/search?q=alert+script+click"):
            response = await client.get(path)
            assert response.status == 200, path
            html = await response.text()
            assert "<script>alert" not in html, path
            assert_inert(html.split('<main id="main">')[1].split("</main>")[0], allow=PAGE_TAGS)
        article_html = await (await client.get("/help/articles/evil")).text()
        assert '<h2 id="safe-heading">Safe heading</h2>' in article_html
        assert "Evil &lt;img" in article_html
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_article_page_has_anchors_toc_and_feedback_form(client: TestClient, kb: KnowledgeBase) -> None:
    hit = (await kb.search("how long does a refund take", k=1)).hits[0]
    response = await client.get(hit.url.split("#")[0])
    assert response.status == 200
    html = await response.text()
    if hit.anchor:
        assert f'id="{hit.anchor}"' in html
        assert f'href="#{hit.anchor}"' in html  # table of contents
    assert 'method="post"' in html and f'action="/help/articles/{hit.article_id}/vote"' in html
    assert VOTER_COOKIE in response.cookies
    cookie = response.cookies[VOTER_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/help"


@pytest.mark.asyncio
async def test_one_vote_per_voter_and_article(client: TestClient, votes: InMemoryVoteStore) -> None:
    page = await client.get("/help/articles/refunds")
    token = vote_token(await page.text())

    first = await client.post(
        "/help/articles/refunds/vote", data={"helpful": "yes", "token": token}, allow_redirects=False
    )
    assert first.status == 303
    assert first.headers["Location"] == "/help/articles/refunds?feedback=thanks#feedback"
    assert await votes.tally("default", "refunds") == (1, 0)

    again = await client.post(
        "/help/articles/refunds/vote", data={"helpful": "no", "token": token}, allow_redirects=False
    )
    assert again.status == 303
    assert await votes.tally("default", "refunds") == (0, 1)  # replaced, not added

    thanks = await (await client.get("/help/articles/refunds?feedback=thanks")).text()
    assert "Thanks for your feedback!" in thanks
    assert "0 out of 1 found this helpful" in thanks


@pytest.mark.asyncio
async def test_votes_need_cookie_token_and_same_origin(client: TestClient, votes: InMemoryVoteStore) -> None:
    token = vote_token(await (await client.get("/help/articles/refunds")).text())
    url = "/help/articles/refunds/vote"

    forged = await client.post(url, data={"helpful": "yes", "token": "0" * 64}, allow_redirects=False)
    assert forged.status == 403
    other_article = await client.post(
        "/help/articles/contact-us/vote", data={"helpful": "yes", "token": token}, allow_redirects=False
    )
    assert other_article.status == 403
    cross_site = await client.post(
        url, data={"helpful": "yes", "token": token}, headers={"Origin": "https://evil.example"}, allow_redirects=False
    )
    assert cross_site.status == 403
    bad_value = await client.post(url, data={"helpful": "maybe", "token": token}, allow_redirects=False)
    assert bad_value.status == 400
    client.session.cookie_jar.clear()
    no_cookie = await client.post(url, data={"helpful": "yes", "token": token}, allow_redirects=False)
    assert no_cookie.status == 400
    assert await votes.tally("default", "refunds") == (0, 0)

    same_site = await client.get("/help/articles/refunds")
    token = vote_token(await same_site.text())
    origin = f"http://{client.host}:{client.port}"
    accepted = await client.post(
        url, data={"helpful": "yes", "token": token}, headers={"Origin": origin}, allow_redirects=False
    )
    assert accepted.status == 303
    assert await votes.tally("default", "refunds") == (1, 0)


@pytest.mark.asyncio
async def test_unknown_pages_are_404(client: TestClient) -> None:
    for path in (
        "/help/articles/does-not-exist",
        "/help/articles/Bad%20Id",
        "/help/no-such-collection",
        "/help/no-such-collection/search?q=x",
        "/help/default/articles/refunds",  # the default collection lives at the root
        "/help/articles/refunds/extra",
    ):
        response = await client.get(path)
        assert response.status == 404, path
        assert "Page not found" in await response.text()
    assert (await client.post("/help/articles/does-not-exist/vote", data={"helpful": "yes"})).status == 404


@pytest.mark.asyncio
async def test_other_collections_have_their_own_pages(client: TestClient, kb: KnowledgeBase) -> None:
    await kb.upsert_article(
        "acme-pro", "sso", title="Single sign-on", body_markdown="## SAML setup\n\nConfigure SAML.", category="Admin"
    )
    home = await (await client.get("/help/acme-pro")).text()
    assert 'href="/help/acme-pro/articles/sso"' in home and 'action="/help/acme-pro/search"' in home
    results = await (await client.get("/help/acme-pro/search", params={"q": "saml"})).text()
    assert 'href="/help/acme-pro/articles/sso#saml-setup"' in results
    article = await client.get("/help/acme-pro/articles/sso")
    assert article.status == 200
    token = vote_token(await article.text())
    voted = await client.post(
        "/help/acme-pro/articles/sso/vote", data={"helpful": "yes", "token": token}, allow_redirects=False
    )
    assert voted.headers["Location"] == "/help/acme-pro/articles/sso?feedback=thanks#feedback"
    assert (await client.get("/help/acme-pro/articles/refunds")).status == 404


@pytest.mark.asyncio
async def test_security_headers_and_static_files(client: TestClient) -> None:
    response = await client.get("/help")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    html = await response.text()
    css = re.search(r'href="(/help/static/portal\.css\?v=\w+)"', html)
    assert css
    static = await client.get(css.group(1))
    assert static.status == 200 and "--brand" in await static.text()
    assert "<script>" not in html  # no inline scripts anywhere


@pytest.mark.asyncio
async def test_chat_button_and_widget_flag(kb: KnowledgeBase, votes: InMemoryVoteStore) -> None:
    await kb.ingest_dir(SAMPLE_DIR)
    with_widget = await start_client(kb, votes)
    without_widget = await start_client(kb, votes, widget_enabled=False)
    try:
        html = await (await with_widget.get("/help")).text()
        assert '<script src="/widget.js" data-hub="" async></script>' in html
        assert re.search(r'<a class="button button-primary" href="/demo" data-chat-open>Chat with us</a>', html)
        plain = await (await without_widget.get("/help/articles/refunds")).text()
        assert "/widget.js" not in plain
        assert 'href="/demo" data-chat-open' in plain
        script = await (await with_widget.get("/help/static/portal.js")).text()
        assert "window.ServicehubWidget.open()" in script
    finally:
        await with_widget.close()
        await without_widget.close()


@pytest.mark.asyncio
async def test_unrelated_queries_show_no_results_but_offer_help(
    sample_kb: KnowledgeBase, votes: InMemoryVoteStore
) -> None:
    client = await start_client(sample_kb, votes)
    try:
        html = unescape(await (await client.get("/help/search", params={"q": "who painted the mona lisa"})).text())
        assert "No articles matched your search" in html
        assert '<ol class="results">' not in html
        assert "data-chat-open>Chat with us</a>" in html
    finally:
        await client.close()
