"""The knowledge base inside the hub: search and article APIs, the help
portal at /help, helpfulness votes in the hub's database, and the bot's
KB fallback. The knowledge_base package itself knows nothing of the hub.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.engine import Connection

from hub import keys
from hub.api.base import audit_entry, field, int_param, json_body, public, requires
from hub.errors import InvalidInput, NotFound, RateLimited, Unavailable
from hub.events import utcnow
from hub.kb.searchlog import LazySearchSink
from hub.models import Role
from hub.ratelimit import RateLimiter, client_ip
from hub.storage import Database, insert_ignore
from hub.storage.schema import kb_votes
from hub.versions import VersionWatch, kb_collection
from knowledge_base import InvalidInput as KBInvalidInput
from knowledge_base import KnowledgeBase, KnowledgeBaseError, SearchResult
from knowledge_base.portal.app import create_portal_app

log = logging.getLogger(__name__)

# The key lives in hub.keys; this name stays for the bot's setup, which imports it from here.
KNOWLEDGE_BASE = keys.KNOWLEDGE_BASE

routes = web.RouteTableDef()


class DatabaseVoteStore:
    """The portal's VoteStore on the hub's database: one vote per voter and article."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, collection: str, article_id: str, helpful: bool, voter_key: str) -> None:
        def upsert(conn: Connection) -> None:
            values = {
                "collection": collection,
                "article_id": article_id,
                "voter_key": voter_key[:64],
                "helpful": helpful,
                "created_at": utcnow(),
            }
            stmt = insert_ignore(conn, kb_votes).values(**values)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["collection", "article_id", "voter_key"],
                    set_={"helpful": helpful, "created_at": values["created_at"]},
                )
            )

        await self.db.write(upsert)

    async def tally(self, collection: str, article_id: str) -> tuple[int, int]:
        def count(conn: Connection) -> tuple[int, int]:
            found = conn.execute(
                sa.select(kb_votes.c.helpful, sa.func.count())
                .where(kb_votes.c.collection == collection, kb_votes.c.article_id == article_id)
                .group_by(kb_votes.c.helpful)
            )
            by_vote = {bool(helpful): n for helpful, n in found}
            return by_vote.get(True, 0), by_vote.get(False, 0)

        return await self.db.read(count)


def _tell_bot(app: web.Application) -> None:
    """The bot's NLU follows the knowledge base (hub.bot.model): have it look now."""
    watcher = app.get(keys.BOT_MODEL)
    if watcher is not None:
        watcher.changed()


def _kb(request: web.Request) -> KnowledgeBase:
    kb = request.app.get(keys.KNOWLEDGE_BASE)
    if kb is None:
        raise Unavailable("the knowledge base is not enabled (HUB_KB_ENABLED=false)")
    return kb


async def _call(coro: Any) -> Any:
    try:
        return await coro
    except KBInvalidInput as err:
        raise InvalidInput(str(err)) from err
    except KnowledgeBaseError as err:
        raise Unavailable(f"knowledge base error: {err}") from err


@routes.get("/api/v1/kb/search")
@public
async def search(request: web.Request) -> web.Response:
    """Public and rate-limited: it only ever returns published article text."""
    settings = request.app[keys.SETTINGS]
    await request.app[keys.RATE_LIMITER].check(settings.kb_search_rate_limit, "kb-search", client_ip(request))
    query = request.query.get("q", "")
    if not query.strip():
        raise InvalidInput("query parameter 'q' is required")
    k = int_param(request, "k", default=5, hi=50)
    collection = request.query.get("collection", "default")
    excerpt = request.query.get("excerpt", "0").lower()
    if excerpt not in ("0", "1", "true", "false"):
        raise InvalidInput("query parameter 'excerpt' must be 1, true, 0 or false")
    result: SearchResult = await _call(
        _kb(request).search(query, k=k, collection=collection, excerpt=excerpt in ("1", "true"))
    )
    return web.json_response(result.to_dict())


@routes.get("/api/v1/kb/topics")
@public
async def topics(request: web.Request) -> web.Response:
    """What the knowledge base covers, in its own words: categories, largest first, with their titles.

    The bot names them when it has no good answer ("I can help with ...").
    Public like search: only published titles and categories.
    """
    settings = request.app[keys.SETTINGS]
    await request.app[keys.RATE_LIMITER].check(settings.kb_search_rate_limit, "kb-search", client_ip(request))
    collection = request.query.get("collection", "default")
    articles = await _call(_kb(request).list_articles(collection))
    groups: dict[str, list[str]] = {}
    for article in sorted(articles, key=lambda a: a.title.casefold()):
        groups.setdefault(article.category or "", []).append(article.title)
    ordered = sorted(groups.items(), key=lambda item: (item[0] == "", -len(item[1]), item[0].casefold()))
    return web.json_response(
        {
            "collection": collection,
            "topics": [{"name": name, "articles": len(titles), "titles": titles} for name, titles in ordered],
        }
    )


@routes.get("/api/v1/kb/articles")
@requires(Role.VIEWER)
async def list_articles(request: web.Request) -> web.Response:
    collection = request.query.get("collection", "default")
    articles = await _call(_kb(request).list_articles(collection))
    return web.json_response({"items": [a.to_dict(include_body=False) for a in articles]})


@routes.get("/api/v1/kb/articles/{article_id}")
@requires(Role.VIEWER)
async def get_article(request: web.Request) -> web.Response:
    collection = request.query.get("collection", "default")
    article = await _call(_kb(request).get_article(collection, request.match_info["article_id"]))
    if article is None:
        raise NotFound(f"article {request.match_info['article_id']!r} does not exist")
    return web.json_response(article.to_dict())


@routes.put("/api/v1/kb/articles/{article_id}")
@requires(Role.ADMIN)
async def put_article(request: web.Request) -> web.Response:
    """Create or replace an article: written as Markdown and re-indexed at once."""
    body = await json_body(request)
    collection = field(body, "collection", str, required=False) or request.query.get("collection", "default")
    tags = field(body, "tags", list, required=False) or []
    if not all(isinstance(t, str) for t in tags):
        raise InvalidInput("'tags' must be a list of strings")
    questions = field(body, "questions", list, required=False) or []
    if not all(isinstance(q, str) for q in questions):
        raise InvalidInput("'questions' must be a list of strings")
    article_id = request.match_info["article_id"]
    existed = await _call(_kb(request).get_article(collection, article_id)) is not None
    article = await _call(
        _kb(request).upsert_article(
            collection,
            article_id,
            title=field(body, "title", str),
            body_markdown=field(body, "body_markdown", str),
            tags=tuple(tags),
            locale=field(body, "locale", str, required=False),
            product=field(body, "product", str, required=False),
            category=field(body, "category", str, required=False),
            questions=tuple(questions),
        )
    )
    _tell_bot(request.app)
    # The article lives in the knowledge base, not in the hub's tables: its
    # audit row is the only row this action writes.
    await request.app[keys.SERVICE].audit(
        audit_entry(request, "kb.article.put", "article", f"{collection}/{article_id}")
    )
    return web.json_response(article.to_dict(), status=200 if existed else 201)


@routes.delete("/api/v1/kb/articles/{article_id}")
@requires(Role.ADMIN)
async def delete_article(request: web.Request) -> web.Response:
    collection = request.query.get("collection", "default")
    article_id = request.match_info["article_id"]
    if not await _call(_kb(request).delete_article(collection, article_id)):
        raise NotFound(f"article {article_id!r} does not exist")
    _tell_bot(request.app)
    await request.app[keys.SERVICE].audit(
        audit_entry(request, "kb.article.delete", "article", f"{collection}/{article_id}")
    )
    return web.json_response({"deleted": article_id})


def setup_knowledge_base(app: web.Application, kb: KnowledgeBase | None) -> None:
    """Routes always exist (503 when disabled); the portal only with a KB."""
    settings = app[keys.SETTINGS]
    app[keys.RATE_LIMITER] = RateLimiter(settings.redis_url)
    app.add_routes(routes)
    if kb is None:
        return
    app[keys.KNOWLEDGE_BASE] = kb
    votes = _LazyVotes(app)
    portal = create_portal_app(
        kb,
        votes,
        site_name=settings.site_name,
        widget_enabled="webchat" in settings.channel_names,
        secret=settings.portal_secret.get_secret_value().encode() if settings.portal_secret else None,
        guard=_portal_guard(app),
        searches=LazySearchSink(app),
    )
    app.add_subapp("/help", portal)
    shared = _SharedKeywordIndex(app, kb)
    kb.before_search, kb.after_write = shared.before_search, shared.after_write
    app.cleanup_ctx.append(_kb_ctx)


class _SharedKeywordIndex:
    """Each collection's keyword index is in this process' memory; an article
    written through another instance bumps the collection's shared version
    (``hub.versions``), and a search here first looks at it (once a second at
    most) and reloads the index when it moved. The database opens after the
    knowledge base starts: the seed ingest at start-up has no one to tell yet."""

    def __init__(self, app: web.Application, kb: KnowledgeBase) -> None:
        self._app = app
        self._kb = kb
        self._watch: VersionWatch | None = None

    def _watching(self) -> VersionWatch | None:
        if self._watch is None and keys.DATABASE in self._app:
            self._watch = VersionWatch(self._app[keys.DATABASE], self._changed)
        return self._watch

    def _changed(self, name: str) -> None:
        collection = name.removeprefix(kb_collection(""))
        log.info("knowledge base %r changed on another instance: reloading its keyword index", collection)
        self._kb.forget_keyword_index(collection)

    async def before_search(self, collection: str) -> None:
        watch = self._watching()
        if watch is not None:
            await watch.check(kb_collection(collection))

    async def after_write(self, collection: str) -> None:
        watch = self._watching()
        if watch is not None:
            await watch.wrote(kb_collection(collection))


# A voter (an IP) may vote on an article, then change their mind once, a day:
# a vote form's token is bound to a cookie anyone can mint, the IP is not.
VOTES_PER_ARTICLE = "2/day"


def _portal_guard(app: web.Application) -> Callable[[web.Request, str, str], Awaitable[float | None]]:
    """The portal's public actions under the hub's one rate limiter: its
    search shares the limit of ``/api/v1/kb/search`` (the same embedding
    search); votes are limited per IP and per IP and article."""

    async def guard(request: web.Request, action: str, scope: str) -> float | None:
        limiter, settings, ip = app[keys.RATE_LIMITER], app[keys.SETTINGS], client_ip(request)
        try:
            if action == "search":
                await limiter.check(settings.kb_search_rate_limit, "kb-search", ip)
            elif action == "vote":
                await limiter.check(settings.kb_vote_rate_limit, "kb-vote", ip)
                await limiter.check(VOTES_PER_ARTICLE, "kb-vote-article", ip, scope)
        except RateLimited as err:
            return err.retry_after or 1.0
        return None

    return guard


class _LazyVotes:
    """The database opens after the routes are built; votes find it then."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def _store(self) -> DatabaseVoteStore:
        return DatabaseVoteStore(self._app[keys.DATABASE])

    async def record(self, collection: str, article_id: str, helpful: bool, voter_key: str) -> None:
        await self._store().record(collection, article_id, helpful, voter_key)

    async def tally(self, collection: str, article_id: str) -> tuple[int, int]:
        return await self._store().tally(collection, article_id)


async def _kb_ctx(app: web.Application) -> AsyncIterator[None]:
    kb = app[keys.KNOWLEDGE_BASE]
    settings = app[keys.SETTINGS]
    await kb.start()
    app[keys.HEALTH]["knowledge_base"] = lambda: {"ok": True}
    if settings.kb_seed_dir:
        existing = await kb.list_articles("default")
        if not existing:
            report = await kb.ingest_dir(settings.kb_seed_dir, "default", delete_missing=False)
            log.info("knowledge base seeded from %s: %s", settings.kb_seed_dir, report)
    # The help centres already written are warmed before their first customer, not by them.
    for collection in await kb.list_collections():
        kb.start_warming(collection)
    try:
        yield
    finally:
        await kb.close()


def build_knowledge_base(settings: Any) -> KnowledgeBase | None:
    if not settings.kb_enabled:
        return None
    return KnowledgeBase(
        data_dir=settings.data_dir / "kb",
        chroma_url=settings.chroma_url,
        model_path=settings.kb_model_path,
        spelling=settings.kb_spelling,
        coverage=settings.kb_coverage,
        warm=settings.kb_warm,
    )
