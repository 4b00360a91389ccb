"""The self-service help portal: server-rendered pages over a KnowledgeBase.

Mount it at ``/help`` (``app.add_subapp("/help", create_portal_app(...))``);
its links follow :mod:`knowledge_base.urls`. Pages work without JavaScript.
The only script of its own, ``static/portal.js``, makes the "Chat with us"
button open the hub's chat widget when ``/widget.js`` has loaded; without it
the button is a plain link to ``chat_url`` (``/demo``).

Safety: templates autoescape everything; article bodies are rendered with
raw HTML off and then sanitised by nh3 (see :mod:`knowledge_base.rendering`);
search snippets are escaped before query terms are marked. Every response
carries a Content-Security-Policy without inline scripts. Votes need a voter
cookie and a form token bound to it (HMAC), and a cross-origin ``Origin`` or
``Referer`` is refused.

Why this module runs past ~400 lines: the app factory, its two middlewares
(security headers, error pages) and the five page handlers share one ``Portal``
context and one set of safety rules; the rendering itself lives in
:mod:`knowledge_base.rendering` and the templates.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from knowledge_base.errors import InvalidInput, KnowledgeBaseError
from knowledge_base.keyword import STOPWORDS
from knowledge_base.models import Article
from knowledge_base.portal.searches import TOKEN_PARAM, PortalClick, PortalSearch, SearchSink, new_token, valid_token
from knowledge_base.portal.votes import VoteStore
from knowledge_base.rendering import RenderedMarkdown, render_markdown, slugify
from knowledge_base.service import KnowledgeBase
from knowledge_base.urls import (
    DEFAULT_COLLECTION,
    PORTAL_PREFIX,
    article_url,
    category_url,
    collection_root,
    search_url,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"
VOTER_COOKIE = "sh_voter"
VOTER_COOKIE_MAX_AGE = 365 * 24 * 3600
SEARCH_RESULTS = 10
HOME_ARTICLES_PER_CATEGORY = 6
SNIPPET_CHARS = 260
# Hits the semantic ranker scored below this, and that the keyword ranker did
# not find, are noise on a results page (the bot has its own threshold).
MIN_SIMILARITY = 0.25
GENERAL_CATEGORY = "General"
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: https:",
        "connect-src 'self'",
        "frame-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    ]
)


@dataclass(frozen=True, slots=True)
class Category:
    name: str
    slug: str
    articles: list[Article]


@dataclass(frozen=True, slots=True)
class Links:
    """URLs of one collection's pages, for templates."""

    collection: str

    @property
    def home(self) -> str:
        return collection_root(self.collection)

    def search(self, query: str = "") -> str:
        return search_url(self.collection, query) if query else f"{collection_root(self.collection)}/search"

    def article(self, article_id: str, anchor: str = "") -> str:
        return article_url(self.collection, article_id, anchor)

    def vote(self, article_id: str) -> str:
        return f"{article_url(self.collection, article_id)}/vote"

    def category(self, slug: str) -> str:
        return category_url(self.collection, slug)


# What a host puts in front of the portal's public actions: ``(request,
# action, scope)`` with action "search" or "vote" (scope: the article) gives
# None to go on, or the seconds to wait before trying again (a 429 page).
Guard = Callable[[web.Request, str, str], Awaitable[float | None]]


class Portal:
    """The portal's state: the knowledge base, the vote store, templates, the form key."""

    def __init__(
        self,
        kb: KnowledgeBase,
        votes: VoteStore,
        *,
        site_name: str,
        widget_enabled: bool,
        secret: bytes,
        chat_url: str,
        guard: Guard | None = None,
        searches: SearchSink | None = None,
    ) -> None:
        self.kb = kb
        self.votes = votes
        self.guard = guard
        self.searches = searches
        self.site_name = site_name
        self.widget_enabled = widget_enabled
        self.chat_url = chat_url
        self._secret = secret
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            autoescape=select_autoescape(["html"], default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.static_version = _static_version()

    def render(self, request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
        context.setdefault("query", "")
        body = self.env.get_template(template).render(
            site_name=self.site_name,
            widget_enabled=self.widget_enabled,
            chat_url=self.chat_url,
            static=lambda name: f"{PORTAL_PREFIX}/static/{name}?v={self.static_version}",
            **context,
        )
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

    def form_token(self, voter: str, collection: str, article_id: str) -> str:
        message = f"{voter}\x1f{collection}\x1f{article_id}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def check_token(self, token: str, voter: str, collection: str, article_id: str) -> bool:
        return hmac.compare_digest(token.encode(), self.form_token(voter, collection, article_id).encode())


PORTAL_KEY = web.AppKey("knowledge_base_portal", Portal)


def create_portal_app(
    kb: KnowledgeBase,
    votes: VoteStore,
    *,
    site_name: str,
    widget_enabled: bool = True,
    secret: bytes | None = None,
    chat_url: str = "/demo",
    guard: Guard | None = None,
    searches: SearchSink | None = None,
) -> web.Application:
    """The help portal as an aiohttp sub-application, to mount at ``/help``.

    ``secret`` signs the vote forms' tokens; by default a random one is made,
    so forms rendered before a restart must be reloaded to vote. ``searches``
    hears of every search and of the article opened from its results
    (:mod:`knowledge_base.portal.searches`).
    """
    app = web.Application(middlewares=[_security_headers, _error_pages])
    app[PORTAL_KEY] = Portal(
        kb,
        votes,
        site_name=site_name,
        widget_enabled=widget_enabled,
        secret=secret or secrets.token_bytes(32),
        chat_url=chat_url,
        guard=guard,
        searches=searches,
    )
    app.router.add_static("/static", STATIC_DIR, name="static")
    for prefix, resolve in (("", _default_collection), ("/{collection}", _named_collection)):
        app.router.add_get(prefix or "", _handler(home, resolve), allow_head=True)
        app.router.add_get(f"{prefix}/", _handler(home, resolve), allow_head=True)
        app.router.add_get(f"{prefix}/search", _handler(search, resolve))
        app.router.add_get(f"{prefix}/categories/{{category}}", _handler(category, resolve))
        app.router.add_get(f"{prefix}/articles/{{article_id}}", _handler(article, resolve))
        app.router.add_post(f"{prefix}/articles/{{article_id}}/vote", _handler(vote, resolve))
    return app


# -- middleware ---------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    _set_security_headers(response)
    return response


def _set_security_headers(response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")


@web.middleware
async def _error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    portal = request.app[PORTAL_KEY]
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _not_found(request, portal)
    except KnowledgeBaseError as err:
        if isinstance(err, InvalidInput):
            return _not_found(request, portal)
        log.exception("help portal: knowledge base error on %s", request.path)
        return portal.render(
            request,
            "message.html",
            status=503 if err.retryable else 500,
            links=Links(DEFAULT_COLLECTION),
            title="Something went wrong",
            message="The help centre is having trouble right now. Please try again in a moment.",
        )


def _not_found(request: web.Request, portal: Portal) -> web.Response:
    return portal.render(
        request,
        "message.html",
        status=404,
        links=Links(DEFAULT_COLLECTION),
        title="Page not found",
        message="We couldn't find that page. Try searching the help centre instead.",
    )


# -- routing helpers ----------------------------------------------------------------

Resolver = Callable[[web.Request], Awaitable[str]]
PageHandler = Callable[[web.Request, Portal, str], Awaitable[web.StreamResponse]]


async def _default_collection(request: web.Request) -> str:
    return DEFAULT_COLLECTION


async def _named_collection(request: web.Request) -> str:
    collection = request.match_info["collection"]
    portal = request.app[PORTAL_KEY]
    if collection == DEFAULT_COLLECTION or collection not in await portal.kb.list_collections():
        # The default collection lives at the root; unknown ones do not exist.
        raise web.HTTPNotFound()
    return collection


def _handler(page: PageHandler, resolve: Resolver) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        collection = await resolve(request)
        return await page(request, request.app[PORTAL_KEY], collection)

    handle.__name__ = page.__name__
    return handle


def category_of(article: Article) -> str:
    if article.category:
        return article.category
    if article.tags:
        return article.tags[0][:1].upper() + article.tags[0][1:]
    return GENERAL_CATEGORY


def _categories(articles: list[Article]) -> list[Category]:
    grouped: dict[str, list[Article]] = defaultdict(list)
    for item in articles:
        grouped[category_of(item)].append(item)
    return [
        Category(name=name, slug=slugify(name), articles=sorted(items, key=lambda a: a.title.casefold()))
        for name, items in sorted(grouped.items(), key=lambda pair: pair[0].casefold())
    ]


@lru_cache(maxsize=512)
def _render_body(body_markdown: str) -> RenderedMarkdown:
    return render_markdown(body_markdown)


def _static_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


_TERM = re.compile(r"\w+")


def highlight(text: str, query: str, *, limit: int = SNIPPET_CHARS) -> Markup:
    """An escaped snippet of ``text`` with the query's words wrapped in <mark>."""
    text = " ".join(text.split())
    if len(text) > limit:
        cut = text.rfind(" ", 0, limit)
        text = text[: cut if cut > limit // 2 else limit].rstrip(" ,.;:-") + "…"
    terms = sorted(
        {term for term in _TERM.findall(query.lower()) if len(term) >= 3 and term not in STOPWORDS},
        key=len,
        reverse=True,
    )
    if not terms:
        return escape(text)
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(term) for term in terms) + r")\w*", re.IGNORECASE)
    parts: list[Markup] = []
    last = 0
    for match in pattern.finditer(text):
        parts.append(escape(text[last : match.start()]))
        parts.append(Markup("<mark>%s</mark>") % match.group(0))
        last = match.end()
    parts.append(escape(text[last:]))
    return Markup("").join(parts)


def _voter_key(request: web.Request) -> str | None:
    value = request.cookies.get(VOTER_COOKIE, "")
    return value if re.fullmatch(r"[A-Za-z0-9_-]{16,64}", value) else None


def _same_origin(request: web.Request) -> bool:
    """False when the browser says the form was posted from another site."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source or source == "null":
        return source is None
    hosts = {request.host}
    forwarded = request.headers.get("X-Forwarded-Host")
    if forwarded:
        hosts.add(forwarded.split(",")[0].strip())
    return urlsplit(source).netloc in hosts


# -- pages --------------------------------------------------------------------------


async def home(request: web.Request, portal: Portal, collection: str) -> web.StreamResponse:
    articles = await portal.kb.list_articles(collection)
    return portal.render(
        request,
        "home.html",
        links=Links(collection),
        collection=collection,
        categories=_categories(articles),
        article_count=len(articles),
        per_category=HOME_ARTICLES_PER_CATEGORY,
        query="",
    )


async def category(request: web.Request, portal: Portal, collection: str) -> web.StreamResponse:
    slug = request.match_info["category"]
    for group in _categories(await portal.kb.list_articles(collection)):
        if group.slug == slug:
            return portal.render(request, "category.html", links=Links(collection), category=group, query="")
    raise web.HTTPNotFound()


async def search(request: web.Request, portal: Portal, collection: str) -> web.StreamResponse:
    query = " ".join(request.query.get("q", "").split())
    links = Links(collection)
    if not query:
        return portal.render(
            request, "search.html", links=links, query="", hits=[], result=None, error=None, snippets=[], urls=[]
        )
    if (wait := await _guarded(request, portal, "search", collection)) is not None:
        return wait
    try:
        result = await portal.kb.search(query, k=SEARCH_RESULTS, collection=collection)
    except InvalidInput as err:
        return portal.render(
            request, "search.html", status=400, links=links, query=query[:200], hits=[], result=None,
            error=err.message, snippets=[], urls=[],
        )  # fmt: skip
    hits = [hit for hit in result.hits if hit.similarity is None or hit.similarity >= MIN_SIMILARITY]
    snippets = [highlight(hit.text, result.corrected or query) for hit in hits]
    urls = [hit.url for hit in hits]
    if portal.searches is not None:
        token = new_token()
        best = hits[0].article_id if hits else None
        portal.searches.searched(PortalSearch(token, collection, query, result.confidence, best, len(hits)))
        urls = [_with_token(url, token) for url in urls]
    return portal.render(
        request, "search.html", links=links, query=query, hits=hits, result=result, error=None, snippets=snippets,
        urls=urls,
    )  # fmt: skip


def _with_token(url: str, token: str) -> str:
    path, hash_, anchor = url.partition("#")
    return f"{path}{'&' if '?' in path else '?'}{TOKEN_PARAM}={token}{hash_}{anchor}"


async def article(request: web.Request, portal: Portal, collection: str) -> web.StreamResponse:
    article_id = request.match_info["article_id"]
    item = await portal.kb.get_article(collection, article_id)
    if item is None:
        raise web.HTTPNotFound()
    token = request.query.get(TOKEN_PARAM)
    if portal.searches is not None and valid_token(token):
        portal.searches.clicked(PortalClick(str(token), collection, article_id))
    voter = _voter_key(request)
    new_voter = voter is None
    if voter is None:
        voter = secrets.token_urlsafe(24)
    rendered = _render_body(item.body_markdown)
    yes, no = await portal.votes.tally(collection, article_id)
    name = category_of(item)
    related = [
        other
        for other in await portal.kb.list_articles(collection)
        if other.id != item.id and category_of(other) == name
    ][:5]
    response = portal.render(
        request,
        "article.html",
        links=Links(collection),
        article=item,
        body=Markup(rendered.html),
        toc=[heading for heading in rendered.headings if heading.level == 2],
        category=Category(name=name, slug=slugify(name), articles=[]),
        related=related,
        votes_yes=yes,
        votes_total=yes + no,
        token=portal.form_token(voter, collection, article_id),
        thanks=request.query.get("feedback") == "thanks",
        query="",
    )
    if new_voter:
        response.set_cookie(
            VOTER_COOKIE,
            voter,
            max_age=VOTER_COOKIE_MAX_AGE,
            path=PORTAL_PREFIX,
            httponly=True,
            samesite="Lax",
            secure=request.secure,
        )
    return response


async def vote(request: web.Request, portal: Portal, collection: str) -> web.StreamResponse:
    article_id = request.match_info["article_id"]
    if await portal.kb.get_article(collection, article_id) is None:
        raise web.HTTPNotFound()
    if not _same_origin(request):
        return _refuse(request, portal, collection, "This form was sent from another site.")
    form = await request.post()
    voter = _voter_key(request)
    if voter is None:
        return _refuse(request, portal, collection, "Please allow cookies for this site to send feedback.", 400)
    token = str(form.get("token", ""))
    if not portal.check_token(token, voter, collection, article_id):
        return _refuse(request, portal, collection, "This form has expired. Please reload the page and try again.")
    helpful = form.get("helpful")
    if helpful not in ("yes", "no"):
        return _refuse(request, portal, collection, "Please choose yes or no.", 400)
    if (wait := await _guarded(request, portal, "vote", f"{collection}/{article_id}")) is not None:
        return wait
    await portal.votes.record(collection, article_id, helpful == "yes", voter)
    raise web.HTTPSeeOther(f"{Links(collection).article(article_id)}?feedback=thanks#feedback")


async def _guarded(request: web.Request, portal: Portal, action: str, scope: str) -> web.Response | None:
    """The host's limit on a public action: None to go on, else a 429 page with Retry-After."""
    if portal.guard is None:
        return None
    retry_after = await portal.guard(request, action, scope)
    if retry_after is None:
        return None
    response = portal.render(
        request,
        "message.html",
        status=429,
        links=Links(DEFAULT_COLLECTION),
        title="Too many requests",
        message="You have sent a lot of requests in a short time. Please wait a moment and try again.",
    )
    response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


def _refuse(request: web.Request, portal: Portal, collection: str, message: str, status: int = 403) -> web.Response:
    return portal.render(
        request,
        "message.html",
        status=status,
        links=Links(collection),
        title="We couldn't record your feedback",
        message=message,
    )
